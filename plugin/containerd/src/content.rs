//! Blobs in containerd's content store: written streamed and verified (or, from a file on the
//! same machine, handed over by a hard link), read back, labelled (the garbage-collection labels
//! that tie a manifest to its layers and a config to its snapshots).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use containerd_client::services::v1 as pb;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::convert::{
    field_mask, label_paths, labels_from_pb, labels_to_pb, size_from_pb, size_to_pb, time_from_pb,
};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Descriptor, Digest, Labels};

/// How much of a blob one Write message carries.
const CHUNK: usize = 1 << 20;

/// What the content store knows about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its labels.
    pub labels: Labels,
    /// When it was committed.
    pub created_at: Option<SystemTime>,
    /// When it (its labels) last changed.
    pub updated_at: Option<SystemTime>,
}

/// The result of writing a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The blob's descriptor.
    pub descriptor: Descriptor,
    /// Whether the store had the blob already (then nothing was written, and the labels were applied
    /// to the existing blob with an update).
    pub already_existed: bool,
}

/// containerd's Content service.
#[derive(Debug, Clone)]
pub struct Content {
    client: Client,
}

impl Content {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Writes `bytes` as a blob of `media_type` with `labels` (see [`Self::write`]).
    pub async fn write_bytes(
        &self,
        media_type: &str,
        bytes: &[u8],
        labels: &Labels,
    ) -> Result<WriteOutcome, ContainerdError> {
        let digest = Digest::sha256_of(bytes);
        self.write(
            media_type,
            Some((&digest, bytes.len() as u64)),
            bytes,
            labels,
        )
        .await
    }

    /// Streams a blob of `media_type` from `reader` into the content store and commits it with
    /// `labels`.
    ///
    /// With `expected` (digest and size), containerd is told both up front: a blob that already
    /// exists is not sent at all. Without it, the digest is computed while streaming and containerd
    /// verifies it at commit. Either way, what was read must match: a mismatch is
    /// [`ContainerdError::ContentMismatch`] (or containerd's FailedPrecondition) and nothing is
    /// committed. A blob that exists already is not an error: its labels are set with an update
    /// (containerd ignores the labels of a write that finds the blob), and the outcome says so.
    ///
    /// On error, containerd may keep the partial ingest until its ingest expiry or the lease's end.
    pub async fn write<R: AsyncRead + Unpin>(
        &self,
        media_type: &str,
        expected: Option<(&Digest, u64)>,
        mut reader: R,
        labels: &Labels,
    ) -> Result<WriteOutcome, ContainerdError> {
        const CALL: &str = "Content.Write";
        let reference = ingest_ref();
        let (tx, rx) = mpsc::channel::<pb::WriteContentRequest>(2);
        let (expected_digest, expected_size) = match expected {
            Some((d, s)) => (d.to_string(), size_to_pb(s)),
            None => (String::new(), 0),
        };
        // containerd answers (even with just headers) only after the first message: queue it first.
        send(
            &tx,
            pb::WriteContentRequest {
                action: pb::WriteAction::Stat as i32,
                r#ref: reference.clone(),
                total: expected_size,
                expected: expected_digest.clone(),
                ..Default::default()
            },
        )?;
        let existing = |digest: Digest, size: u64| async move {
            let descriptor = Descriptor {
                media_type: media_type.to_owned(),
                digest,
                size,
                annotations: Default::default(),
            };
            if !labels.is_empty() {
                self.update_labels(&descriptor.digest, labels).await?;
            }
            Ok(WriteOutcome {
                descriptor,
                already_existed: true,
            })
        };
        let mut responses = match self
            .client
            .content_rpc()
            .write(self.client.request(ReceiverStream::new(rx)))
            .await
            .call(CALL)
        {
            Ok(responses) => responses,
            Err(e) if e.is_already_exists() && expected.is_some() => {
                let (d, s) = expected.expect("checked");
                return existing(d.clone(), s).await;
            }
            Err(e) => return Err(e),
        };
        let adopted = match next_response(&mut responses).await {
            // The blob is in containerd's backing store already (put there by `write_file`, or
            // by another namespace) and the store shares blobs: the ingest starts complete, and
            // committing it records the blob in this namespace without a byte sent.
            Ok(status) => expected.is_some_and(|(_, size)| {
                size > 0
                    && size_from_pb(status.offset) == size
                    && size_from_pb(status.total) == size
            }),
            Err(e) if e.is_already_exists() && expected.is_some() => {
                let (d, s) = expected.expect("checked");
                return existing(d.clone(), s).await;
            }
            Err(e) => return Err(e),
        };
        let (actual, offset) = match expected {
            Some((digest, size)) if adopted => (digest.clone(), size),
            _ => {
                let (actual, offset) =
                    send_data(&tx, &reference, &mut reader, &mut responses).await?;
                if let Some((d, s)) = expected.filter(|(d, s)| **d != actual || *s != offset) {
                    drop(tx);
                    self.abort(&reference).await;
                    return Err(ContainerdError::ContentMismatch {
                        expected: d.to_string(),
                        actual: actual.to_string(),
                        size: offset,
                        expected_size: Some(s),
                    });
                }
                (actual, offset)
            }
        };
        send(
            &tx,
            pb::WriteContentRequest {
                action: pb::WriteAction::Commit as i32,
                r#ref: reference.clone(),
                total: size_to_pb(offset),
                offset: size_to_pb(offset),
                expected: actual.to_string(),
                labels: labels_to_pb(labels),
                ..Default::default()
            },
        )?;
        match next_response(&mut responses).await {
            Ok(_) => Ok(WriteOutcome {
                descriptor: Descriptor {
                    media_type: media_type.to_owned(),
                    digest: actual,
                    size: offset,
                    annotations: Default::default(),
                },
                already_existed: false,
            }),
            // Someone else committed the same blob while we streamed it.
            Err(e) if e.is_already_exists() => existing(actual, offset).await,
            Err(e) => Err(e),
        }
    }

