//! The image config a stage builds up (OCI JSON with Docker's extensions), and its history.

use serde_json::{json, Map, Value};

use oxkit_llb::op::Platform;

/// The `PATH` every Linux image gets when its config sets none (BuildKit's default).
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `history[].comment` of the entries the Dockerfile frontend adds.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The top-level fields of an image config kept from a base image (as BuildKit, which decodes
/// into the OCI type: a Docker v2 config's `container_config` and friends are dropped).
const TOP_LEVEL: &[&str] = &[
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "author",
    "config",
    "rootfs",
    "history",
];

/// The fields of `config` kept from a base image.
const CONFIG_FIELDS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// An image config under construction.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Image {
    doc: Map<String, Value>,
}

impl Image {
    /// The config of an image built `FROM scratch` (BuildKit's `emptyImage`).
    pub(super) fn empty(platform: &Platform) -> Image {
        let mut image = Image { doc: Map::new() };
        image.set_platform(platform);
        image.doc.insert(
            "config".into(),
            json!({"Env": [format!("PATH={DEFAULT_PATH}")], "WorkingDir": "/"}),
        );
        image
            .doc
            .insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
        image
    }

    /// A base image's config blob, with the fields BuildKit does not carry over dropped
    /// (`created` among them: the exporter sets it).
    pub(super) fn from_blob(blob: &[u8]) -> Result<Image, String> {
        let doc: Value = serde_json::from_slice(blob)
            .map_err(|e| format!("its config is not valid JSON: {e}"))?;
        let Value::Object(mut doc) = doc else {
            return Err("its config is not a JSON object".into());
        };
        doc.retain(|k, _| TOP_LEVEL.contains(&k.as_str()));
        match doc.get_mut("config") {
            Some(Value::Object(c)) => {
                c.retain(|k, v| CONFIG_FIELDS.contains(&k.as_str()) && !v.is_null())
            }
            _ => {
                doc.insert("config".into(), json!({}));
            }
        }
        if !doc.get("rootfs").is_some_and(Value::is_object) {
            doc.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
        }
        Ok(Image { doc })
    }

    /// True when the image has no layers (nothing to pull: BuildKit starts from scratch).
    pub(super) fn has_no_layers(&self) -> bool {
        let no_diffs = self.doc["rootfs"]["diff_ids"]
            .as_array()
            .is_none_or(Vec::is_empty);
        let all_empty = self
            .doc
            .get("history")
            .and_then(Value::as_array)
            .is_none_or(|h| {
                h.iter()
                    .all(|e| e["empty_layer"].as_bool().unwrap_or(false))
            });
        no_diffs && all_empty
    }

    /// The OS and architecture (and variant) of `platform`.
    pub(super) fn set_platform(&mut self, platform: &Platform) {
        self.doc
            .insert("architecture".into(), platform.architecture.clone().into());
        self.doc.insert("os".into(), platform.os.clone().into());
        if platform.variant.is_empty() {
            self.doc.remove("variant");
        } else {
            self.doc
                .insert("variant".into(), platform.variant.clone().into());
        }
    }

    /// The whole config, as the exporter writes it.
    pub(super) fn into_value(self) -> Value {
        Value::Object(self.doc)
    }

    fn config(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.doc
            .get("config")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    fn config_mut(&mut self) -> &mut Map<String, Value> {
        let c = self
            .doc
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !c.is_object() {
            *c = Value::Object(Map::new());
        }
        c.as_object_mut().expect("made an object above")
    }

    fn strings(&self, field: &str) -> Vec<String> {
        self.config()
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn string(&self, field: &str) -> String {
        self.config()
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// `Env`, as `KEY=value` entries.
    pub(super) fn env(&self) -> Vec<String> {
        self.strings("Env")
    }

    /// Sets `key` in `Env`: replaces its entry, or appends one.
    pub(super) fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.config_mut().insert("Env".into(), env.into());
    }

    /// `User` (empty: root).
    pub(super) fn user(&self) -> String {
        self.string("User")
    }

    /// `WorkingDir` (empty: `/`).
    pub(super) fn working_dir(&self) -> String {
        self.string("WorkingDir")
    }

    /// `Shell`, or the default `/bin/sh -c`.
    pub(super) fn shell(&self) -> Vec<String> {
        let shell = self.strings("Shell");
        if shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            shell
        }
    }

    /// `OnBuild` triggers.
    pub(super) fn on_build(&self) -> Vec<String> {
        self.strings("OnBuild")
    }

    /// Sets a string field of `config`.
    pub(super) fn set(&mut self, field: &str, value: impl Into<Value>) {
        self.config_mut().insert(field.into(), value.into());
    }

    /// Removes a field of `config`.
    pub(super) fn unset(&mut self, field: &str) {
        self.config_mut().remove(field);
    }

    /// Adds `key` to the map field `field` (`Labels` with a value; `ExposedPorts`, `Volumes`
    /// with `{}`).
    pub(super) fn insert(&mut self, field: &str, key: &str, value: Value) {
        let map = self
            .config_mut()
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !map.is_object() {
            *map = Value::Object(Map::new());
        }
        map.as_object_mut()
            .expect("made an object above")
            .insert(key.into(), value);
    }

    /// Appends to the list field `field` (`OnBuild`).
    pub(super) fn push(&mut self, field: &str, value: &str) {
        let mut list = self.strings(field);
        list.push(value.into());
        self.config_mut().insert(field.into(), list.into());
    }

    /// The top-level `author`.
    pub(super) fn set_author(&mut self, author: &str) {
        self.doc.insert("author".into(), author.into());
    }

    /// Adds a history entry for an instruction (`empty_layer` when it changes no files).
    pub(super) fn history(&mut self, created_by: &str, empty_layer: bool) {
        let mut entry = json!({"created_by": created_by, "comment": HISTORY_COMMENT});
        if empty_layer {
            entry["empty_layer"] = true.into();
        }
        let history = self
            .doc
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !history.is_array() {
            *history = Value::Array(Vec::new());
        }
        history
            .as_array_mut()
            .expect("made an array above")
            .push(entry);
    }
}

/// A list as Go's `%v` prints a `[]string`: `[a b]`.
pub(super) fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// A list as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub(super) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// A duration in nanoseconds as Go's `time.Duration` prints it (`1m30s`, `500ms`, `0s`).
pub(super) fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return match ns {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = rest as f64 / 1e9;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{secs}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_configs_keep_only_what_buildkit_keeps() {
        let image = Image::from_blob(
            br#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
                "container_config":{"Hostname":"x"},
                "config":{"Hostname":"x","Env":["PATH=/bin"],"Cmd":["sh"],"Entrypoint":null},
                "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
                "history":[{"created_by":"ADD file"}]}"#,
        )
        .unwrap();
        let v = image.clone().into_value();
        assert!(v.get("created").is_none() && v.get("container_config").is_none());
        assert_eq!(v["config"], json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
        assert!(!image.has_no_layers());
        assert!(Image::from_blob(br#"{"rootfs":{"diff_ids":[]}}"#)
            .unwrap()
            .has_no_layers());
    }

    #[test]
    fn env_entries_are_replaced_in_place_or_appended() {
        let mut image = Image::empty(&Platform::host());
        image.set_env("A", "1");
        image.set_env("PATH", "/x");
        assert_eq!(image.env(), ["PATH=/x", "A=1"]);
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(
            go_quoted_list(&["a b".into(), "c".into()]),
            r#"["a b" "c"]"#
        );
    }
}
