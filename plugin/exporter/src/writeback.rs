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
    helper: Helper,
}

/// The helper thread that syncs the file.
enum Helper {
    /// Not needed yet: less than one step written.
    NotYet,
    /// Running: asks it for a sync.
    Running(SyncSender<()>, JoinHandle<()>),
    /// It could not be started, or stopped: the file is written as a plain one.
    Off,
}

impl Writeback {
    pub(crate) fn new(file: File) -> Self {
        Writeback {
            file,
            pending: 0,
            helper: Helper::NotYet,
        }
    }

    /// Starts the helper, with its own handle on the file.
    fn start_helper(&self) -> Helper {
        let Ok(shared) = self.file.try_clone() else {
            return Helper::Off;
        };
        let (tx, rx) = sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("oxkit-writeback".into())
            .spawn(move || {
                // A failed sync here is not reported: the final sync of the whole file
                // reports it.
                while rx.recv().is_ok() {
                    let _ = shared.sync_data();
                }
            });
        spawned.map_or(Helper::Off, |helper| Helper::Running(tx, helper))
    }

    /// The file, once the background syncs are over (for the final sync).
    pub(crate) fn into_inner(self) -> File {
        if let Helper::Running(tx, helper) = self.helper {
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
        if self.pending >= STEP {
            if let Helper::NotYet = self.helper {
                self.helper = self.start_helper();
            }
            if let Helper::Running(tx, _) = &self.helper {
                match tx.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => self.pending = 0,
                    Err(TrySendError::Disconnected(())) => self.helper = Helper::Off,
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
