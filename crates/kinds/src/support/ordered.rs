//! Rows worked on concurrently but recorded in input order, for stages
//! whose per-row work is slow and may fail for reasons outside the data
//! (a sandbox, a model endpoint): test_filter, issue_synthesis.
//!
//! Each finished row is appended to the shard's progress log in the
//! staging directory, one line per input row: the fields the work adds to
//! the row, or `null` for a row the stage drops. Because lines are in input order, the
//! log's line count is exactly how far the shard got; a rerun resumes
//! there. A row whose work fails is not logged: the rows after it are not
//! either, the shard fails naming it, and a rerun starts again at it. The
//! finished log, merged with the input rows read again, becomes the shard's
//! Parquet file, streamed.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use serde_json::Value;

use crate::store::rows::{RowReader, RowWriter};
use crate::StageError;
use swestar_vocab::supervise::Cancel;

/// The progress log of one shard.
pub struct Progress {
    path: PathBuf,
    file: std::fs::File,
    /// Input rows the log accounts for.
    pub done: u64,
    /// Of those, rows kept (not `null`).
    pub kept: u64,
}

impl Progress {
    /// Opens (or starts) the log, cutting a torn last line.
    pub fn open(path: &Path) -> Result<Progress, StageError> {
        let io = |source| StageError::Io { path: path.to_path_buf(), source };
        let (mut done, mut kept, mut good) = (0u64, 0u64, 0u64);
        if let Ok(f) = std::fs::File::open(path) {
            let mut r = std::io::BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).map_err(io)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                let body = &line[..n - 1];
                if body != b"null" && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                    break;
                }
                done += 1;
                kept += u64::from(body != b"null");
                good += n as u64;
            }
            let len = std::fs::metadata(path).map_err(io)?.len();
            if good < len {
                eprintln!("{}: dropping {} bytes of a torn last row", path.display(), len - good);
                std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(good)).map_err(io)?;
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        Ok(Progress { path: path.to_path_buf(), file, done, kept })
    }

    /// Records the next input row's result; on disk before this returns.
    pub fn append(&mut self, row: Option<&str>) -> Result<(), StageError> {
        let io = |source| StageError::Io { path: self.path.clone(), source };
        let mut line = row.unwrap_or("null").to_string();
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.done += 1;
        self.kept += u64::from(row.is_some());
        Ok(())
    }

    /// The kept rows as one Parquet file: the input rows (`rows`, the
    /// same range the log covers, read again) with the fields of their
    /// log line added; rows logged as `null` are left out. The log holds
    /// only what the work added, so it stays small beside large rows.
    pub fn write_merged(&self, rows: RowReader, output: &Path, schema: SchemaRef) -> Result<u64, StageError> {
        let io = |source| StageError::Io { path: self.path.clone(), source };
        let mut w = RowWriter::create(output, schema)?;
        let f = std::fs::File::open(&self.path).map_err(io)?;
        let mut log = std::io::BufReader::new(f);
        let mut line = Vec::new();
        for batch in rows {
            for mut row in batch? {
                line.clear();
                if log.read_until(b'\n', &mut line).map_err(io)? == 0 {
                    return Err(StageError::Failed(format!(
                        "{}: the log ends before the input does",
                        self.path.display()
                    )));
                }
                let added: Value = serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(&line))
                    .map_err(|e| StageError::Failed(format!("{}: damaged line: {e}", self.path.display())))?;
                match (added, row.as_object_mut()) {
                    (Value::Null, _) => continue,
                    (Value::Object(fields), Some(o)) => o.extend(fields),
                    _ => return Err(StageError::Failed(format!("{}: a line is not an object", self.path.display()))),
                }
                w.push(&row)?;
            }
        }
        Ok(w.finish()?)
    }
}

/// A row's work, running: its output line or why there is none.
type RowTask = tokio::task::JoinHandle<Result<Option<String>, String>>;

/// Why a row's work did not produce a result.
pub struct RowFailure {
    pub row: u64,
    pub what: String,
}

