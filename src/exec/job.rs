//! The `swestar exec` side: one stage body in its own process. It reads a
//! [`Job`] file, runs the kind, and exits 0 or 1. When its parent (the
//! orchestrator) dies or stops it, it kills the stage's process group
//! first, so no stage keeps writing into the store behind a dead run.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stages::{Job, ShardRun, StageError};

/// The process group of the command a stage body is running (0: none).
static CHILD_PGID: AtomicI32 = AtomicI32::new(0);
/// Set once this process was told to stop.
static TERMINATING: AtomicBool = AtomicBool::new(false);
/// Set by a stage that runs in this process and stops by itself when
/// [`terminating`] says so (cleaning up what it started), within the grace
/// period.
static IN_PROCESS: AtomicBool = AtomicBool::new(false);
/// Seconds a stopped command gets between SIGTERM and SIGKILL.
const GRACE_S: libc::c_uint = 5;

extern "C" fn on_terminate(_sig: libc::c_int) {
    // Only async-signal-safe calls here.
    TERMINATING.store(true, Ordering::SeqCst);
    let pgid = CHILD_PGID.load(Ordering::SeqCst);
    unsafe {
        if pgid > 0 {
            libc::kill(-pgid, libc::SIGTERM);
            libc::alarm(GRACE_S);
        } else if IN_PROCESS.load(Ordering::SeqCst) {
            libc::alarm(GRACE_S);
        } else {
            libc::_exit(143);
        }
    }
}

extern "C" fn on_alarm(_sig: libc::c_int) {
    let pgid = CHILD_PGID.load(Ordering::SeqCst);
    unsafe {
        if pgid > 0 {
            libc::kill(-pgid, libc::SIGKILL);
        }
        libc::_exit(143);
    }
}

/// Declares that the stage body runs in this process and watches
/// [`terminating`]: a stop request then gives it the grace period instead
/// of ending the process at once.
pub fn stop_in_process() {
    IN_PROCESS.store(true, Ordering::SeqCst);
}

/// Whether this process was told to stop.
pub fn terminating() -> bool {
    TERMINATING.load(Ordering::SeqCst)
}

/// Installs the handlers that take the stage down with this process:
/// SIGTERM/SIGINT/SIGHUP give the command's process group SIGTERM, then
/// SIGKILL after a grace period.
pub fn install_signal_handlers() {
    let term = on_terminate as extern "C" fn(libc::c_int) as libc::sighandler_t;
    let alarm = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
    unsafe {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, term);
        }
        libc::signal(libc::SIGALRM, alarm);
    }
}

/// How a supervised command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    /// This process was told to stop and stopped the command.
    Terminated,
}

/// Runs a command in its own process group, killed with everything it
/// started when its time limit passes, when it exits (stragglers), or when
/// this process is stopped. Stage kinds run their processes through here.
pub fn run_supervised(cmd: &mut Command, limit: Option<Duration>) -> std::io::Result<Ended> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    cmd.process_group(0);
    unsafe {
        cmd.pre_exec(|| {
            // Dies with this process even if it is SIGKILLed.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id() as i32;
    CHILD_PGID.store(pgid, Ordering::SeqCst);
    if TERMINATING.load(Ordering::SeqCst) {
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    if let Some(limit) = limit {
        let (timed_out, finished) = (timed_out.clone(), finished.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !finished.load(Ordering::SeqCst) {
                timed_out.store(true, Ordering::SeqCst);
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        });
    }
    let status = child.wait();
    finished.store(true, Ordering::SeqCst);
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    CHILD_PGID.store(0, Ordering::SeqCst);
    let status = status?;
    Ok(if TERMINATING.load(Ordering::SeqCst) {
        Ended::Terminated
    } else if timed_out.load(Ordering::SeqCst) {
        Ended::TimedOut
    } else {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(sig)) => Ended::Signaled(sig),
            (None, None) => Ended::Exited(-1),
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot read job file {}: {source}", path.display())]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("job file {} is not valid: {source}", path.display())]
    Parse { path: std::path::PathBuf, source: serde_json::Error },
    #[error("stage {stage}: {source}")]
    Stage { stage: String, source: StageError },
    #[error("--shard I/{given} does not match the job's {expected} shards")]
    ShardCount { given: u32, expected: u32 },
}

impl JobError {
    /// Exit status of `swestar exec`: 143 when it was stopped, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            JobError::Stage { source: StageError::Terminated, .. } => 143,
            _ => 1,
        }
    }
}

pub use crate::store::shard::parse_shard;

/// Runs one shard of a job. On success the shard's Parquet file is moved
/// into place (`staging/<key>/shard-00007.parquet`) atomically, so a shard
/// file exists only when that shard finished.
pub fn run_job_file(path: &Path, shard: Option<(u32, u32)>) -> Result<(), JobError> {
    let bytes = std::fs::read(path).map_err(|source| JobError::Read { path: path.to_path_buf(), source })?;
    let job: Job =
        serde_json::from_slice(&bytes).map_err(|source| JobError::Parse { path: path.to_path_buf(), source })?;
    let stage_err = |source: StageError| JobError::Stage { stage: job.stage.clone(), source };
    let (index, count) = shard.unwrap_or((0, 1));
    if count != job.shards {
        return Err(JobError::ShardCount { given: count, expected: job.shards });
    }
    install_signal_handlers();
    let tmp = job.shard_tmp(index);
    let io = |p: &Path, source: std::io::Error| stage_err(StageError::Io { path: p.to_path_buf(), source });
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let run = ShardRun { index, count, output: tmp.join("part.parquet"), tmp: tmp.clone() };
    job.kind.execute(&job, &run).map_err(stage_err)?;
    std::fs::File::open(&run.output).and_then(|f| f.sync_all()).map_err(|e| io(&run.output, e))?;
    let target = job.shard_file(index);
    std::fs::rename(&run.output, &target).map_err(|e| io(&target, e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
