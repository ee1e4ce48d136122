//! The `type=image` export: layers, config, manifest and image record in containerd.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::SystemTime;

use futures_util::StreamExt as _;
use oxkit_containerd::{
    chain_id, chain_ids, config_labels, manifest_labels, platform_manifest, rfc3339, Client,
    Descriptor, Digest, Image, ImageManifest, Labels, LayerBlob, Mount, LAYER_SOURCE_LABEL,
};
use oxkit_layer::{write_layer, Compression, LayerOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::error::ctr;
use crate::spec::{media, ImageConfig};
use crate::{ConfigChanges, ExportError, ImageExportOptions, ManifestOptions};

/// The image a build started from: its layer blobs (already in the content store), their diff
/// IDs and its config — or, for a frontend's build, the config the frontend computed on it
/// ([`BaseImage::with_config`]).
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The image's name.
    pub name: String,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// The config.
    pub config: ImageConfig,
}

impl BaseImage {
    /// Reads image `name` from containerd's store: its manifest for `os`/`architecture` (OCI's
    /// spelling; picked from an index if the image is one) and its config.
    pub async fn load(
        client: &Client,
        name: &str,
        os: &str,
        architecture: &str,
    ) -> Result<Self, ExportError> {
        let bad = |reason: String| ExportError::BaseImage {
            name: name.into(),
            reason,
        };
        let image = client
            .images()
            .get(name)
            .await
            .map_err(ctr(format!("failed to look up image {name}")))?;
        let manifest = platform_manifest(client, &image.target, os, architecture)
            .await
            .map_err(|e| match e.into_containerd() {
                Ok((action, source)) => ctr(format!("failed to {action} of image {name}"))(source),
                Err(other) => bad(other.to_string()),
            })?;
        Self::from_manifest(name, manifest)
    }

    /// The base image `name` whose manifest (for the build's platform) was read already.
    pub fn from_manifest(name: &str, manifest: ImageManifest) -> Result<Self, ExportError> {
        let bad = |reason: String| ExportError::BaseImage {
            name: name.into(),
            reason,
        };
        let config: Value = serde_json::from_slice(&manifest.config_bytes)
            .map_err(|e| bad(format!("its config is not JSON: {e}")))?;
        let config = ImageConfig(config);
        if config.diff_ids().len() != manifest.layers.len() {
            return Err(bad(
                "its config and manifest disagree on the number of layers".into(),
            ));
        }
        Ok(BaseImage {
            name: name.into(),
            layers: manifest.layers,
            config,
        })
    }
}

impl BaseImage {
    /// This base with `config` (a frontend's, computed on this base image) in place of the
    /// image's own; the two must list the same layers.
    pub fn with_config(self, config: ImageConfig) -> Result<Self, ExportError> {
        if config.diff_ids() != self.config.diff_ids() {
            return Err(ExportError::BaseImage {
                name: self.name,
                reason: "the frontend's image config lists other layers than the image".into(),
            });
        }
        Ok(BaseImage { config, ..self })
    }

    /// No base image (`FROM scratch`), with a frontend's `config`, which must list no layers.
    pub fn scratch_with(config: ImageConfig) -> Result<Self, ExportError> {
        let scratch = BaseImage {
            name: "scratch".into(),
            layers: Vec::new(),
            config: ImageConfig::scratch(),
        };
        scratch.with_config(config)
    }
}

/// What an export produced.
#[derive(Debug, Clone)]
pub struct ExportedImage {
    /// The manifest the image records point at.
    pub manifest: Descriptor,
    /// The config's digest (what `docker images` calls the image ID).
    pub config: Digest,
    /// Chain IDs of all layers, bottom first; each names a committed oxkit snapshot.
    pub chain_ids: Vec<String>,
    /// How many layers were written by this export (not taken from the base image).
    pub new_layers: usize,
}

/// An image built in the content store by [`ImageExporter::build_image`]: everything an image
/// record or an OCI archive needs.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The manifest.
    pub manifest: Descriptor,
    /// The config.
    pub config: Descriptor,
    /// Layer descriptors, bottom first (the base image's, then the new ones).
    pub layers: Vec<Descriptor>,
    /// Chain IDs of all layers, bottom first.
    pub chain_ids: Vec<String>,
    /// How many layers were written by this build (not taken from the base image).
    pub new_layers: usize,
    /// The build's committed snapshots that hold the new layers, bottom first (the last
    /// `new_layers` of `layers`).
    pub new_snapshots: Vec<String>,
}

