//! Finding and removing mounts left below a test's temp dir (overlay mounts of a daemon that was
//! killed, a container's rootfs), so that the dir can be deleted.

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{unmount, UnmountFlags};

/// Mount points at or below `dir` in this process's mount namespace, deepest first.
pub(crate) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = parse_mount_points(&mountinfo)
        .into_iter()
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Lazily unmounts everything at or below `dir`, deepest first, until nothing is left (stacked
/// mounts need more than one pass). Returns what could not be unmounted, with the error.
pub(crate) fn unmount_all_below(dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for _ in 0..8 {
        let points = mounts_below(dir);
        if points.is_empty() {
            return Vec::new();
        }
        failures.clear();
        for point in points {
            if let Err(err) = unmount(&point, UnmountFlags::DETACH) {
                failures.push(format!("{}: {err}", point.display()));
            }
        }
    }
    failures
}

/// The mount point column (the fifth) of each line of a `/proc/<pid>/mountinfo`.
fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash in mountinfo.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escape {
            Some(digits) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points_with_escapes() {
        let mountinfo = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
100 22 0:50 / /tmp/oxk-1/a\\040b rw - overlay overlay rw,lowerdir=/x
101 100 0:51 / /tmp/oxk-1/a\\040b/c\\134d rw - tmpfs tmpfs rw
";
        assert_eq!(
            parse_mount_points(mountinfo),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/tmp/oxk-1/a b"),
                PathBuf::from("/tmp/oxk-1/a b/c\\d")
            ]
        );
    }

    #[test]
    fn leaves_a_lone_backslash_alone() {
        assert_eq!(unescape_octal("a\\9b\\"), "a\\9b\\");
    }
}
