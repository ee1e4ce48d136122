//! Leases: what keeps a build's snapshots and content from containerd's garbage collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1 as pb;

use crate::client::header_value;
use crate::convert::{labels_from_pb, labels_to_pb, time_from_pb};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Labels};

/// The label containerd's garbage collector reads a lease's expiry from (RFC 3339).
pub const EXPIRE_LABEL: &str = "containerd.io/gc.expire";

/// How to create a lease.
#[derive(Debug, Clone, Default)]
pub struct LeaseOptions {
    /// The lease's id; a unique `oxkit-…` id when `None`.
    pub id: Option<String>,
    /// Labels of the lease.
    pub labels: Labels,
    /// After how long containerd may delete the lease by itself (the `containerd.io/gc.expire`
    /// label), so that a crashed daemon's leases do not hold their resources forever.
    pub expire_after: Option<Duration>,
}

/// A lease in containerd. Resources created by calls of a client scoped with
/// [`Client::with_lease`] are held by it until it is deleted (or expires).
///
/// Dropping the handle does not delete the lease: a lease outlives the process on purpose (cache
/// records name leases). Delete it with [`Lease::delete`].
#[derive(Debug, Clone)]
pub struct Lease {
    id: String,
    labels: Labels,
    created_at: Option<SystemTime>,
    client: Client,
}

impl Lease {
    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lease's labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// When containerd created the lease.
    pub fn created_at(&self) -> Option<SystemTime> {
        self.created_at
    }

    /// Deletes the lease. With `sync`, containerd runs its garbage collection and returns only after
    /// it, so what only this lease held is gone when this returns.
    pub async fn delete(self, sync: bool) -> Result<(), ContainerdError> {
        self.client.leases().delete(&self.id, sync).await
    }
}

/// containerd's Leases service.
#[derive(Debug, Clone)]
pub struct Leases {
    client: Client,
}

impl Leases {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client: client.without_lease(),
        }
    }

    /// Creates a lease. AlreadyExists if a lease with that id exists.
    pub async fn create(&self, options: LeaseOptions) -> Result<Lease, ContainerdError> {
        let id = options.id.unwrap_or_else(generate_id);
        header_value("lease id", &id)?;
        let mut labels = options.labels;
        if let Some(after) = options.expire_after {
            labels.insert(EXPIRE_LABEL.into(), rfc3339(SystemTime::now() + after));
        }
        let request = pb::CreateRequest {
            id,
            labels: labels_to_pb(&labels),
        };
        let lease = self
            .client
            .leases_rpc()
            .create(self.client.request(request))
            .await
            .call("Leases.Create")?
            .lease
            .ok_or(ContainerdError::MissingField {
                call: "Leases.Create",
                field: "lease",
            })?;
        Ok(self.lease_from_pb(lease))
    }

    /// The leases of the namespace, filtered with containerd's filter syntax (e.g.
    /// `labels."oxkit/kind"==cache`); all of them when `filters` is empty.
    pub async fn list(&self, filters: &[&str]) -> Result<Vec<Lease>, ContainerdError> {
        let request = pb::ListRequest {
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        };
        let leases = self
            .client
            .leases_rpc()
            .list(self.client.request(request))
            .await
            .call("Leases.List")?
            .leases;
        Ok(leases.into_iter().map(|l| self.lease_from_pb(l)).collect())
    }

    /// Deletes the lease `id` (see [`Lease::delete`]). NotFound if there is none.
    pub async fn delete(&self, id: &str, sync: bool) -> Result<(), ContainerdError> {
        let request = pb::DeleteRequest {
            id: id.to_owned(),
            sync,
        };
        self.client
            .leases_rpc()
            .delete(self.client.request(request))
            .await
            .call("Leases.Delete")
            .map(drop)
    }

    fn lease_from_pb(&self, lease: pb::Lease) -> Lease {
        Lease {
            id: lease.id,
            labels: labels_from_pb(lease.labels),
            created_at: time_from_pb(lease.created_at),
            client: self.client.clone(),
        }
    }
}

/// A lease id unique to this process and moment.
fn generate_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("oxkit-{}-{nanos}-{n}", std::process::id())
}

/// `t` as RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z` (what containerd's gc.expire label and
/// OCI image configs take).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-since-epoch to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "2024-02-29T12:34:56Z"
        );
    }

    #[test]
    fn generated_ids_differ_and_are_header_safe() {
        let (a, b) = (generate_id(), generate_id());
        assert_ne!(a, b);
        assert!(header_value("lease id", &a).is_ok());
    }
}
