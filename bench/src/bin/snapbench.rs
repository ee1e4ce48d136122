//! `snapbench`: times snapshot operations through containerd's Snapshots API for one
//! snapshotter, so the built-in overlayfs and oxkit can be compared in one run. Each round
//! builds a chain of committed snapshots (Prepare, Mounts, Commit per layer), stats each, then
//! removes the chain top-down. Prints one JSON line per phase with the median of the rounds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, CommitSnapshotRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use tonic::transport::Channel;
use tonic::Request;

#[derive(Parser)]
struct Args {
    /// containerd's socket.
    #[arg(long)]
    address: String,
    /// Snapshotter to measure (overlayfs, oxkit, ...).
    #[arg(long)]
    snapshotter: String,
    /// containerd namespace to work in.
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Layers per chain.
    #[arg(long, default_value_t = 100)]
    layers: usize,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

struct Bench {
    client: SnapshotsClient<Channel>,
    args: Args,
}

impl Bench {
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert(
            "containerd-namespace",
            self.args.namespace.parse().expect("namespace"),
        );
        req
    }

    async fn round(&mut self, round: usize) -> anyhow::Result<[Duration; 3]> {
        let sn = self.args.snapshotter.clone();
        let gc: HashMap<String, String> =
            [("containerd.io/gc.root".to_string(), "bench".to_string())].into();
        let name = |i: usize| format!("snapbench-{round}-{i}");
        let start = Instant::now();
        let mut parent = String::new();
        for i in 0..self.args.layers {
            let key = format!("{}-active", name(i));
            let r = self.req(PrepareSnapshotRequest {
                snapshotter: sn.clone(),
                key: key.clone(),
                parent: parent.clone(),
                labels: gc.clone(),
            });
            self.client.prepare(r).await.context("prepare")?;
            let r = self.req(MountsRequest {
                snapshotter: sn.clone(),
                key: key.clone(),
            });
            self.client.mounts(r).await.context("mounts")?;
            let r = self.req(CommitSnapshotRequest {
                snapshotter: sn.clone(),
                name: name(i),
                key,
                labels: gc.clone(),
            });
            self.client.commit(r).await.context("commit")?;
            parent = name(i);
        }
        let build = start.elapsed();
        let start = Instant::now();
        for i in 0..self.args.layers {
            let r = self.req(StatSnapshotRequest {
                snapshotter: sn.clone(),
                key: name(i),
            });
            self.client.stat(r).await.context("stat")?;
        }
        let stat = start.elapsed();
        let start = Instant::now();
        for i in (0..self.args.layers).rev() {
            let r = self.req(RemoveSnapshotRequest {
                snapshotter: sn.clone(),
                key: name(i),
            });
            self.client.remove(r).await.context("remove")?;
        }
        Ok([build, stat, start.elapsed()])
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = containerd_client::connect(&args.address)
        .await
        .context("failed to connect to containerd")?;
    let mut bench = Bench {
        client: SnapshotsClient::new(channel),
        args,
    };
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for round in 0..bench.args.rounds {
        for (p, d) in phases.iter_mut().zip(bench.round(round).await?) {
            p.push(d);
        }
    }
    for (phase, v) in ["prepare_mounts_commit_chain", "stat_each", "remove_chain"]
        .iter()
        .zip(phases)
    {
        println!(
            "{{\"snapshotter\":\"{}\",\"phase\":\"{phase}\",\"layers\":{},\"median_ms\":{:.2}}}",
            bench.args.snapshotter,
            bench.args.layers,
            median(v).as_secs_f64() * 1e3
        );
    }
    Ok(())
}
