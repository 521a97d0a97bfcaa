//! Garbage collection: removes objects that no ref (the last committed key
//! of any workflow's stage) and no kept run record names, plus leftovers of
//! interrupted stages. Runs under the store lock, so no run is writing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{Store, StoreError};
use crate::cache::CacheKey;

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<(CacheKey, u64)>,
    pub kept: usize,
    pub leftovers: Vec<PathBuf>,
    pub runs_removed: Vec<String>,
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|(_, b)| b).sum()
    }
}

/// With `keep_runs = Some(n)`, only the newest `n` run records of each
/// workflow count as references (older ones are deleted).
pub fn collect(store: &Store, keep_runs: Option<usize>, dry_run: bool) -> Result<GcReport, StoreError> {
    let mut report = GcReport::default();
    let mut live: BTreeSet<CacheKey> = BTreeSet::new();
    for (_, refs) in store.all_refs() {
        for stages in refs.variants.values() {
            live.extend(stages.values().cloned());
        }
    }
    let mut by_workflow: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for run in store.runs() {
        by_workflow.entry(run.workflow.clone()).or_default().push(run);
    }
    for runs in by_workflow.values() {
        let drop = keep_runs.map(|n| runs.len().saturating_sub(n)).unwrap_or(0);
        for (i, run) in runs.iter().enumerate() {
            if i < drop {
                report.runs_removed.push(run.id.clone());
                continue;
            }
            live.extend(run.stages.iter().filter_map(|s| s.key.as_deref().and_then(CacheKey::parse)));
        }
    }
    let objects = store.root.join("objects");
    for shard in std::fs::read_dir(&objects).map_err(|e| StoreError::io(&objects, e))?.flatten() {
        for entry in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = CacheKey::parse(&name) else {
                continue;
            };
            if live.contains(&key) {
                report.kept += 1;
                continue;
            }
            let bytes = dir_size(&entry.path());
            if !dry_run {
                std::fs::remove_dir_all(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
            }
            report.removed.push((key, bytes));
        }
    }
    for sub in ["staging", "quarantine"] {
        for entry in std::fs::read_dir(store.root.join(sub)).into_iter().flatten().flatten() {
            if !dry_run {
                std::fs::remove_dir_all(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
            }
            report.leftovers.push(entry.path());
        }
    }
    // Temporary files of atomic writes that a full disk or a kill cut
    // short; gc runs under the store lock, so none is being written.
    for sub in ["runs", "refs"] {
        for entry in std::fs::read_dir(store.root.join(sub)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                if !dry_run {
                    std::fs::remove_file(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
                }
                report.leftovers.push(entry.path());
            }
        }
    }
    if !dry_run {
        for id in &report.runs_removed {
            store.remove_run(id)?;
            let _ = std::fs::remove_dir_all(store.logs_dir(id));
        }
    }
    Ok(report)
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}
