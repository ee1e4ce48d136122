//! OCI image archives made on the fly: [`OciImageBuilder`] writes an `oci-layout` tar (what
//! `ctr images import` reads) from layers described in code, and [`busybox_image`] starts one with a
//! busybox base layer taken from Debian's `busybox-static`.

use std::collections::BTreeMap;
use std::env;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::ImageError;

/// Modification time of every entry, so that the same layer always has the same digest.
const MTIME: u64 = 946_684_800; // 2000-01-01T00:00:00Z

/// The `PATH` of the images' config, as in Docker's official images.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation containerd's importer names an image by.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the reference (the tag) of a manifest in an index.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The busybox binary for base images: `$OXKIT_BUSYBOX`, else Debian's `/bin/busybox`.
pub(crate) fn busybox_path() -> PathBuf {
    env::var_os("OXKIT_BUSYBOX").map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from)
}

/// An image builder whose only layer is [`busybox_layer`], with a config that sets `PATH` and
/// `Cmd ["sh"]`. `name` is the full reference it is imported as, e.g. `docker.io/library/busybox:test`.
pub fn busybox_image(name: &str) -> Result<OciImageBuilder, ImageError> {
    Ok(OciImageBuilder::new(name)
        .layer(busybox_layer()?)
        .env(DEFAULT_PATH)
        .cmd(["sh"]))
}

/// A busybox root file system: `/bin/busybox` (copied from [`busybox_path`], which must be statically
/// linked) with a `/bin/<applet> -> busybox` symlink for each applet `busybox --list` names,
/// `/etc/passwd` and `/etc/group` with root, `/root` and `/tmp`. More files can be added to it.
pub fn busybox_layer() -> Result<Layer, ImageError> {
    let path = busybox_path();
    check_static_executable(&path)?;
    let binary = fs::read(&path).map_err(|source| ImageError::Io {
        action: "read",
        path: path.clone(),
        source,
    })?;
    let list = Command::new(&path)
        .arg("--list")
        .output()
        .map_err(|source| ImageError::Io {
            action: "run --list of",
            path: path.clone(),
            source,
        })?;
    if !list.status.success() {
        return Err(ImageError::Busybox {
            path,
            reason: format!("`busybox --list` failed: {}", list.status),
        });
    }
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    let mut layer = Layer::new()
        .dir("bin", 0o755)
        .file("bin/busybox", binary, 0o755);
    for applet in applets.lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            layer = layer.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    Ok(layer
        .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/group", "root:x:0:\n", 0o644)
        .dir("root", 0o700)
        .dir("tmp", 0o1777))
}

/// Checks that `path` is an executable ELF file without an interpreter: the base image has no libc,
/// so a dynamically linked busybox (Debian's `busybox` rather than `busybox-static`) cannot run there.
pub(crate) fn check_static_executable(path: &Path) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::Busybox {
        path: path.to_owned(),
        reason,
    };
    let bytes = fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(bad("not an ELF executable".into()));
    }
    // ELF64, little endian: program header table offset, entry size and count.
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(bad("not a 64-bit little-endian ELF file".into()));
    }
    let le = |at: usize, len: usize| -> Option<u64> {
        let field = bytes.get(at..at + len)?;
        Some(
            field
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    };
    let truncated = || bad("truncated ELF header".into());
    let phoff = usize::try_from(le(0x20, 8).ok_or_else(truncated)?).map_err(|_| truncated())?;
    let phentsize = usize::try_from(le(0x36, 2).ok_or_else(truncated)?).map_err(|_| truncated())?;
    let phnum = usize::try_from(le(0x38, 2).ok_or_else(truncated)?).map_err(|_| truncated())?;
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let p_type = le(phoff + i * phentsize, 4).ok_or_else(truncated)?;
        if p_type == PT_INTERP {
            return Err(bad("it is dynamically linked".into()));
        }
    }
    Ok(())
}

