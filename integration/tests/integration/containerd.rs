//! oxkit's containerd client (`oxkit-containerd`) against a real containerd with oxkitd as its
//! `oxkit` snapshotter: leases against garbage collection, content, images, diff apply, containers
//! and tasks on runc, and mounting snapshots on the host.

use std::collections::BTreeSet;
use std::error::Error;
use std::fs;
use std::path::Path;

use crate::support::{in_runtime, until};
use oxkit_containerd::{
    with_temp_mount, Client, Descriptor, Digest, Image, ImageUpdate, Labels, LeaseOptions,
    LinuxMounter, Mount, Network, NewContainer, SnapshotKind, SpecBuilder, StdioPipes, TaskIo,
};
use oxkit_integration::{busybox_image, BuiltImage, Fixture, NAMESPACE};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

const BUSYBOX: &str = "docker.io/library/busybox:test";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn import_busybox(fx: &Fixture) -> Result<BuiltImage> {
    let image = busybox_image(BUSYBOX)?.write_archive(&fx.image_path("busybox.tar"))?;
    fx.import(&image)?;
    Ok(image)
}

async fn connect(fx: &Fixture) -> Result<Client> {
    Ok(Client::connect(fx.containerd_address(), NAMESPACE).await?)
}

/// A lease for one test, expiring on its own in case the test dies before deleting it.
async fn test_lease(client: &Client) -> Result<oxkit_containerd::Lease> {
    Ok(client
        .leases()
        .create(LeaseOptions {
            labels: labels(&[("oxkit.test", "containerd")]),
            expire_after: Some(std::time::Duration::from_secs(3600)),
            ..Default::default()
        })
        .await?)
}

fn assert_no_containers_or_tasks(fx: &Fixture) -> Result {
    let containers = fx.ctr(["containers", "ls", "-q"])?;
    assert!(
        containers.trim().is_empty(),
        "containers left behind:\n{containers}"
    );
    let tasks = fx.ctr(["tasks", "ls", "-q"])?;
    assert!(tasks.trim().is_empty(), "tasks left behind:\n{tasks}");
    Ok(())
}

#[test]
fn a_leased_snapshot_survives_gc_until_its_lease_is_deleted() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    in_runtime(async {
        let missing = Client::connect(fx.dir().join("no.sock"), NAMESPACE)
            .await
            .unwrap_err();
        assert!(missing.is_unavailable(), "{missing}");
        let bad = Client::connect(fx.containerd_address(), "bad\nnamespace")
            .await
            .unwrap_err();
        assert!(
            matches!(bad, oxkit_containerd::ContainerdError::InvalidHeader { .. }),
            "{bad}"
        );

        let client = connect(&fx).await?;
        assert_eq!((client.namespace(), client.lease_id()), (NAMESPACE, None));
        let lease = test_lease(&client).await?;
        let listed = client.leases().list(&[]).await?;
        assert!(
            listed
                .iter()
                .any(|l| l.id() == lease.id() && l.labels().get("oxkit.test").is_some()),
            "lease {} with its label not in {listed:?}",
            lease.id()
        );
        let leased = client.with_lease(&lease);
        assert_eq!(leased.lease_id(), Some(lease.id()));

        let held = fx.unique_id("held");
        let loose = fx.unique_id("loose");
        let mounts = leased
            .snapshots()
            .prepare(&held, None, &Labels::new())
            .await?;
        assert!(!mounts.is_empty(), "Prepare gave no mounts");
        client
            .snapshots()
            .prepare(&loose, None, &Labels::new())
            .await?;
        // Only the leased one is sure to be listed: containerd may collect the loose one at any
        // moment (its scheduler runs on mutations), which is the point of the control.
        let keys = fx.snapshot_keys()?;
        assert!(keys.contains(&held), "{keys:?}");

        fx.collect_garbage()?;
        let keys = fx.snapshot_keys()?;
        assert!(
            keys.contains(&held),
            "the leased snapshot was collected: {keys:?}"
        );
        assert!(
            !keys.contains(&loose),
            "control: garbage collection did not remove the snapshot no lease held: {keys:?}"
        );
        let info = client.snapshots().stat(&held).await?;
        assert_eq!(info.kind, SnapshotKind::Active);

        lease.delete(true).await?;
        let gone = client.snapshots().stat(&held).await.unwrap_err();
        assert!(gone.is_not_found(), "expected NotFound, got {gone}");
        let keys = fx.snapshot_keys()?;
        assert!(
            !keys.contains(&held),
            "still listed after its lease was deleted: {keys:?}"
        );
        Ok(())
    })
}

