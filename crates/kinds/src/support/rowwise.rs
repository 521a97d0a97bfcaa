//! The row driver of the row-wise kinds (issue_synthesis, test_filter,
//! swebench_eval, rollout): a kind says what one unit of work on one input
//! row is ([`RowWork`]); [`drive`] does the rest the same way for all of
//! them: the shard's row range, the progress log and resuming from it,
//! the workspace clean-up, the runtime, concurrency, cancellation, and the
//! shard's Parquet file.
//!
//! Slow per-row work may fail for reasons outside the data (a sandbox, a
//! model endpoint). Such a failure is never recorded: how the shard goes
//! on depends on the kind's [`LogOrder`]:
//!
//! - `Ordered`: results are logged in input order, so a failed row stops
//!   the shard there (the rows already running finish, their results
//!   discarded: they come after the gap) and a rerun starts again at it.
//! - `Keyed`: units are logged as they finish (a rollout's episodes, by
//!   instance and attempt); the others go on, the shard fails afterwards
//!   naming the failed ones, and a rerun runs just those.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::SchemaRef;
use serde_json::Value;
use swestar_vocab::supervise::Cancel;

pub use super::log::Dropped;
use super::log::{Keyed, Ordered};
use super::workspace::Workspace;
use crate::store::rows::{self, RowReader, RowWriter};
use crate::store::shard::shard_range;
use crate::{Job, ShardRun, StageError};

/// What one unit of work gave: a row (`Ordered`: the fields it adds;
/// `Keyed`: the output row), or a dropped row and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Kept(String),
    Dropped(Dropped),
}

impl Row {
    /// Dropped on its merits: the row is data, and this is what it says.
    pub fn dropped(cause: impl Into<String>) -> Row {
        Row::Dropped(Dropped { cause: cause.into(), environment: false })
    }

    /// Dropped because of the environment (the test runner could not
    /// start): not a fact about the row. A shard whose rows all end so
    /// fails, and its rows are done again by the next run.
    pub fn environment(cause: impl Into<String>) -> Row {
        Row::Dropped(Dropped { cause: cause.into(), environment: true })
    }
}

/// How a kind's progress is logged (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOrder {
    Ordered,
    Keyed,
}

/// One row-wise kind's work.
pub trait RowWork: Sized + Send + Sync + 'static {
    /// Names the kind in messages and its progress log (`<NAME>-00007.jsonl`).
    const NAME: &'static str;
    /// The input whose rows are worked on.
    const INPUT: &'static str;
    /// What the input's rows are, in messages ("instances").
    const NOUN: &'static str;
    /// What one unit of work is, in messages ("episode").
    const UNIT: &'static str;
    const ORDER: LogOrder;
    /// What every row's work in a shard shares (a model client, prompts,
    /// host repositories), made once before any row starts.
    type Shared: Send + Sync + 'static;

    /// Units at once.
    fn parallel(&self) -> u32;
    /// Where the work's sandboxes come from (swept of leftovers first).
    fn workspace(&self) -> &Workspace;
    /// Units of work per input row (a rollout's attempts); `Keyed` only.
    fn units(&self) -> u32 {
        1
    }
    /// The shard's output schema.
    fn schema(&self, job: &Job) -> Result<SchemaRef, StageError>;
    fn shared(&self, job: &Job, shard: &ShardRun) -> Result<Self::Shared, StageError>;
    /// Checks what the rows will need from outside (a model endpoint)
    /// before any row starts, so that a dead one fails the shard at once
    /// with its cause; nothing by default.
    fn check(_shared: &Self::Shared) -> impl Future<Output = Result<(), StageError>> + Send {
        async { Ok(()) }
    }
    /// One unit on one row. `Ordered`: the fields the work adds to the
    /// row, as a JSON object, or why the row is dropped. `Keyed`: the
    /// output row, naming its `instance_id` and `attempt` (= `unit`).
    /// `Err`: the work could not be done (not data: not recorded).
    fn work(
        shared: Arc<Self::Shared>,
        row: Value,
        unit: u32,
    ) -> impl Future<Output = Result<Row, String>> + Send + 'static;
    /// `Ordered`: the output rows of an input row and its log line (by
    /// default the row with the line's fields added).
    fn output(&self, input: Value, logged: Value) -> Result<Vec<Value>, String> {
        merge(input, logged)
    }
}

/// An input row with the fields its log line adds; none for a dropped row.
pub fn merge(mut input: Value, logged: Value) -> Result<Vec<Value>, String> {
    match (logged, input.as_object_mut()) {
        (line, _) if Ordered::is_dropped(&line) => Ok(Vec::new()),
        (Value::Object(fields), Some(o)) => {
            o.extend(fields);
            Ok(vec![input])
        }
        _ => Err("a line is not an object".into()),
    }
}

