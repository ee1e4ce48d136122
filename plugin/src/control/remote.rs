//! A build's cache exports and imports (`--export-cache`, `--import-cache`): parsed with the
//! request, imports opened before the solve (each a progress step; one that cannot be read is
//! a warning, not a failure), exports written after the image export (a failure fails the build
//! unless `ignore-error=true`). The work is `oxkit-remotecache`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxkit_llb::op::Platform;
use oxkit_llb::source::ImageRef;
use oxkit_remotecache::{
    CacheExport, CacheExporter, CacheImport, ExportTarget, ImportedCache, INLINE_CACHE_FIELD,
};
use oxkit_solver::{KeyedRecord, RemoteRef};
use oxkit_worker::{registry_credentials, SessionRef, Worker};
use tonic::Status;

use crate::proto;

use super::{Events, Step};

/// A build's cache exports and imports.
#[derive(Debug, Default)]
pub(super) struct CacheJob {
    pub(super) exports: Vec<CacheExport>,
    pub(super) imports: Vec<CacheImport>,
}

impl CacheJob {
    /// Parses the request's entries; a malformed one is the request's error.
    pub(super) fn parse(
        exports: &[proto::CacheOptionsEntry],
        imports: &[proto::CacheOptionsEntry],
    ) -> Result<Self, Status> {
        let attrs = |e: &proto::CacheOptionsEntry| -> BTreeMap<String, String> {
            e.attrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let invalid = |e: oxkit_remotecache::CacheError| Status::invalid_argument(e.to_string());
        Ok(CacheJob {
            exports: exports
                .iter()
                .map(|e| CacheExport::parse(&e.r#type, &attrs(e)).map_err(invalid))
                .collect::<Result<_, _>>()?,
            imports: imports
                .iter()
                .map(|e| CacheImport::parse(&e.r#type, &attrs(e)).map_err(invalid))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the solve must list its records (for an export).
    pub(super) fn exports_any(&self) -> bool {
        !self.exports.is_empty()
    }

    /// Whether an export goes into the image's config.
    pub(super) fn inline(&self) -> bool {
        self.exports
            .iter()
            .any(|e| e.target == ExportTarget::Inline)
    }
}

/// Opens the build's imports, each shown as a step; `None` when none could be read.
pub(super) async fn open_imports(
    worker: &Worker,
    imports: &[CacheImport],
    sessions: &[SessionRef],
    tx: &Events,
) -> Option<RemoteRef> {
    let mut imported = ImportedCache::new(worker.clone());
    let host = Platform::host();
    for import in imports {
        let step = Step::new(
            format!("cache-import-{}", import.describe()),
            format!("importing cache manifest from {}", import.describe()),
        );
        step.started(tx).await;
        let opened = match import {
            CacheImport::Registry { reference } => match ImageRef::parse(reference) {
                Err(e) => Err(format!("{reference:?}: {e}")),
                Ok(parsed) => {
                    let credentials = registry_credentials(sessions, &parsed.domain).await;
                    match worker
                        .registry()
                        .with_credentials(&parsed.domain, credentials)
                    {
                        Err(e) => Err(e.to_string()),
                        Ok(registry) => imported
                            .add_registry(
                                registry,
                                &parsed.to_string(),
                                &host.os,
                                &host.architecture,
                            )
                            .await
                            .map_err(|e| e.chain()),
                    }
                }
            },
            CacheImport::Local { src, tag } => {
                imported.add_layout(src, tag).await.map_err(|e| e.chain())
            }
        };
        match opened {
            Ok(summary) => {
                let mut line = format!("{} records", summary.records);
                if summary.skipped > 0 {
                    line.push_str(&format!("; {} unusable records skipped", summary.skipped));
                }
                step.log(tx, format!("{line}\n"));
            }
            Err(e) => {
                tracing::warn!(cache = import.describe(), error = e, "cache import skipped");
                step.log(tx, format!("warning: cache import skipped: {e}\n"));
            }
        }
        step.completed(tx).await;
    }
    (!imported.is_empty()).then(|| RemoteRef(Arc::new(imported)))
}

/// The image config field of an inline cache of `records` for an image of snapshot `top`.
pub(super) async fn inline_field(
    worker: &Worker,
    scratch: &std::path::Path,
    records: &[KeyedRecord],
    top: &str,
) -> Result<(String, serde_json::Value), Status> {
    let exporter = CacheExporter::new(worker.client().clone(), scratch);
    let document = exporter
        .inline_document(records, top)
        .await
        .map_err(|e| Status::internal(format!("inline cache: {}", e.chain())))?;
    Ok((
        INLINE_CACHE_FIELD.to_owned(),
        serde_json::to_value(&document).expect("a cache document always serialises"),
    ))
}

/// A finished solve, as a cache export sees it.
pub(super) struct Solved<'a> {
    pub(super) worker: &'a Worker,
    /// Where layer files are written.
    pub(super) scratch: &'a std::path::Path,
    /// The solve's records.
    pub(super) records: &'a [KeyedRecord],
    /// The result's snapshot.
    pub(super) top: &'a str,
    /// The build's client sessions (registry credentials).
    pub(super) sessions: &'a [SessionRef],
}

/// Writes the build's registry and local cache exports of `solved`, each shown as a step; adds
/// what they did to `response`.
pub(super) async fn export_caches(
    solved: &Solved<'_>,
    exports: &[CacheExport],
    tx: &Events,
    response: &mut BTreeMap<String, String>,
) -> Result<(), Status> {
    let exporter = CacheExporter::new(solved.worker.client().clone(), solved.scratch);
    for export in exports {
        let destination = match &export.target {
            ExportTarget::Inline => continue,
            ExportTarget::Registry { reference } => reference.clone(),
            ExportTarget::Local { dest, tag } => format!("{}:{tag}", dest.display()),
        };
        let step = Step::new(
            format!("cache-export-{destination}"),
            format!("exporting cache to {destination}"),
        );
        step.started(tx).await;
        let result = export_one(&exporter, solved, export, &step, tx).await;
        match result {
            Ok(records) => {
                response.insert(format!("cache.{destination}.records"), records.to_string());
                step.completed(tx).await;
            }
            Err(message) if export.ignore_error => {
                tracing::warn!(
                    cache = destination,
                    error = message,
                    "cache export failed; ignored"
                );
                step.log(
                    tx,
                    format!("warning: cache export failed (ignored): {message}\n"),
                );
                step.completed(tx).await;
            }
            Err(message) => {
                step.failed(tx, &message).await;
                return Err(Status::internal(format!(
                    "exporting cache to {destination} failed: {message}"
                )));
            }
        }
    }
    Ok(())
}

/// One export; returns how many records it wrote.
async fn export_one(
    exporter: &CacheExporter,
    solved: &Solved<'_>,
    export: &CacheExport,
    step: &Step,
    tx: &Events,
) -> Result<usize, String> {
    let document = exporter
        .document(solved.records, solved.top, export.mode, export.compression)
        .await
        .map_err(|e| e.chain())?;
    let manifest = exporter
        .write_manifest(&document)
        .await
        .map_err(|e| e.chain())?;
    match &export.target {
        ExportTarget::Inline => {}
        ExportTarget::Registry { reference } => {
            let parsed =
                ImageRef::parse(reference).map_err(|e| format!("ref {reference:?}: {e}"))?;
            let credentials = registry_credentials(solved.sessions, &parsed.domain).await;
            let registry = solved
                .worker
                .registry()
                .with_credentials(&parsed.domain, credentials)
                .map_err(|e| e.to_string())?;
            let log = |line: String| step.log(tx, line);
            let report = exporter
                .push(&registry, &parsed.to_string(), &manifest.manifest, &log)
                .await
                .map_err(|e| e.chain())?;
            step.log(
                tx,
                format!(
                    "pushed {} records: {} blobs uploaded, {} already there\n",
                    document.records.len(),
                    report.uploaded,
                    report.skipped
                ),
            );
        }
        ExportTarget::Local { dest, tag } => {
            let written = exporter
                .write_layout(dest, tag, &manifest)
                .await
                .map_err(|e| e.chain())?;
            step.log(
                tx,
                format!(
                    "wrote {} records: {written} new blobs in {}\n",
                    document.records.len(),
                    dest.display()
                ),
            );
        }
    }
    Ok(document.records.len())
}