/// One entry of a layer.
#[derive(Debug, Clone)]
enum Entry {
    Dir { mode: u32 },
    File { contents: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// The files of one image layer. Paths are relative to the image root (a leading `/` is ignored);
/// missing parent directories are added with mode 0755; adding a path twice keeps the last one.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: Vec<(String, Entry)>,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer with one regular file (mode 0644) per `(path, contents)`.
    pub fn from_files<P: AsRef<str>, C: Into<Vec<u8>>>(
        files: impl IntoIterator<Item = (P, C)>,
    ) -> Self {
        files
            .into_iter()
            .fold(Self::new(), |layer, (path, contents)| {
                layer.file(path.as_ref(), contents, 0o644)
            })
    }

    /// Adds a directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push((path.to_owned(), Entry::Dir { mode }));
        self
    }

    /// Adds a regular file.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push((
            path.to_owned(),
            Entry::File {
                contents: contents.into(),
                mode,
            },
        ));
        self
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push((
            path.to_owned(),
            Entry::Symlink {
                target: target.to_owned(),
            },
        ));
        self
    }

    /// How many entries were added (parent directories added on write not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The layer as an uncompressed tar: parents before children, in path order.
    fn to_tar(&self) -> Result<Vec<u8>, ImageError> {
        let mut entries: BTreeMap<String, &Entry> = BTreeMap::new();
        for (path, entry) in &self.entries {
            entries.insert(normalize(path)?, entry);
        }
        const PARENT: Entry = Entry::Dir { mode: 0o755 };
        let parents: Vec<String> = entries
            .keys()
            .flat_map(|path| {
                Path::new(path)
                    .ancestors()
                    .skip(1)
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty())
            .collect();
        for parent in parents {
            entries.entry(parent).or_insert(&PARENT);
        }
        let mut tar = tar::Builder::new(Vec::new());
        let io_err = |source| ImageError::Io {
            action: "write a layer entry for",
            path: PathBuf::from("<memory>"),
            source,
        };
        for (path, entry) in entries {
            let mut header = Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())
                        .map_err(io_err)?;
                }
                Entry::File { contents, mode } => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(contents.len() as u64);
                    tar.append_data(&mut header, &path, contents.as_slice())
                        .map_err(io_err)?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, &path, target)
                        .map_err(io_err)?;
                }
            }
        }
        tar.into_inner().map_err(io_err)
    }
}

/// `path` without a leading `/`, rejected if empty or if it has `..` or `.` components.
fn normalize(path: &str) -> Result<String, ImageError> {
    let invalid = |reason| ImageError::InvalidEntry {
        path: path.to_owned(),
        reason,
    };
    let relative = path.trim_start_matches('/').trim_end_matches('/');
    if relative.is_empty() {
        return Err(invalid("the image root itself cannot be an entry"));
    }
    if Path::new(relative)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(invalid(
            "only plain names may appear between slashes (no `.` or `..`)",
        ));
    }
    Ok(relative.to_owned())
}

/// Builds an OCI image archive: layers bottom first, then a config with `Env` and `Cmd`.
#[derive(Debug, Clone)]
pub struct OciImageBuilder {
    name: String,
    layers: Vec<Layer>,
    env: Vec<String>,
    cmd: Vec<String>,
    /// Architectures besides this machine's: if any, the image is an index.
    other_architectures: Vec<String>,
}