#[test]
fn content_writes_handle_already_exists_and_labels_round_trip() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let content = client.with_lease(&lease).content();
        let bytes = format!("oxkit content {}", fx.unique_id("blob")).into_bytes();
        let media = "application/octet-stream";

        let first = content
            .write_bytes(media, &bytes, &labels(&[("oxkit.test/a", "1")]))
            .await?;
        assert!(!first.already_existed);
        assert_eq!(first.descriptor.digest, Digest::sha256_of(&bytes));
        assert_eq!(first.descriptor.size, bytes.len() as u64);
        let info = content.info(&first.descriptor.digest).await?;
        assert_eq!(info.labels, labels(&[("oxkit.test/a", "1")]));
        assert_eq!(info.size, bytes.len() as u64);

        // The same blob again: containerd says AlreadyExists and drops the labels; the write applies
        // them with an update and reports that the blob was there.
        let second = content
            .write_bytes(media, &bytes, &labels(&[("oxkit.test/b", "2")]))
            .await?;
        assert!(second.already_existed, "{second:?}");
        assert_eq!(second.descriptor, first.descriptor);
        let info = content.info(&first.descriptor.digest).await?;
        assert_eq!(
            info.labels,
            labels(&[("oxkit.test/a", "1"), ("oxkit.test/b", "2")])
        );
        let ctr_ls = fx.ctr(["content", "ls"])?;
        let row = ctr_ls
            .lines()
            .find(|l| l.starts_with(first.descriptor.digest.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "{} not in `ctr content ls`:\n{ctr_ls}",
                    first.descriptor.digest
                )
            });
        assert!(
            row.contains("oxkit.test/b=2"),
            "labels missing in ctr's view: {row}"
        );

        assert_eq!(content.read_to_vec(&first.descriptor.digest).await?, bytes);

        // A multi-chunk blob streamed from a reader, digest computed on the way.
        let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        let streamed = content.write(media, None, &big[..], &Labels::new()).await?;
        assert_eq!(streamed.descriptor.digest, Digest::sha256_of(&big));
        assert!(!streamed.already_existed);
        let mut back = Vec::new();
        let n = content
            .read_to(&streamed.descriptor.digest, &mut back)
            .await?;
        assert_eq!(n, big.len() as u64);
        assert!(back == big, "read back differs from what was written");

        // Data that does not match the digest it claims is not committed.
        let claimed = Digest::sha256_of(b"something else");
        let err = content
            .write(media, Some((&claimed, 5)), &b"other"[..], &Labels::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                oxkit_containerd::ContainerdError::ContentMismatch { .. }
            ),
            "{err}"
        );
        let missing = content
            .info(&Digest::sha256_of(b"other"))
            .await
            .unwrap_err();
        assert!(missing.is_not_found(), "{missing}");

        // Update removes a label with an empty value and leaves the others.
        let info = content
            .update_labels(&first.descriptor.digest, &labels(&[("oxkit.test/a", "")]))
            .await?;
        assert_eq!(info.labels, labels(&[("oxkit.test/b", "2")]));

        content.delete(&first.descriptor.digest).await?;
        let err = content.info(&first.descriptor.digest).await.unwrap_err();
        assert!(
            err.is_not_found(),
            "expected NotFound after delete, got {err}"
        );
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn images_are_created_read_updated_listed_and_deleted() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let leased = client.with_lease(&lease);
        let first = leased
            .content()
            .write_bytes(
                "application/vnd.oci.image.manifest.v1+json",
                b"{\"a\":1}",
                &Labels::new(),
            )
            .await?
            .descriptor;
        let second = leased
            .content()
            .write_bytes(
                "application/vnd.oci.image.manifest.v1+json",
                b"{\"a\":2}",
                &Labels::new(),
            )
            .await?
            .descriptor;
        let name = "docker.io/oxkit/test:images";
        let mut image = Image::new(name, first.clone());
        image.labels = labels(&[("oxkit.test", "1")]);
        let images = leased.images();

        let created = images.create(&image).await?;
        assert_eq!((created.name.as_str(), &created.target), (name, &first));
        assert!(created.created_at.is_some());
        let err = images.create(&image).await.unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        let got = images.get(name).await?;
        assert_eq!(
            (got.target, got.labels),
            (first.clone(), image.labels.clone())
        );
        let ls = fx.ctr(["images", "ls", "-q"])?;
        assert!(ls.lines().any(|l| l.trim() == name), "{name} not in:\n{ls}");

        // Retarget, then add a label without touching the others.
        let mut moved = Image::new(name, second.clone());
        moved.labels = labels(&[("ignored", "x")]);
        let updated = images.update(&moved, ImageUpdate::Target).await?;
        assert_eq!(updated.target, second);
        assert_eq!(updated.labels, labels(&[("oxkit.test", "1")]));
        let mut relabel = Image::new(name, second.clone());
        relabel.labels = labels(&[("oxkit.test/extra", "y")]);
        let updated = images.update(&relabel, ImageUpdate::Labels).await?;
        assert_eq!(
            updated.labels,
            labels(&[("oxkit.test", "1"), ("oxkit.test/extra", "y")])
        );
        let again = images.create_or_update(&image).await?;
        assert_eq!((again.target, again.labels), (first, image.labels.clone()));

        let filter = format!("name=={name}");
        let listed = images.list(&[&filter]).await?;
        assert_eq!(listed.len(), 1, "{listed:?}");

        images.delete(name, false).await?;
        let err = images.get(name).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let err = images.delete(name, false).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let ls = fx.ctr(["images", "ls", "-q"])?;
        assert!(
            !ls.lines().any(|l| l.trim() == name),
            "{name} still in:\n{ls}"
        );
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn diff_apply_of_the_busybox_layer_fills_a_fresh_oxkit_snapshot() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let built = import_busybox(&fx)?;
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let leased = client.with_lease(&lease);
        let manifest_digest: Digest = built.manifest_digest.parse()?;
        let manifest = leased.content().read_to_vec(&manifest_digest).await?;
        let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
        let layer: Descriptor = serde_json::from_value(manifest["layers"][0].clone())?;

        let key = fx.unique_id("apply");
        let mounts = leased
            .snapshots()
            .prepare(&key, None, &Labels::new())
            .await?;
        let applied = leased.diff().apply(&layer, &mounts).await?;
        assert_eq!(
            applied.digest.as_str(),
            built.diff_ids[0],
            "applied: {applied:?}"
        );

        let (busybox, sh) = with_temp_mount(&LinuxMounter, &mounts, |root| {
            (
                root.join("bin/busybox").is_file(),
                root.join("bin/sh").exists(),
            )
        })?;
        assert!(busybox && sh, "bin/busybox: {busybox}, bin/sh: {sh}");

        let name = fx.unique_id("applied");
        leased
            .snapshots()
            .commit(&name, &key, &Labels::new())
            .await?;
        let info = leased.snapshots().stat(&name).await?;
        assert_eq!((info.kind, info.parent), (SnapshotKind::Committed, None));
        let usage = leased.snapshots().usage(&name).await?;
        assert!(usage.size > 100_000, "busybox is bigger than {usage:?}");
        let info = leased
            .snapshots()
            .update_labels(&name, &labels(&[("oxkit.test/layer", "busybox")]))
            .await?;
        assert_eq!(
            info.labels.get("oxkit.test/layer").map(String::as_str),
            Some("busybox")
        );
        let filter = "labels.\"oxkit.test/layer\"==busybox";
        let found = leased.snapshots().list(&[filter]).await?;
        assert_eq!(
            found.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [name.as_str()],
            "Snapshots.List with {filter}"
        );
        let rows = fx.snapshots()?;
        assert!(
            rows.iter().any(|s| s.key == name && s.kind == "Committed"),
            "{name} not committed in `ctr snapshots ls`: {rows:?}"
        );
        assert!(
            leased
                .snapshots()
                .stat(&key)
                .await
                .unwrap_err()
                .is_not_found(),
            "the active key must be gone after commit"
        );
        leased.snapshots().remove(&name).await?;
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn a_task_on_the_busybox_image_writes_its_output_and_exit_code_and_its_snapshot_commits() -> Result
{
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let built = import_busybox(&fx)?;
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let leased = client.with_lease(&lease);
        let snapshots = leased.snapshots();
        let key = fx.unique_id("step");
        let rootfs = snapshots
            .prepare(&key, Some(&built.chain_ids[0]), &Labels::new())
            .await?;

        let id = fx.unique_id("task");
        let spec = SpecBuilder::new([
            "sh",
            "-c",
            "echo out; echo err >&2; id -u; touch /written; exit 3",
        ])
        .build();
        let container = NewContainer::new(&id, spec, &key);
        let (stdout, stderr) = (
            fx.dir().join(format!("{id}.out")),
            fx.dir().join(format!("{id}.err")),
        );
        let pipes = StdioPipes::to_files(fx.dir(), &id, &stdout, &stderr)?;
        let status = leased
            .tasks()
            .run(&container, &rootfs, &pipes.task_io())
            .await?;
        let (out_bytes, err_bytes) = pipes.finish().await?;
        assert_eq!((out_bytes, err_bytes), (6, 4));
        assert_eq!(status.code, 3, "{status:?}");
        assert!(status.exited_at.is_some());
        assert_eq!(fs::read_to_string(&stdout)?, "out\n0\n");
        assert_eq!(fs::read_to_string(&stderr)?, "err\n");

        assert!(leased.containers().list(&[]).await?.is_empty());
        assert!(leased.tasks().list().await?.is_empty());
        assert_no_containers_or_tasks(&fx)?;

        let name = fx.unique_id("step-done");
        snapshots.commit(&name, &key, &Labels::new()).await?;
        let view = fx.unique_id("view");
        let view_mounts = snapshots.view(&view, Some(&name), &Labels::new()).await?;
        let (written, busybox) = with_temp_mount(&LinuxMounter, &view_mounts, |root| {
            (
                root.join("written").is_file(),
                root.join("bin/busybox").is_file(),
            )
        })?;
        assert!(written, "/written is not in the committed snapshot");
        assert!(
            busybox,
            "the parent's /bin/busybox is not visible in the view"
        );
        snapshots.remove(&view).await?;
        lease.delete(false).await?;
        Ok(())
    })
}

