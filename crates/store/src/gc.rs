//! Garbage collection: removes objects that no ref (the last committed key
//! of any workflow's stage) and no kept run record names, plus leftovers of
//! interrupted stages.
//!
//! It runs beside live runs. It holds the `gc` lock, and a run writes a key
//! into its key journal before it looks that key up, then passes through the
//! `gc` lock (takes and drops it) before using what it found: so either gc
//! read the record with the key in it, or the run looks after gc is done
//! and finds the key missing, and computes it. Staging areas and objects
//! of keys whose lock is held are left alone, as are the records of live
//! runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{Attempt, Guard, Locks, Store, StoreError};
use crate::cache::CacheKey;

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<(CacheKey, u64)>,
    pub kept: usize,
    pub leftovers: Vec<PathBuf>,
    pub runs_removed: Vec<String>,
    /// Staging areas and objects left alone because a live run holds
    /// their key.
    pub in_use: Vec<(PathBuf, String)>,
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|(_, b)| b).sum()
    }
}

/// With `keep_runs = Some(n)`, only the newest `n` run records of each
/// workflow count as references (older ones are deleted, except those of
/// live runs). `_gc` is the held `gc` lock.
pub fn collect(
    store: &Store,
    locks: &Locks,
    _gc: &Guard,
    keep_runs: Option<usize>,
    dry_run: bool,
) -> Result<GcReport, StoreError> {
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
            let live_run = locks.held_by_live(&format!("run-{}", run.id)).is_some();
            if i < drop && !live_run {
                report.runs_removed.push(run.id.clone());
                continue;
            }
            live.extend(run.stages.iter().filter_map(|s| s.key.as_deref().and_then(CacheKey::parse)));
        }
    }
    // What a run journalled is live, unless its record goes now (a live
    // run's never does); a journal without a record is a run starting.
    let removed: BTreeSet<&str> = report.runs_removed.iter().map(String::as_str).collect();
    for (id, keys) in store.journals() {
        if !removed.contains(id.as_str()) {
            live.extend(keys);
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
            if let Some(owner) = locks.held_by_live(&format!("key-{key}")) {
                report.kept += 1;
                report.in_use.push((entry.path(), describe(owner)));
                continue;
            }
            let bytes = dir_size(&entry.path());
            if !dry_run {
                std::fs::remove_dir_all(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
            }
            report.removed.push((key, bytes));
        }
    }
    // A staging area is only ever written under its key's lock: taking
    // the lock proves nobody is computing into it.
    for entry in std::fs::read_dir(store.root.join("staging")).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let held = match CacheKey::parse(&name) {
            Some(key) => match locks.try_lock(&format!("key-{key}"))? {
                Attempt::Acquired(g) => Some(g),
                Attempt::Held(owner) => {
                    report.in_use.push((entry.path(), describe(owner)));
                    continue;
                }
            },
            None => None,
        };
        if !dry_run {
            std::fs::remove_dir_all(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
        }
        drop(held);
        report.leftovers.push(entry.path());
    }
    for entry in std::fs::read_dir(store.root.join("quarantine")).into_iter().flatten().flatten() {
        if !dry_run {
            std::fs::remove_dir_all(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
        }
        report.leftovers.push(entry.path());
    }
    // Temporary files of atomic writes that a full disk or a kill cut
    // short. One younger than the stale time may be being written now.
    let stale = locks.times().stale;
    for sub in ["runs", "refs", "locks"] {
        for entry in std::fs::read_dir(store.root.join(sub)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= stale);
            if name.starts_with('.') && name.ends_with(".tmp") && old {
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

fn describe(owner: Option<super::lock::Owner>) -> String {
    owner.map(|o| o.to_string()).unwrap_or_else(|| "a run being set up".into())
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}