/// Runs `work` on each row `reader` yields, `parallel` at once, logging the
/// results in input order. Returns when every row is logged, or after the
/// first failure once the rows already running are done (their results
/// discarded: they come after the gap).
pub async fn run<F, Fut>(
    mut reader: RowReader,
    parallel: usize,
    progress: &mut Progress,
    cancel: Cancel,
    mut work: F,
) -> Result<(), StageError>
where
    F: FnMut(u64, Value) -> Fut,
    Fut: Future<Output = Result<Option<String>, String>> + Send + 'static,
{
    let parallel = parallel.max(1);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut queue: VecDeque<(u64, RowTask)> = VecDeque::new();
    let mut pending: VecDeque<Value> = VecDeque::new();
    let mut next_index = reader.next_row;
    let mut failure: Option<RowFailure> = None;
    let mut exhausted = false;
    loop {
        // Keep a window of twice the concurrency started, so one slow row
        // does not idle the others.
        while failure.is_none() && queue.len() < 2 * parallel {
            if pending.is_empty() && !exhausted {
                match reader.next() {
                    Some(batch) => pending.extend(batch?),
                    None => exhausted = true,
                }
            }
            let Some(row) = pending.pop_front() else { break };
            let fut = work(next_index, row);
            let permits = permits.clone();
            let handle = tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                fut.await
            });
            queue.push_back((next_index, handle));
            next_index += 1;
        }
        let Some((index, front)) = queue.front_mut() else { break };
        let index = *index;
        let outcome = loop {
            match tokio::time::timeout(Duration::from_millis(200), &mut *front).await {
                Ok(joined) => break joined,
                Err(_) if cancel.requested() => {
                    for (_, h) in queue.drain(..) {
                        h.abort();
                    }
                    return Err(StageError::Terminated);
                }
                Err(_) => {}
            }
        };
        queue.pop_front();
        let result = outcome.unwrap_or_else(|e| Err(format!("the row's task failed: {e}")));
        match (result, &failure) {
            (Ok(row), None) => progress.append(row.as_deref())?,
            (Ok(_), Some(_)) => {}
            (Err(what), None) => failure = Some(RowFailure { row: index, what }),
            (Err(_), Some(_)) => {}
        }
    }
    match failure {
        None => Ok(()),
        Some(f) => Err(StageError::Failed(format!(
            "row {} could not be processed and was not recorded (a rerun resumes there): {}",
            f.row, f.what
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TableFormat;
    use serde_json::json;

    fn input(dir: &Path, n: u64) -> Vec<PathBuf> {
        let p = dir.join("in.jsonl");
        let text: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        std::fs::write(&p, text).unwrap();
        vec![p]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    #[test]
    fn rows_are_logged_in_order_and_a_failure_stops_at_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let paths = input(dir.path(), 40);
        let log = dir.path().join("p.jsonl");
        let rt = runtime();
        // Odd rows are dropped, row 25 fails, later rows finish sooner.
        let work = |fail: bool| {
            move |i: u64, row: Value| async move {
                tokio::time::sleep(Duration::from_millis(40 - i)).await;
                if fail && i == 25 {
                    return Err("sandbox gone".to_string());
                }
                let _ = row;
                Ok(i.is_multiple_of(2).then(|| json!({"sq": i * i}).to_string()))
            }
        };
        let mut p = Progress::open(&log).unwrap();
        let reader = RowReader::open(&paths, TableFormat::Jsonl, 0, 40).unwrap();
        let err = rt.block_on(run(reader, 4, &mut p, Cancel::process(), work(true))).unwrap_err().to_string();
        assert!(err.contains("row 25") && err.contains("sandbox gone"), "{err}");
        assert_eq!((p.done, p.kept), (25, 13));
        drop(p);
        // A torn line from a crash is cut; the rerun resumes at row 25.
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"{\"i\":25,").unwrap();
        let mut p = Progress::open(&log).unwrap();
        assert_eq!(p.done, 25);
        let reader = RowReader::open(&paths, TableFormat::Jsonl, p.done, 40).unwrap();
        rt.block_on(run(reader, 4, &mut p, Cancel::process(), work(false))).unwrap();
        assert_eq!((p.done, p.kept), (40, 20));
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("i", arrow::datatypes::DataType::UInt64, false),
            arrow::datatypes::Field::new("sq", arrow::datatypes::DataType::UInt64, false),
        ]));
        let out = dir.path().join("out.parquet");
        let again = RowReader::open(&paths, TableFormat::Jsonl, 0, 40).unwrap();
        assert_eq!(p.write_merged(again, &out, schema).unwrap(), 20);
        let rows = crate::store::rows::read_all(&[out], TableFormat::Parquet).unwrap();
        let got: Vec<u64> = rows.iter().map(|r| r["i"].as_u64().unwrap()).collect();
        assert_eq!(got, (0..40).step_by(2).collect::<Vec<_>>());
        assert!(rows.iter().all(|r| r["sq"].as_u64().unwrap() == r["i"].as_u64().unwrap().pow(2)), "merged");
    }
}