/// The interface names in a `/proc/net/dev`.
fn interfaces(proc_net_dev: &str) -> BTreeSet<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Runs `cat /proc/net/dev` on the busybox image with `network` and returns the interfaces it saw.
async fn interfaces_seen(
    fx: &Fixture,
    client: &Client,
    built: &BuiltImage,
    network: Network,
) -> Result<BTreeSet<String>> {
    let key = fx.unique_id("net");
    let rootfs = client
        .snapshots()
        .prepare(&key, Some(&built.chain_ids[0]), &Labels::new())
        .await?;
    let id = fx.unique_id("net");
    let spec = SpecBuilder::new(["cat", "/proc/net/dev"])
        .network(network)
        .build();
    let out = fx.dir().join(format!("{id}.out"));
    // One combined log through the shim's file:// support.
    let io = TaskIo::combined_file(&out);
    let status = client
        .tasks()
        .run(&NewContainer::new(&id, spec, &key), &rootfs, &io)
        .await?;
    assert!(status.success(), "{status:?}");
    client.snapshots().remove(&key).await?;
    Ok(interfaces(&fs::read_to_string(out)?))
}

#[test]
fn network_none_has_only_loopback_and_host_has_the_hosts_interfaces() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let built = import_busybox(&fx)?;
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let leased = client.with_lease(&lease);
        let none = interfaces_seen(&fx, &leased, &built, Network::None).await?;
        assert_eq!(none, BTreeSet::from(["lo".to_owned()]));
        let host = interfaces_seen(&fx, &leased, &built, Network::Host).await?;
        let ours = interfaces(&fs::read_to_string("/proc/self/net/dev")?);
        assert_eq!(host, ours, "host network must show the host's interfaces");
        assert_no_containers_or_tasks(&fx)?;
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn a_killed_task_reports_sigkill_and_its_container_is_removed() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let built = import_busybox(&fx)?;
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let leased = client.with_lease(&lease);
        let key = fx.unique_id("sleep");
        let rootfs = leased
            .snapshots()
            .prepare(&key, Some(&built.chain_ids[0]), &Labels::new())
            .await?;
        let id = fx.unique_id("sleep");
        let spec = SpecBuilder::new(["sleep", "1000"]).build();
        let created = leased
            .containers()
            .create(&NewContainer::new(&id, spec, &key))
            .await?;
        assert_eq!(created.runtime, oxkit_containerd::RUNC_RUNTIME);
        assert_eq!(created.snapshot_key, key);
        assert_eq!(
            created.spec.as_ref().map(|s| s["process"]["args"].clone()),
            Some(serde_json::json!(["sleep", "1000"]))
        );

        let mut task = leased
            .tasks()
            .create(&id, &rootfs, &TaskIo::default())
            .await?;
        task.start().await?;
        assert!(task.pid() > 0);
        let listed = leased.tasks().list().await?;
        assert_eq!(
            listed,
            std::slice::from_ref(&id),
            "Tasks.List while it runs"
        );
        let running = fx.ctr(["tasks", "ls"])?;
        assert!(
            running
                .lines()
                .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
            "{id} not running in `ctr tasks ls`:\n{running}"
        );
        let err = leased.containers().delete(&id).await.unwrap_err();
        assert!(
            err.is_failed_precondition(),
            "deleting a container with a running task: {err}"
        );
        task.kill(9, true).await?;
        let status = task.wait().await?;
        assert_eq!(status.code, 128 + 9, "{status:?}");
        let deleted = task.delete().await?;
        assert_eq!(deleted.code, 128 + 9);
        leased.containers().delete(&id).await?;
        let err = leased.containers().get(&id).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_no_containers_or_tasks(&fx)?;
        leased.snapshots().remove(&key).await?;
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn overlay_with_lowerdirs_longer_than_a_page_mounts() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let base = fx.dir().join("layers");
    let mut lowers = Vec::new();
    for i in 0..80 {
        let dir = base.join(format!("{i:03}-{}", "l".repeat(60)));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("file-{i}")), format!("{i}"))?;
        fs::write(dir.join("top"), format!("{i}"))?;
        lowers.push(dir.display().to_string());
    }
    let option = format!("lowerdir={}", lowers.join(":"));
    assert!(
        option.len() > 4096,
        "the test needs options longer than a page"
    );
    let mounts = [Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![option],
    }];
    let (files, top) = with_temp_mount(&LinuxMounter, &mounts, |root: &Path| {
        let files = (0..80)
            .filter(|i| root.join(format!("file-{i}")).is_file())
            .count();
        (files, fs::read_to_string(root.join("top")).ok())
    })?;
    assert_eq!(files, 80, "every lower dir must be visible");
    assert_eq!(
        top.as_deref(),
        Some("0"),
        "the first lowerdir is the top one"
    );
    Ok(())
}

