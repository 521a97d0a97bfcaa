//! Execution: turning a plan into artifacts. The core ([`run`]) resolves
//! nodes and commits them; a [`Backend`] runs their shards (locally as
//! child processes, or as SLURM jobs). Every shard runs in a `swestar exec`
//! process (see [`job`]), so every backend runs the same code. Nothing here
//! prints: it emits [`Event`]s that the CLI renders and tests inspect.

pub mod job;
pub mod local;
pub mod prepare;
pub mod run;
pub mod script;
pub mod slurm;

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::cache::CacheKey;
use crate::dag::Reason;
use crate::stages::Job;
use crate::workflow::Resources;

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
        /// The other run that computed it while this one waited.
        by: Option<String>,
    },
    /// Another run (or gc) holds what this node needs: it waits, and
    /// reuses the other run's artifact when it is committed. Waiting for a
    /// gc, the whole run waits: `node` is then `usize::MAX`, `label` "store".
    Waiting {
        node: usize,
        label: String,
        /// Who holds it: `run <id>, host <h>, pid <p>, since <t>`.
        holder: String,
    },
    /// `resumed` shards had finished in an earlier, interrupted attempt.
    Started {
        node: usize,
        label: String,
        key: CacheKey,
        reasons: Vec<Reason>,
        shards: u32,
        resumed: u32,
    },
    ShardDone {
        node: usize,
        label: String,
        shard: u32,
        left: u32,
    },
    Committed {
        node: usize,
        label: String,
        key: CacheKey,
        rows: u64,
        bytes: u64,
        seconds: f64,
        /// The kind's word on its output (segment: turns not trained, and why).
        summary: Option<String>,
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
    /// Something the backend did on its own (a resubmission, an adoption).
    Note {
        node: usize,
        label: String,
        text: String,
    },
    /// The store could not be written (a full disk): `what`, and why.
    StoreError {
        what: String,
        error: String,
    },
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
    /// Stopped by a signal: its number (SIGINT from Ctrl-C, SIGTERM from
    /// `kill` or a scheduler), for the shell's 128+N exit status.
    Interrupted(i32),
}

impl From<Outcome> for crate::store::runs::RunStatus {
    fn from(o: Outcome) -> crate::store::runs::RunStatus {
        use crate::store::runs::RunStatus;
        match o {
            Outcome::Succeeded => RunStatus::Succeeded,
            Outcome::Failed => RunStatus::Failed,
            Outcome::Interrupted(_) => RunStatus::Interrupted,
        }
    }
}

/// The shards of one node to run.
#[derive(Debug, Clone)]
pub struct Launch {
    pub node: usize,
    pub stage: String,
    pub key: CacheKey,
    pub job_file: PathBuf,
    /// Which shards (the others finished earlier).
    pub shards: Vec<u32>,
    pub count: u32,
    pub resources: Resources,
    /// The workflow's directory and the stage's own job template, if any.
    pub workdir: PathBuf,
    pub template: Option<PathBuf>,
    /// The inference server the stage's job starts, if any.
    pub serve: Option<crate::stages::command::Serve>,
    /// A job script the backend runs instead of `swestar exec` (set by the
    /// backend: the local one runs serve stages through their job script).
    pub script: Option<PathBuf>,
    /// What the stage body starts across the allocation (an sft stage's
    /// `srun` of the trainer), shown in the job script.
    pub allocation_launch: Option<String>,
    pub log_dir: PathBuf,
    /// `<stage>.<key12>`: log files are `<stem>.err`, or `<stem>.<shard>.err`.
    pub log_stem: String,
}

impl Launch {
    /// The launch of a plan node's shards.
    pub fn for_node(
        index: usize,
        node: &crate::dag::Node,
        key: &CacheKey,
        job_file: PathBuf,
        shards: Vec<u32>,
        log_dir: PathBuf,
        log_stem: String,
    ) -> Launch {
        let allocation_launch = node.spec.kind.allocation_launch(job_file.parent().unwrap_or(Path::new(".")));
        Launch {
            node: index,
            stage: node.stage.clone(),
            key: key.clone(),
            job_file,
            shards,
            count: prepare::shard_count(node),
            resources: node.spec.resources.clone(),
            workdir: node.workdir.clone(),
            template: node.spec.template.as_ref().map(|t| t.path.clone()),
            serve: node.spec.kind.serve().cloned(),
            script: None,
            allocation_launch,
            log_dir,
            log_stem,
        }
    }