impl OciImageBuilder {
    /// A builder for an image without layers, imported as `name` (a full reference such as
    /// `docker.io/library/app:test`).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            layers: Vec::new(),
            env: Vec::new(),
            cmd: Vec::new(),
            other_architectures: Vec::new(),
        }
    }

    /// Adds a layer on top of the ones added before.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Adds `count` layers of `files_per_layer` files of `file_size` bytes each, at
    /// `/data/<layer>/<file>`, numbered from the layer count so far; for images with many layers and
    /// files (scale tests, benchmarks).
    pub fn generated_layers(
        mut self,
        count: usize,
        files_per_layer: usize,
        file_size: usize,
    ) -> Self {
        for _ in 0..count {
            let n = self.layers.len();
            let files = (0..files_per_layer).map(|f| {
                let seed = format!("layer {n} file {f}\n");
                let contents: Vec<u8> = seed.bytes().cycle().take(file_size).collect();
                (format!("data/{n:04}/f{f:05}"), contents)
            });
            self = self.layer(Layer::from_files(files));
        }
        self
    }

    /// Adds an environment variable (`KEY=value`) to the config.
    pub fn env(mut self, key_value: &str) -> Self {
        self.env.push(key_value.to_owned());
        self
    }

    /// Sets the config's `Cmd`.
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Makes the image an index (what the image record points at) with a manifest for this
    /// machine and one for `architecture` (Linux, same layers); each manifest's config says its
    /// architecture and sets `OXKIT_ARCH=<architecture>`, so a test can tell which was picked.
    pub fn also_for_architecture(mut self, architecture: &str) -> Self {
        self.other_architectures.push(architecture.to_owned());
        self
    }

    /// The full reference the image is imported as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many layers the image has so far.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Writes the image as an OCI layout tar to `path`, with one manifest for this machine's platform
    /// (or an index of manifests, see [`Self::also_for_architecture`]) named by the
    /// `io.containerd.image.name` and `org.opencontainers.image.ref.name` annotations.
    pub fn write_archive(&self, path: &Path) -> Result<BuiltImage, ImageError> {
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_descriptors = Vec::new();
        for layer in &self.layers {
            let tar = layer.to_tar()?;
            diff_ids.push(digest(&tar));
            let gz = gzip(&tar)?;
            let layer_digest = digest(&gz);
            layer_descriptors.push(
                json!({"mediaType": MEDIA_TYPE_LAYER, "digest": layer_digest, "size": gz.len()}),
            );
            blobs.push((layer_digest, gz));
        }
        let history: Vec<_> = (0..self.layers.len())
            .map(|i| json!({"created": "2000-01-01T00:00:00Z", "created_by": format!("oxkit-integration layer {i}")}))
            .collect();
        // One (config, manifest) per architecture, this machine's first.
        let is_index = !self.other_architectures.is_empty();
        let architectures = std::iter::once(oci_architecture())
            .chain(self.other_architectures.iter().map(String::as_str));
        let mut manifests = Vec::new();
        let mut host = None;
        for architecture in architectures {
            let mut env = self.env.clone();
            if is_index {
                env.push(format!("OXKIT_ARCH={architecture}"));
            }
            let config = json!({
                "created": "2000-01-01T00:00:00Z",
                "architecture": architecture,
                "os": "linux",
                "config": {"Env": env, "Cmd": self.cmd, "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": history,
            });
            let config = serde_json::to_vec(&config).expect("a JSON value serializes");
            let config_digest = digest(&config);
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": layer_descriptors,
            });
            let manifest = serde_json::to_vec(&manifest).expect("a JSON value serializes");
            let manifest_digest = digest(&manifest);
            manifests.push(json!({
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"architecture": architecture, "os": "linux"},
            }));
            host.get_or_insert((config_digest.clone(), manifest_digest.clone()));
            blobs.push((config_digest, config));
            blobs.push((manifest_digest, manifest));
        }
        let (config_digest, manifest_digest) = host.expect("this machine's manifest");
        // The entry that names the image: the only manifest, or an index of them all.
        let mut target = if is_index {
            let nested = json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_INDEX,
                "manifests": manifests,
            });
            let nested = serde_json::to_vec(&nested).expect("a JSON value serializes");
            let entry = json!({"mediaType": MEDIA_TYPE_INDEX, "digest": digest(&nested), "size": nested.len()});
            blobs.push((digest(&nested), nested));
            entry
        } else {
            manifests.remove(0)
        };
        let target_digest = target["digest"].as_str().unwrap_or_default().to_owned();
        let tag = reference_tag(&self.name);
        target["annotations"] =
            json!({ANNOTATION_CONTAINERD_NAME: self.name, ANNOTATION_REF_NAME: tag});
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [target],
        });
        let index = serde_json::to_vec_pretty(&index).expect("a JSON value serializes");

        let io_err = |source| ImageError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let file = File::create(path).map_err(io_err)?;
        let mut archive = tar::Builder::new(BufWriter::new(file));
        append_file(
            &mut archive,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .map_err(io_err)?;
        append_file(&mut archive, "index.json", &index).map_err(io_err)?;
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = Header::new_gnu();
            header.set_entry_type(EntryType::Directory);
            header.set_mode(0o755);
            header.set_mtime(MTIME);
            header.set_size(0);
            archive
                .append_data(&mut header, dir, io::empty())
                .map_err(io_err)?;
        }
        let mut seen = std::collections::HashSet::new();
        for (blob_digest, bytes) in &blobs {
            // Two identical layers share one blob.
            if seen.insert(blob_digest.clone()) {
                let hex = blob_digest.trim_start_matches("sha256:");
                append_file(&mut archive, &format!("blobs/sha256/{hex}"), bytes).map_err(io_err)?;
            }
        }
        archive
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io_err)?;

        let chain_ids = chain_ids(&diff_ids);
        Ok(BuiltImage {
            name: self.name.clone(),
            archive: path.to_owned(),
            manifest_digest,
            config_digest,
            target_digest,
            diff_ids,
            chain_ids,
        })
    }
}

