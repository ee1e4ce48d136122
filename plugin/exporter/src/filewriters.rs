//! [`FileWriters`]: threads that write the small regular files of an unpack, so that creating
//! files (kernel time, serialised per directory but not across directories) runs on more than
//! one core while the caller goes on reading the stream.

use std::collections::HashMap;
use std::fs::{FileTimes, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

/// A regular file to write: where (its parent a real directory, checked by the caller), its
/// content, permission bits (set-id bits kept) and modification time.
pub(crate) struct FileWrite {
    pub(crate) path: PathBuf,
    pub(crate) data: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) mtime: u64,
}

/// Files waiting per writer at most: with files of at most [`FileWriters::MAX_SIZE`], the
/// memory an unpack holds is bounded.
const QUEUE: usize = 32;

/// A few writer threads, each given whole directories (two writers in one directory would
/// only wait for each other on its lock).
pub(crate) struct FileWriters {
    queues: Vec<SyncSender<FileWrite>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// Which writer takes the files of a directory.
    writer_of: HashMap<PathBuf, usize>,
    next: usize,
}

impl FileWriters {
    /// The largest file worth handing over; larger ones are better streamed by the caller.
    pub(crate) const MAX_SIZE: u64 = 1 << 20;

    /// `count` writer threads.
    pub(crate) fn start(count: usize) -> io::Result<Self> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let (tx, rx) = sync_channel::<FileWrite>(QUEUE);
            let thread = std::thread::Builder::new()
                .name(format!("unpack-{i}"))
                .spawn(move || rx.into_iter().try_for_each(|file| write_file(&file)))?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(FileWriters {
            queues,
            threads,
            writer_of: HashMap::new(),
            next: 0,
        })
    }

    /// Hands `file` to the writer of its directory. Fails (with that writer's error, once
    /// [`FileWriters::finish`] is called) if the writer has stopped.
    pub(crate) fn write(&mut self, file: FileWrite) -> io::Result<()> {
        let dir = file.path.parent().unwrap_or(Path::new("")).to_path_buf();
        let count = self.queues.len();
        let writer = *self.writer_of.entry(dir).or_insert_with(|| {
            self.next = (self.next + 1) % count;
            self.next
        });
        self.queues[writer]
            .send(file)
            .map_err(|_| io::Error::other("a file writer stopped"))
    }

    /// Waits for every file handed over to be written; the first writer's error, if any.
    pub(crate) fn finish(self) -> io::Result<()> {
        drop(self.queues);
        // Every thread joined, even after an error: none still writes once this returns.
        let mut result = Ok(());
        for thread in self.threads {
            let joined = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a file writer panicked")));
            if result.is_ok() {
                result = joined;
            }
        }
        result
    }
}

/// Writes one file as the `tar` crate unpacks one: whatever non-directory is at the path is
/// replaced (never followed: the file is created exclusively), then the content, the
/// modification time (also as the access time; 0 becomes 1, as `tar` does) and the mode.
fn write_file(file: &FileWrite) -> io::Result<()> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", file.path.display()));
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file.path)
    };
    let mut out = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&file.path).map_err(context)?;
            create()
        }
        created => created,
    }
    .map_err(context)?;
    out.write_all(&file.data).map_err(context)?;
    let time = UNIX_EPOCH + Duration::from_secs(file.mtime.max(1));
    out.set_times(FileTimes::new().set_accessed(time).set_modified(time))
        .map_err(context)?;
    out.set_permissions(Permissions::from_mode(file.mode & 0o7777))
        .map_err(context)
}
