//! Locks on a shared store, correct across hosts on cluster filesystems
//! (NFSv3+, Lustre, GPFS), where `flock` may be per host or absent.
//!
//! A lock is a file under `<store>/locks/`, taken by hard-linking a fully
//! written, uniquely named file to the lock's name: `link` is atomic on
//! every one of those filesystems and fails when the name exists, so the
//! lock appears whole, with its owner, or not at all. The owner's
//! heartbeat thread touches the lock's modification time every
//! [`LockTimes::heartbeat`]; whoever finds a lock whose owner line and
//! timestamp have not changed for [`LockTimes::stale`] (measured on its
//! own clock, so hosts' clocks need not agree), or whose owner is a dead
//! process on its own host, takes the lock over. A takeover is itself
//! serialised by a `.break` lock, so two waiters never both take it.
//!
//! What is locked (see `Store`): `key-<key>` while a run computes that
//! key, `refs-<workflow>` for a moment while a run updates the workflow's
//! refs, `run-<id>` for as long as a run lives, and `gc` while `gc` runs.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::StoreError;

/// How often a holder proves it is alive, and how long a silent lock is
/// trusted. Defaults suit a shared filesystem under load (a Lustre
/// metadata server can stall for tens of seconds); `SWESTAR_LOCK_STALE`
/// (seconds) changes both, the heartbeat being an eighth of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockTimes {
    pub heartbeat: Duration,
    pub stale: Duration,
}

impl LockTimes {
    pub const DEFAULT_STALE: Duration = Duration::from_secs(120);

    pub fn from_env() -> LockTimes {
        let stale = std::env::var("SWESTAR_LOCK_STALE")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Self::DEFAULT_STALE);
        LockTimes { heartbeat: (stale / 8).max(Duration::from_millis(20)), stale }
    }
}

/// Who holds a lock: written into the lock file when it is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// What holds it: `run <id>`, `gc`.
    pub holder: String,
    pub host: String,
    pub pid: u32,
    /// Unique per taking, so a holder knows its lock from a successor's.
    pub token: String,
    /// When it was taken (the holder's clock, RFC 3339).
    pub since: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, host {}, pid {}, since {}", self.holder, self.host, self.pid, self.since)
    }
}

/// This machine's name, as other hosts' lock holders see it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The outcome of trying a lock once.
#[derive(Debug)]
pub enum Attempt {
    Acquired(Guard),
    /// Held by a live owner (`None` when its file cannot be read yet).
    Held(Option<Owner>),
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    token: String,
    table: Arc<Mutex<HashMap<PathBuf, File>>>,
    /// The owner whose stale lock this one replaced, if any.
    pub displaced: Option<Owner>,
}

impl Guard {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is still this guard's: false when a waiter took it
    /// over because this process's heartbeat stalled past the stale time.
    pub fn still_held(&self) -> bool {
        read_owner(&self.path).is_some_and(|o| o.token == self.token)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.path);
        if self.still_held() {
            // A lock left behind is taken over after the stale time; a
            // failed removal costs no more than that.
            let _stale_after_timeout = std::fs::remove_file(&self.path);
        }
    }
}

/// What a waiter saw of a lock it could not take, to tell a silent owner
/// from a live one by its own clock.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    token: Option<String>,
    modified: Option<SystemTime>,
}

