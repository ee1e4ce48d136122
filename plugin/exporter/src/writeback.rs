//! [`Writeback`]: a file writer that has the data it wrote synced to disk by a helper thread
//! every [`STEP`] bytes, so that the `fsync` a layer blob needs before containerd adopts it
//! finds most of the file on disk already: the disk writes while the layer is still being
//! produced, instead of after it. A sync still running when the next step is reached is not
//! waited for (the next one covers both); [`Writeback::into_inner`] waits for the last. The
//! helper starts at the first step: a file smaller than one never has it.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// How many bytes are written between two background syncs.
const STEP: u64 = 8 << 20;

/// `file` with its data synced in the background as it grows.
pub(crate) struct Writeback {
    file: File,
    /// Bytes written since the last background sync was asked for.
    pending: u64,
    /// Asks the helper for a sync, once started.
    syncs: Option<(SyncSender<()>, JoinHandle<()>)>,
    /// Whether the helper could not be started (then the file is written as a plain one).
    unhelped: bool,
}

impl Writeback {
    pub(crate) fn new(file: File) -> Self {
        Writeback {
            file,
            pending: 0,
            syncs: None,
            unhelped: false,
        }
    }

    /// Starts the helper, with its own handle on the file.
    fn start_helper(&self) -> Option<(SyncSender<()>, JoinHandle<()>)> {
        let shared = self.file.try_clone().ok()?;
        let (tx, rx) = sync_channel::<()>(1);
        let helper = std::thread::Builder::new()
            .name("oxkit-writeback".into())
            .spawn(move || {
                // A failed sync here is not reported: the final sync of the whole file
                // reports it.
                while rx.recv().is_ok() {
                    let _ = shared.sync_data();
                }
            })
            .ok()?;
        Some((tx, helper))
    }

    /// The file, once the background syncs are over (for the final sync).
    pub(crate) fn into_inner(mut self) -> File {
        if let Some((tx, helper)) = self.syncs.take() {
            drop(tx);
            let _ = helper.join();
        }
        self.file
    }
}

impl Write for Writeback {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.pending += n as u64;
        if self.pending >= STEP && !self.unhelped {
            if self.syncs.is_none() {
                self.syncs = self.start_helper();
                self.unhelped = self.syncs.is_none();
            }
            if let Some((tx, _)) = &self.syncs {
                match tx.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => self.pending = 0,
                    Err(TrySendError::Disconnected(())) => {
                        self.syncs = None;
                        self.unhelped = true;
                    }
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn writes_every_byte_in_order() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut w = Writeback::new(tmp.reopen().unwrap());
        let chunk: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        for _ in 0..4 {
            w.write_all(&chunk).unwrap();
        }
        let file = w.into_inner();
        file.sync_all().unwrap();
        let mut back = Vec::new();
        tmp.reopen().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 12 << 20);
        assert!(back.chunks(chunk.len()).all(|c| c == &chunk[..]));
    }
}
