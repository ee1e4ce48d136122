//! Image config changes asked for with exporter attributes (`env.K=V`, `label.K=V`,
//! `entrypoint`, `cmd`, `workdir`, `user`, `expose`, `config=<json>`): parsed and checked
//! before any work, applied onto the base image's config with Docker's rules.
//!
//! | attribute | value | rule |
//! |---|---|---|
//! | `env.KEY` | the value | replaces `KEY=…` of the base image, or is appended |
//! | `label.KEY` | the value | merged into the base image's labels |
//! | `entrypoint` | a JSON array, or words split as a shell would (no `sh -c`) | replaces; without `cmd`, the base image's `Cmd` is dropped (as Docker's `ENTRYPOINT` does) |
//! | `cmd` | as `entrypoint` | replaces |
//! | `workdir` | an absolute path | replaces |
//! | `user` | `user`, `uid`, `user:group` or `uid:gid` | replaces |
//! | `expose` | ports `PORT[-PORT][/tcp\|udp\|sctp]`, separated by commas or spaces | added to `ExposedPorts` |
//! | `config` | a JSON object in the form of an OCI image config's `config` | applied first; the attributes above win over it |
//!
//! An empty `entrypoint` or `cmd` (`entrypoint=[]`) clears it. On `oxctl --output`, which is
//! comma-separated, quote a value that has commas as a CSV field: `"cmd=[""sh"",""-c"",""ls""]"`,
//! or give it with `--exporter-opt`.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// What an attribute is wrong about: (attribute, reason).
pub(crate) type Invalid = (String, String);

/// Changes to an image's run config, from exporter attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// `KEY` → value, in the order given; a later one replaces an earlier one.
    pub env: Vec<(String, String)>,
    /// Labels to add or replace.
    pub labels: BTreeMap<String, String>,
    /// The new entrypoint (empty clears it).
    pub entrypoint: Option<Vec<String>>,
    /// The new cmd (empty clears it).
    pub cmd: Option<Vec<String>>,
    /// The new working directory (absolute).
    pub workdir: Option<String>,
    /// The new user.
    pub user: Option<String>,
    /// Ports to expose, normalised (`80/tcp`).
    pub exposed_ports: BTreeSet<String>,
    /// Volumes to add (only through `config=`).
    pub volumes: BTreeSet<String>,
    /// The new stop signal (only through `config=`).
    pub stop_signal: Option<String>,
    /// Fields set on the image config document itself, beside `config` and `rootfs` (not
    /// from attributes: e.g. an inline build cache).
    pub document: BTreeMap<String, Value>,
}

/// The `config=` attribute: the fields of an OCI image config's `config` object that an export
/// may set (null is the same as absent).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ConfigDocument {
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    exposed_ports: Option<BTreeMap<String, IgnoredAny>>,
    volumes: Option<BTreeMap<String, IgnoredAny>>,
    stop_signal: Option<String>,
}

/// Collects the config attributes of one exporter's options; [`ConfigAttrs::finish`] gives the
/// changes with `config=` under the individual attributes.
#[derive(Debug, Default)]
pub(crate) struct ConfigAttrs {
    document: ConfigChanges,
    attrs: ConfigChanges,
}