/// An image archive that was written, and the digests containerd will know it by.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The reference it is imported as.
    pub name: String,
    /// The OCI layout tar.
    pub archive: PathBuf,
    /// Digest of the manifest (`sha256:…`); of this machine's, for an index.
    pub manifest_digest: String,
    /// Digest of the config (of this machine's manifest, for an index).
    pub config_digest: String,
    /// Digest of what the image record points at: the manifest, or the index.
    pub target_digest: String,
    /// Digest of each layer's uncompressed tar, bottom first.
    pub diff_ids: Vec<String>,
    /// Chain ID of each layer, bottom first: the names containerd gives the committed snapshots
    /// when it unpacks the image.
    pub chain_ids: Vec<String>,
}

fn append_file<W: Write>(
    archive: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_mtime(MTIME);
    header.set_size(bytes.len() as u64);
    archive.append_data(&mut header, path, bytes)
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let io_err = |source| ImageError::Io {
        action: "gzip",
        path: PathBuf::from("<layer>"),
        source,
    };
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::fast());
    encoder.write_all(bytes).map_err(io_err)?;
    encoder.finish().map_err(io_err)
}

/// The OCI image spec's chain IDs: the first is the first diff ID, each next one is
/// `sha256(previous + " " + diff_id)`.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// The tag of a reference (`docker.io/library/busybox:test` → `test`), `latest` when it has none.
fn reference_tag(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map_or("latest", |(_, tag)| tag)
}