    /// Stores the blob in file `path`, whose digest and size are known. Where containerd keeps
    /// its blobs on this machine and shares them between namespaces ([`Self::local_blob_dir`]),
    /// the file is hard-linked into that store and the write only records it: no byte crosses
    /// the socket and containerd neither copies nor hashes it again. Otherwise, or if the link
    /// cannot be made, the file is streamed as [`Self::write`] does. The file itself is left
    /// where it is; it must not change until this returns, nor afterwards while linked.
    pub async fn write_file(
        &self,
        media_type: &str,
        path: &Path,
        (digest, size): (&Digest, u64),
        labels: &Labels,
    ) -> Result<WriteOutcome, ContainerdError> {
        if let Some(dir) = self.local_blob_dir().await {
            let target = dir.join(digest.hex());
            match std::fs::hard_link(path, &target) {
                Ok(()) => {}
                // Committed before (or by another writer): the store's copy is that blob.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => tracing::debug!(
                    path = %path.display(),
                    target = %target.display(),
                    error = %e,
                    "could not link a blob into containerd's store; streaming it"
                ),
            }
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| ContainerdError::Io {
                action: "open blob file",
                path: path.to_owned(),
                source,
            })?;
        self.write(media_type, Some((digest, size)), file, labels)
            .await
    }

    /// containerd's directory of sha256 blobs, if it is on this machine and blobs put there are
    /// adopted by a write that names them: the content plugin's `root` export exists here and
    /// the metadata store's sharing policy is `shared` (containerd's default). Asked once per
    /// connection; `None` when containerd says otherwise or cannot be asked.
    pub async fn local_blob_dir(&self) -> Option<PathBuf> {
        self.client
            .local_blobs
            .get_or_init(|| async {
                let dir = self.ask_local_blob_dir().await;
                tracing::debug!(dir = ?dir, "containerd's local blob directory");
                dir
            })
            .await
            .clone()
    }

    async fn ask_local_blob_dir(&self) -> Option<PathBuf> {
        let request = pb::PluginsRequest {
            filters: vec![
                "type==io.containerd.content.v1,id==content".into(),
                "type==io.containerd.metadata.v1,id==bolt".into(),
            ],
        };
        let plugins = self
            .client
            .introspection_rpc()
            .plugins(self.client.request(request))
            .await
            .ok()?
            .into_inner()
            .plugins;
        let export = |kind: &str, key: &str| {
            plugins
                .iter()
                .find(|p| p.r#type == kind && p.init_err.is_none())
                .and_then(|p| p.exports.get(key).cloned())
        };
        if export("io.containerd.metadata.v1", "policy").as_deref() != Some("shared") {
            return None;
        }
        let dir = PathBuf::from(export("io.containerd.content.v1", "root")?).join("blobs/sha256");
        dir.is_dir().then_some(dir)
    }

    /// Best effort: drops the ingest `reference` (what a failed write left).
    async fn abort(&self, reference: &str) {
        let request = pb::AbortRequest {
            r#ref: reference.to_owned(),
        };
        if let Err(e) = self
            .client
            .content_rpc()
            .abort(self.client.request(request))
            .await
        {
            tracing::debug!(reference, error = %e, "could not abort a content ingest");
        }
    }

    /// Reads the whole blob `digest` into memory.
    pub async fn read_to_vec(&self, digest: &Digest) -> Result<Vec<u8>, ContainerdError> {
        let mut out = Vec::new();
        self.read_to(digest, &mut out).await?;
        Ok(out)
    }

    /// Streams the blob `digest` into `writer` (flushed at the end) and returns its size.
    pub async fn read_to<W: AsyncWrite + Unpin>(
        &self,
        digest: &Digest,
        mut writer: W,
    ) -> Result<u64, ContainerdError> {
        const CALL: &str = "Content.Read";
        let request = pb::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = self
            .client
            .content_rpc()
            .read(self.client.request(request))
            .await
            .call(CALL)?;
        let mut total = 0u64;
        let io_err = |source| ContainerdError::Io {
            action: "write the content of a blob to its destination",
            path: Default::default(),
            source,
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| ContainerdError::from_status(CALL, s))?;
            writer.write_all(&chunk.data).await.map_err(io_err)?;
            total += chunk.data.len() as u64;
        }
        writer.flush().await.map_err(io_err)?;
        Ok(total)
    }

    /// What the store knows about blob `digest`; NotFound if it has none.
    pub async fn info(&self, digest: &Digest) -> Result<ContentInfo, ContainerdError> {
        let request = pb::InfoRequest {
            digest: digest.to_string(),
        };
        let info = self
            .client
            .content_rpc()
            .info(self.client.request(request))
            .await
            .call("Content.Info")?
            .info
            .ok_or(ContainerdError::MissingField {
                call: "Content.Info",
                field: "info",
            })?;
        info_from_pb(info)
    }

    /// Sets (or, with an empty value, removes) the given labels of blob `digest`, leaving its other
    /// labels alone, and returns the updated info.
    pub async fn update_labels(
        &self,
        digest: &Digest,
        labels: &Labels,
    ) -> Result<ContentInfo, ContainerdError> {
        let request = pb::UpdateRequest {
            info: Some(pb::Info {
                digest: digest.to_string(),
                labels: labels_to_pb(labels),
                ..Default::default()
            }),
            update_mask: field_mask(label_paths(labels)),
        };
        let info = self
            .client
            .content_rpc()
            .update(self.client.request(request))
            .await
            .call("Content.Update")?
            .info
            .ok_or(ContainerdError::MissingField {
                call: "Content.Update",
                field: "info",
            })?;
        info_from_pb(info)
    }

    /// Deletes blob `digest` from the namespace. NotFound if it has none.
    pub async fn delete(&self, digest: &Digest) -> Result<(), ContainerdError> {
        let request = pb::DeleteContentRequest {
            digest: digest.to_string(),
        };
        self.client
            .content_rpc()
            .delete(self.client.request(request))
            .await
            .call("Content.Delete")
            .map(drop)
    }
}

