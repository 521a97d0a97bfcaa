//! What a stage body receives: the resolved stage ([`Job`]), the shard it
//! runs ([`ShardRun`], with its cancellation handle), and how it fails
//! ([`StageError`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::TableFormat;
use crate::StageKind;

/// A resolved stage, as `swestar exec` receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub stage: String,
    pub key: String,
    pub kind: StageKind,
    /// The workflow's directory: commands run here.
    pub workdir: PathBuf,
    pub inputs: IndexMap<String, JobInput>,
    pub params: BTreeMap<String, Value>,
    /// Declared environment variables to pass through.
    pub env: Vec<String>,
    /// The stage's staging directory: finished shards land here as
    /// `shard-00007.parquet`.
    pub stage_dir: PathBuf,
    /// How many shards the stage is split into (1: not sharded).
    pub shards: u32,
    /// Where the artifact will live once committed (its `files/` are
    /// written to `stage_dir/files` and linked there).
    #[serde(default)]
    pub artifact_dir: PathBuf,
    pub time_limit_s: Option<u64>,
}

impl Job {
    /// Where a finished shard is kept until the stage commits.
    pub fn shard_file(&self, index: u32) -> PathBuf {
        shard_file(&self.stage_dir, index)
    }

    /// Where a directory artifact's files are written before the commit.
    pub fn files_dir(&self) -> PathBuf {
        self.stage_dir.join(crate::store::FILES_DIR)
    }

    /// Where those files are once the artifact is committed.
    pub fn committed_files_dir(&self) -> PathBuf {
        self.artifact_dir.join(crate::store::FILES_DIR)
    }

    /// Scratch space of one shard attempt.
    pub fn shard_tmp(&self, index: u32) -> PathBuf {
        self.stage_dir.join(format!("tmp-{index:05}"))
    }
}

pub use crate::store::shard::shard_file;

/// One shard of a stage, as a stage kind runs it.
#[derive(Debug, Clone)]
pub struct ShardRun {
    pub index: u32,
    pub count: u32,
    /// The Parquet file to write. Files beside it named `part.<ext>` are
    /// kept beside the finished shard as `shard-NNNNN.<ext>` (for the
    /// kind's `stats`).
    pub output: PathBuf,
    /// Scratch space, removed afterwards.
    pub tmp: PathBuf,
    /// Whether the stage was told to stop; a stage that watches it says so
    /// with [`Cancel::handle_in_process`].
    pub cancel: swestar_vocab::supervise::Cancel,
}

/// The runtime a stage's concurrent I/O (episodes, sandboxes, model
/// calls) runs on: a few worker threads, whatever the node's core count.
pub fn runtime(shard: &ShardRun) -> Result<tokio::runtime::Runtime, StageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8))
        .enable_all()
        .build()
        .map_err(|e| StageError::Io { path: shard.tmp.clone(), source: e })
}

/// One input of a job: the files of a data source or an upstream artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInput {
    pub paths: Vec<PathBuf>,
    pub format: TableFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Template(String),
    #[error("{0}")]
    Failed(String),
    #[error("command exited with status {0}")]
    Exit(i32),
    #[error("command was killed by signal {0}")]
    Signal(i32),
    #[error("time limit of {0}s exceeded; the command was killed")]
    Timeout(u64),
    #[error("stopped: swestar exec was told to stop")]
    Terminated,
    #[error("cannot start bash: {0}")]
    Spawn(std::io::Error),
    #[error("the command wrote no output: expected {}", .0.display())]
    NoOutput(PathBuf),
    #[error(transparent)]
    Table(#[from] crate::store::table::TableError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}