impl ConfigAttrs {
    /// Takes attribute `key` if it is a config attribute: `Ok(false)` if it is not one.
    pub(crate) fn take(&mut self, key: &str, value: &str) -> Result<bool, Invalid> {
        let bad = |reason: String| (key.to_string(), reason);
        let a = &mut self.attrs;
        if let Some(name) = key.strip_prefix("env.") {
            a.set_env(name, value).map_err(bad)?;
            return Ok(true);
        }
        if let Some(name) = key.strip_prefix("label.") {
            if name.is_empty() {
                return Err(bad("the label needs a name: label.NAME=VALUE".into()));
            }
            a.labels.insert(name.into(), value.into());
            return Ok(true);
        }
        match key {
            "entrypoint" => a.entrypoint = Some(parse_args(value).map_err(bad)?),
            "cmd" => a.cmd = Some(parse_args(value).map_err(bad)?),
            "workdir" => a.workdir = Some(parse_workdir(value).map_err(bad)?),
            "user" => a.user = Some(parse_user(value).map_err(bad)?),
            "expose" => {
                for spec in value.split([',', ' ']).filter(|s| !s.is_empty()) {
                    a.exposed_ports.extend(parse_port(spec).map_err(bad)?);
                }
            }
            "config" => self.document = ConfigChanges::from_json(value).map_err(bad)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The changes: `config=`'s, then the individual attributes over them.
    pub(crate) fn finish(self) -> ConfigChanges {
        let (mut merged, attrs) = (self.document, self.attrs);
        for (k, v) in attrs.env {
            merged.env.retain(|(old, _)| *old != k);
            merged.env.push((k, v));
        }
        merged.labels.extend(attrs.labels);
        merged.exposed_ports.extend(attrs.exposed_ports);
        merged.entrypoint = attrs.entrypoint.or(merged.entrypoint);
        merged.cmd = attrs.cmd.or(merged.cmd);
        merged.workdir = attrs.workdir.or(merged.workdir);
        merged.user = attrs.user.or(merged.user);
        merged
    }
}

impl ConfigChanges {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == ConfigChanges::default()
    }

    fn set_env(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name.is_empty() || name.contains('=') {
            return Err("the variable needs a name without `=`: env.NAME=VALUE".into());
        }
        self.env.retain(|(old, _)| old != name);
        self.env.push((name.into(), value.into()));
        Ok(())
    }

    /// Parses `config=`: an object with the fields of an OCI image config's `config`. Unknown
    /// fields and wrong types are refused by name.
    fn from_json(text: &str) -> Result<Self, String> {
        let doc: ConfigDocument = serde_json::from_str(text)
            .map_err(|e| format!("not a JSON object of image config fields: {e}"))?;
        let mut c = ConfigChanges {
            entrypoint: doc.entrypoint,
            cmd: doc.cmd,
            user: doc.user,
            stop_signal: doc.stop_signal,
            labels: doc.labels.unwrap_or_default(),
            volumes: doc.volumes.unwrap_or_default().into_keys().collect(),
            ..Default::default()
        };
        for entry in doc.env.unwrap_or_default() {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("Env entry {entry:?} is not NAME=VALUE"))?;
            c.set_env(name, value).map_err(|e| format!("Env: {e}"))?;
        }
        if let Some(dir) = doc.working_dir {
            c.workdir = Some(parse_workdir(&dir).map_err(|e| format!("WorkingDir: {e}"))?);
        }
        for spec in doc.exposed_ports.unwrap_or_default().into_keys() {
            let ports = parse_port(&spec).map_err(|e| format!("ExposedPorts: {e}"))?;
            c.exposed_ports.extend(ports);
        }
        Ok(c)
    }

