//! Execution: turning a plan into artifacts. The executor never prints; it
//! emits [`Event`]s that the CLI renders (progress lines, JSON) and tests
//! inspect. Every stage body runs in a `swestar exec` child process (see
//! [`job`]), so that the local and the SLURM executor run the same code.

pub mod job;
pub mod local;

use std::path::PathBuf;

use crate::cache::CacheKey;
use crate::dag::Reason;

/// What happened, as it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// Resolved from the store; `early_cutoff` when the plan expected a
    /// rerun but an upstream reproduced identical content.
    Cached {
        node: usize,
        label: String,
        key: CacheKey,
        early_cutoff: bool,
    },
    Started {
        node: usize,
        label: String,
        key: CacheKey,
        reasons: Vec<Reason>,
    },
    Committed {
        node: usize,
        label: String,
        key: CacheKey,
        rows: u64,
        bytes: u64,
        seconds: f64,
    },
    Failed {
        node: usize,
        label: String,
        error: String,
        log_tail: String,
        log: PathBuf,
    },
    /// Not run because an upstream failed or the run was stopped.
    Skipped {
        node: usize,
        label: String,
        because: String,
    },
    Interrupted {
        node: usize,
        label: String,
    },
    /// Ctrl-C (or SIGTERM) received; running stages are being stopped.
    Stopping,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub run_id: String,
    /// The `swestar` binary that runs stage bodies.
    pub exe: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}
