//! The executor core, shared by every backend: resolves nodes in
//! dependency order, computes each key once its upstream is resolved (so
//! an upstream that reproduces identical content cuts the rerun off here),
//! hands the unfinished shards of each node to the backend, and commits a
//! node when all its shards are in. Records and refs are written as nodes
//! finish (at most once a second, and at the end), so a killed run leaves
//! an honest record behind, at most a second old.
//!
//! Other runs may share the store. A node computes its key only while it
//! holds the key's lock; a node whose key another run holds waits (and
//! says for whom) and takes that run's artifact when it is committed.
//! Before a node looks a key up, the key goes into the run record and the
//! run passes through the `gc` lock, so `gc` never removes what it uses
//! (see `swestar_store::gc`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use super::prepare::{prepare, shard_count, Prepared};
use super::{Backend, Event, Outcome, RunOptions, ShardEvent};
use crate::cache::CacheKey;
use crate::dag::{Decision, Node, Plan, Reason};
use crate::store::runs::{RunRecord, StageRecord, StageStatus};
use crate::store::{Attempt, CommitMeta, Guard, Locks, Lookup, Manifest, Refs, Store};

#[derive(Debug)]
enum State {
    Waiting,
    /// Its key is held by another run: `holder` as last told.
    Blocked {
        key: CacheKey,
        holder: String,
    },
    Running {
        /// This run's lock on the key; dropped with the state.
        lock: Box<Guard>,
        key: CacheKey,
        meta: Box<CommitMeta>,
        count: u32,
        pending: BTreeSet<u32>,
        failure: Option<(String, String, PathBuf)>,
        interrupted: bool,
        started: std::time::Instant,
    },
    Done(Box<Manifest>),
    Failed,
    Skipped,
    Interrupted,
    Unselected,
}

/// The run record's initial stage list, one entry per node.
pub fn initial_records(plan: &Plan) -> Vec<StageRecord> {
    plan.nodes
        .iter()
        .map(|n| {
            let (status, key, reason) = match (&n.decision, n.selected) {
                (_, false) => (StageStatus::NotSelected, n.key().map(|k| k.to_string()), None),
                (Decision::Cached { key, .. }, _) => (StageStatus::Cached, Some(key.to_string()), None),
                (Decision::Run { key, reasons }, _) => {
                    (StageStatus::Pending, key.as_ref().map(|k| k.to_string()), Some(join(reasons)))
                }
            };
            StageRecord {
                stage: n.stage.clone(),
                variants: n.variants.clone(),
                status,
                key,
                reason,
                duration_s: None,
                rows: None,
                log: None,
                jobs: None,
            }
        })
        .collect()
}

fn join(reasons: &[Reason]) -> String {
    reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")
}

