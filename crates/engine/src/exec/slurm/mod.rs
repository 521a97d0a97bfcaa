//! The SLURM backend: each stage is one `sbatch` (a job array when it has
//! shards), every job of a run carries the run id as its job name, and one
//! `sacct` call per poll interval (or `squeue` where accounting is off)
//! reports on all of them. A shard's exit-code file, written by its job
//! script, is the final word on success; jobs lost to the cluster
//! (PREEMPTED, NODE_FAIL, BOOT_FAIL, TIMEOUT) are resubmitted, only those
//! array tasks, up to `max_retries`, away from nodes that failed.

pub mod poll;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::store::runs::JobsSummary;
use poll::{array_spec, parse_sacct, parse_squeue, JobState, States};
use verdict::{Seen, Verdict, Watch};

use super::{tail, Backend, Launch, ShardEvent};
use crate::workflow::{Accounting, SlurmSection};

/// How job states are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sacct,
    Squeue,
}

#[derive(Debug)]
struct Shard {
    job: u64,
    array: bool,
    retries: u32,
    watch: Watch,
}

#[derive(Debug)]
struct Tracked {
    launch: Launch,
    script: PathBuf,
    stage_dir: PathBuf,
    shards: BTreeMap<u32, Shard>,
    excluded: BTreeSet<String>,
    job_ids: Vec<u64>,
    retried: u32,
}

/// What to do with the run's jobs on Ctrl-C.
pub enum OnInterrupt {
    /// Ask whoever drives the run (the CLI asks on its terminal), given
    /// how many shard jobs are queued or running: true cancels them. The
    /// engine itself never reads stdin.
    Ask(Box<dyn FnMut(usize) -> bool + Send>),
    /// `scancel` them.
    Cancel,
    /// Leave them running; the next `swestar run` adopts them.
    Keep,
}

/// One `sbatch` of a stage, as `staging/<key>/jobs.json` remembers it so a
/// restarted orchestrator can adopt jobs that are still queued or running.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    pub job: u64,
    /// The job name (the run id of the run that submitted it).
    pub name: String,
    pub shards: Vec<u32>,
    pub array: bool,
}

