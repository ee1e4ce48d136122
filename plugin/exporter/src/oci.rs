//! Image archives: the image [`ImageExporter::build_image`] made, laid out as an OCI image
//! layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in one tar stream, as
//! `ctr images import` and `skopeo inspect oci-archive:` read it — and, for `type=docker`, with
//! Docker's `manifest.json` beside it (config, tags and layers by path), so that `docker load`
//! takes the same archive, as BuildKit's docker exporter writes it.
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
        out.write_all(bytes)
            .await
            .map_err(stream_error("oci", "a blob"))?;
        Ok(bytes.len() as u64)
    }
}

/// How an image archive is laid out: what `type=oci` and `type=docker` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout.
    Oci,
    /// An OCI image layout plus Docker's `manifest.json`, for `docker load`.
    Docker,
}

impl ArchiveFormat {
    /// The exporter that writes this format (`oci`, `docker`), as errors name it.
    pub fn exporter(self) -> &'static str {
        match self {
            ArchiveFormat::Oci => "oci",
            ArchiveFormat::Docker => "docker",
        }
    }
}

/// What goes into an image archive: its `index.json`, Docker's `manifest.json` for the docker
/// format, and the blobs they refer to.
#[derive(Debug, Clone)]
pub struct OciArchive {
    exporter: &'static str,
    index: Vec<u8>,
    docker_manifest: Option<Vec<u8>>,
    /// Every blob once, in digest order.
    blobs: Vec<Descriptor>,
}

impl OciArchive {
    /// The archive of `image` in `format`: one index entry per name (annotated with
    /// `org.opencontainers.image.ref.name` = the name's tag, and `io.containerd.image.name` =
    /// the full name), or one plain entry when there are no names. The docker format adds
    /// `manifest.json`, whose `RepoTags` are the names that have a tag, as Docker shortens them
    /// (`docker.io/library/app:dev` → `app:dev`).
    pub fn new(image: &BuiltImage, names: &[String], format: ArchiveFormat) -> Self {
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
        let docker_manifest = (format == ArchiveFormat::Docker).then(|| {
            let manifest = json!([{
                "Config": blob_path(&image.config.digest),
                "RepoTags": names.iter().filter_map(|n| repo_tag(n)).collect::<Vec<_>>(),
                "Layers": image.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
            }]);
            serde_json::to_vec(&manifest).expect("a JSON value always serialises")
        });
        OciArchive {
            exporter: format.exporter(),
            index: serde_json::to_vec(&index).expect("a JSON value always serialises"),
            docker_manifest,
            blobs: blobs.into_values().collect(),
        }
    }

    /// The archive's `index.json`.
    pub fn index(&self) -> &[u8] {
        &self.index
    }

    /// Docker's `manifest.json`, in the docker format.
    pub fn docker_manifest(&self) -> Option<&[u8]> {
        self.docker_manifest.as_deref()
    }

    /// Writes the archive as a tar stream into `out`, entries in a fixed order — `oci-layout`,
    /// `index.json`, (`manifest.json`,) `blobs/`, `blobs/sha256/`, then the blobs by digest —
    /// with fixed owners, modes and times, so the same image gives the same bytes. Fails if a blob's size differs
    /// from its descriptor's. Returns the bytes written.
    pub async fn write_to<S: BlobSource, W: AsyncWrite + Unpin + Send>(
        &self,
        source: &S,
        mut out: W,
    ) -> Result<u64, ExportError> {
        let broken = |what: &str| stream_error(self.exporter, what);
        let mut written = 0u64;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        let files = [("oci-layout", &layout[..]), ("index.json", &self.index)]
            .into_iter()
            .chain(
                self.docker_manifest
                    .as_deref()
                    .map(|m| ("manifest.json", m)),
            );
        for (path, bytes) in files {
            written += write_file(self.exporter, &mut out, path, bytes).await?;
        }
        for dir in ["blobs/", "blobs/sha256/"] {
            let header = header(self.exporter, dir, 0, tar::EntryType::Directory)?;
            out.write_all(header.as_bytes())
                .await
                .map_err(broken(dir))?;
            written += BLOCK as u64;
        }
        for blob in &self.blobs {
            let path = blob_path(&blob.digest);
            let header = header(self.exporter, &path, blob.size, tar::EntryType::Regular)?;
            out.write_all(header.as_bytes())
                .await
                .map_err(broken(&path))?;
            let copied = source.copy_blob(&blob.digest, &mut out).await?;
            if copied != blob.size {
                return Err(ExportError::Stream {
                    exporter: self.exporter,
                    what: path,
                    source: std::io::Error::other(format!(
                        "the blob has {copied} bytes, its descriptor says {}",
                        blob.size
                    )),
                });
            }
            out.write_all(&[0; BLOCK][..padding(copied)])
                .await
                .map_err(broken(&path))?;
            written += BLOCK as u64 + copied + padding(copied) as u64;
        }
        out.write_all(&[0; 2 * BLOCK])
            .await
            .map_err(broken("the end of the archive"))?;
        out.flush()
            .await
            .map_err(broken("the end of the archive"))?;
        Ok(written + 2 * BLOCK as u64)
    }
}