/// This machine's architecture in OCI's (Go's) spelling.
fn oci_architecture() -> &'static str {
    match env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, EntryType, u32)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path, e.header().entry_type(), e.header().mode().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_layer_lists_parents_before_children_and_adds_missing_ones() {
        let layer = Layer::new()
            .file("/a/b/c", "x", 0o600)
            .symlink("a/link", "b/c")
            .dir("tmp", 0o1777);
        let tar = layer.to_tar().unwrap();
        let names: Vec<_> = entries(&tar)
            .into_iter()
            .map(|(p, t, m)| (p, t.as_byte(), m))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a/".into(), b'5', 0o755),
                ("a/b/".into(), b'5', 0o755),
                ("a/b/c".into(), b'0', 0o600),
                ("a/link".into(), b'2', 0o777),
                ("tmp/".into(), b'5', 0o1777),
            ]
        );
    }

    #[test]
    fn entries_outside_the_root_are_rejected() {
        for bad in ["", "/", "a/../b", "./a"] {
            assert!(
                Layer::new().file(bad, "", 0o644).to_tar().is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let diff = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ids = chain_ids(&[diff('a'), diff('b')]);
        assert_eq!(ids[0], diff('a'));
        assert_eq!(
            ids[1],
            digest(format!("{} {}", diff('a'), diff('b')).as_bytes())
        );
    }

    #[test]
    fn tags_are_taken_from_the_last_path_segment() {
        assert_eq!(reference_tag("docker.io/library/busybox:test"), "test");
        assert_eq!(reference_tag("localhost:5000/app"), "latest");
        assert_eq!(reference_tag("localhost:5000/app:v1@sha256:00"), "v1");
    }

    /// The entries of the archive at `path`: name → contents.
    fn archive_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(File::open(path).unwrap());
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            files.insert(name, bytes);
        }
        files
    }

    #[test]
    fn the_archive_is_an_oci_layout_naming_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let built = OciImageBuilder::new("docker.io/library/app:t")
            .layer(Layer::from_files([("hello", "hi")]))
            .generated_layers(2, 3, 10)
            .cmd(["sh"])
            .write_archive(&path)
            .unwrap();
        assert_eq!(built.diff_ids.len(), 3);
        assert_eq!(built.chain_ids[0], built.diff_ids[0]);

        let files = archive_files(&path);
        assert!(files.contains_key("oci-layout"));
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let descriptor = &index["manifests"][0];
        assert_eq!(descriptor["digest"], built.manifest_digest.as_str());
        assert_eq!(
            descriptor["annotations"][ANNOTATION_CONTAINERD_NAME],
            "docker.io/library/app:t"
        );
        assert_eq!(descriptor["annotations"][ANNOTATION_REF_NAME], "t");
        // Every blob is stored under its own digest.
        for (name, bytes) in files
            .iter()
            .filter(|(n, _)| n.starts_with("blobs/sha256/") && !n.ends_with('/'))
        {
            assert_eq!(
                digest(bytes),
                format!("sha256:{}", name.trim_start_matches("blobs/sha256/"))
            );
        }
        let config: serde_json::Value = serde_json::from_slice(
            &files[&format!(
                "blobs/sha256/{}",
                built.config_digest.trim_start_matches("sha256:")
            )],
        )
        .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        assert_eq!(config["config"]["Cmd"][0], "sh");
    }

    #[test]
    fn an_image_for_more_architectures_is_an_index_of_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let built = OciImageBuilder::new("docker.io/library/multi:t")
            .layer(Layer::from_files([("hello", "hi")]))
            .also_for_architecture("s390x")
            .write_archive(&path)
            .unwrap();
        let files = archive_files(&path);
        let blob = |d: &str| -> serde_json::Value {
            serde_json::from_slice(&files[&format!("blobs/sha256/{}", &d["sha256:".len()..])])
                .unwrap()
        };
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let top = &index["manifests"][0];
        assert_eq!(top["mediaType"], MEDIA_TYPE_INDEX);
        assert_eq!(top["digest"], built.target_digest.as_str());
        assert_eq!(
            top["annotations"][ANNOTATION_CONTAINERD_NAME],
            "docker.io/library/multi:t"
        );
        let nested = blob(&built.target_digest);
        let platforms: Vec<_> = nested["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(platforms, [oci_architecture(), "s390x"]);
        assert_eq!(
            nested["manifests"][0]["digest"],
            built.manifest_digest.as_str()
        );
        let config = blob(&built.config_digest);
        assert_eq!(
            config["config"]["Env"][0],
            format!("OXKIT_ARCH={}", oci_architecture())
        );
    }

    #[test]
    fn a_dynamically_linked_program_is_not_a_static_busybox() {
        // This test binary is linked against the C library, so it has an interpreter (PT_INTERP).
        let err = check_static_executable(&env::current_exe().unwrap()).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
    }
}
