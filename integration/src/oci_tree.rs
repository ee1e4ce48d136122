//! Reading an image archive back — an OCI archive (`oxctl build --output type=oci`) or a docker
//! archive (`docker save`) — into its image config and the file tree its layers make when applied
//! in order (whiteouts and opaque directories honoured), with each entry's type, permission bits,
//! owner and content: what tests compare images by. Also the other way for a base image: an OCI
//! archive rewritten as a docker archive (`docker load` in dockerd 20.10 takes no OCI archive).

use std::collections::BTreeMap;
use std::io::Read;

use flate2::read::GzDecoder;
use serde_json::Value;

/// A file tree entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// A regular file (a hard link gives the linked file's content).
    File {
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
        /// Content.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
        /// Where it points.
        target: String,
    },
}

/// An image read from an OCI archive.
#[derive(Debug, Clone)]
pub struct OciImage {
    /// The image config document.
    pub config: Value,
    /// The layers' file tree: absolute path → entry (`/` itself is not listed).
    pub tree: BTreeMap<String, Node>,
    /// How many layers the manifest lists.
    pub layers: usize,
}

/// Why an archive cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("OCI archive: {0}")]
pub struct OciReadError(String);

fn bad(what: impl std::fmt::Display) -> OciReadError {
    OciReadError(what.to_string())
}

/// Reads the single image of OCI archive `bytes` (a tar of an OCI image layout).
pub fn read_oci_archive(bytes: &[u8]) -> Result<OciImage, OciReadError> {
    let files = tar_files(bytes)?;
    let blob = |digest: &str| -> Result<&Vec<u8>, OciReadError> {
        let path = format!("blobs/{}", digest.replacen(':', "/", 1));
        files
            .get(&path)
            .ok_or_else(|| bad(format!("no blob {path}")))
    };
    let json = |data: &[u8]| serde_json::from_slice::<Value>(data).map_err(bad);
    let index = json(
        files
            .get("index.json")
            .ok_or_else(|| bad("no index.json"))?,
    )?;
    let mut manifest = json(blob(
        index["manifests"][0]["digest"]
            .as_str()
            .ok_or_else(|| bad("index without manifests"))?,
    )?)?;
    // An index (several platforms) is not what the tests export; follow its first manifest.
    if manifest["manifests"].is_array() {
        manifest = json(blob(
            manifest["manifests"][0]["digest"].as_str().unwrap_or(""),
        )?)?;
    }
    let config = json(blob(
        manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| bad("manifest without config"))?,
    )?)?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| bad("manifest without layers"))?;
    let mut tree = BTreeMap::new();
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap_or("");
        let media = layer["mediaType"].as_str().unwrap_or("");
        let data = blob(digest)?;
        let reader: Box<dyn Read + '_> = if media.ends_with("gzip") {
            Box::new(GzDecoder::new(&data[..]))
        } else if media.ends_with("zstd") {
            return Err(bad("zstd layers are not read by this helper"));
        } else {
            Box::new(&data[..])
        };
        apply_layer(&mut tree, reader)?;
    }
    Ok(OciImage {
        config,
        tree,
        layers: layers.len(),
    })
}

/// The files of tar `bytes`, by path (`./` stripped).
fn tar_files(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, OciReadError> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(bad)?;
        files.insert(path.trim_start_matches("./").to_string(), data);
    }
    Ok(files)
}

/// Reads the single image of docker archive `bytes` (`docker save` of one image).
pub fn read_docker_archive(bytes: &[u8]) -> Result<OciImage, OciReadError> {
    let files = tar_files(bytes)?;
    let file = |path: &str| files.get(path).ok_or_else(|| bad(format!("no {path}")));
    let manifest: Value = serde_json::from_slice(file("manifest.json")?).map_err(bad)?;
    let config: Value = serde_json::from_slice(file(
        manifest[0]["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json without Config"))?,
    )?)
    .map_err(bad)?;
    let layers = manifest[0]["Layers"]
        .as_array()
        .ok_or_else(|| bad("manifest.json without Layers"))?;
    let mut tree = BTreeMap::new();
    for layer in layers {
        let data = file(layer.as_str().unwrap_or(""))?;
        if data.starts_with(&[0x1f, 0x8b]) {
            apply_layer(&mut tree, GzDecoder::new(&data[..]))?;
        } else {
            apply_layer(&mut tree, &data[..])?;
        }
    }
    Ok(OciImage {
        config,
        tree,
        layers: layers.len(),
    })
}

