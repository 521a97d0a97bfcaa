//! Stage kinds. Each kind is one [`StageImpl`] in its own file with its own
//! implementation version; [`StageKind`] (the closed set) dispatches to
//! them. A stage body runs inside `swestar exec` from a [`Job`]: the
//! resolved stage with its inputs' paths and where to write.

pub mod command;

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
    /// Runs the stage body, writing Parquet part files into `job.out_dir`.
    fn execute(&self, job: &Job) -> Result<(), StageError>;
}

impl StageKind {
    pub fn impl_version(&self) -> u32 {
        match self {
            StageKind::Command(_) => command::CommandSpec::VERSION,
        }
    }

    pub fn definition(&self) -> BTreeMap<String, Value> {
        match self {
            StageKind::Command(c) => c.definition(),
        }
    }

    pub fn execute(&self, job: &Job) -> Result<(), StageError> {
        match self {
            StageKind::Command(c) => c.execute(job),
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
    /// Where part files go (`part-00000.parquet`, ...).
    pub out_dir: PathBuf,
    /// Scratch space, removed with the staging area.
    pub tmp_dir: PathBuf,
    pub time_limit_s: Option<u64>,
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
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