    /// Applies the changes to `image`, a whole image config document (its `config` object is
    /// created if missing), with Docker's rules: env by name, labels, ports and volumes merged,
    /// a new entrypoint without a new cmd drops the old cmd.
    pub(crate) fn apply(&self, image: &mut Value) {
        if self.is_empty() {
            return;
        }
        for (field, value) in &self.document {
            image[field.as_str()] = value.clone();
        }
        if !image["config"].is_object() {
            image["config"] = json!({});
        }
        let Value::Object(run) = &mut image["config"] else {
            unreachable!("made an object above")
        };
        if !self.env.is_empty() {
            let mut env: Vec<Value> = match run.remove("Env") {
                Some(Value::Array(env)) => env,
                _ => Vec::new(),
            };
            for (name, value) in &self.env {
                let entry = Value::from(format!("{name}={value}"));
                let same = |e: &Value| {
                    e.as_str()
                        .is_some_and(|e| e.split('=').next() == Some(name.as_str()))
                };
                match env.iter_mut().find(|e| same(e)) {
                    Some(old) => *old = entry,
                    None => env.push(entry),
                }
            }
            run.insert("Env".into(), Value::Array(env));
        }
        let merge = |run: &mut Map<String, Value>, field: &str, items: Vec<(String, Value)>| {
            if items.is_empty() {
                return;
            }
            if !run.get(field).is_some_and(Value::is_object) {
                run.insert(field.into(), json!({}));
            }
            let object = run[field].as_object_mut().expect("made an object above");
            object.extend(items);
        };
        let set = |k: &String| (k.clone(), json!({}));
        merge(
            run,
            "Labels",
            self.labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        );
        merge(
            run,
            "ExposedPorts",
            self.exposed_ports.iter().map(set).collect(),
        );
        merge(run, "Volumes", self.volumes.iter().map(set).collect());
        let mut replace = |field: &str, value: Option<Value>| match value {
            Some(v) if !is_empty(&v) => {
                run.insert(field.into(), v);
            }
            Some(_) => {
                run.remove(field);
            }
            None => {}
        };
        replace("Entrypoint", self.entrypoint.as_ref().map(|e| json!(e)));
        if self.entrypoint.is_some() && self.cmd.is_none() {
            replace("Cmd", Some(Value::Null));
        }
        replace("Cmd", self.cmd.as_ref().map(|c| json!(c)));
        replace("WorkingDir", self.workdir.as_ref().map(|w| json!(w)));
        replace("User", self.user.as_ref().map(|u| json!(u)));
        replace("StopSignal", self.stop_signal.as_ref().map(|s| json!(s)));
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// `entrypoint`/`cmd`: a JSON array of strings, or words split as a shell would.
fn parse_args(value: &str) -> Result<Vec<String>, String> {
    let value = value.trim();
    if value.starts_with('[') {
        return serde_json::from_str(value)
            .map_err(|e| format!("{value:?} is not a JSON array of strings: {e}"));
    }
    split_words(value)
}

/// Splits `s` into words as a POSIX shell would, without expansions: whitespace separates,
/// `'…'` is literal, `"…"` keeps `\` only before `"`, `\`, `$` and `` ` ``, and `\` escapes
/// any character outside quotes.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unterminated ' in {s:?}")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("unterminated \" in {s:?}")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unterminated \" in {s:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(format!("{s:?} ends in a lone backslash")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn parse_workdir(value: &str) -> Result<String, String> {
    if value.starts_with('/') {
        Ok(value.into())
    } else {
        Err(format!("{value:?} is not an absolute path"))
    }
}

fn parse_user(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && !value.contains(char::is_whitespace)
        && value.split(':').count() <= 2
        && value.split(':').all(|p| !p.is_empty());
    if ok {
        Ok(value.into())
    } else {
        Err(format!("{value:?} is not user, uid, user:group or uid:gid"))
    }
}

/// `PORT[-PORT][/PROTO]` → `PORT/proto` for each port; the protocol defaults to tcp.
fn parse_port(spec: &str) -> Result<Vec<String>, String> {
    let bad = || format!("{spec:?} is not PORT[-PORT][/tcp|udp|sctp]");
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if last < first {
        return Err(bad());
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, &str)]) -> Result<ConfigChanges, Invalid> {
        let mut attrs = ConfigAttrs::default();
        for (k, v) in pairs {
            assert!(attrs.take(k, v)?, "{k} is a config attribute");
        }
        Ok(attrs.finish())
    }

    #[test]
    fn words_split_as_a_shell_would() {
        for (input, words) in [
            ("sh", &["sh"][..]),
            (
                "  sh  -c  'echo $FOO; pwd' ",
                &["sh", "-c", "echo $FOO; pwd"],
            ),
            (
                r#"a "b \"c\" \n" d\ e ''"#,
                &["a", r#"b "c" \n"#, "d e", ""],
            ),
            ("", &[]),
        ] {
            assert_eq!(split_words(input).unwrap(), words, "{input:?}");
        }
        for bad in ["'open", "\"open", "trailing\\"] {
            assert!(split_words(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attributes_parse() {
        let c = changes(&[
            ("env.FOO", "bar=baz"),
            ("label.org.example.team", "build"),
            ("entrypoint", r#"["/bin/sh", "-c"]"#),
            ("cmd", "echo 'hello world'"),
            ("workdir", "/srv"),
            ("user", "1000:1000"),
            ("expose", "80, 53/UDP 8000-8002/tcp"),
        ])
        .unwrap();
        assert_eq!(c.env, [("FOO".to_string(), "bar=baz".to_string())]);
        assert_eq!(c.labels["org.example.team"], "build");
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c"]);
        assert_eq!(c.cmd.unwrap(), ["echo", "hello world"]);
        assert_eq!(
            (c.workdir.as_deref(), c.user.as_deref()),
            (Some("/srv"), Some("1000:1000"))
        );
        let ports: Vec<_> = c.exposed_ports.iter().map(String::as_str).collect();
        assert_eq!(
            ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        let mut other = ConfigAttrs::default();
        assert!(!other.take("name", "x").unwrap());
        assert!(!other.take("compression", "gzip").unwrap());
    }

    #[test]
    fn bad_values_are_refused_naming_the_attribute() {
        for (key, value, needle) in [
            ("expose", "abc/tcp", "abc/tcp"),
            ("expose", "80/icmp", "80/icmp"),
            ("expose", "0", "PORT"),
            ("expose", "90-80", "90-80"),
            ("expose", "70000", "70000"),
            ("workdir", "srv", "absolute"),
            ("entrypoint", r#"["sh", 1]"#, "JSON array"),
            ("cmd", "echo 'open", "unterminated"),
            ("user", "a:b:c", "user:group"),
            ("user", "", "user:group"),
            ("env.", "x", "env.NAME"),
            ("label.", "x", "label.NAME"),
            ("config", "[1]", "JSON object"),
            ("config", "{nope", "JSON object"),
            ("config", r#"{"Env": ["NOEQUALS"]}"#, "NAME=VALUE"),
            ("config", r#"{"Cmd": "sh"}"#, "expected a sequence"),
            ("config", r#"{"Healthcheck": {}}"#, "Healthcheck"),
            ("config", r#"{"Labels": {"a": 1}}"#, "expected a string"),
            ("config", r#"{"WorkingDir": "rel"}"#, "absolute"),
            ("config", r#"{"ExposedPorts": {"x/tcp": {}}}"#, "x/tcp"),
        ] {
            let (k, reason) = changes(&[(key, value)]).unwrap_err();
            assert_eq!(k, key);
            assert!(reason.contains(needle), "{key}={value}: {reason}");
        }
    }

    #[test]
    fn attributes_win_over_the_config_document() {
        let c = changes(&[
            (
                "config",
                r#"{"Env":["A=doc","B=doc"],"User":"doc","Labels":{"l":"doc","m":"doc"},
                   "ExposedPorts":{"1/tcp":{}},"Volumes":{"/data":{}},"StopSignal":"SIGINT",
                   "Cmd":["doc"]}"#,
            ),
            ("env.A", "attr"),
            ("label.l", "attr"),
            ("user", "attr"),
            ("expose", "2"),
        ])
        .unwrap();
        assert_eq!(
            c.env,
            [("B".into(), "doc".into()), ("A".into(), "attr".into())]
        );
        assert_eq!(
            (c.labels["l"].as_str(), c.labels["m"].as_str()),
            ("attr", "doc")
        );
        assert_eq!(c.user.as_deref(), Some("attr"));
        assert_eq!(c.cmd.unwrap(), ["doc"]);
        assert_eq!(c.exposed_ports.len(), 2);
        assert!(c.volumes.contains("/data"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    }

    fn base() -> Value {
        json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "HOME=/root"],
                "Cmd": ["sh"],
                "Labels": {"base": "yes"},
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:01"]},
        })
    }

    #[test]
    fn changes_apply_with_dockers_rules() {
        let mut image = base();
        changes(&[
            ("env.PATH", "/usr/bin:/bin"),
            ("env.FOO", "bar"),
            ("label.new", "1"),
            ("entrypoint", "/bin/app --serve"),
            ("workdir", "/srv"),
            ("user", "app"),
            ("expose", "8080"),
        ])
        .unwrap()
        .apply(&mut image);
        let run = &image["config"];
        assert_eq!(
            run["Env"],
            json!(["PATH=/usr/bin:/bin", "HOME=/root", "FOO=bar"])
        );
        assert_eq!(run["Labels"], json!({"base": "yes", "new": "1"}));
        assert_eq!(run["Entrypoint"], json!(["/bin/app", "--serve"]));
        assert!(
            run.get("Cmd").is_none(),
            "a new entrypoint drops the base image's cmd: {run}"
        );
        assert_eq!(run["WorkingDir"], "/srv");
        assert_eq!(run["User"], "app");
        assert_eq!(run["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(image["rootfs"]["diff_ids"], json!(["sha256:01"]));

        let mut image = base();
        changes(&[("entrypoint", "[]"), ("cmd", r#"["sh","-c","echo hi"]"#)])
            .unwrap()
            .apply(&mut image);
        assert!(image["config"].get("Entrypoint").is_none());
        assert_eq!(image["config"]["Cmd"], json!(["sh", "-c", "echo hi"]));

        let mut image = base();
        ConfigChanges::default().apply(&mut image);
        assert_eq!(image, base(), "no changes, no difference");

        let mut image = json!({"rootfs": {"diff_ids": []}, "config": null});
        changes(&[("env.A", "1")]).unwrap().apply(&mut image);
        assert_eq!(image["config"], json!({"Env": ["A=1"]}));
    }
}