/// One process's locks on one store: takes them, beats their hearts, and
/// watches others' for staleness.
#[derive(Debug)]
pub struct Locks {
    dir: PathBuf,
    holder: String,
    host: String,
    times: LockTimes,
    table: Arc<Mutex<HashMap<PathBuf, File>>>,
    seen: Mutex<HashMap<PathBuf, (Seen, Instant)>>,
    stop: Arc<AtomicBool>,
    heart: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Locks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heart.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Locks {
    /// The locks of `holder` (`run <id>`, `gc`) on the store at `root`.
    pub fn new(root: &Path, holder: &str, times: LockTimes) -> Result<Locks, StoreError> {
        let dir = root.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let table: Arc<Mutex<HashMap<PathBuf, File>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let heart = {
            let (table, stop) = (table.clone(), stop.clone());
            std::thread::Builder::new()
                .name("lock-heartbeat".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::park_timeout(times.heartbeat);
                        let now = SystemTime::now();
                        for file in table.lock().unwrap_or_else(|p| p.into_inner()).values() {
                            // A beat that fails (a filesystem hiccup) is
                            // retried at the next one; only a silence as
                            // long as the stale time loses the lock.
                            let _retried_next_beat = file.set_modified(now);
                        }
                    }
                })
                .map_err(|e| StoreError::io(&dir, e))?
        };
        Ok(Locks {
            dir,
            holder: holder.to_string(),
            host: hostname(),
            times,
            table,
            seen: Mutex::default(),
            stop,
            heart: Some(heart),
        })
    }

    pub fn times(&self) -> LockTimes {
        self.times
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    /// Tries the lock `name` once: takes it if it is free or its owner is
    /// gone, else says who holds it.
    pub fn try_lock(&self, name: &str) -> Result<Attempt, StoreError> {
        let path = self.path(name);
        for _ in 0..3 {
            if let Some(guard) = self.link(&path)? {
                return Ok(Attempt::Acquired(guard));
            }
            let owner = read_owner(&path);
            if !self.is_stale(&path, owner.as_ref()) {
                return Ok(Attempt::Held(owner));
            }
            if let Some(guard) = self.take_over(&path)? {
                return Ok(Attempt::Acquired(guard));
            }
        }
        Ok(Attempt::Held(read_owner(&path)))
    }

    /// Takes the lock `name`, waiting for it however long it is held;
    /// `waiting` is called once with its holder when it must wait.
    pub fn lock(&self, name: &str, mut waiting: impl FnMut(Option<&Owner>)) -> Result<Guard, StoreError> {
        let mut told = false;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.try_lock(name)? {
                Attempt::Acquired(g) => return Ok(g),
                Attempt::Held(owner) => {
                    if !told {
                        waiting(owner.as_ref());
                        told = true;
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250)).min(self.times.heartbeat.max(Duration::from_millis(5)));
        }
    }

    /// The owners of every lock whose name starts with `prefix`, with
    /// their names (`run-…`).
    pub fn holders(&self, prefix: &str) -> Vec<(String, Option<Owner>)> {
        let mut out: Vec<(String, Option<Owner>)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().strip_suffix(".lock")?.to_string();
                name.starts_with(prefix).then(|| (name, read_owner(&e.path())))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether `name` is held by an owner that is not provably dead (a
    /// process gone from this host). Does not wait to judge silence.
    pub fn held_by_live(&self, name: &str) -> Option<Option<Owner>> {
        let path = self.path(name);
        if !path.exists() {
            return None;
        }
        let owner = read_owner(&path);
        match &owner {
            Some(o) if self.dead_here(o) => None,
            _ => Some(owner),
        }
    }

    /// Writes the owner line to a unique file and links it to `path`.
    fn link(&self, path: &Path) -> Result<Option<Guard>, StoreError> {
        self.create(path, false)
    }

    /// Writes the owner line to a unique file, then links it to `path`
    /// (taken only if `path` does not exist) or, with `replace`, renames it
    /// over `path` (which is never absent meanwhile, so no other waiter
    /// can slip in).
    fn create(&self, path: &Path, replace: bool) -> Result<Option<Guard>, StoreError> {
        let token = unique_token();
        let owner = Owner {
            holder: self.holder.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            token: token.clone(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = self.dir.join(format!(".{name}.{}.{token}.tmp", self.host));
        // Closing it is what makes its content visible to other hosts (NFS
        // close-to-open); no fsync: a lock that a power cut leaves empty
        // is stale like any other. Reopened for the heartbeat.
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(&serde_json::to_vec(&owner).map_err(std::io::Error::other)?))
            .and_then(|()| File::open(&tmp));
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                let _reported_below = std::fs::remove_file(&tmp);
                return Err(StoreError::io(&tmp, e));
            }
        };
        if replace {
            if let Err(e) = std::fs::rename(&tmp, path) {
                let _reported_below = std::fs::remove_file(&tmp);
                return Err(StoreError::io(path, e));
            }
            self.table.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), file);
            return Ok(Some(Guard { path: path.to_path_buf(), token, table: self.table.clone(), displaced: None }));
        }
        let linked = match std::fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            // NFS may lose the reply of a link that succeeded: the link
            // count tells (the recipe of open(2) for NFS).
            Err(e) => match std::fs::metadata(&tmp) {
                Ok(m) if std::os::unix::fs::MetadataExt::nlink(&m) == 2 => true,
                _ => {
                    let _reported_below = std::fs::remove_file(&tmp);
                    return Err(StoreError::io(path, e));
                }
            },
        };
        // The lock lives on under its own name; the unique one was only
        // the way to create it whole.
        let _lock_stands_without_it = std::fs::remove_file(&tmp);
        if !linked {
            return Ok(None);
        }
        self.table.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), file);
        Ok(Some(Guard { path: path.to_path_buf(), token, table: self.table.clone(), displaced: None }))
    }

    fn dead_here(&self, owner: &Owner) -> bool {
        owner.host == self.host && !Path::new(&format!("/proc/{}", owner.pid)).exists()
    }

    /// A lock is stale when its owner is a dead process of this host, or
    /// when nothing about it changed for the stale time on this clock.
    fn is_stale(&self, path: &Path, owner: Option<&Owner>) -> bool {
        if owner.is_some_and(|o| self.dead_here(o)) {
            return true;
        }
        let now = Seen { token: owner.map(|o| o.token.clone()), modified: modified(path) };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(path) {
            Some((before, since)) if *before == now => since.elapsed() >= self.times.stale,
            _ => {
                seen.insert(path.to_path_buf(), (now, Instant::now()));
                false
            }
        }
    }

    /// Replaces a stale lock with this process's under a `.break` lock of
    /// its own, checking again under it that the lock is the same stale
    /// one. The new lock, naming whom it displaced, when it did.
    fn take_over(&self, path: &Path) -> Result<Option<Guard>, StoreError> {
        let breaker = path.with_extension("lock.break");
        let guard = match self.link(&breaker)? {
            Some(g) => g,
            None => {
                // Another waiter is taking it over (or died doing so).
                let owner = read_owner(&breaker);
                if self.is_stale(&breaker, owner.as_ref()) {
                    let _retried_by_caller = std::fs::remove_file(&breaker);
                }
                return Ok(None);
            }
        };
        let before = self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(path).map(|(s, _)| s.clone());
        let owner = read_owner(path);
        let now = Seen { token: owner.as_ref().map(|o| o.token.clone()), modified: modified(path) };
        let dead = owner.as_ref().is_some_and(|o| self.dead_here(o));
        let mut taken = None;
        // Gone meanwhile (released): the caller links it the usual way.
        if path.exists() && (dead || before.as_ref() == Some(&now)) {
            if let Some(mut g) = self.create(path, true)? {
                g.displaced = owner;
                taken = Some(g);
            }
            self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
        }
        drop(guard);
        Ok(taken)
    }
}