/// Sends all of `reader` as the Write messages of ingest `reference`, each answered (in
/// `responses`) before the next is sent; returns the digest and size of what was sent.
async fn send_data<R: AsyncRead + Unpin>(
    tx: &mpsc::Sender<pb::WriteContentRequest>,
    reference: &str,
    reader: &mut R,
    responses: &mut tonic::Streaming<pb::WriteContentResponse>,
) -> Result<(Digest, u64), ContainerdError> {
    let mut hasher = Sha256::new();
    let mut offset: u64 = 0;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = read_full(reader, &mut buf).await?;
        if n == 0 {
            return Ok((Digest::from_sha256(&hasher.finalize()), offset));
        }
        hasher.update(&buf[..n]);
        send(
            tx,
            pb::WriteContentRequest {
                action: pb::WriteAction::Write as i32,
                r#ref: reference.to_owned(),
                offset: size_to_pb(offset),
                data: buf[..n].to_vec(),
                ..Default::default()
            },
        )?;
        offset += n as u64;
        next_response(responses).await?;
    }
}

/// The next answer of a Write stream; its end is an error.
async fn next_response(
    responses: &mut tonic::Streaming<pb::WriteContentResponse>,
) -> Result<pb::WriteContentResponse, ContainerdError> {
    const CALL: &str = "Content.Write";
    match responses.next().await {
        Some(r) => r.map_err(|s| ContainerdError::from_status(CALL, s)),
        None => Err(ContainerdError::MissingField {
            call: CALL,
            field: "response",
        }),
    }
}

fn send(
    tx: &mpsc::Sender<pb::WriteContentRequest>,
    message: pb::WriteContentRequest,
) -> Result<(), ContainerdError> {
    // The receiver lives in the request stream; it is only gone when the call ended, which the next
    // response read reports with containerd's status. A full buffer cannot happen in lockstep.
    tx.try_send(message)
        .map_err(|_| ContainerdError::Unavailable {
            call: "Content.Write",
            message: "the write stream closed".into(),
        })
}

/// Fills `buf` as far as the reader goes; 0 only at the end.
async fn read_full<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<usize, ContainerdError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader
            .read(&mut buf[filled..])
            .await
            .map_err(|source| ContainerdError::Io {
                action: "read the blob to write from its source",
                path: Default::default(),
                source,
            })?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// A unique ingest reference: two writers of the same blob never lock each other out; the second
/// to commit finds the blob there and gets AlreadyExists, which `write` handles.
fn ingest_ref() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "oxkit-ingest-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn info_from_pb(info: pb::Info) -> Result<ContentInfo, ContainerdError> {
    Ok(ContentInfo {
        digest: info.digest.parse()?,
        size: size_from_pb(info.size),
        labels: labels_from_pb(info.labels),
        created_at: time_from_pb(info.created_at),
        updated_at: time_from_pb(info.updated_at),
    })
}
