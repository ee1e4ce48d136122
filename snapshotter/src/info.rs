//! The snapshotter's own view of a snapshot: kind, parent, labels, times, usage.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What a snapshot is, in containerd's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A read-only snapshot of a parent, never committed.
    View,
    /// A writable snapshot being prepared.
    Active,
    /// An immutable snapshot that can be a parent.
    Committed,
}

impl Kind {
    /// The name containerd's filters use (`kind==active`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// Metadata of one snapshot, as Stat, Update and List return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The key (active, view) or name (committed).
    pub name: String,
    /// The parent's name; empty for a snapshot without parent.
    pub parent: String,
    /// The kind.
    pub kind: Kind,
    /// When the snapshot was created (for committed ones: when it was committed).
    pub created: SystemTime,
    /// When the snapshot's labels last changed.
    pub updated: SystemTime,
    /// Labels; empty values are never stored.
    pub labels: BTreeMap<String, String>,
}

/// Disk usage of a snapshot's own layer (not its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes allocated on disk.
    pub size: i64,
    /// Distinct inodes.
    pub inodes: i64,
}

/// One mount, in the form containerd's `mount.All` performs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Filesystem type: `bind` or `overlay`.
    pub kind: String,
    /// Source path (or `overlay`).
    pub source: String,
    /// fstab-style options.
    pub options: Vec<String>,
}