/// Executes a plan through a backend. Updates `record` and the
/// workflow's refs (and writes both to the store) as stages finish.
/// `locks` are the run's locks on the store.
pub async fn execute<B: Backend>(
    plan: &Plan,
    store: &Store,
    opts: &RunOptions,
    backend: &mut B,
    record: &mut RunRecord,
    locks: &Locks,
    tx: UnboundedSender<Event>,
) -> Outcome {
    let (mut sigint, mut sigterm) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("cannot install signal handlers"),
    };
    let mut r = Runner {
        plan,
        store,
        opts,
        record,
        locks,
        ours: Refs::default(),
        tx,
        state: Vec::new(),
        stop: None,
        unsaved: false,
        told_gc: false,
        journalled: Default::default(),
        dirty: false,
        written: std::time::Instant::now(),
        refs_dirty: false,
        refs_written: std::time::Instant::now(),
    };
    // The plan's cached keys are in the record (written first); once
    // past the gc lock, what the plan found is what gc left.
    r.save_record();
    r.flush_record(true);
    r.pass_gc().await;
    for (i, node) in plan.nodes.iter().enumerate() {
        let state = match (&node.decision, node.selected) {
            (_, false) => State::Unselected,
            (Decision::Cached { key, manifest }, true) => match store.lookup(key) {
                Lookup::Present(_) => {
                    let _ = r.tx.send(Event::Cached {
                        node: i,
                        label: node.label(),
                        key: key.clone(),
                        early_cutoff: false,
                        by: None,
                    });
                    set_refs(&mut r.ours, node, key);
                    State::Done(manifest.clone())
                }
                // Removed between the plan and now (a gc): computed again.
                _ => State::Waiting,
            },
            // Refused: it reads a file that is not there yet. The rest runs.
            (Decision::Run { reasons, .. }, true) if !node.runnable => {
                let because = join(reasons);
                r.record.stages[i].status = StageStatus::Skipped;
                r.record.stages[i].reason = Some(because.clone());
                let _ = r.tx.send(Event::Skipped { node: i, label: node.label(), because });
                State::Skipped
            }
            (Decision::Run { .. }, true) => State::Waiting,
        };
        r.state.push(state);
    }
    r.save_refs();
    r.flush_refs(true);

    let wake = locks.times().heartbeat.min(std::time::Duration::from_secs(1));
    loop {
        if r.stop.is_none() {
            r.schedule(backend).await;
            r.note_jobs(backend);
        }
        let blocked = r.stop.is_none() && r.state.iter().any(|s| matches!(s, State::Blocked { .. }));
        if backend.outstanding() == 0 && !blocked {
            break;
        }
        let events = if backend.outstanding() == 0 {
            tokio::select! {
                _ = tokio::time::sleep(wake) => Vec::new(),
                _ = sigint.recv() => r.interrupt(backend, libc::SIGINT),
                _ = sigterm.recv() => r.interrupt(backend, libc::SIGTERM),
            }
        } else {
            // Wake to look at blocked nodes again, and to write a changed
            // record within a second.
            let race = (blocked || r.dirty || r.refs_dirty) && backend.next_is_cancel_safe();
            tokio::select! {
                events = backend.next() => events,
                _ = tokio::time::sleep(wake), if race => Vec::new(),
                _ = sigint.recv() => r.interrupt(backend, libc::SIGINT),
                _ = sigterm.recv() => r.interrupt(backend, libc::SIGTERM),
            }
        };
        for ev in events {
            r.settle(ev, backend).await;
        }
        r.note_jobs(backend);
    }
    r.finish()
}

/// The state of one execution, threaded through its steps.
struct Runner<'a> {
    plan: &'a Plan,
    store: &'a Store,
    opts: &'a RunOptions,
    record: &'a mut RunRecord,
    locks: &'a Locks,
    /// The refs this run set; merged into the workflow's on every save.
    ours: Refs,
    tx: UnboundedSender<Event>,
    state: Vec<State>,
    stop: Option<Outcome>,
    /// A ref or record write failed (a full disk): the run cannot succeed.
    unsaved: bool,
    /// Whether the user was told that the run waits for a gc.
    told_gc: bool,
    /// Keys written to the run's key journal (see `schedule`).
    journalled: std::collections::HashSet<CacheKey>,
    /// The record changed since it was last written, which was then.
    dirty: bool,
    written: std::time::Instant,
    /// The same for this run's refs.
    refs_dirty: bool,
    refs_written: std::time::Instant,
}

