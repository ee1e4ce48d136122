//! Local caches: an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`)
//! whose `index.json` names each cache manifest by a tag (`org.opencontainers.image.ref.name`),
//! as BuildKit's `type=local` cache does. Blobs are written once and never rewritten; the index
//! is replaced atomically.

use std::path::Path;

use oxkit_containerd::{Content, Descriptor};
use serde_json::{json, Value};

use crate::error::{ctr, CacheError};
use crate::import::blob_path;

/// The annotation that tags an entry of `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.display().to_string();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

/// The manifest tagged `tag` in the layout at `dir`.
pub(crate) async fn find(dir: &Path, tag: &str) -> Result<Descriptor, CacheError> {
    let path = dir.join("index.json");
    let bytes = tokio::fs::read(&path).await.map_err(io("read", &path))?;
    let index: Value = serde_json::from_slice(&bytes).map_err(|e| CacheError::NotACache {
        what: dir.display().to_string(),
        reason: format!("index.json does not parse: {e}"),
    })?;
    let entries: Vec<Descriptor> = index
        .get("manifests")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| CacheError::NotACache {
            what: dir.display().to_string(),
            reason: format!("index.json's manifests do not parse: {e}"),
        })?
        .unwrap_or_default();
    entries
        .into_iter()
        .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
        .ok_or_else(|| CacheError::NotACache {
            what: dir.display().to_string(),
            reason: format!("index.json has no manifest tagged {tag:?}"),
        })
}

/// Writes the cache whose manifest is `manifest` (with `blobs`: its config and layers) from
/// `content` into the layout at `dir` (made if missing) under `tag`, replacing the entry the
/// tag had. Returns how many blobs were written (the others were there).
pub(crate) async fn write(
    dir: &Path,
    tag: &str,
    content: &Content,
    manifest: &Descriptor,
    blobs: &[Descriptor],
) -> Result<usize, CacheError> {
    let blob_dir = dir.join("blobs/sha256");
    tokio::fs::create_dir_all(&blob_dir)
        .await
        .map_err(io("create", &blob_dir))?;
    let mut written = 0;
    for blob in blobs.iter().chain([manifest]) {
        let path = blob_path(dir, &blob.digest);
        if tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| m.len() == blob.size)
        {
            continue;
        }
        let tmp = path.with_extension("tmp");
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("create", &tmp))?;
        content
            .read_to(&blob.digest, &mut file)
            .await
            .map_err(ctr(format!("read blob {}", blob.digest)))?;
        file.sync_all().await.map_err(io("sync", &tmp))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io("rename", &tmp))?;
        written += 1;
    }
    let layout = dir.join("oci-layout");
    tokio::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .await
        .map_err(io("write", &layout))?;

    let index_path = dir.join("index.json");
    let mut entries: Vec<Value> = match tokio::fs::read(&index_path).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag));
    let mut entry = manifest.clone();
    entry.annotations.insert(REF_NAME.into(), tag.into());
    entries.push(serde_json::to_value(&entry).expect("a descriptor always serialises"));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let tmp = dir.join("index.json.tmp");
    tokio::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&index).expect("a JSON value always serialises"),
    )
    .await
    .map_err(io("write", &tmp))?;
    tokio::fs::rename(&tmp, &index_path)
        .await
        .map_err(io("rename", &tmp))?;
    Ok(written)
}
