//! Process supervision for stage bodies: commands run in their own process
//! group and die with their time limit, with their parent, or when this
//! process is told to stop (SIGTERM, SIGINT, SIGHUP: SIGTERM to the group,
//! SIGKILL after a grace period). A stage sees a stop request through its
//! [`Cancel`] handle.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The process group of the command a stage body is running (0: none).
static CHILD_PGID: AtomicI32 = AtomicI32::new(0);
/// Set once this process was told to stop.
static TERMINATING: AtomicBool = AtomicBool::new(false);
/// Set by a stage that runs in this process and stops by itself when
/// [`Cancel::requested`] says so (cleaning up what it started), within the grace
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

/// A stage's handle on "stop now": whether a stop was requested, and the
/// promise to honour it in process (cleaning up what the stage started)
/// instead of being ended at once.
#[derive(Debug, Clone, Copy)]
pub struct Cancel {
    flag: &'static AtomicBool,
}

impl Cancel {
    /// The handle of this process: set by the signal handlers of
    /// [`install_signal_handlers`].
    pub fn process() -> Cancel {
        Cancel { flag: &TERMINATING }
    }

    /// Whether this process (or whoever holds the flag) asked the stage to stop.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Declares that the stage runs in this process and watches
    /// [`Cancel::requested`]: a stop request then gives it the grace period
    /// instead of ending the process at once.
    pub fn handle_in_process(&self) {
        IN_PROCESS.store(true, Ordering::SeqCst);
    }
}