/// Runs one shard of a row-wise kind.
pub fn drive<W: RowWork>(w: &W, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
    let input = job.inputs.get(W::INPUT).ok_or_else(|| StageError::Failed(format!("no `{}` input", W::INPUT)))?;
    let table = rows::Table::open(&input.paths, input.format)?;
    let (lo, hi) = shard_range(table.rows() as usize, shard.index, shard.count);
    let (lo, hi) = (lo as u64, hi as u64);
    let log_path = job.stage_dir.join(format!("{}-{:05}.jsonl", W::NAME, shard.index));
    let schema = w.schema(job)?;
    let head = format!("{}: shard {}/{}: {} {lo}..{hi}", W::NAME, shard.index, shard.count, W::NOUN);
    let mut out = RowWriter::create(&shard.output, schema)?;
    let mut done_line = String::new();
    let mut dropped = serde_json::Map::new();
    let rows_in = match W::ORDER {
        LogOrder::Ordered => {
            let mut log = Ordered::open(&log_path)?;
            swestar_vocab::progress!("{head}, {} already done, {} at once", log.done, w.parallel());
            let start = lo + log.done;
            if start < hi {
                let (shared, runtime) = begin(w, job, shard)?;
                let work = |_index: u64, row: Value| W::work(shared.clone(), row, 0);
                runtime.block_on(run_ordered(table.read(start, hi), w.parallel(), &mut log, shard.cancel, work))?;
            }
            let environment: Vec<&Dropped> = log.drops.keys().filter(|d| d.environment).collect();
            if log.kept == 0 && !environment.is_empty() && environment.len() == log.drops.len() {
                // Every row ended because of the environment: that is an
                // error, not data. Nothing is committed, and the log goes so
                // that the next run does the rows again.
                let causes = environment.iter().take(3).map(|d| d.cause.as_str()).collect::<Vec<_>>().join("; ");
                let n = log.done;
                log.discard()?;
                return Err(StageError::Failed(format!(
                    "all {n} {} failed because of the environment, not their data: {causes}",
                    W::NOUN
                )));
            }
            let mut lines = log.lines()?;
            for batch in table.read(lo, hi) {
                for row in batch? {
                    let Some(logged) = lines.next() else {
                        let path = log.path().display();
                        return Err(StageError::Failed(format!("{path}: the log ends before the input does")));
                    };
                    let rows = w
                        .output(row, logged?)
                        .map_err(|e| StageError::Failed(format!("{}: {e}", log.path().display())))?;
                    for r in rows {
                        out.push(&r)?;
                    }
                }
            }
            done_line = drops_line(&log.drops);
            for (d, n) in &log.drops {
                let cause = if d.environment { format!("environment: {}", d.cause) } else { d.cause.clone() };
                dropped.insert(cause, serde_json::json!(n));
            }
            log.done
        }
        LogOrder::Keyed => {
            let rows: Vec<Value> = table.read(lo, hi).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
            let log = Keyed::open(&log_path)?;
            let mut todo = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let id = instance_id(row, lo as usize + i)?;
                todo.extend((0..w.units()).filter(|u| !log.done.contains(&(id.clone(), *u))).map(|u| (i, u)));
            }
            let total = rows.len() * w.units() as usize;
            let done = total - todo.len();
            swestar_vocab::progress!("{head}, {total} {}s, {done} already done, {} at once", W::UNIT, w.parallel());
            if !todo.is_empty() {
                let (shared, runtime) = begin(w, job, shard)?;
                let failures =
                    runtime.block_on(run_keyed::<W>(shared, &rows, todo, log, w.parallel(), shard.cancel))?;
                if let Some(first) = failures.first() {
                    return Err(StageError::Failed(format!(
                        "{} {}(s) could not run and were not recorded (a rerun retries them); first: {} attempt {}: {}",
                        failures.len(),
                        W::UNIT,
                        first.0,
                        first.1,
                        first.2
                    )));
                }
            }
            write_keyed(&log_path, &rows, &mut out)?;
            rows.len() as u64
        }
    };
    let rows_out = out.finish()?;
    // What went in and why rows were dropped, beside the shard for the
    // kind's stats (the output alone cannot tell).
    let side = shard.output.with_extension("rows.json");
    let counts = serde_json::json!({"rows_in": rows_in, "rows_out": rows_out, "dropped": dropped});
    crate::store::write_atomic(&side, counts.to_string().as_bytes())
        .map_err(|e| StageError::Failed(format!("{}: {e}", side.display())))?;
    swestar_vocab::progress!(
        "{}: shard {}: {rows_in} {} in, {rows_out} rows out{done_line}",
        W::NAME,
        shard.index,
        W::NOUN
    );
    Ok(())
}

