//! [`RegistryConfig`]: how to reach each registry host — plain HTTP, TLS without verification,
//! extra CA files, mirrors — as the daemon's configuration gives it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Per-host registry settings. Hosts are written as in references: `host` or `host:port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Hosts spoken to over plain HTTP (besides localhost and 127.0.0.0/8, which always are).
    pub plain_http: Vec<String>,
    /// Hosts spoken to over HTTPS without verifying their certificate (a loopback host listed
    /// here speaks HTTPS too).
    pub insecure: Vec<String>,
    /// PEM files of CA certificates trusted besides the system's, for every HTTPS host.
    pub ca_files: Vec<PathBuf>,
    /// Mirrors per registry host (`docker.io = ["mirror.example:5000"]`), tried in order before
    /// the host itself for pulls; pushes always go to the host.
    pub mirrors: BTreeMap<String, Vec<String>>,
}

/// How a host is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// HTTPS with verified certificates.
    Https,
    /// HTTPS accepting any certificate.
    HttpsInsecure,
    /// Plain HTTP.
    Http,
}

impl RegistryConfig {
    /// How `host` (`host[:port]`) is spoken to: as the lists say, else plain HTTP for a
    /// loopback host, else verified HTTPS.
    pub(crate) fn transport(&self, host: &str) -> Transport {
        if self.plain_http.iter().any(|h| h == host) {
            Transport::Http
        } else if self.insecure.iter().any(|h| h == host) {
            Transport::HttpsInsecure
        } else if is_loopback(host) {
            Transport::Http
        } else {
            Transport::Https
        }
    }

    /// The hosts to pull from for registry `host`: its mirrors in order, then itself.
    pub(crate) fn pull_hosts(&self, host: &str) -> Vec<String> {
        let mut hosts = self.mirrors.get(host).cloned().unwrap_or_default();
        hosts.push(host.to_owned());
        hosts
    }
}

/// Whether `host` (`host[:port]`, IPv6 in brackets) is `localhost` or a loopback address
/// (127.0.0.0/8, `::1`): such registries speak plain HTTP without configuration.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for (host, expected) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.3.4.5", true),
            ("[::1]:5000", true),
            ("128.0.0.1:5000", false),
            ("docker.io", false),
            ("localhost.example.com", false),
            ("10.0.0.1:5000", false),
        ] {
            assert_eq!(is_loopback(host), expected, "{host}");
        }
    }

    #[test]
    fn transports_and_mirrors_follow_the_config() {
        let config = RegistryConfig {
            plain_http: vec!["reg.lan:5000".into()],
            insecure: vec!["self.signed".into(), "127.0.0.1:5443".into()],
            mirrors: [("docker.io".to_string(), vec!["mirror:5000".to_string()])].into(),
            ..Default::default()
        };
        assert_eq!(config.transport("127.0.0.1:5000"), Transport::Http);
        assert_eq!(config.transport("reg.lan:5000"), Transport::Http);
        assert_eq!(config.transport("self.signed"), Transport::HttpsInsecure);
        assert_eq!(config.transport("127.0.0.1:5443"), Transport::HttpsInsecure);
        assert_eq!(config.transport("docker.io"), Transport::Https);
        assert_eq!(config.pull_hosts("docker.io"), ["mirror:5000", "docker.io"]);
        assert_eq!(config.pull_hosts("quay.io"), ["quay.io"]);
    }
}