/// Writes OCI archive `oci` (one platform) as docker archive `out`, tagged `name`: the same
/// config blob and the layers uncompressed.
pub fn oci_to_docker_archive(
    oci: &std::path::Path,
    out: &std::path::Path,
    name: &str,
) -> Result<(), OciReadError> {
    let files = tar_files(&std::fs::read(oci).map_err(bad)?)?;
    let blob = |digest: &str| {
        files
            .get(&format!("blobs/{}", digest.replacen(':', "/", 1)))
            .ok_or_else(|| bad(format!("no blob {digest}")))
    };
    let index: Value = serde_json::from_slice(
        files
            .get("index.json")
            .ok_or_else(|| bad("no index.json"))?,
    )
    .map_err(bad)?;
    let manifest: Value = serde_json::from_slice(blob(
        index["manifests"][0]["digest"].as_str().unwrap_or(""),
    )?)
    .map_err(bad)?;
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or("");
    let config = blob(config_digest)?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| -> Result<(), OciReadError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, path, data).map_err(bad)
    };
    let config_path = format!("{}.json", config_digest.trim_start_matches("sha256:"));
    add(&config_path, config)?;
    let mut layer_paths = Vec::new();
    for (i, layer) in manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let data = blob(layer["digest"].as_str().unwrap_or(""))?;
        let mut plain = Vec::new();
        if layer["mediaType"].as_str().unwrap_or("").ends_with("gzip") {
            GzDecoder::new(&data[..])
                .read_to_end(&mut plain)
                .map_err(bad)?;
        } else {
            plain.clone_from(data);
        }
        let path = format!("layer{i}/layer.tar");
        add(&path, &plain)?;
        layer_paths.push(path);
    }
    let manifest = serde_json::json!([{
        "Config": config_path,
        "RepoTags": [name],
        "Layers": layer_paths,
    }]);
    add("manifest.json", manifest.to_string().as_bytes())?;
    let bytes = builder.into_inner().map_err(bad)?;
    std::fs::write(out, bytes).map_err(bad)
}

/// Applies one layer tar onto `tree`.
fn apply_layer(tree: &mut BTreeMap<String, Node>, reader: impl Read) -> Result<(), OciReadError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let path = format!("/{}", raw.trim_start_matches("./").trim_end_matches('/'));
        if path == "/" {
            continue;
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let dir = if dir.is_empty() { "/" } else { dir };
        if name == ".wh..wh..opq" {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            tree.retain(|p, _| !p.starts_with(&prefix));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let gone = format!("{}/{hidden}", dir.trim_end_matches('/'));
            let prefix = format!("{gone}/");
            tree.retain(|p, _| p != &gone && !p.starts_with(&prefix));
            continue;
        }
        let header = entry.header();
        let mode = header.mode().map_err(bad)? & 0o7777;
        let uid = header.uid().map_err(bad)?;
        let gid = header.gid().map_err(bad)?;
        let kind = header.entry_type();
        let node = if kind.is_dir() {
            Node::Dir { mode, uid, gid }
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            Node::Symlink { uid, gid, target }
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .map(|t| format!("/{}", t.to_string_lossy().trim_start_matches("./")))
                .unwrap_or_default();
            match tree.get(&target) {
                Some(Node::File { data, .. }) => Node::File {
                    mode,
                    uid,
                    gid,
                    data: data.clone(),
                },
                _ => return Err(bad(format!("{path}: hard link to missing {target}"))),
            }
        } else if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(bad)?;
            Node::File {
                mode,
                uid,
                gid,
                data,
            }
        } else {
            continue;
        };
        // A non-directory replaces whatever was there, and its children.
        if !matches!(node, Node::Dir { .. }) {
            let prefix = format!("{path}/");
            tree.retain(|p, _| !p.starts_with(&prefix));
        }
        tree.insert(path, node);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn whiteouts_and_opaque_directories_remove_what_lower_layers_made() {
        let mut tree = BTreeMap::new();
        let lower = layer(|b| {
            add(b, "a/", tar::EntryType::Directory, b"");
            add(b, "a/x", tar::EntryType::Regular, b"x");
            add(b, "b/", tar::EntryType::Directory, b"");
            add(b, "b/y", tar::EntryType::Regular, b"y");
            add(b, "c", tar::EntryType::Regular, b"c");
        });
        apply_layer(&mut tree, &lower[..]).unwrap();
        let upper = layer(|b| {
            add(b, "a/.wh..wh..opq", tar::EntryType::Regular, b"");
            add(b, "a/z", tar::EntryType::Regular, b"z");
            add(b, ".wh.b", tar::EntryType::Regular, b"");
            add(b, "c", tar::EntryType::Regular, b"new");
        });
        apply_layer(&mut tree, &upper[..]).unwrap();
        let paths: Vec<&str> = tree.keys().map(String::as_str).collect();
        assert_eq!(paths, ["/a", "/a/z", "/c"]);
        assert!(matches!(&tree["/c"], Node::File { data, .. } if data == b"new"));
    }
}
