//! The distribution-source label of a blob: the repositories of a registry the blob is known to
//! be in (`containerd.io/distribution.source.<host>` = `repo,repo…`, containerd's own
//! convention), which a push reads to mount the blob from one of them instead of uploading it.

use crate::Labels;

/// The label key for registry `host`.
pub fn distribution_source_key(host: &str) -> String {
    format!("containerd.io/distribution.source.{host}")
}

/// The repositories of `host` that `labels` say hold the blob.
pub fn distribution_sources(labels: &Labels, host: &str) -> Vec<String> {
    labels
        .get(&distribution_source_key(host))
        .map(|v| {
            v.split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The label that adds `repository` of `host` to what `labels` say (unchanged if it is there).
pub fn distribution_source_label(
    labels: &Labels,
    host: &str,
    repository: &str,
) -> (String, String) {
    let mut repositories = distribution_sources(labels, host);
    if !repositories.iter().any(|r| r == repository) {
        repositories.push(repository.to_owned());
    }
    (distribution_source_key(host), repositories.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_listed_and_added_once() {
        let mut labels = Labels::new();
        assert!(distribution_sources(&labels, "r:5000").is_empty());
        let (k, v) = distribution_source_label(&labels, "r:5000", "base");
        assert_eq!(
            (k.as_str(), v.as_str()),
            ("containerd.io/distribution.source.r:5000", "base")
        );
        labels.insert(k, v);
        let (_, v) = distribution_source_label(&labels, "r:5000", "app");
        assert_eq!(v, "base,app");
        let (_, v) = distribution_source_label(&labels, "r:5000", "base");
        assert_eq!(v, "base");
        assert!(distribution_sources(&labels, "other").is_empty());
    }
}
