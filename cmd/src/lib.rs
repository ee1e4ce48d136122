//! What oxkit's binaries share: printing an error chain for a person, and `oxctl`'s exporter
//! flags ([`output`]) and frontend flags ([`frontend`]).

pub mod frontend;
pub mod output;

/// The error and its causes, joined by ": ", leaving out a cause whose text the message before
/// it already contains (many errors quote their source in their own message, and `{:#}` would
/// print it twice).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to open db: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn quoted_causes_are_printed_once() {
        let io = || std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(Quoting(io())).context("daemon failed");
        assert_eq!(
            error_chain(&e),
            "daemon failed: failed to open db: disk on fire"
        );
        let e = anyhow::Error::new(io()).context("daemon failed");
        assert_eq!(error_chain(&e), "daemon failed: disk on fire");
    }
}
