//! Run records (`<store>/runs/<run-id>.json`): what each `swestar run`
//! did, stage by stage. Written when a run starts, as stages change (at
//! most once a second) and at its end, so a killed run still leaves an
//! honest record. Never needed to reuse the cache. Beside each, the run's
//! key journal (`<run-id>.keys`): every key it looked up or computed,
//! appended before the lookup, for gc.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    pub workflow_path: PathBuf,
    pub pid: u32,
    /// The host the orchestrator runs on (its pid means something there).
    #[serde(default)]
    pub host: String,
    pub started: String,
    pub finished: Option<String>,
    pub status: RunStatus,
    /// local | slurm
    #[serde(default)]
    pub executor: String,
    /// SLURM: job-state queries made (one `sacct` or `squeue` per poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
    /// The `--set` overrides the run was given, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    pub stages: Vec<StageRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub variants: Vec<String>,
    pub status: StageStatus,
    pub key: Option<String>,
    pub reason: Option<String>,
    pub duration_s: Option<f64>,
    pub rows: Option<u64>,
    pub log: Option<PathBuf>,
    /// SLURM: the stage's jobs and its shards' states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsSummary>,
}

/// How a run stands. `Killed` is never written: it is what `running`
/// means once the recorded orchestrator is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
    Killed,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Killed => "killed (the orchestrator died before finishing)",
        })
    }
}

/// Where a stage of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Outside the stages the run was asked for.
    NotSelected,
    /// To run, not started yet.
    Pending,
    /// Its artifact was already in the store.
    Cached,
    Running,
    /// Ran and its artifact is in the store.
    Committed,
    Failed,
    /// Not run because an upstream stage failed.
    Skipped,
    Interrupted,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::NotSelected => "not_selected",
            StageStatus::Pending => "pending",
            StageStatus::Cached => "cached",
            StageStatus::Running => "running",
            StageStatus::Committed => "committed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` so that width flags line statuses up in tables.
        f.pad(self.as_str())
    }
}

/// A stage's jobs on a cluster (SLURM), for run records and `swestar status`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobsSummary {
    pub job_ids: Vec<u64>,
    pub queued: u32,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub retried: u32,
    /// Shards whose jobs an earlier, killed orchestrator had submitted.
    #[serde(default)]
    pub adopted: u32,
}

/// A run id: sortable by start time, unique enough across hosts.
pub fn new_run_id() -> String {
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let salt = blake3::hash(format!("{}{:?}", std::process::id(), std::time::Instant::now()).as_bytes());
    format!("{compact}-{}", &salt.to_hex()[..6])
}

impl Store {
    pub fn write_run(&self, record: &RunRecord) -> Result<(), StoreError> {
        let path = self.root.join("runs").join(format!("{}.json", record.id));
        let bytes = serde_json::to_vec_pretty(record).expect("plain data");
        super::write_atomic(&path, &bytes).map_err(|e| StoreError::io(&path, e))
    }

    /// All run records, oldest first. Unreadable ones are skipped.
    pub fn runs(&self) -> Vec<RunRecord> {
        let mut out: Vec<RunRecord> = crate::files_ending(&self.root.join("runs"), ".json")
            .filter_map(|(_, path)| serde_json::from_slice(&std::fs::read(path).ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn remove_run(&self, id: &str) -> Result<(), StoreError> {
        let journal = self.root.join("runs").join(format!("{id}.keys"));
        match std::fs::remove_file(&journal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&journal, e)),
        }
        let path = self.root.join("runs").join(format!("{id}.json"));
        std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))
    }

    /// Appends keys a run is about to look up or compute to its key
    /// journal (`runs/<id>.keys`, one per line), durably: gc keeps every
    /// key journalled (see `gc`). Cheaper than rewriting the run record
    /// for every key.
    pub fn journal_keys(&self, id: &str, keys: &[crate::cache::CacheKey]) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.root.join("runs").join(format!("{id}.keys"));
        let mut text = String::with_capacity(keys.len() * 65);
        for k in keys {
            text.push_str(k.as_str());
            text.push('\n');
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_data()
            })
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Every run's key journal: run id, keys.
    pub fn journals(&self) -> Vec<(String, Vec<crate::cache::CacheKey>)> {
        crate::files_ending(&self.root.join("runs"), ".keys")
            .filter_map(|(name, path)| {
                let text = std::fs::read_to_string(path).ok()?;
                Some((name, text.lines().filter_map(crate::cache::CacheKey::parse).collect()))
            })
            .collect()
    }
}
