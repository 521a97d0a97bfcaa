//! The `swestar exec` side: one stage body in its own process. It reads a
//! [`Job`] file, runs the kind, and exits 0 or 1. When its parent (the
//! orchestrator) dies or stops it, it kills the stage's process group
//! first, so no stage keeps writing into the store behind a dead run.

use crate::stages::{Job, ShardRun, StageError};
use std::path::Path;
pub use swestar_vocab::supervise::{install_signal_handlers, run_supervised, Cancel, Ended};

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

/// A stage that failed while the store's disk is full most likely failed
/// because of it, though its own message about it may have gone nowhere
/// (its log is on that disk): say so, before the scratch space is freed.
fn on_a_full_disk(e: StageError, dir: &Path) -> StageError {
    match free_bytes(dir) {
        Some(free) if free < 64 << 10 => {
            StageError::Failed(format!("{e}; no space left on device: {} is full", dir.display()))
        }
        _ => e,
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed struct to fill.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// What this shard's process cost: wall seconds since it began, CPU
/// seconds (user and system) of itself and of the children it waited for,
/// and its peak resident memory.
fn own_usage(began: std::time::Instant) -> serde_json::Value {
    let usage = |who| {
        // SAFETY: getrusage writes the struct it is given and nothing else.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut r) } != 0 {
            return (0.0, 0);
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (secs(r.ru_utime) + secs(r.ru_stime), r.ru_maxrss)
    };
    let (own, rss) = usage(libc::RUSAGE_SELF);
    let (children, child_rss) = usage(libc::RUSAGE_CHILDREN);
    serde_json::json!({
        "wall_s": began.elapsed().as_secs_f64(),
        "cpu_s": own + children,
        "max_rss_kb": rss.max(child_rss),
    })
}

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
    let began = std::time::Instant::now();
    let tmp = job.shard_tmp(index);
    let io = |p: &Path, source: std::io::Error| stage_err(StageError::Io { path: p.to_path_buf(), source });
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let run = ShardRun { index, count, output: tmp.join("part.parquet"), tmp: tmp.clone(), cancel: Cancel::process() };
    let finished =
        job.kind.execute(&job, &run).map_err(|e| stage_err(on_a_full_disk(e, &job.stage_dir))).and_then(|()| {
            std::fs::File::open(&run.output).and_then(|f| f.sync_all()).map_err(|e| io(&run.output, e))?;
            let target = job.shard_file(index);
            let usage = tmp.join("part.usage.json");
            crate::store::write_atomic(&usage, own_usage(began).to_string().as_bytes()).map_err(|e| io(&usage, e))?;
            // Files a kind wrote beside its output (`part.accounting.json`)
            // go beside the shard file, before it: the shard file is what
            // says the shard is done.
            for entry in std::fs::read_dir(&tmp).map_err(|e| io(&tmp, e))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(ext) = name.strip_prefix("part.").filter(|e| *e != "parquet") {
                    let side = target.with_extension(ext);
                    std::fs::rename(entry.path(), &side).map_err(|e| io(&side, e))?;
                }
            }
            std::fs::rename(&run.output, &target).map_err(|e| io(&target, e))
        });
    // Scratch space goes when the shard is done or failed: a stage that
    // filled the disk must not keep it full. What a rerun resumes from
    // (finished shards, progress logs) lives outside it. A stopped shard
    // leaves it: the next attempt, which may already have started, clears
    // it when it starts.
    let stopped = matches!(&finished, Err(JobError::Stage { source: StageError::Terminated, .. }));
    if !stopped {
        if let Err(e) = std::fs::remove_dir_all(&tmp) {
            swestar_vocab::progress!("{}: cannot remove scratch space: {e}", tmp.display());
        }
    }
    finished
}
