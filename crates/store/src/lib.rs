//! The store: a global, content-addressed directory of artifacts.
//!
//! ```text
//! <store>/objects/<k0k1>/<key>/_manifest.json, part-00000.parquet ...
//! <store>/staging/<key>/out/                  a stage's output before commit
//! <store>/refs/<workflow>.json                last committed key per variant and stage
//! <store>/runs/<run-id>.json                  what each run did
//! <store>/logs/<run-id>/<stage>.{out,err}     stage logs, kept on failure too
//! <store>/statcache.json                      stat → content hash of files read by path
//! <store>/locks/<name>.lock                   keys in flight, live runs, gc (see [`lock`])
//! ```
//! Any number of runs, on any hosts, share a store: a key is computed by
//! the run that holds its lock, and the others wait for it and reuse it;
//! refs are updated under a short lock, merging each run's own entries;
//! `gc` never removes what a live run recorded or holds (see [`gc`]).
//! An artifact either exists whole or not at all: it is written under
//! staging, fsynced, and renamed into `objects/`.
//!
//! This crate is the bottom of swestar's layers with `swestar-vocab`: the
//! words every layer above shares about data (table format, row I/O,
//! shards and staging, run and job records, cache keys) live here and
//! import nothing above them.

pub mod cache;
pub mod format;
pub mod gc;
pub mod lock;
pub mod manifest;
pub mod rows;
pub mod runs;
pub mod shard;
pub mod statcache;
pub mod table;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;
pub use format::TableFormat;
pub use lock::{Attempt, Guard, LockTimes, Locks};
pub use manifest::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store {} is not writable: {source}\n  = help: run and gc write to the store; point --store (or SWESTAR_STORE) at a writable directory (plan, status, runs, show, export and report only read it)", store.display())]
    ReadOnly { store: PathBuf, source: std::io::Error },
    #[error("store {} is being collected by {holder}\n  = help: wait for it to finish, or pass --wait to queue behind it", store.display())]
    Locked { store: PathBuf, holder: String },
    #[error(transparent)]
    Table(#[from] table::TableError),
    #[error("stage output is missing: expected {}", expected.display())]
    NoOutput { expected: PathBuf },
    #[error("part files disagree on the schema: {a} has [{a_schema}], {b} has [{b_schema}]")]
    SchemaMismatch { a: String, a_schema: String, b: String, b_schema: String },
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io { path: path.to_path_buf(), source }
    }
}

/// An object's manifest. Dataset readers skip names that start with `_`
/// or `.` (pyarrow, Spark), so an object directory reads as one table.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// Where an object's part files are, alone: a folder any reader takes as
/// one table (polars reads every file of a folder). Objects committed by
/// earlier versions have their parts beside the manifest; the manifest
/// names each part's path either way.
pub const PARTS_DIR: &str = "parts";
/// Where objects committed by earlier versions keep it; still read.
const OLD_MANIFEST_FILE: &str = "manifest.json";

fn read_manifest(object: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(object.join(MANIFEST_FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::read(object.join(OLD_MANIFEST_FILE)),
        other => other,
    }
}

/// What a key resolves to in the store.
#[derive(Debug, Clone)]
pub enum Lookup {
    Missing,
    Present(Box<Manifest>),
    /// The object exists but cannot be trusted; it is never used.
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// Per workflow: variant → stage → last committed key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Refs {
    pub variants: BTreeMap<String, BTreeMap<String, CacheKey>>,
}

/// What `commit` needs besides the staged files.
#[derive(Debug, Clone)]
pub struct CommitMeta {
    pub key: CacheKey,
    pub stage: String,
    pub preimage: crate::cache::Preimage,
    pub workflow: String,
    pub variants: Vec<String>,
    pub run: String,
    pub duration_s: f64,
    /// What the stage kind reports about its output (see
    /// the stage kind's `stats`).
    pub stats: std::collections::BTreeMap<String, serde_json::Value>,
    /// A forced rerun: replace an artifact already under this key instead
    /// of keeping it.
    pub replace: bool,
    /// The scheduler's part of the usage (node-seconds), if any; the
    /// shards' own part is read at commit. `None`: keep no usage.
    pub usage: Option<manifest::Usage>,
}

/// The files of `dir` whose names end with `suffix`, as (name without
/// it, path); none when `dir` does not exist.
pub(crate) fn files_ending<'a>(dir: &Path, suffix: &'a str) -> impl Iterator<Item = (String, PathBuf)> + 'a {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(move |e| {
        let name = e.file_name().to_string_lossy().strip_suffix(suffix)?.to_string();
        Some((name, e.path()))
    })
}

/// Where a stage puts the files of a directory artifact: `files/` in its
/// staging directory, then in its object directory.
pub const FILES_DIR: &str = "files";

