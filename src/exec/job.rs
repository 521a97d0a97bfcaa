//! The `swestar exec` side: one stage body in its own process. It reads a
//! [`Job`] file, runs the kind, and exits 0 or 1. When its parent (the
//! orchestrator) dies or stops it, it kills the stage's process group
//! first, so no stage keeps writing into the store behind a dead run.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::stages::command::CHILD_PGID;
use crate::stages::{Job, StageError};

extern "C" fn on_terminate(_sig: libc::c_int) {
    // Only async-signal-safe calls here.
    let pgid = CHILD_PGID.load(Ordering::SeqCst);
    unsafe {
        if pgid > 0 {
            libc::kill(-pgid, libc::SIGKILL);
        }
        libc::_exit(143);
    }
}

/// Installs the handlers that take the stage down with this process.
pub fn install_signal_handlers() {
    let handler = on_terminate as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot read job file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("job file {} is not valid: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error("stage {stage}: {source}")]
    Stage { stage: String, source: StageError },
}

pub fn run_job_file(path: &Path) -> Result<(), JobError> {
    let bytes = std::fs::read(path).map_err(|source| JobError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let job: Job = serde_json::from_slice(&bytes).map_err(|source| JobError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    install_signal_handlers();
    job.kind.execute(&job).map_err(|source| JobError::Stage {
        stage: job.stage.clone(),
        source,
    })
}
