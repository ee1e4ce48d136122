//! The `type=oci` export: an image built by [`ImageExporter::build_image`] laid out as an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in one tar stream, as
//! `ctr images import` and `skopeo inspect oci-archive:` read it.
//!
//! [`ImageExporter::build_image`]: crate::ImageExporter::build_image

use std::collections::BTreeMap;
use std::future::Future;

use oxkit_containerd::{Content, Descriptor, Digest};
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::ctr;
use crate::{BuiltImage, ExportError};

/// The annotation that names an image in an index, per the OCI image spec (a tag).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name, which `ctr images import` prefers.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const BLOCK: usize = 512;

/// Where the archive's blobs come from: containerd's content store, or a map in tests.
pub trait BlobSource: Sync {
    /// Copies blob `digest` into `out`; returns how many bytes it wrote.
    fn copy_blob<W: AsyncWrite + Unpin + Send>(
        &self,
        digest: &Digest,
        out: &mut W,
    ) -> impl Future<Output = Result<u64, ExportError>> + Send;
}

impl BlobSource for Content {
    async fn copy_blob<W: AsyncWrite + Unpin + Send>(
        &self,
        digest: &Digest,
        out: &mut W,
    ) -> Result<u64, ExportError> {
        self.read_to(digest, out)
            .await
            .map_err(ctr(format!("failed to read blob {digest}")))
    }
}

impl BlobSource for BTreeMap<Digest, Vec<u8>> {
    async fn copy_blob<W: AsyncWrite + Unpin + Send>(
        &self,
        digest: &Digest,
        out: &mut W,
    ) -> Result<u64, ExportError> {
        let bytes = self.get(digest).ok_or_else(|| ExportError::Io {
            what: format!("blob {digest} is missing"),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        out.write_all(bytes).await.map_err(stream_error("a blob"))?;
        Ok(bytes.len() as u64)
    }
}

/// What goes into an OCI archive: its `index.json` and the blobs it refers to.
#[derive(Debug, Clone)]
pub struct OciArchive {
    index: Vec<u8>,
    /// Every blob once, in digest order.
    blobs: Vec<Descriptor>,
}

impl OciArchive {
    /// The archive of `image`: one index entry per name (annotated with
    /// `org.opencontainers.image.ref.name` = the name's tag, and `io.containerd.image.name` =
    /// the full name), or one plain entry when there are no names.
    pub fn new(image: &BuiltImage, names: &[String]) -> Self {
        let entry = |name: Option<&String>| {
            let mut desc = image.manifest.clone();
            if let Some(name) = name {
                desc.annotations
                    .insert(CONTAINERD_NAME_ANNOTATION.into(), name.clone());
                desc.annotations
                    .insert(REF_NAME_ANNOTATION.into(), ref_name(name).into());
            }
            desc
        };
        let manifests: Vec<Descriptor> = if names.is_empty() {
            vec![entry(None)]
        } else {
            names.iter().map(|n| entry(Some(n))).collect()
        };
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": manifests,
        });
        let mut blobs: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for d in std::iter::once(&image.manifest)
            .chain(std::iter::once(&image.config))
            .chain(&image.layers)
        {
            blobs.entry(d.digest.clone()).or_insert_with(|| d.clone());
        }
        OciArchive {
            index: serde_json::to_vec(&index).expect("a JSON value always serialises"),
            blobs: blobs.into_values().collect(),
        }
    }

    /// The archive's `index.json`.
    pub fn index(&self) -> &[u8] {
        &self.index
    }

    /// Writes the archive as a tar stream into `out`, entries in a fixed order — `oci-layout`,
    /// `index.json`, `blobs/`, `blobs/sha256/`, then the blobs by digest — with fixed owners,
    /// modes and times, so the same image gives the same bytes. Fails if a blob's size differs
    /// from its descriptor's. Returns the bytes written.
    pub async fn write_to<S: BlobSource, W: AsyncWrite + Unpin + Send>(
        &self,
        source: &S,
        mut out: W,
    ) -> Result<u64, ExportError> {
        let mut written = 0u64;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        for (path, bytes) in [("oci-layout", &layout[..]), ("index.json", &self.index)] {
            written += write_file(&mut out, path, bytes).await?;
        }
        for dir in ["blobs/", "blobs/sha256/"] {
            let header = header(dir, 0, tar::EntryType::Directory)?;
            out.write_all(header.as_bytes())
                .await
                .map_err(stream_error(dir))?;
            written += BLOCK as u64;
        }
        for blob in &self.blobs {
            let path = format!("blobs/sha256/{}", blob.digest.hex());
            let header = header(&path, blob.size, tar::EntryType::Regular)?;
            out.write_all(header.as_bytes())
                .await
                .map_err(stream_error(&path))?;
            let copied = source.copy_blob(&blob.digest, &mut out).await?;
            if copied != blob.size {
                return Err(ExportError::Stream {
                    exporter: "oci",
                    what: path,
                    source: std::io::Error::other(format!(
                        "the blob has {copied} bytes, its descriptor says {}",
                        blob.size
                    )),
                });
            }
            out.write_all(&[0; BLOCK][..padding(copied)])
                .await
                .map_err(stream_error(&path))?;
            written += BLOCK as u64 + copied + padding(copied) as u64;
        }
        out.write_all(&[0; 2 * BLOCK])
            .await
            .map_err(stream_error("the end of the archive"))?;
        out.flush()
            .await
            .map_err(stream_error("the end of the archive"))?;
        Ok(written + 2 * BLOCK as u64)
    }
}