fn read_submissions(stage_dir: &Path) -> Vec<Submission> {
    std::fs::read(stage_dir.join("jobs.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub struct SlurmBackend {
    run_id: String,
    started: Instant,
    defaults: SlurmSection,
    exe: PathBuf,
    mode: Mode,
    poll_initial: Duration,
    poll_max: Duration,
    interval: Duration,
    max_retries: u32,
    tracked: BTreeMap<usize, Tracked>,
    summaries: BTreeMap<usize, JobsSummary>,
    outstanding: usize,
    /// Job names to poll: this run's id and those of adopted jobs.
    names: BTreeSet<String>,
    on_interrupt: OnInterrupt,
    /// Job-state queries made (one per poll).
    pub polls: u64,
    /// Things worth telling the user (resubmissions), until taken.
    notes: Vec<(usize, String)>,
}

async fn slurm_cmd(program: &str, args: &[String]) -> Result<String, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e} (is SLURM installed here?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl SlurmBackend {
    /// Sets up the backend; with `accounting = auto`, asks `sacct` once
    /// whether accounting works.
    pub async fn new(
        run_id: &str,
        defaults: &SlurmSection,
        exe: PathBuf,
        on_interrupt: OnInterrupt,
    ) -> Result<SlurmBackend, String> {
        let mode = match defaults.accounting {
            Accounting::Sacct => Mode::Sacct,
            Accounting::Squeue => Mode::Squeue,
            Accounting::Auto => {
                let probe = slurm_cmd(
                    "sacct",
                    &["-n".into(), "-X".into(), "-o".into(), "JobID".into(), "--starttime".into(), "now".into()],
                )
                .await;
                if probe.is_ok() {
                    Mode::Sacct
                } else {
                    Mode::Squeue
                }
            }
        };
        let poll_initial = defaults.poll_initial.std();
        let poll_max = defaults.poll_max.std().max(poll_initial);
        let exe = defaults.swestar.as_ref().map(PathBuf::from).unwrap_or(exe);
        Ok(SlurmBackend {
            run_id: run_id.to_string(),
            started: Instant::now(),
            defaults: defaults.clone(),
            exe,
            mode,
            poll_initial,
            poll_max,
            interval: poll_initial,
            max_retries: defaults.max_retries,
            tracked: BTreeMap::new(),
            summaries: BTreeMap::new(),
            outstanding: 0,
            names: [run_id.to_string()].into(),
            on_interrupt,
            polls: 0,
            notes: Vec::new(),
        })
    }

    /// The job script of a launch, as `swestar render` prints it.
    async fn submit(&mut self, node: usize, shards: &[u32]) -> Result<u64, String> {
        let t = self.tracked.get(&node).expect("tracked node");
        let l = &t.launch;
        for &s in shards {
            let _ = std::fs::remove_file(super::script::exit_file(&t.stage_dir, s));
        }
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={}", self.run_id),
            // Where job scripts put logs of their own (an inference server's).
            format!("--export=ALL,SWESTAR_LOGS={}", l.log_dir.join(&l.log_stem).display()),
        ];
        let array = l.count > 1;
        if array {
            let parallel = l.resources.max_parallel.map(|n| n.get()).or(self.defaults.max_parallel);
            args.push(format!("--array={}", array_spec(shards, parallel)));
            args.push(format!("--output={}", l.log_dir.join(format!("{}.%a.out", l.log_stem)).display()));
            args.push(format!("--error={}", l.log_dir.join(format!("{}.%a.err", l.log_stem)).display()));
        } else {
            args.push(format!("--output={}", l.log(0, "out").display()));
            args.push(format!("--error={}", l.log(0, "err").display()));
        }
        if !t.excluded.is_empty() {
            args.push(format!("--exclude={}", t.excluded.iter().cloned().collect::<Vec<_>>().join(",")));
        }
        args.push(t.script.display().to_string());
        let out = slurm_cmd("sbatch", &args).await?;
        let job: u64 = out
            .trim()
            .split(';')
            .next()
            .and_then(|j| j.trim().parse().ok())
            .ok_or_else(|| format!("sbatch printed no job id: {out}"))?;
        let t = self.tracked.get_mut(&node).expect("tracked node");
        t.job_ids.push(job);
        for &s in shards {
            let retries = t.shards.get(&s).map(|x| x.retries).unwrap_or(0);
            t.shards.insert(s, Shard { job, array, retries, watch: Watch::default() });
        }
        let mut subs = read_submissions(&t.stage_dir);
        subs.push(Submission { job, name: self.run_id.clone(), shards: shards.to_vec(), array });
        let path = t.stage_dir.join("jobs.json");
        crate::store::write_atomic(&path, &serde_json::to_vec(&subs).expect("plain data"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(job)
    }

    async fn query(&mut self) -> Result<States, String> {
        self.polls += 1;
        let names = self.names.iter().cloned().collect::<Vec<_>>().join(",");
        let text = match self.mode {
            Mode::Sacct => {
                // A relative start time: sacct without one forgets jobs from before midnight.
                let since = self.started.elapsed().as_secs() + 600;
                slurm_cmd(
                    "sacct",
                    &[
                        "-X".into(),
                        "-P".into(),
                        "-n".into(),
                        format!("--name={}", names),
                        format!("--starttime=now-{since}seconds"),
                        "-o".into(),
                        "JobID,State,ExitCode,NodeList".into(),
                    ],
                )
                .await
                .map(|t| parse_sacct(&t))?
            }
            Mode::Squeue => slurm_cmd(
                "squeue",
                &["-h".into(), "-r".into(), format!("--name={names}"), "-o".into(), "%i|%T|%N".into()],
            )
            .await
            .map(|t| parse_squeue(&t))?,
        };
        Ok(text.into_iter().map(|t| ((t.job, t.task), t)).collect())
    }

    fn summarize(&mut self, node: usize, states: &States) {
        let Some(t) = self.tracked.get(&node) else { return };
        let s = self.summaries.entry(node).or_default();
        s.job_ids = t.job_ids.clone();
        s.retried = t.retried;
        s.queued = 0;
        s.running = 0;
        for (idx, sh) in &t.shards {
            let id = (sh.job, sh.array.then_some(*idx));
            match states.get(&id).map(|x| &x.state) {
                Some(JobState::Running) => s.running += 1,
                _ => s.queued += 1,
            }
        }
    }
}

impl Backend for SlurmBackend {
    async fn launch(&mut self, launch: Launch) -> Result<(), String> {
        let script = launch.script(&self.defaults, &self.exe)?;
        let stage_dir = launch.job_file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let path = stage_dir.join("job.sbatch");
        crate::store::write_atomic(&path, script.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        // A copy beside the logs, for reading after the staging is gone;
        // the submission does not depend on it.
        let kept = launch.log_dir.join(format!("{}.sbatch", launch.log_stem));
        if let Err(e) = std::fs::write(&kept, &script) {
            self.notes.push((launch.node, format!("cannot keep a copy of the job script at {}: {e}", kept.display())));
        }
        let node = launch.node;
        let pending = launch.shards.clone();
        // Jobs an earlier orchestrator submitted for these shards may still be
        // queued or running: take them over instead of submitting again.
        let mut adopted: BTreeMap<u32, Shard> = BTreeMap::new();
        let mut job_ids = Vec::new();
        for sub in read_submissions(&stage_dir) {
            for &shard in sub.shards.iter().filter(|s| pending.contains(s)) {
                let sh = Shard {
                    job: sub.job,
                    array: sub.array,
                    retries: 0,
                    watch: Watch { adopted: true, ..Watch::default() },
                };
                adopted.insert(shard, sh);
                self.names.insert(sub.name.clone());
                if !job_ids.contains(&sub.job) {
                    job_ids.push(sub.job);
                }
            }
        }
        let fresh: Vec<u32> = pending.iter().copied().filter(|s| !adopted.contains_key(s)).collect();
        let n_adopted = adopted.len() as u32;
        if n_adopted > 0 {
            self.notes.push((node, format!("adopted {n_adopted} shard jobs that an earlier run had submitted")));
        }
        self.tracked.insert(
            node,
            Tracked {
                launch,
                script: path,
                stage_dir,
                shards: adopted,
                excluded: BTreeSet::new(),
                job_ids,
                retried: 0,
            },
        );
        if !fresh.is_empty() {
            if let Err(e) = self.submit(node, &fresh).await {
                self.tracked.remove(&node);
                return Err(e);
            }
        }
        self.outstanding += pending.len();
        self.summaries
            .insert(node, JobsSummary { queued: pending.len() as u32, adopted: n_adopted, ..Default::default() });
        Ok(())
    }

    async fn next(&mut self) -> Vec<ShardEvent> {
        if self.outstanding == 0 {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(self.interval).await;
            let states = match self.query().await {
                Ok(s) => s,
                Err(_) => {
                    // slurmctld or slurmdbd busy: try again later, not fatal.
                    self.interval = (self.interval * 2).min(self.poll_max);
                    continue;
                }
            };
            let mut events = Vec::new();
            let mut retries: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            let now = Instant::now();
            for (&node, t) in self.tracked.iter_mut() {
                let mut finished = Vec::new();
                for (&idx, sh) in t.shards.iter_mut() {
                    let task = states.get(&(sh.job, sh.array.then_some(idx)));
                    let exit = std::fs::read_to_string(super::script::exit_file(&t.stage_dir, idx))
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok());
                    let seen = Seen {
                        exit,
                        shard_file: exit == Some(0) && crate::store::shard::shard_file(&t.stage_dir, idx).is_file(),
                        state: task.map(|x| &x.state),
                        mode: self.mode,
                        job: sh.job,
                    };
                    let verdict = verdict::decide(seen, &mut sh.watch, now);
                    match verdict {
                        Verdict::Wait => {}
                        Verdict::Done => {
                            finished.push(idx);
                            events.push(ShardEvent::Done { node, shard: idx });
                        }
                        Verdict::Failed(error) => {
                            finished.push(idx);
                            let log = t.launch.log(idx, "err");
                            let log_tail = tail(&log, 20);
                            let error = match super::stage_error(&log_tail) {
                                Some(line) => format!("{error}: {line}"),
                                None => error,
                            };
                            events.push(ShardEvent::Failed { node, shard: idx, error, log_tail, log });
                        }
                        Verdict::Retry(state) => {
                            let failed_node = task.and_then(|x| x.node.clone());
                            let what = state
                                .as_ref()
                                .map(|s| s.name().to_string())
                                .unwrap_or_else(|| "the cluster (job vanished)".into());
                            if sh.retries >= self.max_retries {
                                finished.push(idx);
                                let log = t.launch.log(idx, "err");
                                events.push(ShardEvent::Failed {
                                    node,
                                    shard: idx,
                                    error: format!(
                                        "lost to {what} after {} retries (max_retries = {})",
                                        sh.retries, self.max_retries
                                    ),
                                    log_tail: tail(&log, 20),
                                    log,
                                });
                            } else {
                                sh.retries += 1;
                                t.retried += 1;
                                if let (Some(s), Some(n)) = (&state, failed_node) {
                                    if s.blames_node() {
                                        t.excluded.insert(n);
                                    }
                                }
                                retries.entry(node).or_default().push(idx);
                                let excluded = if t.excluded.is_empty() {
                                    String::new()
                                } else {
                                    format!(", avoiding {}", t.excluded.iter().cloned().collect::<Vec<_>>().join(","))
                                };
                                self.notes.push((
                                    node,
                                    format!(
                                        "shard {idx} of job {} lost to {what}: resubmitting (retry {} of {}{excluded})",
                                        sh.job, sh.retries, self.max_retries
                                    ),
                                ));
                            }
                        }
                    }
                }
                for idx in finished {
                    t.shards.remove(&idx);
                }
            }
            let done_per_node: Vec<(usize, bool)> =
                events.iter().map(|e| (e.node(), matches!(e, ShardEvent::Done { .. }))).collect();
            for (node, ok) in done_per_node {
                let s = self.summaries.entry(node).or_default();
                if ok {
                    s.done += 1;
                } else {
                    s.failed += 1;
                }
            }
            for (node, shards) in retries {
                if let Err(error) = self.submit(node, &shards).await {
                    let t = self.tracked.get_mut(&node).expect("tracked node");
                    for idx in shards {
                        t.shards.remove(&idx);
                        let log = t.launch.log(idx, "err");
                        events.push(ShardEvent::Failed {
                            node,
                            shard: idx,
                            error: format!("cannot resubmit: {error}"),
                            log_tail: String::new(),
                            log,
                        });
                    }
                }
            }
            let nodes: Vec<usize> = self.tracked.keys().copied().collect();
            for node in nodes {
                self.summarize(node, &states);
            }
            self.tracked.retain(|_, t| !t.shards.is_empty());
            if events.is_empty() {
                // No news: say so, so that the run can look at the nodes
                // that wait for other runs' keys (`next` is not cancel-safe).
                self.interval = (self.interval * 3 / 2).min(self.poll_max);
                return events;
            }
            self.interval = self.poll_initial;
            self.outstanding -= events.len();
            return events;
        }
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn interrupt(&mut self) -> Vec<ShardEvent> {
        let jobs: usize = self.tracked.values().map(|t| t.shards.len()).sum();
        let cancel = match &mut self.on_interrupt {
            OnInterrupt::Cancel => true,
            OnInterrupt::Keep => false,
            OnInterrupt::Ask(decide) => decide(jobs),
        };
        if cancel {
            let names = self.names.iter().cloned().collect::<Vec<_>>().join(",");
            let _ = std::process::Command::new("scancel")
                .arg(format!("--name={names}"))
                .stdin(std::process::Stdio::null())
                .status();
            // Cancelled jobs must not be adopted by the next run.
            for t in self.tracked.values() {
                let _ = std::fs::remove_file(t.stage_dir.join("jobs.json"));
            }
        } else {
            for (&node, t) in &self.tracked {
                let n = t.shards.len();
                self.notes.push((node, format!("left {n} shard jobs running: the next `swestar run` adopts them")));
            }
        }
        let events: Vec<ShardEvent> = self
            .tracked
            .iter()
            .flat_map(|(&node, t)| t.shards.keys().map(move |&shard| ShardEvent::Interrupted { node, shard }))
            .collect();
        self.tracked.clear();
        self.outstanding = 0;
        events
    }

    fn exec_enforces_time_limit(&self) -> bool {
        false
    }

    fn jobs(&self, node: usize) -> Option<JobsSummary> {
        self.summaries.get(&node).cloned()
    }

    fn polls(&self) -> u64 {
        self.polls
    }

    fn take_notes(&mut self) -> Vec<(usize, String)> {
        std::mem::take(&mut self.notes)
    }

    /// One `sacct` over the node's jobs (every submission, retries too).
    /// Without accounting, or when it fails, the usage keeps only the
    /// shards' own figures.
    async fn accounting(&mut self, node: usize) -> Option<super::Accounted> {
        if self.mode != Mode::Sacct {
            return None;
        }
        // A node's tracking ends with its last shard; its summary keeps
        // the job ids.
        let jobs = match self.tracked.get(&node) {
            Some(t) => &t.job_ids,
            None => &self.summaries.get(&node)?.job_ids,
        };
        let ids = jobs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        if ids.is_empty() {
            return None;
        }
        let since = self.started.elapsed().as_secs() + 600;
        let text = slurm_cmd(
            "sacct",
            &[
                "-X".into(),
                "-P".into(),
                "-n".into(),
                format!("--jobs={ids}"),
                format!("--starttime=now-{since}seconds"),
                "-o".into(),
                "JobID,ElapsedRaw,NNodes,AllocCPUS".into(),
            ],
        )
        .await
        .ok()?;
        let (node_s, cpu_s) = poll::parse_usage(&text);
        Some(super::Accounted { node_s, cpu_s, by: "sacct" })
    }
}