/// "; 10 dropped: tests pass with the bug applied (9), the test runner
/// could not start (1)", the commonest causes first.
fn drops_line(drops: &std::collections::BTreeMap<Dropped, u64>) -> String {
    let total: u64 = drops.values().sum();
    if total == 0 {
        return String::new();
    }
    let mut by_count: Vec<(&Dropped, &u64)> = drops.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    let shown: Vec<String> = by_count
        .iter()
        .take(3)
        .map(|(d, n)| format!("{}{} ({n})", if d.environment { "environment: " } else { "" }, d.cause))
        .collect();
    let more = if by_count.len() > 3 { format!(", {} more causes", by_count.len() - 3) } else { String::new() };
    format!("; {total} dropped: {}{more}", shown.join(", "))
}

/// What a shard with work to do sets up first: the workspace swept of
/// what killed processes left behind, the promise to stop in process,
/// the shared state and the runtime.
fn begin<W: RowWork>(
    w: &W,
    job: &Job,
    shard: &ShardRun,
) -> Result<(Arc<W::Shared>, tokio::runtime::Runtime), StageError> {
    w.workspace().sweep(W::NAME);
    shard.cancel.handle_in_process();
    let shared = Arc::new(w.shared(job, shard)?);
    let runtime = crate::runtime(shard)?;
    runtime.block_on(W::check(&shared))?;
    Ok((shared, runtime))
}

fn instance_id(row: &Value, i: usize) -> Result<String, StageError> {
    row.get("instance_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| StageError::Failed(format!("input row {i} has no `instance_id` string")))
}

/// A row's work, running: its output line or why there is none.
type RowTask = tokio::task::JoinHandle<Result<Row, String>>;

/// Runs `work` on each row `reader` yields, `parallel` at once, logging the
/// results in input order. Returns when every row is logged, or after the
/// first failure once the rows already running are done (their results
/// discarded: they come after the gap).
pub async fn run_ordered<F, Fut>(
    mut reader: RowReader,
    parallel: u32,
    log: &mut Ordered,
    cancel: Cancel,
    mut work: F,
) -> Result<(), StageError>
where
    F: FnMut(u64, Value) -> Fut,
    Fut: Future<Output = Result<Row, String>> + Send + 'static,
{
    let parallel = parallel.max(1) as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut queue: VecDeque<(u64, RowTask)> = VecDeque::new();
    let mut pending: VecDeque<Value> = VecDeque::new();
    let mut next_index = reader.next_row;
    let mut failure: Option<(u64, String)> = None;
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
            (Ok(Row::Kept(fields)), None) => log.append(Ok(&fields))?,
            (Ok(Row::Dropped(why)), None) => log.append(Err(&why))?,
            (Err(what), None) => failure = Some((index, what)),
            (_, Some(_)) => {}
        }
    }
    match failure {
        None => Ok(()),
        Some((row, what)) => Err(StageError::Failed(format!(
            "row {row} could not be processed and was not recorded (a rerun resumes there): {what}"
        ))),
    }
}

/// One unit that could not run: instance, attempt, what happened.
type Failure = (String, u32, String);

/// Runs the `todo` units (row, unit), `parallel` at once, logging each as
/// it finishes; returns the units that failed, sorted.
async fn run_keyed<W: RowWork>(
    shared: Arc<W::Shared>,
    rows: &[Value],
    todo: Vec<(usize, u32)>,
    log: Keyed,
    parallel: u32,
    cancel: Cancel,
) -> Result<Vec<Failure>, StageError> {
    let log = Arc::new(tokio::sync::Mutex::new(log));
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1) as usize));
    let mut tasks: tokio::task::JoinSet<Result<(), Failure>> = tokio::task::JoinSet::new();
    for (i, unit) in todo {
        let row = rows[i].clone();
        let (shared, permits, log) = (shared.clone(), permits.clone(), log.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let id = row["instance_id"].as_str().unwrap_or_default().to_string();
            let line = match W::work(shared, row, unit).await {
                Ok(Row::Kept(line)) => line,
                // A keyed unit is recorded or retried: a drop is not data here.
                Ok(Row::Dropped(why)) => return Err((id, unit, why.cause)),
                Err(e) => return Err((id, unit, e)),
            };
            log.lock().await.append(&line).map_err(|e| (id.clone(), unit, format!("progress log: {e}")))?;
            Ok(())
        });
    }
    let mut failures = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok(Ok(())))) => {}
            Ok(Some(Ok(Err(f)))) => {
                swestar_vocab::progress!("{}: {} attempt {}: {}", W::NAME, f.0, f.1, f.2);
                failures.push(f);
            }
            Ok(Some(Err(e))) => failures.push(("?".into(), 0, format!("{} task: {e}", W::UNIT))),
            Err(_) => {}
        }
        if cancel.requested() {
            // Dropping the units' futures closes their shells and removes
            // their containers; what finished is in the log.
            tasks.shutdown().await;
            return Err(StageError::Terminated);
        }
    }
    failures.sort();
    Ok(failures)
}