/// The OCI reference name of image `name`: its tag (`docker.io/library/app:dev` → `dev`), as
/// containerd's and BuildKit's archive exporters write it; the whole name if it has no tag.
fn ref_name(name: &str) -> &str {
    let without_digest = name.split('@').next().unwrap_or(name);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => name,
    }
}

async fn write_file<W: AsyncWrite + Unpin>(
    out: &mut W,
    path: &str,
    bytes: &[u8],
) -> Result<u64, ExportError> {
    let header = header(path, bytes.len() as u64, tar::EntryType::Regular)?;
    let pad = padding(bytes.len() as u64);
    for part in [header.as_bytes(), bytes, &[0; BLOCK][..pad]] {
        out.write_all(part).await.map_err(stream_error(path))?;
    }
    Ok((BLOCK + bytes.len() + pad) as u64)
}

fn header(path: &str, size: u64, kind: tar::EntryType) -> Result<tar::Header, ExportError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(stream_error(path))?;
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

fn stream_error(what: &str) -> impl FnOnce(std::io::Error) -> ExportError {
    let what = what.to_string();
    move |source| ExportError::Stream {
        exporter: "oci",
        what,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn blob(media_type: &str, bytes: &[u8], store: &mut BTreeMap<Digest, Vec<u8>>) -> Descriptor {
        let d = Descriptor::of_bytes(media_type, bytes);
        store.insert(d.digest.clone(), bytes.to_vec());
        d
    }

    fn image(store: &mut BTreeMap<Digest, Vec<u8>>) -> BuiltImage {
        let layer = blob(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &[7u8; 1000],
            store,
        );
        let shared = blob("application/vnd.oci.image.layer.v1.tar", b"same", store);
        let config = blob("application/vnd.oci.image.config.v1+json", b"{}", store);
        let manifest = blob(
            "application/vnd.oci.image.manifest.v1+json",
            b"{\"schemaVersion\":2}",
            store,
        );
        BuiltImage {
            manifest,
            config,
            layers: vec![layer, shared.clone(), shared],
            chain_ids: vec![],
            new_layers: 1,
            new_snapshots: vec!["build-snapshot".into()],
        }
    }

    fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        tar::Archive::new(tar_bytes)
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().display().to_string(), data)
            })
            .collect()
    }

    #[tokio::test]
    async fn the_archive_is_an_oci_layout_in_a_fixed_order() {
        let mut store = BTreeMap::new();
        let image = image(&mut store);
        let archive = OciArchive::new(&image, &["docker.io/library/app:dev".to_string()]);
        let mut out = Vec::new();
        let n = archive.write_to(&store, &mut out).await.unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(out.len() % BLOCK, 0);

        let got = entries(&out);
        let mut blobs: Vec<&Digest> = store.keys().collect();
        blobs.sort();
        let mut want = vec![
            "oci-layout".to_string(),
            "index.json".into(),
            "blobs/".into(),
            "blobs/sha256/".into(),
        ];
        want.extend(blobs.iter().map(|d| format!("blobs/sha256/{}", d.hex())));
        assert_eq!(
            got.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            want,
            "every blob once, by digest"
        );
        for (path, data) in &got[4..] {
            let digest = Digest::sha256_of(data);
            assert_eq!(
                path,
                &format!("blobs/sha256/{}", digest.hex()),
                "content matches its name"
            );
        }
        let layout: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: serde_json::Value = serde_json::from_slice(&got[1].1).unwrap();
        assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], image.manifest.digest.to_string());
        assert_eq!(m["size"], image.manifest.size);
        assert_eq!(m["annotations"][REF_NAME_ANNOTATION], "dev");
        assert_eq!(
            m["annotations"][CONTAINERD_NAME_ANNOTATION],
            "docker.io/library/app:dev"
        );

        let mut again = Vec::new();
        archive.write_to(&store, &mut again).await.unwrap();
        assert_eq!(again, out, "the same image gives the same bytes");
    }

    #[tokio::test]
    async fn without_a_name_the_index_has_one_plain_entry_and_a_short_blob_fails() {
        let mut store = BTreeMap::new();
        let image = image(&mut store);
        let archive = OciArchive::new(&image, &[]);
        let index: serde_json::Value = serde_json::from_slice(archive.index()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert!(index["manifests"][0].get("annotations").is_none());

        store.insert(image.config.digest.clone(), b"{".to_vec());
        let err = archive.write_to(&store, Vec::new()).await.unwrap_err();
        assert!(matches!(err, ExportError::Stream { .. }), "{err}");
    }

    #[test]
    fn ref_names_are_tags() {
        for (name, want) in [
            ("docker.io/library/app:dev", "dev"),
            ("localhost:5000/app:1.0", "1.0"),
            ("localhost:5000/app", "localhost:5000/app"),
            ("app", "app"),
            ("app:v1@sha256:abc", "v1"),
        ] {
            assert_eq!(ref_name(name), want, "{name}");
        }
    }
}
