//! The local executor: runs ready nodes concurrently (up to `jobs`), each
//! as a `swestar exec` child in its own process group, and commits their
//! output. A node's key is computed only once its upstream is resolved, so
//! an upstream that reproduces identical content cuts the rerun off here.
//!
//! Children get `PR_SET_PDEATHSIG`: if this process dies, even by SIGKILL,
//! they kill their stage and exit, and nothing writes into the store
//! behind a dead run. Ctrl-C and SIGTERM stop running stages cleanly.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use super::{Event, Outcome, RunOptions};
use crate::cache::CacheKey;
use crate::dag::{Decision, Plan, Reason};
use crate::stages::{Job, JobInput};
use crate::store::runs::{RunRecord, StageRecord};
use crate::store::{CommitMeta, Lookup, Manifest, Refs, Store};
use crate::workflow::TableFormat;

#[derive(Debug, Clone)]
enum State {
    Waiting,
    Running,
    Done(Box<Manifest>),
    Failed,
    Skipped,
    Interrupted,
    Unselected,
}

struct Failure {
    error: String,
    log_tail: String,
    log: PathBuf,
    interrupted: bool,
}

/// The run record's initial stage list, one entry per node.
pub fn initial_records(plan: &Plan) -> Vec<StageRecord> {
    plan.nodes
        .iter()
        .map(|n| {
            let (status, key, reason) = match (&n.decision, n.selected) {
                (_, false) => ("not_selected", n.key().map(|k| k.to_string()), None),
                (Decision::Cached { key, .. }, _) => ("cached", Some(key.to_string()), None),
                (Decision::Run { key, reasons }, _) => (
                    "pending",
                    key.as_ref().map(|k| k.to_string()),
                    Some(
                        reasons
                            .iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                ),
            };
            StageRecord {
                stage: n.stage.clone(),
                variants: n.variants.clone(),
                status: status.to_string(),
                key,
                reason,
                duration_s: None,
                rows: None,
                log: None,
            }
        })
        .collect()
}

/// Executes a plan. Updates `record` and `refs` (and writes both to the
/// store) as stages finish.
pub async fn execute(
    plan: &Plan,
    store: &Store,
    opts: &RunOptions,
    record: &mut RunRecord,
    refs: &mut Refs,
    tx: UnboundedSender<Event>,
) -> Outcome {
    let n = plan.nodes.len();
    let mut state: Vec<State> = Vec::with_capacity(n);
    for (i, node) in plan.nodes.iter().enumerate() {
        state.push(match (&node.decision, node.selected) {
            (_, false) => State::Unselected,
            (Decision::Cached { key, manifest }, true) => {
                let _ = tx.send(Event::Cached {
                    node: i,
                    label: node.label(),
                    key: key.clone(),
                    early_cutoff: false,
                });
                set_refs(refs, node, key);
                State::Done(manifest.clone())
            }
            (Decision::Run { .. }, true) => State::Waiting,
        });
    }
    let _ = store.write_refs(&plan.workflow, refs);
    let _ = store.write_run(record);

    let (mut sigint, mut sigterm) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("cannot install signal handlers"),
    };
    let pids: Arc<Mutex<HashMap<usize, u32>>> = Arc::default();
    let mut running: JoinSet<(usize, CacheKey, Result<Manifest, Failure>)> = JoinSet::new();
    let mut in_flight: HashSet<CacheKey> = HashSet::new();
    let mut stop: Option<Outcome> = None;
    loop {
        if stop.is_none() {
            loop {
                let mut progressed = false;
                for i in 0..n {
                    if !matches!(state[i], State::Waiting) {
                        continue;
                    }
                    let node = &plan.nodes[i];
                    if let Some(bad) = node.upstream.iter().find(|e| {
                        matches!(
                            state[e.node],
                            State::Failed | State::Skipped | State::Interrupted
                        )
                    }) {
                        state[i] = State::Skipped;
                        let because = format!("upstream {} did not finish", bad.stage);
                        record.stages[i].status = "skipped".into();
                        record.stages[i].reason = Some(because.clone());
                        let _ = tx.send(Event::Skipped {
                            node: i,
                            label: node.label(),
                            because,
                        });
                        progressed = true;
                        continue;
                    }
                    let hashes = |u: usize| match &state[u] {
                        State::Done(m) => Some(m.content_hash.clone()),
                        _ => None,
                    };
                    let Some(pre) = node.preimage(hashes) else {
                        continue;
                    };
                    let key = pre.key();
                    if in_flight.contains(&key) {
                        continue;
                    }
                    match store.lookup(&key) {
                        Lookup::Present(m) => {
                            let _ = tx.send(Event::Cached {
                                node: i,
                                label: node.label(),
                                key: key.clone(),
                                early_cutoff: true,
                            });
                            set_refs(refs, node, &key);
                            let _ = store.write_refs(&plan.workflow, refs);
                            let rec = &mut record.stages[i];
                            rec.status = "cached".into();
                            rec.key = Some(key.to_string());
                            rec.reason = Some("upstream output unchanged (early cutoff)".into());
                            state[i] = State::Done(m);
                            progressed = true;
                            continue;
                        }
                        Lookup::Corrupt(_) => {
                            let _ = store.quarantine(&key);
                        }
                        Lookup::Missing => {}
                    }
                    if running.len() >= opts.jobs {
                        continue;
                    }
                    let reasons: Vec<Reason> = match &node.decision {
                        Decision::Run { reasons, .. } => reasons
                            .iter()
                            .map(|r| match r {
                                Reason::PendingUpstream { stage } => Reason::UpstreamChanged {
                                    stage: stage.clone(),
                                },
                                other => other.clone(),
                            })
                            .collect(),
                        Decision::Cached { .. } => Vec::new(),
                    };
                    let job = match build_job(plan, i, &state, store, &key) {
                        Ok(job) => job,
                        Err(e) => {
                            fail(
                                record,
                                &mut state,
                                i,
                                &tx,
                                node.label(),
                                e.to_string(),
                                String::new(),
                                PathBuf::new(),
                            );
                            if !opts.keep_going {
                                stop = Some(Outcome::Failed);
                            }
                            progressed = true;
                            continue;
                        }
                    };
                    let _ = tx.send(Event::Started {
                        node: i,
                        label: node.label(),
                        key: key.clone(),
                        reasons: reasons.clone(),
                    });
                    let rec = &mut record.stages[i];
                    rec.status = "running".into();
                    rec.key = Some(key.to_string());
                    rec.reason = Some(
                        reasons
                            .iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                    let meta = CommitMeta {
                        key: key.clone(),
                        stage: node.stage.clone(),
                        preimage: pre,
                        workflow: plan.workflow.clone(),
                        variants: node
                            .variants
                            .iter()
                            .filter(|v| !v.is_empty())
                            .cloned()
                            .collect(),
                        run: opts.run_id.clone(),
                        duration_s: 0.0,
                    };
                    let logs = store.logs_dir(&opts.run_id);
                    let log_stem = format!("{}.{}", node.stage, key.short());
                    rec.log = Some(logs.join(format!("{log_stem}.err")));
                    let (store, exe, pids) = (store.clone(), opts.exe.clone(), pids.clone());
                    in_flight.insert(key.clone());
                    running.spawn(async move {
                        let result =
                            run_node(i, job, meta, &store, &exe, &logs, &log_stem, pids).await;
                        (i, key, result)
                    });
                    state[i] = State::Running;
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            let _ = store.write_run(record);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = running.join_next() => {
                let Ok((i, key, result)) = joined else { continue };
                in_flight.remove(&key);
                let node = &plan.nodes[i];
                match result {
                    Ok(manifest) => {
                        let _ = tx.send(Event::Committed {
                            node: i,
                            label: node.label(),
                            key: key.clone(),
                            rows: manifest.rows,
                            bytes: manifest.bytes,
                            seconds: manifest.duration_s,
                        });
                        set_refs(refs, node, &key);
                        let _ = store.write_refs(&plan.workflow, refs);
                        let rec = &mut record.stages[i];
                        rec.status = "committed".into();
                        rec.duration_s = Some(manifest.duration_s);
                        rec.rows = Some(manifest.rows);
                        state[i] = State::Done(Box::new(manifest));
                    }
                    Err(f) if f.interrupted || stop == Some(Outcome::Interrupted) => {
                        state[i] = State::Interrupted;
                        record.stages[i].status = "interrupted".into();
                        let _ = tx.send(Event::Interrupted { node: i, label: node.label() });
                    }
                    Err(f) => {
                        fail(record, &mut state, i, &tx, node.label(), f.error, f.log_tail, f.log);
                        if !opts.keep_going && stop.is_none() {
                            stop = Some(Outcome::Failed);
                        }
                    }
                }
                let _ = store.write_run(record);
            }
            _ = sigint.recv() => interrupt(&mut stop, &pids, &tx),
            _ = sigterm.recv() => interrupt(&mut stop, &pids, &tx),
        }
    }

    for (i, st) in state.iter_mut().enumerate() {
        if matches!(st, State::Waiting) {
            let because = match stop {
                Some(Outcome::Interrupted) => "the run was interrupted".to_string(),
                _ => "the run stopped after a failure (use --keep-going to go on)".to_string(),
            };
            record.stages[i].status = "skipped".into();
            record.stages[i].reason = Some(because.clone());
            let _ = tx.send(Event::Skipped {
                node: i,
                label: plan.nodes[i].label(),
                because,
            });
            *st = State::Skipped;
        }
    }
    let outcome = if stop == Some(Outcome::Interrupted) {
        Outcome::Interrupted
    } else if state
        .iter()
        .any(|s| matches!(s, State::Failed | State::Skipped))
    {
        Outcome::Failed
    } else {
        Outcome::Succeeded
    };
    let _ = store.write_refs(&plan.workflow, refs);
    outcome
}

#[allow(clippy::too_many_arguments)]
fn fail(
    record: &mut RunRecord,
    state: &mut [State],
    i: usize,
    tx: &UnboundedSender<Event>,
    label: String,
    error: String,
    log_tail: String,
    log: PathBuf,
) {
    state[i] = State::Failed;
    let rec = &mut record.stages[i];
    rec.status = "failed".into();
    rec.reason = Some(error.clone());
    let _ = tx.send(Event::Failed {
        node: i,
        label,
        error,
        log_tail,
        log,
    });
}

fn interrupt(
    stop: &mut Option<Outcome>,
    pids: &Arc<Mutex<HashMap<usize, u32>>>,
    tx: &UnboundedSender<Event>,
) {
    *stop = Some(Outcome::Interrupted);
    let _ = tx.send(Event::Stopping);
    for pid in pids.lock().expect("pid table").values() {
        // The child's handler kills its stage's process group, then itself.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
}

fn set_refs(refs: &mut Refs, node: &crate::dag::Node, key: &CacheKey) {
    for v in &node.variants {
        refs.variants
            .entry(v.clone())
            .or_default()
            .insert(node.stage.clone(), key.clone());
    }
}

fn build_job(
    plan: &Plan,
    i: usize,
    state: &[State],
    store: &Store,
    key: &CacheKey,
) -> Result<Job, crate::store::StoreError> {
    let node = &plan.nodes[i];
    let out_dir = store.begin(key)?;
    let mut inputs = indexmap::IndexMap::new();
    for (name, _) in &node.spec.inputs {
        if let Some(d) = node.data.get(name) {
            inputs.insert(
                name.clone(),
                JobInput {
                    paths: vec![d.path.clone()],
                    format: d.format,
                },
            );
        } else if let Some(e) = node
            .upstream
            .iter()
            .find(|e| e.input.as_deref() == Some(name.as_str()))
        {
            if let State::Done(m) = &state[e.node] {
                inputs.insert(
                    name.clone(),
                    JobInput {
                        paths: store.part_paths(m),
                        format: TableFormat::Parquet,
                    },
                );
            }
        }
    }
    let time_limit_s = node
        .spec
        .resources
        .time
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
        .map(|d| d.as_secs().max(1));
    Ok(Job {
        stage: node.stage.clone(),
        key: key.to_string(),
        kind: node.spec.kind.clone(),
        workdir: node.workdir.clone(),
        inputs,
        params: node.spec.params.clone(),
        env: node.spec.env.clone(),
        tmp_dir: out_dir.parent().expect("staging/<key>").join("tmp"),
        out_dir,
        time_limit_s,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_node(
    i: usize,
    job: Job,
    mut meta: CommitMeta,
    store: &Store,
    exe: &Path,
    logs: &Path,
    log_stem: &str,
    pids: Arc<Mutex<HashMap<usize, u32>>>,
) -> Result<Manifest, Failure> {
    let started = Instant::now();
    let err_log = logs.join(format!("{log_stem}.err"));
    let out_log = logs.join(format!("{log_stem}.out"));
    let failure = |error: String| Failure {
        error,
        log_tail: tail(&err_log, 20),
        log: err_log.clone(),
        interrupted: false,
    };
    std::fs::create_dir_all(logs)
        .map_err(|e| failure(format!("cannot create {}: {e}", logs.display())))?;
    let job_path = job
        .out_dir
        .parent()
        .expect("staging/<key>")
        .join("job.json");
    std::fs::write(
        &job_path,
        serde_json::to_vec_pretty(&job).expect("plain data"),
    )
    .map_err(|e| failure(format!("cannot write {}: {e}", job_path.display())))?;
    let open = |p: &Path| {
        std::fs::File::create(p).map_err(|e| failure(format!("cannot create {}: {e}", p.display())))
    };
    let (stdout, stderr) = (open(&out_log)?, open(&err_log)?);

    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("exec")
        .arg("--job")
        .arg(&job_path)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent may have died before the line above took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| failure(format!("cannot start {}: {e}", exe.display())))?;
    if let Some(pid) = child.id() {
        pids.lock().expect("pid table").insert(i, pid);
    }
    let status = child.wait().await;
    pids.lock().expect("pid table").remove(&i);
    let status = status.map_err(|e| failure(format!("lost the stage process: {e}")))?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let interrupted = status.code() == Some(143) || status.signal().is_some();
        let mut f = failure(match status.code() {
            Some(c) => format!("stage failed (exit status {c})"),
            None => "stage process was killed".to_string(),
        });
        if let Some(line) = f.log_tail.lines().rev().find(|l| l.starts_with("error: ")) {
            f.error = line.trim_start_matches("error: ").to_string();
        }
        f.interrupted = interrupted;
        return Err(f);
    }
    meta.duration_s = started.elapsed().as_secs_f64();
    let store = store.clone();
    let committed = tokio::task::spawn_blocking(move || store.commit(meta)).await;
    match committed {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(failure(format!("cannot commit: {e}"))),
        Err(e) => Err(failure(format!("commit panicked: {e}"))),
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
