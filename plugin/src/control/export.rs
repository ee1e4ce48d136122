//! Streaming an exporter's output (an OCI archive, a tar of the result's files) to the client as
//! `ExportChunk` events on the Solve stream, which the client writes out.

use std::future::Future;
use std::io::Write;

use oxkit_exporter::ExportError;
use tokio::io::{AsyncReadExt, DuplexStream};
use tonic::Status;

use super::{export_failed, Events};
use crate::proto;

/// How much one `ExportChunk` carries: well under gRPC's 4 MiB message limit.
const CHUNK: usize = 256 << 10;

fn chunk(data: Vec<u8>) -> Result<proto::SolveEvent, Status> {
    Ok(proto::solve_event::Event::Export(proto::ExportChunk { data }).into())
}

/// Runs `write` — an async exporter writing into the pipe it is given, and dropping it when done
/// — while forwarding what it writes to `tx`. If the client goes away, the pipe breaks and
/// `write` fails.
pub(super) async fn stream_async<F, Fut, T>(tx: &Events, write: F) -> Result<T, Status>
where
    F: FnOnce(DuplexStream) -> Fut,
    Fut: Future<Output = Result<T, ExportError>>,
{
    let (writer, mut reader) = tokio::io::duplex(CHUNK);
    let forward = async move {
        let mut buf = vec![0; CHUNK];
        let mut filled = 0;
        loop {
            let n = reader
                .read(&mut buf[filled..])
                .await
                .map_err(|e| Status::internal(format!("export stream: {e}")))?;
            filled += n;
            if (n == 0 || filled == CHUNK) && filled > 0 {
                let mut data = std::mem::replace(&mut buf, vec![0; CHUNK]);
                data.truncate(filled);
                filled = 0;
                if tx.send(chunk(data)).await.is_err() {
                    return Err(Status::cancelled("the client went away during the export"));
                }
            }
            if n == 0 {
                return Ok(());
            }
        }
    };
    let (written, forwarded) = tokio::join!(write(writer), forward);
    forwarded?;
    written.map_err(export_failed)
}

/// Runs `write` — an exporter writing into a blocking writer from a blocking thread, which hands
/// the writer back flushed — forwarding what it writes to `tx`.
pub(super) async fn stream_blocking<F, Fut>(tx: &Events, write: F) -> Result<(), Status>
where
    F: FnOnce(ChunkWriter) -> Fut,
    Fut: Future<Output = Result<ChunkWriter, ExportError>>,
{
    let out = ChunkWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
    };
    let out = write(out).await.map_err(export_failed)?;
    debug_assert!(out.buf.is_empty(), "the exporter flushes its writer");
    Ok(())
}

/// A blocking writer that sends what it is given as `ExportChunk`s; for blocking threads only
/// (it waits for room in the channel). Flushing sends what is buffered.
pub(super) struct ChunkWriter {
    tx: Events,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk(data)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away during the export",
            )
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