    /// The job script of this launch: what `sbatch` receives, and what
    /// the local backend runs with bash when the stage serves a model.
    pub fn script(&self, defaults: &crate::workflow::SlurmSection, exe: &Path) -> Result<String, String> {
        let stage_dir = self.job_file.parent().unwrap_or(Path::new("."));
        script::render(&script::ScriptInput {
            stage: &self.stage,
            key: &self.key,
            shards: self.count,
            workdir: &self.workdir,
            stage_dir,
            job_file: &self.job_file,
            exe,
            resources: &self.resources,
            defaults,
            template: self.template.as_deref(),
            serve: self.serve.as_ref(),
            allocation_launch: self.allocation_launch.as_deref(),
        })
        .map_err(|e| format!("template error: {e}"))
    }

    pub fn log(&self, shard: u32, ext: &str) -> PathBuf {
        if self.count > 1 {
            self.log_dir.join(format!("{}.{shard}.{ext}", self.log_stem))
        } else {
            self.log_dir.join(format!("{}.{ext}", self.log_stem))
        }
    }
}

/// How one shard ended.
#[derive(Debug, Clone)]
pub enum ShardEvent {
    Done { node: usize, shard: u32 },
    Failed { node: usize, shard: u32, error: String, log_tail: String, log: PathBuf },
    Interrupted { node: usize, shard: u32 },
}

impl ShardEvent {
    pub fn node(&self) -> usize {
        match self {
            ShardEvent::Done { node, .. } | ShardEvent::Failed { node, .. } | ShardEvent::Interrupted { node, .. } => {
                *node
            }
        }
    }
}

/// Where shards run.
pub trait Backend {
    /// Starts (or queues) the shards of a node.
    fn launch(&mut self, launch: Launch) -> impl Future<Output = Result<(), String>>;
    /// Waits for the next shard outcomes. May return none (a poll that
    /// found no news), so that the caller can look at other things.
    fn next(&mut self) -> impl Future<Output = Vec<ShardEvent>>;
    /// Whether dropping an unfinished `next` loses nothing, so that the
    /// caller may race it against a timer. A backend that is not returns
    /// from `next` regularly instead.
    fn next_is_cancel_safe(&self) -> bool {
        false
    }
    /// Shards launched and not yet reported.
    fn outstanding(&self) -> usize;
    /// Stops running shards; returns the outcomes of those that never
    /// started. The stopped ones are reported by `next`.
    fn interrupt(&mut self) -> Vec<ShardEvent>;
    /// Whether `swestar exec` enforces `resources.time` itself (locally),
    /// or the scheduler does (SLURM's TIMEOUT, which is retried).
    fn exec_enforces_time_limit(&self) -> bool {
        true
    }
    /// The jobs a node's shards run as, where the backend has jobs.
    fn jobs(&self, _node: usize) -> Option<slurm::JobsSummary> {
        None
    }
    /// State queries made so far (SLURM: one per poll interval).
    fn polls(&self) -> u64 {
        0
    }
    /// Things worth telling the user (a resubmission, an adoption), by node.
    fn take_notes(&mut self) -> Vec<(usize, String)> {
        Vec::new()
    }
    /// What the scheduler accounted to a node's jobs, once its last shard
    /// is in; `None` where it keeps no accounts (locally, or SLURM without
    /// accounting).
    fn accounting(&mut self, _node: usize) -> impl Future<Output = Option<Accounted>> {
        std::future::ready(None)
    }
}

/// A scheduler's accounting of a node's jobs, every attempt included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accounted {
    /// Elapsed seconds times allocated nodes.
    pub node_s: f64,
    /// Elapsed seconds times allocated CPUs.
    pub cpu_s: f64,
    pub by: &'static str,
}

pub fn write_job(path: &Path, job: &Job) -> std::io::Result<()> {
    crate::store::write_atomic(path, &serde_json::to_vec_pretty(job).expect("plain data"))
}

/// The message `swestar exec` ended with (its last `error: ` line), if any.
pub fn stage_error(log_tail: &str) -> Option<&str> {
    log_tail.lines().rev().find_map(|l| l.strip_prefix("error: "))
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