/// Hard-links every file under `src` into `dst` (same layout), listing
/// them relative to the artifact.
fn link_tree(src: &Path, dst: &Path, rel: &Path, out: &mut Vec<manifest::FileEntry>) -> Result<(), StoreError> {
    std::fs::create_dir_all(dst).map_err(|e| StoreError::io(dst, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| StoreError::io(src, e))? {
        let entry = entry.map_err(|e| StoreError::io(src, e))?;
        let (from, to, name) = (entry.path(), dst.join(entry.file_name()), rel.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| StoreError::io(&from, e))?;
        if kind.is_dir() {
            link_tree(&from, &to, &name, out)?;
        } else if kind.is_file() {
            std::fs::hard_link(&from, &to).map_err(|e| StoreError::io(&to, e))?;
            let bytes = entry.metadata().map_err(|e| StoreError::io(&from, e))?.len();
            out.push(manifest::FileEntry { path: name.to_string_lossy().into_owned(), bytes });
        }
    }
    Ok(())
}

impl Store {
    /// Opens a store, creating its layout on first use.
    /// A store that cannot be written (a read-only mount, another user's
    /// directory) is said to be so here, before a run takes any lock.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let read_only = |p: &Path, e: std::io::Error| match e.kind() {
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
                StoreError::ReadOnly { store: root.to_path_buf(), source: e }
            }
            _ => StoreError::io(p, e),
        };
        for sub in ["objects", "staging", "refs", "runs", "logs"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| read_only(&p, e))?;
        }
        let root = std::fs::canonicalize(root).map_err(|e| StoreError::io(root, e))?;
        let probe = root.join("staging").join(format!(".writable-{}", std::process::id()));
        std::fs::File::create(&probe).map_err(|e| read_only(&probe, e))?;
        match std::fs::remove_file(&probe) {
            // Another host's run with the same pid probed at the same moment.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(read_only(&probe, e)),
            _ => {}
        }
        Ok(Store { root })
    }

    /// Opens an existing store read-only; `None` when there is none yet.
    pub fn existing(root: &Path) -> Option<Store> {
        root.join("objects").is_dir().then(|| std::fs::canonicalize(root).ok()).flatten().map(|root| Store { root })
    }

    pub fn object_dir(&self, key: &CacheKey) -> PathBuf {
        self.root.join("objects").join(&key.as_str()[..2]).join(key.as_str())
    }

    /// The folder of an artifact's part files, to read it as a dataset.
    pub fn parts_dir(&self, manifest: &Manifest) -> PathBuf {
        let dir = self.object_dir(&manifest.key);
        match manifest.parts.first().and_then(|p| Path::new(&p.file).parent()) {
            Some(sub) => dir.join(sub),
            None => dir,
        }
    }

    pub fn staging_dir(&self, key: &CacheKey) -> PathBuf {
        self.root.join("staging").join(key.as_str())
    }

    pub fn logs_dir(&self, run: &str) -> PathBuf {
        self.root.join("logs").join(run)
    }

    pub fn stat_cache(&self) -> statcache::StatCache {
        statcache::StatCache::load(self.root.join("statcache.json"))
    }

    /// Finds an artifact and checks its manifest against its files (by
    /// size: cheap enough for every plan; content was hashed at commit).
    pub fn lookup(&self, key: &CacheKey) -> Lookup {
        let dir = self.object_dir(key);
        let bytes = match read_manifest(&dir) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if dir.exists() {
                    Lookup::Corrupt(format!("object has no {MANIFEST_FILE}"))
                } else {
                    Lookup::Missing
                };
            }
            Err(e) => return Lookup::Corrupt(format!("cannot read {MANIFEST_FILE}: {e}")),
        };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return Lookup::Corrupt(format!("{MANIFEST_FILE} does not parse: {e}")),
        };
        if manifest.key != *key || manifest.format != manifest::MANIFEST_FORMAT {
            return Lookup::Corrupt(format!("{MANIFEST_FILE} names another key or format"));
        }
        for part in &manifest.parts {
            match std::fs::metadata(dir.join(&part.file)) {
                Ok(m) if m.len() == part.bytes => {}
                Ok(m) => {
                    return Lookup::Corrupt(format!(
                        "{} has {} bytes, manifest says {}",
                        part.file,
                        m.len(),
                        part.bytes
                    ))
                }
                Err(_) => return Lookup::Corrupt(format!("{} is missing", part.file)),
            }
        }
        Lookup::Present(Box::new(manifest))
    }

    /// Moves a damaged object aside so it is redone, never used, and can
    /// still be inspected.
    pub fn quarantine(&self, key: &CacheKey) -> Result<PathBuf, StoreError> {
        let from = self.object_dir(key);
        let qdir = self.root.join("quarantine");
        std::fs::create_dir_all(&qdir).map_err(|e| StoreError::io(&qdir, e))?;
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let to = qdir.join(format!("{}-{stamp}", key.as_str()));
        std::fs::rename(&from, &to).map_err(|e| StoreError::io(&from, e))?;
        Ok(to)
    }

    /// Prepares the staging area of a key for a stage split into `shards`.
    /// With the same shard count as an earlier, interrupted attempt, what
    /// that attempt left is kept: finished shards (returned), and the
    /// records of jobs that may still be running (SLURM adopts them).
    /// Otherwise the area starts empty.
    pub fn begin(&self, key: &CacheKey, shards: u32) -> Result<Vec<u32>, StoreError> {
        let dir = self.staging_dir(key);
        let marker = dir.join("shards.json");
        let same_count = std::fs::read(&marker)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["shards"].as_u64())
            == Some(u64::from(shards));
        let mut done = Vec::new();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if same_count {
                    match shard_index(&name) {
                        Some(i) if i < shards => done.push(i),
                        // A commit that did not finish: redone from the shards.
                        _ if name == "out" => {
                            std::fs::remove_dir_all(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?
                        }
                        _ => {}
                    }
                    continue;
                }
                let path = entry.path();
                let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                removed.map_err(|e| StoreError::io(&path, e))?;
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        write_atomic(&marker, format!("{{\"shards\":{shards}}}").as_bytes()).map_err(|e| StoreError::io(&marker, e))?;
        done.sort_unstable();
        Ok(done)
    }

    /// Turns the finished shards of a key into an artifact: links them as
    /// part files, hashes and describes every part, writes the manifest,
    /// fsyncs, and renames into `objects/`.
    pub fn commit(&self, meta: CommitMeta, shards: u32) -> Result<Manifest, StoreError> {
        let staging = self.staging_dir(&meta.key);
        let out = staging.join("out");
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(|e| StoreError::io(&out, e))?;
        }
        let parts_dir = out.join(PARTS_DIR);
        std::fs::create_dir_all(&parts_dir).map_err(|e| StoreError::io(&parts_dir, e))?;
        for i in 0..shards {
            let shard = shard::shard_file(&staging, i);
            if !shard.is_file() {
                return Err(StoreError::NoOutput { expected: shard });
            }
            // A link, not a move: if the commit fails the shard stays done.
            let part = parts_dir.join(format!("part-{i:05}.parquet"));
            std::fs::hard_link(&shard, &part).map_err(|e| StoreError::io(&part, e))?;
        }
        // A directory artifact's files (a checkpoint, a dataset), linked
        // the same way.
        let mut files = Vec::new();
        let staged_files = staging.join(FILES_DIR);
        if staged_files.is_dir() {
            link_tree(&staged_files, &out.join(FILES_DIR), Path::new(FILES_DIR), &mut files)?;
            files.sort_by(|a: &manifest::FileEntry, b| a.path.cmp(&b.path));
        }
        let mut names: Vec<String> = std::fs::read_dir(&parts_dir)
            .map_err(|e| StoreError::io(&parts_dir, e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(StoreError::NoOutput { expected: parts_dir.join("part-00000.parquet") });
        }
        let mut parts = Vec::new();
        let mut schema: Option<(String, arrow_schema::SchemaRef)> = None;
        for name in &names {
            let path = parts_dir.join(name);
            let (rows, s) = table::parquet_info(&path)?;
            if let Some((first, first_schema)) = &schema {
                if first_schema.fields() != s.fields() {
                    return Err(StoreError::SchemaMismatch {
                        a: first.clone(),
                        a_schema: describe(first_schema),
                        b: name.clone(),
                        b_schema: describe(&s),
                    });
                }
            } else {
                schema = Some((name.clone(), s));
            }
            let bytes = std::fs::metadata(&path).map_err(|e| StoreError::io(&path, e))?.len();
            let blake3 = statcache::hash_file(&path).map_err(|e| StoreError::io(&path, e))?;
            fsync(&path)?;
            parts.push(manifest::Part { file: format!("{PARTS_DIR}/{name}"), rows, bytes, blake3 });
        }
        let schema = schema.map(|(_, s)| manifest::fields_of(&s)).unwrap_or_default();
        let manifest = Manifest {
            format: manifest::MANIFEST_FORMAT,
            key: meta.key.clone(),
            stage: meta.stage,
            kind: meta.preimage.kind.clone(),
            kind_version: meta.preimage.impl_version,
            params: meta.preimage.params.clone(),
            inputs: meta.preimage.inputs.clone(),
            content_hash: manifest::content_hash(&parts),
            rows: parts.iter().map(|p| p.rows).sum(),
            bytes: parts.iter().map(|p| p.bytes).sum(),
            schema,
            parts,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            duration_s: meta.duration_s,
            workflow: meta.workflow,
            variants: meta.variants,
            run: meta.run,
            preimage: meta.preimage,
            stats: meta.stats,
            files,
            usage: meta.usage.map(|mut u| {
                // The shards' own measurements, beside their files.
                for i in 0..shards {
                    let side = shard::shard_file(&staging, i).with_extension("usage.json");
                    if let Some(v) = std::fs::read(&side).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                        u.add_shard(&v);
                    }
                }
                u
            }),
        };
        let mpath = out.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("plain data");
        std::fs::write(&mpath, bytes).map_err(|e| StoreError::io(&mpath, e))?;
        fsync(&mpath)?;
        fsync(&out)?;
        let target = self.object_dir(&meta.key);
        let parent = target.parent().expect("objects/<k0k1>");
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        let mut replaced = None;
        match self.lookup(&meta.key) {
            Lookup::Present(existing) if !meta.replace => {
                // Same key committed meanwhile (same stage in two variants): keep the first.
                let _ = std::fs::remove_dir_all(&staging);
                return Ok(*existing);
            }
            Lookup::Present(_) => {
                // Forced: the old object steps aside, and goes once the new
                // one is in place (a reader with its files open keeps them).
                let aside = staging.join("replaced");
                std::fs::rename(&target, &aside).map_err(|e| StoreError::io(&target, e))?;
                replaced = Some(aside);
            }
            _ if target.exists() => {
                // A damaged object under this key: set it aside before replacing it.
                self.quarantine(&meta.key)?;
            }
            _ => {}
        }
        std::fs::rename(&out, &target).map_err(|e| StoreError::io(&target, e))?;
        fsync(parent)?;
        if let Some(aside) = replaced {
            std::fs::remove_dir_all(&aside).map_err(|e| StoreError::io(&aside, e))?;
        }
        let _ = std::fs::remove_dir_all(&staging);
        Ok(manifest)
    }

    pub fn refs(&self, workflow: &str) -> Refs {
        std::fs::read(self.refs_path(workflow)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Changes a workflow's refs under their lock, so that concurrent runs
    /// of its variants each add their entries and lose none.
    pub fn update_refs(&self, locks: &Locks, workflow: &str, change: impl FnOnce(&mut Refs)) -> Result<(), StoreError> {
        let _held = locks.lock(&format!("refs-{workflow}"), |_| {})?;
        let mut refs = self.refs(workflow);
        change(&mut refs);
        self.write_refs(workflow, &refs)
    }

    pub fn write_refs(&self, workflow: &str, refs: &Refs) -> Result<(), StoreError> {
        let path = self.refs_path(workflow);
        let bytes = serde_json::to_vec_pretty(refs).expect("plain data");
        write_atomic(&path, &bytes).map_err(|e| StoreError::io(&path, e))
    }

    fn refs_path(&self, workflow: &str) -> PathBuf {
        self.root.join("refs").join(format!("{workflow}.json"))
    }

    /// Every workflow's refs.
    pub fn all_refs(&self) -> Vec<(String, Refs)> {
        files_ending(&self.root.join("refs"), ".json")
            .filter_map(|(name, path)| Some((name, serde_json::from_slice(&std::fs::read(path).ok()?).ok()?)))
            .collect()
    }

    /// The manifest of every artifact in the store (unreadable ones left
    /// out): what earlier runs recorded, for forecasts.
    pub fn manifests(&self) -> Vec<Manifest> {
        let objects = self.root.join("objects");
        std::fs::read_dir(&objects)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|shard| std::fs::read_dir(shard.path()).into_iter().flatten().flatten())
            .filter_map(|o| read_manifest(&o.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// Paths of an artifact's part files, in order.
    pub fn part_paths(&self, manifest: &Manifest) -> Vec<PathBuf> {
        let dir = self.object_dir(&manifest.key);
        manifest.parts.iter().map(|p| dir.join(&p.file)).collect()
    }
}

/// `shard-00007.parquet` → 7.
fn shard_index(name: &str) -> Option<u32> {
    name.strip_prefix("shard-")?.strip_suffix(".parquet")?.parse().ok()
}

fn describe(s: &arrow_schema::Schema) -> String {
    s.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

fn fsync(path: &Path) -> Result<(), StoreError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| StoreError::io(path, e))
}

/// Writes a small file so that readers see the old or the new content,
/// never a mix: write beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Unique across the hosts that share the store, not only this one.
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        HOST.get_or_init(lock::hostname),
        std::process::id()
    ));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        // A full disk: leave no empty temporary file behind. The write's
        // own error is the one to report.
        let _already_reported_above = std::fs::remove_file(&tmp);
    }
    written
}