/// Exports build results as images into containerd's store through a leased client.
pub struct ImageExporter {
    client: Client,
    scratch: PathBuf,
}

impl ImageExporter {
    /// An exporter using `client` (scope it with the build's lease) and `scratch` for the
    /// layer files it writes (on containerd's filesystem, they are handed over by hard links).
    pub fn new(client: Client, scratch: impl Into<PathBuf>) -> Self {
        ImageExporter {
            client,
            scratch: scratch.into(),
        }
    }

    /// Exports committed snapshot `top` — built on `base`'s top layer, or on nothing — as
    /// `options.names`: builds the image ([`Self::build_image`]), makes sure every layer exists
    /// as a chain-ID snapshot, and records the image under each name.
    pub async fn export(
        &self,
        top: &str,
        base: Option<&BaseImage>,
        options: &ImageExportOptions,
    ) -> Result<ExportedImage, ExportError> {
        let parent = base_top(base);
        let new = self.new_snapshots(top, parent.as_ref()).await?;
        let write = |diff_ids| {
            self.build_image_of(
                new.clone(),
                base,
                options.compression,
                &options.config,
                options.source_date_epoch,
                &options.manifest,
                diff_ids,
            )
        };
        let built = match options.source_date_epoch {
            // The blobs' times are clamped, the build's snapshots' are not: the chain snapshots
            // are applied from the blobs once they are written, so both ways of running the
            // image see the same files.
            Some(_) => write(None).await?,
            // The chain snapshots are cloned from the build's snapshots while the blobs are
            // written, each as soon as its diff ID is known.
            None => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let (built, ()) = tokio::join!(
                    write(Some(tx)),
                    self.chain_while_writing(parent, &new, rx, options.compression),
                );
                built?
            }
        };
        // Whatever is still missing (all of it with SOURCE_DATE_EPOCH, else what the clones
        // while writing did not make): from the top down, one call when nothing is.
        let sources: &[String] = match options.source_date_epoch {
            None => &built.new_snapshots,
            Some(_) => &[],
        };
        self.ensure_chain_snapshots(&built.chain_ids, &built.layers, sources)
            .await?;
        for name in &options.names {
            self.client
                .images()
                .create_or_update(&Image::new(name.clone(), built.manifest.clone()))
                .await
                .map_err(ctr(format!("failed to record image {name}")))?;
        }
        Ok(ExportedImage {
            manifest: built.manifest,
            config: built.config.digest,
            chain_ids: built.chain_ids,
            new_layers: built.new_layers,
        })
    }

    /// Builds the image of committed snapshot `top` (on `base`, or on nothing) in the content
    /// store: writes the new layers (`compression`), the config (the base image's, or a
    /// scratch one, with `changes` applied) and the manifest, each with
    /// containerd's GC labels, but records no image and makes no snapshots — what both the
    /// `image` exporter and the `oci` archive start from. The blobs are held by the client's
    /// lease. With `source_date_epoch`, no timestamp in the new layers, the config or its history
    /// is later than it, and dates the config and history take are it: the same build gives the
    /// same digests. `manifest` says whose media types the manifest, config and layers take
    /// (with Docker's, the base image's OCI layers are renamed too: the same blobs) and the
    /// manifest's annotations.
    pub async fn build_image(
        &self,
        top: &str,
        base: Option<&BaseImage>,
        compression: Compression,
        changes: &ConfigChanges,
        source_date_epoch: Option<i64>,
        manifest: &ManifestOptions,
    ) -> Result<BuiltImage, ExportError> {
        let new = self.new_snapshots(top, base_top(base).as_ref()).await?;
        self.build_image_of(
            new,
            base,
            compression,
            changes,
            source_date_epoch,
            manifest,
            None,
        )
        .await
    }

    /// [`Self::build_image`] with the new layers' snapshots (bottom first) already known. The
    /// diff ID of each new layer goes to `diff_ids`, if given, as soon as its blob is stored
    /// (bottom first).
    #[allow(clippy::too_many_arguments)]
    async fn build_image_of(
        &self,
        new: Vec<String>,
        base: Option<&BaseImage>,
        compression: Compression,
        changes: &ConfigChanges,
        source_date_epoch: Option<i64>,
        manifest: &ManifestOptions,
        diff_ids: Option<UnboundedSender<String>>,
    ) -> Result<BuiltImage, ExportError> {
        let mut config = base.map_or_else(ImageConfig::scratch, |b| b.config.clone());
        changes.apply(&mut config.0);
        let mut layers = base.map(|b| b.layers.clone()).unwrap_or_default();
        let now = rfc3339(match source_date_epoch {
            Some(epoch) => {
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64)
            }
            None => SystemTime::now(),
        });
        // Layers are independent: several are written at once (each compresses on a core of
        // its own), and come back in order.
        let mut writing = futures_util::stream::iter(new.clone())
            .map(|snapshot: String| async move {
                self.write_layer(&snapshot, compression, source_date_epoch)
                    .await
            })
            .buffered(LAYER_WRITERS);
        let mut written: Vec<(Descriptor, String)> = Vec::with_capacity(new.len());
        while let Some(layer) = writing.next().await {
            let layer = layer?;
            if let Some(tx) = &diff_ids {
                // The receiver may have stopped; the export goes on without it.
                let _ = tx.send(layer.1.clone());
            }
            written.push(layer);
        }
        drop(diff_ids);
        for (snapshot, (desc, diff_id)) in new.iter().zip(written) {
            config.push_layer(&diff_id, &now, &format!("oxkit: snapshot {snapshot}"));
            layers.push(desc);
        }
        config.date_history(&now);
        let chain = chain_ids(&config.diff_ids());
        let (manifest_type, config_type) = media::manifest_and_config(manifest.oci_media_types);
        if !manifest.oci_media_types {
            for layer in &mut layers {
                layer.media_type = media::docker_layer(&layer.media_type).to_string();
            }
        }

        let config_labels = config_labels(chain.last());
        let config_blob = config.to_bytes();
        let config_desc = self
            .client
            .content()
            .write_bytes(config_type, &config_blob, &config_labels)
            .await
            .map_err(ctr("failed to write the image config"))?
            .descriptor;

        let mut manifest_json = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": layers,
        });
        if !manifest.annotations.is_empty() {
            manifest_json["annotations"] = json!(manifest.annotations);
        }
        let manifest_blob =
            serde_json::to_vec(&manifest_json).expect("a JSON value always serialises");
        let manifest_labels = manifest_labels(&config_desc, &layers);
        let manifest_desc = self
            .client
            .content()
            .write_bytes(manifest_type, &manifest_blob, &manifest_labels)
            .await
            .map_err(ctr("failed to write the image manifest"))?
            .descriptor;
        Ok(BuiltImage {
            manifest: manifest_desc,
            config: config_desc,
            layers,
            chain_ids: chain,
            new_layers: new.len(),
            new_snapshots: new,
        })
    }

    /// The committed snapshots from just above `base_top` up to `top`, bottom first.
    async fn new_snapshots(
        &self,
        top: &str,
        base_top: Option<&String>,
    ) -> Result<Vec<String>, ExportError> {
        let mut chain = Vec::new();
        let mut current = Some(top.to_string());
        while let Some(name) = current {
            if Some(&name) == base_top {
                chain.reverse();
                return Ok(chain);
            }
            let info = self
                .client
                .snapshots()
                .stat(&name)
                .await
                .map_err(ctr(format!("failed to stat snapshot {name}")))?;
            current = info.parent;
            chain.push(name);
        }
        match base_top {
            Some(b) => Err(ExportError::BaseImage {
                name: b.clone(),
                reason: format!("snapshot {top:?} is not built on this base image's top layer"),
            }),
            None => {
                chain.reverse();
                Ok(chain)
            }
        }
    }

    /// The layer blob of committed `snapshot` with `compression` (and its diff ID): the blob
    /// it was applied from or an earlier export wrote, if the content store has it, else
    /// written now ([`Self::build_image`] without `SOURCE_DATE_EPOCH` does the same per layer).
    pub async fn layer(
        &self,
        snapshot: &str,
        compression: Compression,
    ) -> Result<(Descriptor, String), ExportError> {
        self.write_layer(snapshot, compression, None).await
    }

    /// Writes the layer of committed `snapshot` (its upper directory) into the content store.
    async fn write_layer(
        &self,
        snapshot: &str,
        compression: Compression,
        source_date_epoch: Option<i64>,
    ) -> Result<(Descriptor, String), ExportError> {
        // A committed snapshot never changes, so the blob made for it once (same compression)
        // serves every later export while the content store still has it; so does the blob it
        // was applied from (a layer imported from a cache), unless times must be clamped.
        let memo_key = layer_memo_label(compression, source_date_epoch);
        if let Some(hit) = self
            .memoized_layer(
                snapshot,
                &memo_key,
                compression,
                source_date_epoch.is_none(),
            )
            .await
        {
            return Ok(hit);
        }
        let started = std::time::Instant::now();
        let (desc, diff_id) = self
            .write_new_layer(snapshot, compression, source_date_epoch)
            .await?;
        tracing::debug!(
            snapshot,
            size = desc.size,
            seconds = started.elapsed().as_secs_f64(),
            "layer written"
        );
        let blob = LayerBlob {
            descriptor: desc,
            diff_id,
        };
        let memo = Labels::from([(memo_key, blob.to_label())]);
        if let Err(e) = self.client.snapshots().update_labels(snapshot, &memo).await {
            tracing::debug!(snapshot, error = %e, "could not record the layer blob on its snapshot");
        }
        Ok((blob.descriptor, blob.diff_id))
    }

    /// The blob recorded on `snapshot` by an earlier export (label `key`) or, with
    /// `source_ok`, the one it was applied from if that has `compression`'s media type — if the
    /// content store still has it.
    async fn memoized_layer(
        &self,
        snapshot: &str,
        key: &str,
        compression: Compression,
        source_ok: bool,
    ) -> Option<(Descriptor, String)> {
        let info = self.client.snapshots().stat(snapshot).await.ok()?;
        let wanted = compression.media_type();
        let source = info
            .labels
            .get(LAYER_SOURCE_LABEL)
            .filter(|_| source_ok)
            .and_then(|v| LayerBlob::from_label(v))
            .filter(|b| {
                let m = b.descriptor.media_type.as_str();
                m == wanted || m == media::docker_layer(wanted)
            })
            .map(|mut b| {
                // The same bytes under either name; the manifest renames as it needs.
                b.descriptor.media_type = wanted.to_owned();
                b
            });
        let blob = match source {
            Some(blob) => blob,
            None => LayerBlob::from_label(info.labels.get(key)?)?,
        };
        let stored = self
            .client
            .content()
            .info(&blob.descriptor.digest)
            .await
            .ok()?;
        (stored.size == blob.descriptor.size).then_some((blob.descriptor, blob.diff_id))
    }

    async fn write_new_layer(
        &self,
        snapshot: &str,
        compression: Compression,
        source_date_epoch: Option<i64>,
    ) -> Result<(Descriptor, String), ExportError> {
        let (upper, view) = self.layer_dir(snapshot).await?;
        let result = async {
            let opts = LayerOptions {
                compression,
                source_date_epoch,
            };
            let tmp = tempfile::NamedTempFile::new_in(&self.scratch).map_err(|source| {
                ExportError::Io {
                    what: format!(
                        "failed to create a temporary blob in {}",
                        self.scratch.display()
                    ),
                    source,
                }
            })?;
            let path = tmp.path().to_path_buf();
            let snap = snapshot.to_string();
            let layer = tokio::task::spawn_blocking(move || {
                let io = |what: String| move |source| ExportError::Io { what, source };
                let file = std::fs::File::create(&path)
                    .map_err(io(format!("failed to open {}", path.display())))?;
                let mut out = std::io::BufWriter::with_capacity(
                    1 << 20,
                    crate::writeback::Writeback::new(file),
                );
                let layer =
                    write_layer(&upper, &mut out, &opts).map_err(|source| ExportError::Layer {
                        snapshot: snap,
                        source,
                    })?;
                let file = out
                    .into_inner()
                    .map_err(|e| io(format!("failed to write {}", path.display()))(e.into_error()))?
                    .into_inner();
                // containerd may adopt the file as it is (see `Content::write_file`): it must be
                // on disk and read-only first, as containerd's own commits are.
                file.sync_all()
                    .map_err(io(format!("failed to sync {}", path.display())))?;
                file.set_permissions(std::fs::Permissions::from_mode(0o444))
                    .map_err(io(format!("failed to chmod {}", path.display())))?;
                Ok::<_, ExportError>(layer)
            })
            .await
            .map_err(|e| ExportError::Io {
                what: "layer writer task failed".into(),
                source: std::io::Error::other(e),
            })??;
            let digest: Digest = layer
                .digest
                .as_str()
                .parse()
                .map_err(ctr("the layer digest"))?;
            let outcome = self
                .client
                .content()
                .write_file(
                    layer.media_type,
                    tmp.path(),
                    (&digest, layer.size),
                    &Labels::new(),
                )
                .await
                .map_err(ctr(format!(
                    "failed to store the layer of snapshot {snapshot}"
                )))?;
            Ok((outcome.descriptor, layer.diff_id.to_string()))
        }
        .await;
        self.remove_view(view).await;
        result
    }

    /// The directory holding committed `snapshot`'s own files: the one the client remembers
    /// from building it, or else the top layer of a view of it (the view's key comes back too,
    /// for [`Self::remove_view`] once the directory has been read).
    async fn layer_dir(&self, snapshot: &str) -> Result<(PathBuf, Option<String>), ExportError> {
        let sn = self.client.snapshots();
        if let Some(dir) = sn.known_layer_dir(snapshot) {
            return Ok((dir, None));
        }
        let view = format!("export-view-{}-{}", std::process::id(), unique());
        let mounts = sn
            .view(&view, Some(snapshot), &Labels::new())
            .await
            .map_err(ctr(format!("failed to view snapshot {snapshot}")))?;
        match upper_dir(snapshot, &mounts) {
            Ok(dir) => Ok((dir, Some(view))),
            Err(e) => {
                self.remove_view(Some(view)).await;
                Err(e)
            }
        }
    }

    /// Removes the view [`Self::layer_dir`] made, if it made one.
    async fn remove_view(&self, view: Option<String>) {
        let Some(view) = view else { return };
        if let Err(e) = self.client.snapshots().remove(&view).await {
            tracing::warn!(view, error = %e, "failed to remove an export view");
        }
    }

    /// Makes sure every layer exists as a committed snapshot named by its chain ID (what
    /// containerd's unpacker looks for), applying the layer blob where one is missing — so the
    /// image runs with `--snapshotter oxkit` without any unpacking at run time.
    ///
    /// A missing layer whose build snapshot is among `sources` (the new layers' snapshots, bottom
    /// first: they are the top `sources.len()` layers) is cloned from it by hard links
    /// ([`oxkit_fileop::link_upper`]): the same change, without writing the files again. Any
    /// other — or one whose clone fails — is applied from its blob through containerd's Diff
    /// service.
    async fn ensure_chain_snapshots(
        &self,
        chain: &[String],
        layers: &[Descriptor],
        sources: &[String],
    ) -> Result<(), ExportError> {
        let sn = self.client.snapshots();
        // The snapshots below an existing one exist too (its parents): find the highest that
        // exists, from the top down — after a rebuild that is the top, one call.
        let mut have = 0;
        for (i, id) in chain.iter().enumerate().rev() {
            match sn.stat(id).await {
                Ok(_) => {
                    have = i + 1;
                    break;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(ctr(format!("failed to stat snapshot {id}"))(e)),
            }
        }
        let first_source = chain.len().saturating_sub(sources.len());
        for (i, (id, layer)) in chain.iter().zip(layers).enumerate().skip(have) {
            let parent = (i > 0).then(|| chain[i - 1].as_str());
            if let Some(source) = i.checked_sub(first_source).and_then(|j| sources.get(j)) {
                let started = std::time::Instant::now();
                match self.clone_layer(id, parent, source).await {
                    Ok(()) => {
                        tracing::debug!(
                            layer = id,
                            seconds = started.elapsed().as_secs_f64(),
                            "layer snapshot cloned"
                        );
                        continue;
                    }
                    Err(e) => tracing::debug!(
                        layer = id,
                        error = %e,
                        "could not clone the build snapshot; applying the blob"
                    ),
                }
            }
            let key = format!("export-apply-{}-{}", std::process::id(), unique());
            let mounts = sn
                .prepare(&key, parent, &Labels::new())
                .await
                .map_err(ctr(format!("failed to prepare the snapshot of layer {id}")))?;
            let applied = match self.client.diff().apply(layer, &mounts).await {
                Ok(_) => match sn.commit(id, &key, &Labels::new()).await {
                    Ok(()) => Ok(true),
                    // Another export made it meanwhile; the key is left to remove.
                    Err(e) if e.is_already_exists() => Ok(false),
                    Err(e) => Err(ctr(format!("failed to commit snapshot {id}"))(e)),
                },
                Err(e) => Err(ctr(format!("failed to apply layer {}", layer.digest))(e)),
            };
            if !matches!(applied, Ok(true)) {
                let _ = sn.remove(&key).await;
            }
            applied?;
        }
        Ok(())
    }
}