/// Reads a lock file's owner line (fresh from the server: opening a file
/// revalidates it under close-to-open consistency).
pub fn read_owner(path: &Path) -> Option<Owner> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn modified(path: &Path) -> Option<SystemTime> {
    File::open(path).and_then(|f| f.metadata()).and_then(|m| m.modified()).ok()
}

fn unique_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}{:?}{n}{:?}", std::process::id(), Instant::now(), SystemTime::now());
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(stale_ms: u64) -> LockTimes {
        LockTimes { heartbeat: Duration::from_millis(stale_ms / 8), stale: Duration::from_millis(stale_ms) }
    }

    fn foreign(dir: &Path, name: &str, host: &str, pid: u32) -> PathBuf {
        std::fs::create_dir_all(dir.join("locks")).unwrap();
        let path = dir.join("locks").join(format!("{name}.lock"));
        let owner = Owner {
            holder: "run 1".into(),
            host: host.into(),
            pid,
            token: "t".into(),
            since: "2026-12-02T00:00:00Z".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&owner).unwrap()).unwrap();
        path
    }

    #[test]
    fn a_held_lock_names_its_owner_and_is_free_again_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = Locks::new(dir.path(), "run a", times(60_000)).unwrap();
        let b = Locks::new(dir.path(), "run b", times(60_000)).unwrap();
        let Attempt::Acquired(guard) = a.try_lock("key-x").unwrap() else { panic!("free lock not taken") };
        assert!(guard.still_held());
        match b.try_lock("key-x").unwrap() {
            Attempt::Held(Some(o)) => {
                assert_eq!(o.holder, "run a");
                assert_eq!(o.pid, std::process::id());
            }
            other => panic!("{other:?}"),
        }
        drop(guard);
        assert!(matches!(b.try_lock("key-x").unwrap(), Attempt::Acquired(_)));
        // No unique temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("locks")).unwrap().flatten().collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_dead_process_of_this_host_loses_its_lock_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum is never alive.
        foreign(dir.path(), "key-x", &hostname(), 4_194_304 + 7);
        let me = Locks::new(dir.path(), "run b", times(60_000)).unwrap();
        let Attempt::Acquired(g) = me.try_lock("key-x").unwrap() else { panic!("not taken over") };
        assert_eq!(g.displaced.as_ref().map(|o| o.holder.as_str()), Some("run 1"));
    }

    #[test]
    fn another_hosts_silent_lock_is_taken_after_the_stale_time_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        foreign(dir.path(), "key-x", "login-elsewhere", 1);
        let me = Locks::new(dir.path(), "run b", times(300)).unwrap();
        assert!(matches!(me.try_lock("key-x").unwrap(), Attempt::Held(Some(_))));
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(me.try_lock("key-x").unwrap(), Attempt::Held(Some(_))));
        std::thread::sleep(Duration::from_millis(300));
        assert!(matches!(me.try_lock("key-x").unwrap(), Attempt::Acquired(_)));
    }

    #[test]
    fn a_beating_lock_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let holder = Locks::new(dir.path(), "run a", times(200)).unwrap();
        let Attempt::Acquired(guard) = holder.try_lock("key-x").unwrap() else { panic!() };
        // Seen from "another host": only the heartbeat can keep it.
        let mut waiter = Locks::new(dir.path(), "run b", times(200)).unwrap();
        waiter.host = "login-elsewhere".into();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1000) {
            assert!(matches!(waiter.try_lock("key-x").unwrap(), Attempt::Held(Some(_))));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(guard.still_held());
    }

    #[test]
    fn of_many_racing_waiters_exactly_one_takes_a_stale_lock() {
        let dir = tempfile::tempdir().unwrap();
        foreign(dir.path(), "key-x", &hostname(), 4_194_304 + 9);
        let root = dir.path().to_path_buf();
        let won: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let root = root.clone();
                    s.spawn(move || {
                        let me = Locks::new(&root, &format!("run {i}"), times(60_000)).unwrap();
                        match me.try_lock("key-x").unwrap() {
                            // Keep it until every racer has tried.
                            Attempt::Acquired(g) => {
                                std::thread::sleep(Duration::from_millis(300));
                                drop(g);
                                true
                            }
                            Attempt::Held(_) => false,
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    }

    #[test]
    fn a_holder_knows_when_its_lock_was_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let a = Locks::new(dir.path(), "run a", times(60_000)).unwrap();
        let Attempt::Acquired(guard) = a.try_lock("key-x").unwrap() else { panic!() };
        std::fs::remove_file(guard.path()).unwrap();
        foreign(dir.path(), "key-x", "login-elsewhere", 1);
        assert!(!guard.still_held());
        drop(guard);
        // The successor's lock stays.
        assert!(dir.path().join("locks/key-x.lock").exists());
    }
}
