//! Registry credentials for the build's session, from Docker's config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): read when the daemon asks for a
//! host, so a build that pulls nothing never touches the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::ProvideError;

/// Where the credentials come from: Docker's `config.json` (its `auths` entries; credential
/// helpers are not consulted).
#[derive(Debug, Clone)]
pub struct RegistryAuths {
    path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthEntry {
    auth: String,
    username: String,
    password: String,
}

impl RegistryAuths {
    /// Docker's config file of this user: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        RegistryAuths {
            path: dir.map(|d| d.join("config.json")),
        }
    }

    /// The credentials (user name, password) for registry `host`; `NotFound` when the file is
    /// missing or has no entry for it.
    pub fn get(&self, host: &str) -> Result<(String, String), ProvideError> {
        let Some(path) = &self.path else {
            return Err(ProvideError::NotFound);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProvideError::NotFound)
            }
            Err(e) => {
                return Err(ProvideError::Failed(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        lookup(&text, host).map_err(|e| match e {
            ProvideError::Failed(m) => ProvideError::Failed(format!("{}: {m}", path.display())),
            other => other,
        })
    }
}

/// The entry of config `text` for `host`.
fn lookup(text: &str, host: &str) -> Result<(String, String), ProvideError> {
    let config: DockerConfig =
        serde_json::from_str(text).map_err(|e| ProvideError::Failed(e.to_string()))?;
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| same_host(&key_host(key), host))
        .map(|(_, entry)| entry)
        .ok_or(ProvideError::NotFound)?;
    if !entry.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .map_err(|e| ProvideError::Failed(format!("the auth of {host} is not base64: {e}")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| ProvideError::Failed(format!("the auth of {host} is not text")))?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            ProvideError::Failed(format!("the auth of {host} is not user:password"))
        })?;
        return Ok((user.to_owned(), password.to_owned()));
    }
    if entry.username.is_empty() {
        return Err(ProvideError::NotFound);
    }
    Ok((entry.username.clone(), entry.password.clone()))
}

/// The host of an `auths` key (`host`, `https://host`, `https://index.docker.io/v1/`).
fn key_host(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Whether two hosts name the same registry (Docker Hub goes by several names).
fn same_host(a: &str, b: &str) -> bool {
    let hub = |h: &str| {
        if matches!(h, "index.docker.io" | "registry-1.docker.io") {
            "docker.io".to_owned()
        } else {
            h.to_owned()
        }
    };
    hub(a) == hub(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_host_in_any_spelling() {
        let config = r#"{"auths": {
            "127.0.0.1:5000": {"auth": "dXNlcjpwYXNzOndvcmQ="},
            "https://index.docker.io/v1/": {"username": "hub", "password": "secret"},
            "bad.example": {"auth": "!!"}
        }}"#;
        let found = |host| lookup(config, host).map_err(|e| format!("{e:?}"));
        assert_eq!(
            found("127.0.0.1:5000"),
            Ok(("user".into(), "pass:word".into()))
        );
        assert_eq!(found("docker.io"), Ok(("hub".into(), "secret".into())));
        assert_eq!(found("quay.io"), Err("NotFound".into()));
        assert!(matches!(
            lookup(config, "bad.example"),
            Err(ProvideError::Failed(_))
        ));
        assert!(matches!(lookup("nope", "x"), Err(ProvideError::Failed(_))));
    }
}
