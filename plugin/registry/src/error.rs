//! [`RegistryError`]: why talking to a registry failed, one kind per thing the user can act on.

use oci_client::errors::{OciDistributionError, OciErrorCode};

/// A registry operation's failure; every variant names the reference it was about.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference is not something a registry can be asked for.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry refused the credentials (or asked for some and got none).
    #[error(
        "registry {registry} refused access to {reference} (unauthorized): check the credentials \
         for {registry}"
    )]
    Unauthorized {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
    },
    /// The repository, tag, manifest or blob does not exist in the registry.
    #[error("{reference}: {what} not found in registry {registry}")]
    NotFound {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
        /// What was missing (`manifest`, `blob sha256:…`).
        what: String,
    },
    /// The registry could not be reached (connection refused, DNS, timeout, TLS handshake).
    #[error("registry {registry} of {reference} is unreachable: {reason}")]
    Unreachable {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
        /// The transport's error, with its causes.
        reason: String,
    },
    /// What the registry sent is not what the digest says.
    #[error("{reference}: {what} from registry {registry} does not match its digest: {reason}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
        /// The manifest or blob.
        what: String,
        /// Expected and actual digests.
        reason: String,
    },
    /// The registry answered with an error or something that does not follow the protocol.
    #[error("{reference}: registry {registry} failed to {action}: {reason}")]
    Registry {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
        /// What was being done (`fetch the manifest`, `upload blob sha256:…`).
        action: String,
        /// The registry's or the client's message.
        reason: String,
    },
    /// A CA file of the configuration could not be read or is not a certificate.
    #[error("registry CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl RegistryError {
    /// Whether the registry said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}

/// The text of `e` and all its causes (reqwest hides the useful part in them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Classifies `e`, raised while `action` on `what` of `reference` at `registry`.
pub(crate) fn classify(
    e: OciDistributionError,
    reference: &str,
    registry: &str,
    action: &str,
    what: &str,
) -> RegistryError {
    let reference = reference.to_owned();
    let registry = registry.to_owned();
    let not_found = |reference, registry| RegistryError::NotFound {
        reference,
        registry,
        what: what.to_owned(),
    };
    match &e {
        OciDistributionError::RequestError(r)
            if r.is_connect() || r.is_timeout() || r.is_request() =>
        {
            RegistryError::Unreachable {
                reference,
                registry,
                reason: chain(&e),
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized {
            reference,
            registry,
        },
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(reference, registry),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes = envelope.errors.iter().map(|e| &e.code);
            if codes
                .clone()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                RegistryError::Unauthorized {
                    reference,
                    registry,
                }
            } else if codes.clone().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found(reference, registry)
            } else {
                RegistryError::Registry {
                    reference,
                    registry,
                    action: action.to_owned(),
                    reason: chain(&e),
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => not_found(reference, registry),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => RegistryError::Unauthorized {
            reference,
            registry,
        },
        OciDistributionError::DigestError(d) => RegistryError::DigestMismatch {
            reference,
            registry,
            what: what.to_owned(),
            reason: d.to_string(),
        },
        _ => RegistryError::Registry {
            reference,
            registry,
            action: action.to_owned(),
            reason: chain(&e),
        },
    }
}
