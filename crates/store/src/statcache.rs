//! Content hashes of files read by path, remembered by (size, mtime,
//! inode, device) so that a no-op plan does not rehash gigabytes. The stat
//! only decides whether to hash again; the key always uses the content.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    dev: u64,
    blake3: String,
}

/// The stat cache of one store (`<store>/statcache.json`).
#[derive(Debug, Default)]
pub struct StatCache {
    path: PathBuf,
    entries: BTreeMap<PathBuf, Entry>,
    dirty: bool,
    /// Bytes hashed by this instance (for benchmarks and tests).
    pub hashed_bytes: u64,
}

impl StatCache {
    pub fn load(path: PathBuf) -> StatCache {
        // A missing or damaged cache only costs a rehash.
        let entries = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        StatCache { path, entries, dirty: false, hashed_bytes: 0 }
    }

    /// blake3 of a file's content, from the cache when its stat is unchanged.
    pub fn hash(&mut self, path: &Path) -> std::io::Result<String> {
        let abs = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&abs)?;
        let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        if let Some(e) = self.entries.get(&abs) {
            if e.size == meta.len() && e.mtime_ns == mtime_ns && e.inode == meta.ino() && e.dev == meta.dev() {
                return Ok(e.blake3.clone());
            }
        }
        let blake3 = hash_file(&abs)?;
        self.hashed_bytes += meta.len();
        self.entries.insert(
            abs,
            Entry { size: meta.len(), mtime_ns, inode: meta.ino(), dev: meta.dev(), blake3: blake3.clone() },
        );
        self.dirty = true;
        Ok(blake3)
    }

    /// Writes the cache back if it changed (atomically; last writer wins,
    /// which is harmless because every entry is re-verified by stat).
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        // Forget files that no longer exist so the cache does not grow forever.
        self.entries.retain(|p, _| p.exists());
        let bytes = serde_json::to_vec(&self.entries).map_err(std::io::Error::other)?;
        super::write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

/// blake3 of a file, streamed in 1 MiB blocks.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_stat_skips_hashing_and_any_change_rehashes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, "hello").unwrap();
        let mut c = StatCache::load(dir.path().join("statcache.json"));
        let h1 = c.hash(&f).unwrap();
        assert_eq!(c.hashed_bytes, 5);
        c.save().unwrap();
        let mut c = StatCache::load(dir.path().join("statcache.json"));
        assert_eq!(c.hash(&f).unwrap(), h1);
        assert_eq!(c.hashed_bytes, 0, "same stat must not rehash");
        // Same content rewritten: new mtime, rehashed, same hash.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&f, "hello").unwrap();
        assert_eq!(c.hash(&f).unwrap(), h1);
        assert_eq!(c.hashed_bytes, 5);
        std::fs::write(&f, "world").unwrap();
        assert_ne!(c.hash(&f).unwrap(), h1);
    }
}
