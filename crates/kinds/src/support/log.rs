//! Progress logs: what a row-wise shard finished, one JSON line per unit
//! of work, appended and synced as each finishes, so that a killed shard
//! resumes where it stopped. Two disciplines share the file handling and
//! the one torn-line recovery ([`recover`]):
//!
//! - [`Ordered`]: one line per input row, in input order: the fields the
//!   work adds to the row, or for a row the stage drops, why
//!   (`{"__dropped": cause, "__environment": bool}`; `null` in logs of
//!   earlier versions). The line count is exactly how far the shard got.
//! - [`Keyed`]: one output row per line, in the order units finished, each
//!   naming its unit by `instance_id` and `attempt`. What is logged is
//!   skipped on a rerun, whatever finished before or after it.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::StageError;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io { path: path.to_path_buf(), source }
}

/// Reads a log's whole lines, handing each to `accept`; the first line
/// that is torn (no newline: a crash mid-write) or that `accept` refuses
/// ends the log, and the file is cut there.
pub fn recover(path: &Path, mut accept: impl FnMut(&[u8]) -> bool) -> Result<(), StageError> {
    let io = io_err(path);
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let mut r = std::io::BufReader::new(f);
    let (mut line, mut good) = (Vec::new(), 0u64);
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(&io)?;
        if n == 0 || line.last() != Some(&b'\n') || !accept(&line[..n - 1]) {
            break;
        }
        good += n as u64;
    }
    let len = std::fs::metadata(path).map_err(&io)?.len();
    if good < len {
        swestar_vocab::progress!("{}: dropping {} bytes of a torn last row", path.display(), len - good);
        std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(good)).map_err(&io)?;
    }
    Ok(())
}

/// The file a log appends to; each line is on disk before `append` returns.
struct Appender {
    path: PathBuf,
    file: std::fs::File,
}

impl Appender {
    fn open(path: &Path) -> Result<Appender, StageError> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
        Ok(Appender { path: path.to_path_buf(), file })
    }

    fn append(&mut self, line: &str) -> Result<(), StageError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))
    }
}

/// Why a row was dropped: on its merits (a patch that does not apply,
/// tests that pass before the fix), or because of the environment (the
/// test runner could not start), which is not a fact about the row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dropped {
    pub cause: String,
    pub environment: bool,
}

/// The key of a dropped row's log line.
const DROPPED: &str = "__dropped";

fn dropped_of(line: &Value) -> Option<Dropped> {
    match line {
        Value::Null => Some(Dropped { cause: "dropped".into(), environment: false }),
        Value::Object(o) => o.get(DROPPED).map(|c| Dropped {
            cause: c.as_str().unwrap_or("dropped").to_string(),
            environment: o.get("__environment").and_then(Value::as_bool).unwrap_or(false),
        }),
        _ => None,
    }
}

/// A log in input order (see the module docs).
pub struct Ordered {
    out: Appender,
    /// Input rows the log accounts for.
    pub done: u64,
    /// Of those, rows kept (not dropped).
    pub kept: u64,
    /// Dropped rows by cause, with their counts.
    pub drops: BTreeMap<Dropped, u64>,
}

impl Ordered {
    /// Opens (or starts) the log, cutting a torn last line.
    pub fn open(path: &Path) -> Result<Ordered, StageError> {
        let (mut done, mut kept, mut drops) = (0u64, 0u64, BTreeMap::new());
        recover(path, |body| match serde_json::from_slice::<Value>(body) {
            Ok(line) => {
                done += 1;
                match dropped_of(&line) {
                    Some(d) => *drops.entry(d).or_insert(0) += 1,
                    None => kept += 1,
                }
                true
            }
            Err(_) => false,
        })?;
        Ok(Ordered { out: Appender::open(path)?, done, kept, drops })
    }

    /// Whether a logged line stands for a dropped row.
    pub fn is_dropped(line: &Value) -> bool {
        dropped_of(line).is_some()
    }

    pub fn path(&self) -> &Path {
        &self.out.path
    }

