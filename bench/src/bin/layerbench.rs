//! `layerbench DIR gzip|zstd|uncompressed OUT`: writes DIR as an OCI layer with oxkit's layer
//! writer and prints `{"compression":…,"ms":…,"size":…}`, for bench/export.sh to set beside the
//! `tar | gzip` and `tar | zstd -T0` floors.

use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use anyhow::Context;
use oxkit_layer::{write_layer, Compression, LayerOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, compression, out] = args.as_slice() else {
        anyhow::bail!("usage: layerbench DIR gzip|zstd|uncompressed OUT");
    };
    let compression = match compression.as_str() {
        "gzip" => Compression::Gzip { level: 6 },
        "zstd" => Compression::Zstd { level: 3 },
        "uncompressed" => Compression::Uncompressed,
        other => anyhow::bail!("unknown compression {other:?}"),
    };
    let start = Instant::now();
    let file = File::create(out).with_context(|| format!("failed to create {out}"))?;
    let layer = write_layer(
        dir.as_ref(),
        BufWriter::with_capacity(1 << 20, file),
        &LayerOptions {
            compression,
            source_date_epoch: None,
        },
    )?;
    println!(
        "{{\"compression\":\"{}\",\"ms\":{:.1},\"size\":{}}}",
        args[2],
        start.elapsed().as_secs_f64() * 1e3,
        layer.size
    );
    Ok(())
}
