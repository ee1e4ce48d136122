//! oxkit's build service, and the daemon that hosts it beside the snapshotter: the build API's
//! server (`control`: solves, exports, client sessions), its client side (`client`: what `oxctl`
//! and Rust programs build with), and the daemon (`daemon`: configuration and serving). The
//! solver, ops, sources and exporters are crates of their own below `plugin/`.

pub mod client;
pub mod control;
pub mod daemon;

pub mod proto {
    //! Generated types, server and client of oxkit's build API (`proto/control.proto`).
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("oxkit.control.v1");
}

mod wire {
    //! Conversions between the build API's messages and the types they carry, for both ends.

    use oxkit_localsync::Entry;

    use crate::proto::LocalEntry;

    impl From<Entry> for LocalEntry {
        fn from(e: Entry) -> Self {
            LocalEntry {
                path: e.path,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
                ino: e.ino,
                dev: e.dev,
                symlink_target: e.target,
                hardlink_of: e.link,
            }
        }
    }

    /// The link count stays with the client: a listing marks hard links by `hardlink_of`.
    impl From<LocalEntry> for Entry {
        fn from(e: LocalEntry) -> Self {
            Entry {
                path: e.path,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
                ino: e.ino,
                dev: e.dev,
                nlink: 0,
                target: e.symlink_target,
                link: e.hardlink_of,
            }
        }
    }
}