/// How often a changed run record (and the run's refs) is written.
const RECORD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Runner<'_> {
    fn interrupt<B: Backend>(&mut self, backend: &mut B, signal: i32) -> Vec<ShardEvent> {
        self.stop = Some(Outcome::Interrupted(signal));
        let _ = self.tx.send(Event::Stopping);
        let events = backend.interrupt();
        for (node, text) in backend.take_notes() {
            let _ = self.tx.send(Event::Note { node, label: self.plan.nodes[node].label(), text });
        }
        events
    }

    /// Marks what never ran as skipped and says how the run ended.
    fn finish(mut self) -> Outcome {
        for i in 0..self.state.len() {
            if matches!(self.state[i], State::Waiting | State::Blocked { .. } | State::Running { .. }) {
                let because = match self.stop {
                    Some(Outcome::Interrupted(_)) => "the run was interrupted".to_string(),
                    _ => "the run stopped after a failure (use --keep-going to go on)".to_string(),
                };
                self.record.stages[i].status = StageStatus::Skipped;
                self.record.stages[i].reason = Some(because.clone());
                let _ = self.tx.send(Event::Skipped { node: i, label: self.plan.nodes[i].label(), because });
                self.state[i] = State::Skipped;
            }
        }
        self.save_refs();
        self.flush_refs(true);
        self.flush_record(true);
        if let Some(stopped @ Outcome::Interrupted(_)) = self.stop {
            stopped
        } else if self.unsaved
            || self.state.iter().any(|s| matches!(s, State::Failed | State::Skipped | State::Interrupted))
        {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        }
    }

    /// Resolves every node that can be resolved now: skips those below a
    /// failure, takes cached ones from the store, launches the rest.
    async fn schedule<B: Backend>(&mut self, backend: &mut B) {
        let (plan, store, opts) = (self.plan, self.store, self.opts);
        loop {
            let mut progressed = false;
            // The nodes whose upstream is resolved, with their keys.
            let mut ready = Vec::new();
            for i in 0..plan.nodes.len() {
                if !matches!(self.state[i], State::Waiting | State::Blocked { .. }) {
                    continue;
                }
                let node = &plan.nodes[i];
                if let Some(bad) = node
                    .upstream
                    .iter()
                    .find(|e| matches!(self.state[e.node], State::Failed | State::Skipped | State::Interrupted))
                {
                    let because = format!("upstream {} did not finish", bad.stage);
                    self.record.stages[i].status = StageStatus::Skipped;
                    self.record.stages[i].reason = Some(because.clone());
                    self.save_record();
                    let _ = self.tx.send(Event::Skipped { node: i, label: node.label(), because });
                    self.state[i] = State::Skipped;
                    progressed = true;
                    continue;
                }
                if !node.upstream.iter().all(|e| matches!(self.state[e.node], State::Done(_))) {
                    continue;
                }
                let hashes = |u: usize| match &self.state[u] {
                    State::Done(m) => Some(m.content_hash.clone()),
                    _ => None,
                };
                let Some(pre) = node.preimage(hashes) else {
                    continue;
                };
                let key = pre.key();
                ready.push((i, pre, key));
            }
            // Their keys go into the run's key journal before they are
            // looked up, and the lookups come after the gc lock: gc keeps
            // what it sees journalled, and a run that waited for gc sees
            // what gc left. One write and one pass for all of them.
            let new: Vec<CacheKey> =
                ready.iter().filter(|(_, _, k)| !self.journalled.contains(k)).map(|(_, _, k)| k.clone()).collect();
            if !new.is_empty() {
                if let Err(e) = store.journal_keys(&opts.run_id, &new) {
                    self.unsaved = true;
                    let _ =
                        self.tx.send(Event::StoreError { what: "the run's key journal".into(), error: e.to_string() });
                }
                self.journalled.extend(new);
                self.pass_gc().await;
            }
            for (i, pre, key) in ready {
                let node = &plan.nodes[i];
                // The same key already in flight (an identical stage under another name).
                if self.state.iter().any(|s| matches!(s, State::Running { key: k, .. } if *k == key)) {
                    continue;
                }
                let blocked_by = match &self.state[i] {
                    State::Blocked { key: k, holder } if *k == key => Some(holder.clone()),
                    _ => None,
                };
                if self.record.stages[i].key.as_deref() != Some(key.as_str()) {
                    self.record.stages[i].key = Some(key.to_string());
                    self.save_record();
                }
                // A key the plan knew and found missing, found now, was
                // committed by another run; one it could not know is an
                // early cutoff.
                let planned = matches!(&node.decision, Decision::Run { key: Some(k), .. } if *k == key);
                if self.reuse(i, &key, planned || blocked_by.is_some()) {
                    progressed = true;
                    continue;
                }
                let lock = match self.locks.try_lock(&format!("key-{key}")) {
                    Ok(Attempt::Acquired(g)) => g,
                    Ok(Attempt::Held(owner)) => {
                        let holder = owner.map(|o| o.to_string()).unwrap_or_else(|| "a run being set up".into());
                        if blocked_by.as_ref() != Some(&holder) {
                            let _ =
                                self.tx.send(Event::Waiting { node: i, label: node.label(), holder: holder.clone() });
                            self.record.stages[i].reason = Some(format!("waiting for {holder}"));
                            self.save_record();
                        }
                        self.state[i] = State::Blocked { key, holder };
                        continue;
                    }
                    Err(e) => {
                        progressed = true;
                        self.fail(i, format!("cannot lock its key: {e}"), String::new(), PathBuf::new());
                        continue;
                    }
                };
                progressed = true;
                if let Some(gone) = &lock.displaced {
                    let text = format!(
                        "took its key over from {gone}: that orchestrator is gone or was silent for the lock's stale time ({}s)",
                        self.locks.times().stale.as_secs_f64()
                    );
                    let _ = self.tx.send(Event::Note { node: i, label: node.label(), text });
                }
                // Committed by another run between the lookup and the lock.
                if self.reuse(i, &key, true) {
                    continue;
                }
                if let Lookup::Corrupt(_) = store.lookup(&key) {
                    let _ = store.quarantine(&key);
                }
                let reasons: Vec<Reason> = match &node.decision {
                    Decision::Run { reasons, .. } => reasons
                        .iter()
                        .map(|r| match r {
                            Reason::PendingUpstream { stage } => Reason::UpstreamChanged { stage: stage.clone() },
                            other => other.clone(),
                        })
                        .collect(),
                    Decision::Cached { .. } => Vec::new(),
                };
                let count = shard_count(node);
                let log_dir = store.logs_dir(&opts.run_id);
                let log_stem = format!("{}.{}", node.stage, key.short());
                let rec = &mut self.record.stages[i];
                rec.key = Some(key.to_string());
                rec.reason = Some(join(&reasons));
                rec.log = Some(log_dir.join(format!("{log_stem}.err")));
                let prepared = (|| -> Result<(Prepared, Vec<u32>), String> {
                    let done = store.begin(&key, count).map_err(|e| e.to_string())?;
                    let upstream = |u: usize| match &self.state[u] {
                        State::Done(m) => Some(store.part_paths(m)),
                        _ => None,
                    };
                    let pending = (0..count).filter(|s| !done.contains(s)).collect();
                    let mut p = prepare(i, node, &key, store, &upstream, pending, log_dir.clone(), log_stem);
                    if !backend.exec_enforces_time_limit() {
                        p.job.time_limit_s = None;
                    }
                    p.resolve_serve(node)?;
                    super::write_job(&p.launch.job_file, &p.job).map_err(|e| e.to_string())?;
                    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
                    Ok((p, done))
                })();
                let (prepared, done) = match prepared {
                    Ok(p) => p,
                    Err(error) => {
                        self.fail(i, error, String::new(), PathBuf::new());
                        continue;
                    }
                };
                let pending: BTreeSet<u32> = (0..count).filter(|s| !done.contains(s)).collect();
                let _ = self.tx.send(Event::Started {
                    node: i,
                    label: node.label(),
                    key: key.clone(),
                    reasons: reasons.clone(),
                    shards: count,
                    resumed: done.len() as u32,
                });
                self.record.stages[i].status = StageStatus::Running;
                let meta = CommitMeta {
                    key: key.clone(),
                    stage: node.stage.clone(),
                    preimage: pre,
                    workflow: plan.workflow.clone(),
                    variants: node.variants.iter().filter(|v| !v.is_empty()).cloned().collect(),
                    run: opts.run_id.clone(),
                    duration_s: 0.0,
                    stats: Default::default(),
                    replace: node.forced,
                    usage: Some(Default::default()),
                };
                self.state[i] = State::Running {
                    lock: Box::new(lock),
                    key: key.clone(),
                    meta: Box::new(meta),
                    count,
                    pending: pending.clone(),
                    failure: None,
                    interrupted: false,
                    started: std::time::Instant::now(),
                };
                if pending.is_empty() {
                    // Every shard finished in an earlier attempt: commit now.
                    self.commit_node(i, backend).await;
                    continue;
                }
                if let Err(error) = backend.launch(prepared.launch).await {
                    self.fail(i, error, String::new(), PathBuf::new());
                }
            }
            if !progressed || self.stop.is_some() {
                break;
            }
        }
    }

    /// Applies one shard outcome; commits or fails the node when its last
    /// shard is in.
    async fn settle<B: Backend>(&mut self, ev: ShardEvent, backend: &mut B) {
        let plan = self.plan;
        let i = ev.node();
        let State::Running { pending, failure, interrupted, count, .. } = &mut self.state[i] else {
            return;
        };
        match ev {
            ShardEvent::Done { shard, .. } => {
                pending.remove(&shard);
                if *count > 1 {
                    let _ = self.tx.send(Event::ShardDone {
                        node: i,
                        label: plan.nodes[i].label(),
                        shard,
                        left: pending.len() as u32,
                    });
                }
            }
            ShardEvent::Failed { shard, error, log_tail, log, .. } => {
                pending.remove(&shard);
                if *interrupted || matches!(self.stop, Some(Outcome::Interrupted(_))) {
                    *interrupted = true;
                } else if failure.is_none() {
                    let error = if *count > 1 { format!("shard {shard}/{count}: {error}") } else { error };
                    *failure = Some((error, log_tail, log));
                }
            }
            ShardEvent::Interrupted { shard, .. } => {
                pending.remove(&shard);
                *interrupted = true;
            }
        }
        if !pending.is_empty() {
            return;
        }
        if let Some((error, tail, log)) = failure.take() {
            self.fail(i, error, tail, log);
        } else if *interrupted {
            self.state[i] = State::Interrupted;
            self.record.stages[i].status = StageStatus::Interrupted;
            let _ = self.tx.send(Event::Interrupted { node: i, label: plan.nodes[i].label() });
        } else {
            self.commit_node(i, backend).await;
        }
    }

    /// Takes a key's artifact from the store if it is there (and the node
    /// is not forced): `other` when another run may have committed it
    /// while this one looked or waited, else it is an early cutoff.
    fn reuse(&mut self, i: usize, key: &CacheKey, other: bool) -> bool {
        let node = &self.plan.nodes[i];
        let m = match self.store.lookup(key) {
            Lookup::Present(m) if !node.forced => m,
            _ => return false,
        };
        let by = other.then(|| m.run.clone()).filter(|r| *r != self.opts.run_id);
        let _ = self.tx.send(Event::Cached {
            node: i,
            label: node.label(),
            key: key.clone(),
            early_cutoff: by.is_none(),
            by: by.clone(),
        });
        set_refs(&mut self.ours, node, key);
        self.save_refs();
        let rec = &mut self.record.stages[i];
        rec.status = StageStatus::Cached;
        rec.key = Some(key.to_string());
        rec.reason = Some(match by {
            Some(run) => format!("computed by run {run} while this one waited"),
            None => "upstream output unchanged (early cutoff)".into(),
        });
        self.state[i] = State::Done(m);
        true
    }

    /// Passes through the store's `gc` lock (takes it and lets go), so
    /// that no gc is between this run's record and its next lookup.
    async fn pass_gc(&mut self) {
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            match self.locks.try_lock("gc") {
                Ok(Attempt::Acquired(g)) => {
                    drop(g);
                    return;
                }
                Ok(Attempt::Held(owner)) => {
                    // Other runs pass through it too, for a moment; only a
                    // gc holds it for long.
                    if let Some(o) = owner.filter(|o| o.holder == "gc") {
                        if !self.told_gc {
                            self.told_gc = true;
                            let _ = self.tx.send(Event::Waiting {
                                node: usize::MAX,
                                label: "store".into(),
                                holder: o.to_string(),
                            });
                        }
                    }
                }
                Err(e) => {
                    // A store whose lock directory cannot be written cannot
                    // take the run's output either: that error comes next.
                    let _ = self.tx.send(Event::StoreError { what: "the gc lock".into(), error: e.to_string() });
                    return;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(200));
        }
    }

    async fn commit_node<B: Backend>(&mut self, i: usize, backend: &mut B) {
        let (plan, store) = (self.plan, self.store);
        let node = &plan.nodes[i];
        let State::Running { meta, count, key, started, lock, .. } = &self.state[i] else {
            return;
        };
        if !lock.still_held() {
            let holder = crate::store::lock::read_owner(lock.path()).map(|o| o.to_string()).unwrap_or_default();
            let error = format!(
                "lost the lock on its key to {holder}: this orchestrator was silent for longer than the lock's stale time ({}s), so another run took the key over; its output is not committed",
                self.locks.times().stale.as_secs_f64()
            );
            self.fail(i, error, String::new(), PathBuf::new());
            return;
        }
        let (mut meta, count, key) = ((**meta).clone(), *count, key.clone());
        meta.duration_s = started.elapsed().as_secs_f64();
        if let (Some(usage), Some(a)) = (meta.usage.as_mut(), backend.accounting(i).await) {
            usage.node_s = Some(a.node_s);
            usage.alloc_cpu_s = Some(a.cpu_s);
            usage.accounted_by = Some(a.by.into());
        }
        let s = store.clone();
        let kind = node.spec.kind.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let staging = s.staging_dir(&meta.key);
            let shards: Vec<PathBuf> = (0..count).map(|i| crate::store::shard::shard_file(&staging, i)).collect();
            meta.stats = kind.stats(&shards).map_err(|e| format!("summarising the output: {e}"))?;
            s.commit(meta, count).map_err(|e| e.to_string())
        })
        .await;
        match committed {
            Ok(Ok(manifest)) => {
                let _ = self.tx.send(Event::Committed {
                    node: i,
                    label: node.label(),
                    key: key.clone(),
                    rows: manifest.rows,
                    bytes: manifest.bytes,
                    seconds: manifest.duration_s,
                    summary: node.spec.kind.summary(&manifest.stats),
                });
                set_refs(&mut self.ours, node, &key);
                self.save_refs();
                let rec = &mut self.record.stages[i];
                rec.status = StageStatus::Committed;
                rec.duration_s = Some(manifest.duration_s);
                rec.rows = Some(manifest.rows);
                self.state[i] = State::Done(Box::new(manifest));
            }
            Ok(Err(e)) => {
                let log = self.record.stages[i].log.clone().unwrap_or_default();
                let tail = super::tail(&log, 20);
                self.fail(i, format!("cannot commit: {e}"), tail, log);
            }
            Err(e) => {
                self.fail(i, format!("commit panicked: {e}"), String::new(), PathBuf::new());
            }
        }
    }

    /// Fails a node; without --keep-going nothing new starts after it.
    fn fail(&mut self, i: usize, error: String, log_tail: String, log: PathBuf) {
        let label = self.plan.nodes[i].label();
        if !self.opts.keep_going && self.stop.is_none() {
            self.stop = Some(Outcome::Failed);
        }
        self.state[i] = State::Failed;
        let rec = &mut self.record.stages[i];
        rec.status = StageStatus::Failed;
        rec.reason = Some(error.clone());
        let staging = rec.key.as_deref().and_then(CacheKey::parse).map(|k| self.store.staging_dir(&k));
        let _ = self.tx.send(Event::Failed { node: i, label: label.clone(), error, log_tail, log });
        // What a failed stage leaves is kept for its next attempt; say how
        // much and how to free it, since it may be what filled the disk.
        if let Some(dir) = staging {
            let bytes = tree_size(&dir);
            if bytes > 1 << 20 {
                let text = format!(
                    "its staging area keeps {:.1} MiB (finished shards and progress logs, resumed by the next run): {}; `swestar gc` or removing it frees them",
                    bytes as f64 / (1u64 << 20) as f64,
                    dir.display()
                );
                let _ = self.tx.send(Event::Note { node: i, label, text });
            }
        }
    }

    /// Copies the backend's view of jobs and what it did on its own into
    /// the run record and the events, and writes the record.
    fn note_jobs<B: Backend>(&mut self, backend: &mut B) {
        for (node, text) in backend.take_notes() {
            let _ = self.tx.send(Event::Note { node, label: self.plan.nodes[node].label(), text });
        }
        for (i, rec) in self.record.stages.iter_mut().enumerate() {
            if let Some(jobs) = backend.jobs(i) {
                if rec.jobs.as_ref() != Some(&jobs) {
                    rec.jobs = Some(jobs);
                    self.dirty = true;
                }
            }
        }
        let polls = backend.polls();
        if polls > 0 && self.record.polls != Some(polls) {
            self.record.polls = Some(polls);
            self.dirty = true;
        }
        self.flush_record(false);
        self.flush_refs(false);
    }

    /// Marks this run's refs changed; `flush_refs` merges them in.
    fn save_refs(&mut self) {
        self.refs_dirty = true;
    }

    /// Merges this run's refs into the workflow's if they changed, at most
    /// once a second unless `now` (nothing reads them for the keys of a run
    /// in progress: runs and gc go by objects and key journals); a failure
    /// (a full disk) is reported and fails the run, since what it
    /// committed would not be found again.
    fn flush_refs(&mut self, now: bool) {
        if !self.refs_dirty || (!now && self.refs_written.elapsed() < RECORD_EVERY) {
            return;
        }
        self.refs_dirty = false;
        self.refs_written = std::time::Instant::now();
        let ours = &self.ours;
        let merged = self.store.update_refs(self.locks, &self.plan.workflow, |refs| {
            for (variant, stages) in &ours.variants {
                let entry = refs.variants.entry(variant.clone()).or_default();
                entry.extend(stages.iter().map(|(s, k)| (s.clone(), k.clone())));
            }
        });
        if let Err(e) = merged {
            self.unsaved = true;
            let _ = self.tx.send(Event::StoreError { what: "the workflow's refs".into(), error: e.to_string() });
        }
    }

    /// Marks the run record changed; `flush_record` writes it.
    fn save_record(&mut self) {
        self.dirty = true;
    }

    /// Writes the run record if it changed, at most once a second unless
    /// `now` (rewriting a 2000-stage record on every event would make a
    /// run's cost grow with the square of its stages); a failure is
    /// reported and fails the run.
    fn flush_record(&mut self, now: bool) {
        if !self.dirty || (!now && self.written.elapsed() < RECORD_EVERY) {
            return;
        }
        self.dirty = false;
        self.written = std::time::Instant::now();
        if let Err(e) = self.store.write_run(self.record) {
            self.unsaved = true;
            let _ = self.tx.send(Event::StoreError { what: "the run record".into(), error: e.to_string() });
        }
    }
}

/// Bytes of the files under `dir` (0 when it does not exist).
fn tree_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += tree_size(&entry.path()),
            Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => {}
        }
    }
    total
}

fn set_refs(refs: &mut Refs, node: &Node, key: &CacheKey) {
    for v in &node.variants {
        refs.variants.entry(v.clone()).or_default().insert(node.stage.clone(), key.clone());
    }
}