/// A keyed log's rows in input order (then attempt), each unit once.
fn write_keyed(log_path: &std::path::Path, rows: &[Value], out: &mut RowWriter) -> Result<(), StageError> {
    let order: HashMap<&str, usize> =
        rows.iter().enumerate().filter_map(|(i, r)| Some((r.get("instance_id")?.as_str()?, i))).collect();
    let text = match std::fs::read_to_string(log_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(StageError::Io { path: log_path.to_path_buf(), source }),
    };
    let mut lines: Vec<((usize, u64), &str)> = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| StageError::Failed(format!("{}: damaged row: {e}", log_path.display())))?;
        let pos = v["instance_id"].as_str().and_then(|id| order.get(id)).copied().unwrap_or(usize::MAX);
        lines.push(((pos, v["attempt"].as_u64().unwrap_or(0)), line));
    }
    lines.sort_by_key(|(k, _)| *k);
    lines.dedup_by_key(|(k, _)| *k);
    for (_, line) in lines {
        out.push_json(line.as_bytes())?;
    }
    Ok(())
}

/// The row counts of a row-wise stage's shards (`shard-N.rows.json`, written
/// by [`drive`]): rows in and out, the fraction kept, and the dropped rows
/// by cause. Shards without counts are left out.
pub fn row_stats(shards: &[std::path::PathBuf]) -> std::collections::BTreeMap<String, Value> {
    let (mut rows_in, mut rows_out) = (0u64, 0u64);
    let mut dropped: std::collections::BTreeMap<String, u64> = Default::default();
    for shard in shards {
        let Some(v) = std::fs::read(shard.with_extension("rows.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        rows_in += v["rows_in"].as_u64().unwrap_or(0);
        rows_out += v["rows_out"].as_u64().unwrap_or(0);
        for (cause, n) in v["dropped"].as_object().into_iter().flatten() {
            *dropped.entry(cause.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    out.insert("rows_in".into(), serde_json::json!(rows_in));
    out.insert("rows_out".into(), serde_json::json!(rows_out));
    if rows_in > 0 {
        out.insert("kept_fraction".into(), serde_json::json!(rows_out as f64 / rows_in as f64));
    }
    out.insert("dropped".into(), serde_json::json!(dropped));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TableFormat;
    use serde_json::json;
    use std::io::Write;
    use std::path::{Path, PathBuf};

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
                Ok(if i.is_multiple_of(2) { Row::Kept(json!({"sq": i * i}).to_string()) } else { Row::dropped("odd") })
            }
        };
        let mut p = Ordered::open(&log).unwrap();
        let reader = RowReader::open(&paths, TableFormat::Jsonl, 0, 40).unwrap();
        let err = rt.block_on(run_ordered(reader, 4, &mut p, Cancel::process(), work(true))).unwrap_err().to_string();
        assert!(err.contains("row 25") && err.contains("sandbox gone"), "{err}");
        assert_eq!((p.done, p.kept), (25, 13));
        drop(p);
        // A torn line from a crash is cut; the rerun resumes at row 25.
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"{\"i\":25,").unwrap();
        let mut p = Ordered::open(&log).unwrap();
        assert_eq!(p.done, 25);
        let reader = RowReader::open(&paths, TableFormat::Jsonl, p.done, 40).unwrap();
        rt.block_on(run_ordered(reader, 4, &mut p, Cancel::process(), work(false))).unwrap();
        assert_eq!((p.done, p.kept), (40, 20));
        // Merged, as an ordered kind's output is by default.
        let mut merged = Vec::new();
        let mut lines = p.lines().unwrap();
        for row in RowReader::open(&paths, TableFormat::Jsonl, 0, 40).unwrap().flat_map(Result::unwrap) {
            merged.extend(merge(row, lines.next().unwrap().unwrap()).unwrap());
        }
        let got: Vec<u64> = merged.iter().map(|r| r["i"].as_u64().unwrap()).collect();
        assert_eq!(got, (0..40).step_by(2).collect::<Vec<_>>());
        assert!(merged.iter().all(|r| r["sq"].as_u64().unwrap() == r["i"].as_u64().unwrap().pow(2)), "merged");
    }
}
