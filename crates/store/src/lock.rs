//! One writer per store: an exclusive `flock` on `<store>/lock`, held for
//! the whole of a `run` or `gc`. The kernel drops it when the holder dies,
//! even by SIGKILL, so a crash never leaves the store locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;

/// Held for as long as it lives.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock; with `wait`, blocks until the holder is done,
    /// otherwise fails at once naming the holder.
    pub fn acquire(root: &Path, wait: bool, holder: &str) -> Result<StoreLock, StoreError> {
        let path = root.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if wait => {
                file.lock().map_err(|e| StoreError::io(&path, e))?;
            }
            Err(TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                return Err(StoreError::Locked { store: root.to_path_buf(), holder: who.trim().to_string() });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io(&path, e)),
        }
        // Say who holds it, for the message a second writer gets. A store
        // that cannot take these few bytes cannot take a run either.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{holder} (pid {})", std::process::id()))
            .and_then(|()| file.flush())
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(StoreLock { _file: file })
    }
}
