//! oxkit's registry client: talks to container registries over the OCI distribution API (on the
//! `oci-client` crate) and nothing else — resolves a reference to its manifest or index, fetches
//! manifests and blobs (verified by digest), checks which blobs a registry has, and pushes blobs
//! and manifests. Which hosts speak plain HTTP, skip TLS verification, trust extra CAs or have
//! mirrors is [`RegistryConfig`]; credentials for one host are [`Credentials`], given per pull or
//! push ([`Registry::with_credentials`]); a registry on localhost or 127.0.0.0/8 speaks plain HTTP
//! without configuration, as in Docker and BuildKit. Writing what is fetched into containerd is
//! the worker's job, reading what is pushed from containerd the exporter's.

mod client;
mod config;
mod error;

pub use client::{host_and_repository, Credentials, Manifest, Registry, MANIFEST_MEDIA_TYPES};
pub use config::{is_loopback, RegistryConfig};
pub use error::RegistryError;
