//! Stage kinds. Each kind is one [`StageImpl`] in its own file with its own
//! implementation version; [`StageKind`] (the closed set) dispatches to
//! them. A stage body runs inside `swestar exec` from a [`Job`]: the
//! resolved stage with its inputs' paths and where to write.

pub mod command;
pub mod issue_synthesis;
pub mod ordered;
pub mod rollout;
pub mod segment;
pub mod sft;
pub mod swebench_eval;
pub mod test_filter;
pub mod testrun;
pub mod workspace;

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::workflow::{StageKind, TableFormat};

/// What one stage kind does.
pub trait StageImpl {
    /// Bumped whenever this kind's output for the same input changes; part
    /// of every cache key of this kind.
    const VERSION: u32;
    /// The kind's own settings that shape output (they enter the key).
    fn definition(&self) -> BTreeMap<String, Value>;
    /// Runs one shard of the stage body, writing one Parquet file to
    /// `shard.output` (scratch space in `shard.tmp`).
    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError>;
    /// Figures about the finished output (its shard files) for the
    /// artifact's manifest; none by default.
    fn stats(&self, _shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        Ok(BTreeMap::new())
    }
}

impl StageKind {
    pub fn impl_version(&self) -> u32 {
        match self {
            StageKind::Command(_) => command::CommandSpec::VERSION,
            StageKind::Rollout(_) => rollout::RolloutSpec::VERSION,
            StageKind::TestFilter(_) => test_filter::TestFilterSpec::VERSION,
            StageKind::Segment(_) => segment::SegmentSpec::VERSION,
            StageKind::IssueSynthesis(_) => issue_synthesis::IssueSynthesisSpec::VERSION,
            StageKind::Sft(_) => sft::SftSpec::VERSION,
            StageKind::SwebenchEval(_) => swebench_eval::EvalSpec::VERSION,
        }
    }

    pub fn definition(&self) -> BTreeMap<String, Value> {
        match self {
            StageKind::Command(c) => c.definition(),
            StageKind::Rollout(r) => r.definition(),
            StageKind::TestFilter(t) => t.definition(),
            StageKind::Segment(s) => s.definition(),
            StageKind::IssueSynthesis(i) => i.definition(),
            StageKind::Sft(s) => s.definition(),
            StageKind::SwebenchEval(e) => e.definition(),
        }
    }

    /// The inference server the stage's job starts, if any.
    pub fn serve(&self) -> Option<&command::Serve> {
        match self {
            StageKind::Command(c) => c.serve.as_ref(),
            StageKind::Rollout(r) => r.serve.as_ref(),
            StageKind::SwebenchEval(e) => e.agent.serve.as_ref(),
            StageKind::IssueSynthesis(i) => i.serve.as_ref(),
            _ => None,
        }
    }

    pub fn stats(&self, shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        match self {
            StageKind::Command(c) => c.stats(shards),
            StageKind::Rollout(r) => r.stats(shards),
            StageKind::TestFilter(t) => t.stats(shards),
            StageKind::Segment(s) => s.stats(shards),
            StageKind::IssueSynthesis(i) => i.stats(shards),
            StageKind::Sft(s) => s.stats(shards),
            StageKind::SwebenchEval(e) => e.stats(shards),
        }
    }

    /// What the stage body launches across its SLURM allocation, for
    /// `swestar render` (the trainer of an sft stage).
    pub fn allocation_launch(&self, stage_dir: &std::path::Path) -> Option<String> {
        match self {
            StageKind::Sft(s) if s.launch == sft::Launch::Slurm => {
                s.launch_script(&stage_dir.join(crate::store::FILES_DIR))
            }
            _ => None,
        }
    }

    pub fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        match self {
            StageKind::Command(c) => c.execute(job, shard),
            StageKind::Rollout(r) => r.execute(job, shard),
            StageKind::TestFilter(t) => t.execute(job, shard),
            StageKind::Segment(s) => s.execute(job, shard),
            StageKind::IssueSynthesis(i) => i.execute(job, shard),
            StageKind::Sft(s) => s.execute(job, shard),
            StageKind::SwebenchEval(e) => e.execute(job, shard),
        }
    }
}

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
    /// The Parquet file to write.
    pub output: PathBuf,
    /// Scratch space, removed afterwards.
    pub tmp: PathBuf,
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
