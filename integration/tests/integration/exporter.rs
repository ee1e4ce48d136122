//! The image exporter (`oxkit-exporter`) against a real containerd with oxkitd: a build step's
//! snapshot on busybox becomes an image that `ctr run` starts through oxkit without unpacking,
//! and through containerd's own overlayfs snapshotter by unpacking the exported blobs.

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;

use sha2::Digest as _;

use oxkit_containerd::testing::block_on;
use oxkit_containerd::{with_temp_mount, Client, Labels, LeaseOptions, LinuxMounter};
use oxkit_exporter::{BaseImage, ImageExportOptions, ImageExporter};
use oxkit_integration::{busybox_image, Fixture, TestResult, NAMESPACE};

const BUSYBOX: &str = "docker.io/library/busybox:export";
const HELLO: &str = "docker.io/library/hello:dev";

/// Builds "a step" by hand (prepare on busybox, write, delete, commit) and exports it.
async fn build_and_export(
    fx: &Fixture,
    base_chain: &str,
    compression: &str,
) -> Result<oxkit_exporter::ExportedImage, Box<dyn Error>> {
    let client = Client::connect(fx.containerd_address(), NAMESPACE).await?;
    let lease = client.leases().create(LeaseOptions::default()).await?;
    let c = client.with_lease(&lease);
    let mounts = c
        .snapshots()
        .prepare("step-1", Some(base_chain), &Labels::new())
        .await?;
    with_temp_mount(&LinuxMounter, &mounts, |root| -> std::io::Result<()> {
        fs::write(root.join("hello.txt"), "hi from oxkit\n")?;
        fs::create_dir(root.join("app"))?;
        fs::write(root.join("app/data"), "x".repeat(10_000))?;
        fs::remove_file(root.join("bin/vi"))
    })??;
    c.snapshots()
        .commit("step-1-done", "step-1", &Labels::new())
        .await?;

    let host = oxkit_llb::op::Platform::host();
    let base = BaseImage::load(&c, BUSYBOX, &host.os, &host.architecture).await?;
    let attrs: BTreeMap<String, String> = [
        ("name".to_string(), HELLO.to_string()),
        ("compression".to_string(), compression.to_string()),
    ]
    .into();
    let options = ImageExportOptions::parse(&attrs)?;
    let out = ImageExporter::new(c.clone(), fx.dir())
        .export("step-1-done", Some(&base), &options)
        .await?;
    // The blob made for the build snapshot is recorded on it, for later exports to reuse.
    let labels = c.snapshots().stat("step-1-done").await?.labels;
    assert!(
        labels
            .keys()
            .any(|k| k.starts_with(&format!("oxkit.layer.{compression}"))),
        "{labels:?}"
    );
    // The image must hold its blobs and snapshots on its own, without the build's lease.
    lease.delete(true).await?;
    Ok(out)
}

fn read_only(path: &std::path::Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().readonly())
}

fn export_runs_both_ways(compression: &str) -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let built = busybox_image(BUSYBOX)?.write_archive(&fx.image_path("busybox.tar"))?;
    fx.import(&built)?;
    let out = match block_on(build_and_export(&fx, &built.chain_ids[0], compression)) {
        Ok(out) => out,
        Err(e) => panic!("export failed: {e}"),
    };
    assert_eq!(out.new_layers, 1);
    assert_eq!(out.chain_ids.len(), 2);
    assert_eq!(out.chain_ids[0], built.chain_ids[0]);
    fx.collect_garbage()?;

    // The new layer was handed to containerd as a file in its blob directory: whole, read-only,
    // its content the digest the manifest names.
    let blobs = fx
        .dir()
        .join("containerd/root/io.containerd.content.v1.content/blobs/sha256");
    let blob = |digest: &str| blobs.join(digest.trim_start_matches("sha256:"));
    let read = |path: std::path::PathBuf| {
        fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(blob(out.manifest.digest.as_str()))).expect("a manifest");
    let top = manifest["layers"][1]["digest"]
        .as_str()
        .expect("two layers");
    let data = read(blob(top));
    assert_eq!(
        format!("sha256:{:x}", sha2::Sha256::digest(&data)),
        top,
        "the stored layer is the one the manifest names"
    );
    assert_eq!(
        manifest["layers"][1]["size"].as_u64(),
        Some(data.len() as u64)
    );
    assert!(read_only(&blob(top)));

    let names: Vec<String> = fx.snapshots()?.into_iter().map(|s| s.key).collect();
    assert!(
        names.contains(&out.chain_ids[1]),
        "the top layer is a snapshot named by its chain ID: {names:?}"
    );
    let check = [
        "sh",
        "-c",
        "cat /hello.txt; wc -c < /app/data; test -e /bin/vi && echo vi-present || echo vi-gone",
    ];
    let before = fx.snapshots()?;
    let output = fx.run(HELLO, &check)?;
    assert_eq!(
        output.split_whitespace().collect::<Vec<_>>(),
        ["hi", "from", "oxkit", "10000", "vi-gone"]
    );
    assert_eq!(
        fx.snapshots()?,
        before,
        "running through oxkit unpacked nothing"
    );

    // containerd's own snapshotter unpacks the exported blobs: whiteouts and all must be right.
    let id = fx.unique_id("overlayfs");
    let mut args = vec![
        "run",
        "--rm",
        "--snapshotter",
        "overlayfs",
        HELLO,
        id.as_str(),
    ];
    args.extend_from_slice(&check);
    let output = fx.ctr(args)?;
    assert_eq!(
        output.split_whitespace().collect::<Vec<_>>(),
        ["hi", "from", "oxkit", "10000", "vi-gone"]
    );
    let listed = fx.ctr(["images", "ls", "-q"])?;
    assert!(listed.lines().any(|l| l == HELLO), "{listed}");
    Ok(())
}

#[test]
fn exported_image_runs_without_unpacking_gzip() -> TestResult {
    export_runs_both_ways("gzip")
}

#[test]
fn exported_image_runs_without_unpacking_zstd() -> TestResult {
    export_runs_both_ways("zstd")
}