/// Where blob `digest` is in the archive.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The `RepoTags` entry of image `name` in Docker's `manifest.json`: the name as Docker shows it
/// (`docker.io/library/app:dev` → `app:dev`, `docker.io/me/app:1` → `me/app:1`), or none when
/// it has no tag (`docker load` takes only tags) or pins a digest.
fn repo_tag(name: &str) -> Option<String> {
    if name.contains('@') {
        return None;
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if !last.contains(':') {
        return None;
    }
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    Some(short.to_string())
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
    exporter: &'static str,
    out: &mut W,
    path: &str,
    bytes: &[u8],
) -> Result<u64, ExportError> {
    let header = header(exporter, path, bytes.len() as u64, tar::EntryType::Regular)?;
    let pad = padding(bytes.len() as u64);
    for part in [header.as_bytes(), bytes, &[0; BLOCK][..pad]] {
        out.write_all(part)
            .await
            .map_err(stream_error(exporter, path))?;
    }
    Ok((BLOCK + bytes.len() + pad) as u64)
}

fn header(
    exporter: &'static str,
    path: &str,
    size: u64,
    kind: tar::EntryType,
) -> Result<tar::Header, ExportError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(stream_error(exporter, path))?;
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

fn stream_error(exporter: &'static str, what: &str) -> impl FnOnce(std::io::Error) -> ExportError {
    let what = what.to_string();
    move |source| ExportError::Stream {
        exporter,
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
        let archive = OciArchive::new(
            &image,
            &["docker.io/library/app:dev".to_string()],
            ArchiveFormat::Oci,
        );
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
        let archive = OciArchive::new(&image, &[], ArchiveFormat::Oci);
        let index: serde_json::Value = serde_json::from_slice(archive.index()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert!(index["manifests"][0].get("annotations").is_none());

        store.insert(image.config.digest.clone(), b"{".to_vec());
        let err = archive.write_to(&store, Vec::new()).await.unwrap_err();
        assert!(matches!(err, ExportError::Stream { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_docker_format_adds_a_manifest_json_that_names_config_and_layers_by_path() {
        let mut store = BTreeMap::new();
        let image = image(&mut store);
        let names = [
            "docker.io/library/app:dev".to_string(),
            "docker.io/me/app:1".into(),
            "localhost:5000/app:2".into(),
            "localhost:5000/untagged".into(),
            "docker.io/library/app:dev@sha256:abc".into(),
        ];
        let archive = OciArchive::new(&image, &names, ArchiveFormat::Docker);
        let mut out = Vec::new();
        archive.write_to(&store, &mut out).await.unwrap();
        let got = entries(&out);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths[..5],
            [
                "oci-layout",
                "index.json",
                "manifest.json",
                "blobs/",
                "blobs/sha256/"
            ]
        );
        assert_eq!(got.len(), 5 + store.len(), "every blob once");
        let manifest: serde_json::Value = serde_json::from_slice(&got[2].1).unwrap();
        assert_eq!(archive.docker_manifest(), Some(&got[2].1[..]));
        let path = |d: &Descriptor| format!("blobs/sha256/{}", d.digest.hex());
        assert_eq!(
            manifest,
            json!([{
                "Config": path(&image.config),
                "RepoTags": ["app:dev", "me/app:1", "localhost:5000/app:2"],
                "Layers": image.layers.iter().map(path).collect::<Vec<_>>(),
            }]),
            "layers in order, a repeated one repeated; only tagged names"
        );
        for p in manifest[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&manifest[0]["Config"]])
        {
            assert!(
                paths.contains(&p.as_str().unwrap()),
                "{p} is in the archive"
            );
        }
        let index: serde_json::Value = serde_json::from_slice(&got[1].1).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), names.len());

        let oci = OciArchive::new(&image, &names, ArchiveFormat::Oci);
        assert!(oci.docker_manifest().is_none());
        let unnamed = OciArchive::new(&image, &[], ArchiveFormat::Docker);
        let manifest: serde_json::Value =
            serde_json::from_slice(unnamed.docker_manifest().unwrap()).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            json!([]),
            "an untagged image loads by ID"
        );
    }

    #[tokio::test]
    async fn a_docker_archive_error_names_the_docker_exporter() {
        let mut store = BTreeMap::new();
        let image = image(&mut store);
        store.insert(image.config.digest.clone(), b"{".to_vec());
        let archive = OciArchive::new(&image, &[], ArchiveFormat::Docker);
        match archive.write_to(&store, Vec::new()).await {
            Err(ExportError::Stream { exporter, .. }) => assert_eq!(exporter, "docker"),
            other => panic!("{other:?}"),
        }
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
