//! `copybench [FILES] [DIRS] [ROUNDS]`: the per-file cost of a `COPY` of many small files. Makes a
//! tree of FILES (20000) ten-byte files in DIRS (200) directories, then times, each ROUNDS (3)
//! times, what a build does with it: the copy's content checksum (its cache key), the file op's
//! copy into a fresh directory (sharing the files by hard links, as between snapshots), and the layer (gzip -6) of the copied tree. Prints the medians as
//! `{"files":…,"checksum_ms":…,"copy_ms":…,"layer_ms":…}`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use oxkit_fileop::{ChecksumOptions, EtcFiles, LayerPaths};
use oxkit_layer::{write_layer, Compression, LayerOptions};
use oxkit_llb::op::{Copy, FileAction, FileActionKind, FileInput};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().with_context(|| format!("not a number: {a}")))
        .collect::<anyhow::Result<_>>()?;
    let files = args.first().copied().unwrap_or(20_000);
    let dirs = args.get(1).copied().unwrap_or(200).max(1);
    let rounds = args.get(2).copied().unwrap_or(3).max(1);

    let work = std::env::temp_dir().join(format!("oxcopybench.{}", std::process::id()));
    let src = work.join("src");
    for i in 0..files {
        let d = src.join(format!("d{:03}", i % dirs));
        if i < dirs {
            std::fs::create_dir_all(&d).context("failed to make the source tree")?;
        }
        std::fs::write(d.join(format!("f{i:05}")), format!("file {i:05}\n"))
            .context("failed to make the source tree")?;
    }
    let result = run(&work, &src, files, rounds);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(work: &Path, src: &Path, files: usize, rounds: usize) -> anyhow::Result<()> {
    let copy = Copy {
        src: "/".into(),
        dest: "/ctx/".into(),
        dir_copy_contents: true,
        create_dest_path: true,
        follow_symlink: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        ..Default::default()
    };
    let action = FileAction {
        input: FileInput::Input(0),
        secondary_input: FileInput::Input(1),
        output: Some(0),
        kind: FileActionKind::Copy(copy),
    };
    let opts = ChecksumOptions {
        follow_symlinks: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        ..Default::default()
    };
    let (mut checksum, mut copy, mut layer) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = Instant::now();
        oxkit_fileop::content_checksum(src, &["/".to_string()], &opts)?;
        checksum.push(t.elapsed().as_secs_f64() * 1e3);

        let dest = work.join(format!("dest{round}"));
        std::fs::create_dir(&dest)?;
        let t = Instant::now();
        // As between two snapshots on one filesystem: files are shared by hard links.
        let paths = LayerPaths {
            source: Some((src.to_path_buf(), vec![src.to_path_buf()])),
            dest: Some((dest.clone(), dest.clone())),
            ..Default::default()
        };
        oxkit_fileop::apply(&dest, &action, Some(src), &EtcFiles::new(), Some(&paths))?;
        copy.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        write_layer(
            &dest,
            std::io::sink(),
            &LayerOptions {
                compression: Compression::Gzip { level: 6 },
                source_date_epoch: None,
            },
        )?;
        layer.push(t.elapsed().as_secs_f64() * 1e3);
        std::fs::remove_dir_all(&dest)?;
    }
    println!(
        "{{\"files\":{files},\"checksum_ms\":{:.1},\"copy_ms\":{:.1},\"layer_ms\":{:.1}}}",
        median(checksum),
        median(copy),
        median(layer)
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