    /// Records the next input row's result; on disk before this returns.
    pub fn append(&mut self, row: Result<&str, &Dropped>) -> Result<(), StageError> {
        match row {
            Ok(fields) => {
                self.out.append(fields)?;
                self.kept += 1;
            }
            Err(d) => {
                let line = serde_json::json!({ DROPPED: d.cause, "__environment": d.environment });
                self.out.append(&line.to_string())?;
                *self.drops.entry(d.clone()).or_insert(0) += 1;
            }
        }
        self.done += 1;
        Ok(())
    }

    /// Starts the log over: its rows are to be done again.
    pub fn discard(self) -> Result<(), StageError> {
        let path = self.out.path.clone();
        drop(self);
        std::fs::remove_file(&path).map_err(io_err(&path))
    }

    /// The logged lines, in input order.
    pub fn lines(&self) -> Result<impl Iterator<Item = Result<Value, StageError>> + '_, StageError> {
        read_lines(&self.out.path)
    }
}

/// A log keyed by (`instance_id`, `attempt`) (see the module docs).
pub struct Keyed {
    out: Appender,
    /// The units logged.
    pub done: HashSet<(String, u32)>,
}

impl Keyed {
    /// Opens (or starts) the log, cutting a torn last line.
    pub fn open(path: &Path) -> Result<Keyed, StageError> {
        let mut done = HashSet::new();
        recover(path, |body| match serde_json::from_slice::<Value>(body) {
            Ok(row) => match (row["instance_id"].as_str(), row["attempt"].as_u64()) {
                (Some(id), Some(attempt)) => {
                    done.insert((id.to_string(), attempt as u32));
                    true
                }
                _ => false,
            },
            Err(_) => false,
        })?;
        Ok(Keyed { out: Appender::open(path)?, done })
    }

    pub fn path(&self) -> &Path {
        &self.out.path
    }

    /// Records a finished unit's row; on disk before this returns.
    pub fn append(&mut self, row: &str) -> Result<(), StageError> {
        self.out.append(row)
    }

    /// The logged rows, in the order they finished.
    pub fn lines(&self) -> Result<impl Iterator<Item = Result<Value, StageError>> + '_, StageError> {
        read_lines(&self.out.path)
    }
}

fn read_lines(path: &Path) -> Result<impl Iterator<Item = Result<Value, StageError>> + '_, StageError> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    Ok(std::io::BufReader::new(f).lines().map(move |line| {
        let line = line.map_err(io_err(path))?;
        serde_json::from_str(&line).map_err(|e| StageError::Failed(format!("{}: damaged line: {e}", path.display())))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_row_is_cut_and_whole_rows_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("rollout-00000.jsonl");
        std::fs::write(&log, "{\"instance_id\":\"a\",\"attempt\":0}\n{\"instance_id\":\"a\",\"attempt\":1}\n{\"instance_id\":\"b\",\"att").unwrap();
        let l = Keyed::open(&log).unwrap();
        assert_eq!(l.done, HashSet::from([("a".to_string(), 0), ("a".to_string(), 1)]));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.ends_with("\"attempt\":1}\n"), "{text}");
        let mut l = l;
        l.append("{\"instance_id\":\"b\",\"attempt\":0}").unwrap();
        assert_eq!(Keyed::open(&log).unwrap().done.len(), 3);
    }

    #[test]
    fn an_ordered_log_counts_whole_lines_and_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("p.jsonl");
        std::fs::write(&log, "{\"a\":1}\nnull\n{\"a\":3}\n{\"a\":").unwrap();
        let mut l = Ordered::open(&log).unwrap();
        assert_eq!((l.done, l.kept), (3, 2));
        let env = Dropped { cause: "No module named pytest".into(), environment: true };
        l.append(Err(&env)).unwrap();
        let lines: Vec<Value> = l.lines().unwrap().map(Result::unwrap).collect();
        assert_eq!(lines.len(), 4);
        assert!(Ordered::is_dropped(&lines[1]) && Ordered::is_dropped(&lines[3]) && !Ordered::is_dropped(&lines[2]));
        drop(l);
        // Reopened, the causes are still known.
        let l = Ordered::open(&log).unwrap();
        assert_eq!((l.done, l.kept), (4, 2));
        assert_eq!(l.drops.get(&env), Some(&1));
    }
}