impl ImageExporter {
    /// Makes snapshot `id` on `parent` as a hard-link clone of committed build snapshot
    /// `source`'s own layer. Another export making `id` meanwhile is success.
    async fn clone_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        source: &str,
    ) -> Result<(), ExportError> {
        let sn = self.client.snapshots();
        let key = self.prepare_clone(parent, source).await?;
        let result = match sn.commit(id, &key, &Labels::new()).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_already_exists() => Ok(false),
            Err(e) => Err(ctr(format!("failed to commit snapshot {id}"))(e)),
        };
        if !matches!(result, Ok(true)) {
            let _ = sn.remove(&key).await;
        }
        result.map(|_| ())
    }

    /// An active snapshot on `parent` holding a hard-link clone of committed build snapshot
    /// `source`'s own layer, ready to be committed under the layer's chain ID; returns its key.
    async fn prepare_clone(
        &self,
        parent: Option<&str>,
        source: &str,
    ) -> Result<String, ExportError> {
        let sn = self.client.snapshots();
        let key = format!("export-clone-{}-{}", std::process::id(), unique());
        let (from, view) = self.layer_dir(source).await?;
        let result = async {
            let to = sn
                .prepare(&key, parent, &Labels::new())
                .await
                .map_err(ctr(format!(
                    "failed to prepare a clone of snapshot {source}"
                )))?;
            let to = active_upper_dir(&key, &to)?;
            tokio::task::spawn_blocking(move || oxkit_fileop::link_upper(&from, &to))
                .await
                .map_err(|e| ExportError::Io {
                    what: format!("cloning snapshot {source} stopped"),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(|source_err| ExportError::Io {
                    what: format!("failed to clone snapshot {source}"),
                    source: source_err,
                })
        }
        .await;
        self.remove_view(view).await;
        match result {
            Ok(()) => Ok(key),
            Err(e) => {
                let _ = sn.remove(&key).await;
                Err(e)
            }
        }
    }

    /// Makes the chain snapshots of the `new` layers (their build snapshots, bottom first, on
    /// `parent`, the base image's top) while their blobs are written: each is cloned from its
    /// build snapshot and committed under its chain ID as soon as its diff ID arrives on
    /// `diff_ids`. A clone whose parent is new is prepared before that, while the blob is still
    /// being written — the first layer's too, unless an earlier export wrote its blob (then its
    /// chain snapshot most likely exists). Best effort: it stops at the first problem or when
    /// the writer does, and [`Self::ensure_chain_snapshots`] makes the rest.
    async fn chain_while_writing(
        &self,
        mut parent: Option<String>,
        new: &[String],
        mut diff_ids: UnboundedReceiver<String>,
        compression: Compression,
    ) {
        let sn = self.client.snapshots();
        // Once one is missing, those above it are too (they would stand on it).
        let mut missing = false;
        for (i, source) in new.iter().enumerate() {
            let ahead = missing || (i == 0 && !self.exported_before(source, compression).await);
            let (diff_id, early) = tokio::join!(diff_ids.recv(), async {
                if ahead {
                    self.prepare_clone(parent.as_deref(), source).await.ok()
                } else {
                    None
                }
            });
            let Some(diff_id) = diff_id else {
                if let Some(key) = early {
                    let _ = sn.remove(&key).await;
                }
                return;
            };
            let id = chain_id(parent.as_deref(), &diff_id);
            if !missing {
                match sn.stat(&id).await {
                    Err(e) if e.is_not_found() => missing = true,
                    found => {
                        if let Some(key) = early {
                            let _ = sn.remove(&key).await;
                        }
                        if let Err(e) = found {
                            tracing::debug!(layer = id, error = %e, "could not stat a layer's snapshot");
                            return;
                        }
                        parent = Some(id);
                        continue;
                    }
                }
            }
            let key = match early {
                Some(key) => key,
                None => match self.prepare_clone(parent.as_deref(), source).await {
                    Ok(key) => key,
                    Err(e) => {
                        tracing::debug!(layer = id, error = %e, "could not clone the build snapshot");
                        return;
                    }
                },
            };
            if let Err(e) = sn.commit(&id, &key, &Labels::new()).await {
                let _ = sn.remove(&key).await;
                // AlreadyExists: another export made it meanwhile.
                if !e.is_already_exists() {
                    tracing::debug!(layer = id, error = %e, "could not commit a layer's clone");
                    return;
                }
            }
            parent = Some(id);
        }
    }

    /// Whether an earlier export wrote `snapshot`'s layer with `compression` (its memo label).
    async fn exported_before(&self, snapshot: &str, compression: Compression) -> bool {
        let memo = layer_memo_label(compression, None);
        match self.client.snapshots().stat(snapshot).await {
            Ok(info) => info.labels.contains_key(&memo),
            Err(_) => true,
        }
    }
}

/// The chain ID of `base`'s top layer: the snapshot the build's new layers stand on.
fn base_top(base: Option<&BaseImage>) -> Option<String> {
    base.and_then(|b| chain_ids(&b.config.diff_ids()).last().cloned())
}

/// The directory an active oxkit snapshot's changes go to, from its mounts
/// ([`Mount::active_upper`]).
fn active_upper_dir(key: &str, mounts: &[Mount]) -> Result<PathBuf, ExportError> {
    existing_dir(key, mounts, Mount::active_upper(mounts))
}

/// How many layers are written at once.
const LAYER_WRITERS: usize = 4;

/// The upper directory of a committed oxkit snapshot, from the mounts of a view of it
/// ([`Mount::layer_dir`]).
fn upper_dir(snapshot: &str, mounts: &[Mount]) -> Result<PathBuf, ExportError> {
    existing_dir(snapshot, mounts, Mount::layer_dir(mounts))
}

/// `dir` if it is a directory; otherwise the error naming `snapshot` and its `mounts`.
fn existing_dir(
    snapshot: &str,
    mounts: &[Mount],
    dir: Option<PathBuf>,
) -> Result<PathBuf, ExportError> {
    dir.filter(|d| d.is_dir())
        .ok_or_else(|| ExportError::NoUpperDir {
            snapshot: snapshot.into(),
            detail: format!("{mounts:?}"),
        })
}

/// The snapshot label that records the layer blob made for it with `compression`.
fn layer_memo_label(compression: Compression, source_date_epoch: Option<i64>) -> String {
    let format = match compression {
        Compression::Uncompressed => "oxkit.layer.uncompressed".into(),
        Compression::Gzip { level } => format!("oxkit.layer.gzip-{level}"),
        Compression::Zstd { level } => format!("oxkit.layer.zstd-{level}"),
    };
    match source_date_epoch {
        Some(epoch) => format!("{format}.epoch-{epoch}"),
        None => format,
    }
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn upper_dir_comes_from_oxkit_view_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let bind = [mount("bind", a.to_str().unwrap(), &["ro", "rbind"])];
        assert_eq!(upper_dir("s", &bind).unwrap(), a);
        let lower = format!("lowerdir={}:{}", b.display(), a.display());
        let overlay = [mount("overlay", "overlay", &["index=off", &lower])];
        assert_eq!(upper_dir("s", &overlay).unwrap(), b);
        for bad in [
            vec![],
            vec![mount("tmpfs", "tmpfs", &[])],
            vec![mount("overlay", "overlay", &["index=off"])],
        ] {
            assert!(
                matches!(upper_dir("s", &bad), Err(ExportError::NoUpperDir { .. })),
                "{bad:?}"
            );
        }
    }
}