/// Polls containerd (each call lets background cleanups run) until `id` has no task and no
/// container, or fails after a generous number of rounds.
async fn wait_gone(client: &Client, id: &str) -> Result {
    for _ in 0..2000 {
        let tasks = client.tasks().list().await?;
        let containers = client.containers().list(&[]).await?;
        if !tasks.iter().any(|t| t == id) && !containers.iter().any(|c| c.id == id) {
            return Ok(());
        }
    }
    Err(format!("task or container {id} still there").into())
}

/// Waits (polling containerd) until `id`'s task runs.
async fn wait_running(client: &Client, id: &str) -> Result {
    for _ in 0..2000 {
        if client.tasks().list().await?.iter().any(|t| t == id) {
            return Ok(());
        }
    }
    Err(format!("task {id} never appeared in Tasks.List").into())
}

#[test]
fn a_cancelled_run_and_a_dropped_task_are_cleaned_up() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let built = import_busybox(&fx)?;
    in_runtime(async {
        let client = connect(&fx).await?;
        let lease = test_lease(&client).await?;
        let leased = client.with_lease(&lease);

        // `Tasks::run` dropped while its process runs: the guard kills and deletes both.
        let key = fx.unique_id("cancel");
        let rootfs = leased
            .snapshots()
            .prepare(&key, Some(&built.chain_ids[0]), &Labels::new())
            .await?;
        let id = fx.unique_id("cancel");
        let spec = SpecBuilder::new(["sleep", "1000"]).build();
        let container = NewContainer::new(&id, spec, &key);
        let io = TaskIo::default();
        let tasks = leased.tasks();
        let outcome = until(
            tasks.run(&container, &rootfs, &io),
            wait_running(&leased, &id),
        )
        .await;
        match outcome {
            Err(running) => running?,
            Ok(finished) => panic!("`sleep 1000` finished: {finished:?}"),
        }
        wait_gone(&leased, &id).await?;

        // A started `Task` handle dropped without delete: killed and deleted in the background.
        let id = fx.unique_id("dropped");
        let spec = SpecBuilder::new(["sleep", "1000"]).build();
        leased
            .containers()
            .create(&NewContainer::new(&id, spec, &key))
            .await?;
        let mut task = leased.tasks().create(&id, &rootfs, &io).await?;
        task.start().await?;
        drop(task);
        for _ in 0..2000 {
            if !leased.tasks().list().await?.contains(&id) {
                break;
            }
        }
        assert!(
            !leased.tasks().list().await?.contains(&id),
            "the dropped task still runs"
        );
        leased.containers().delete(&id).await?;
        assert_no_containers_or_tasks(&fx)?;
        leased.snapshots().remove(&key).await?;
        lease.delete(false).await?;
        Ok(())
    })
}
