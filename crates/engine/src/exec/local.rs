//! The local backend: each shard is a `swestar exec` child in its own
//! process group, at most `jobs` at once (and `max_parallel` per stage).
//!
//! Children get `PR_SET_PDEATHSIG`: if this process dies, even by SIGKILL,
//! they stop their stage and exit, and nothing writes into the store behind
//! a dead run. An interrupt sends them SIGTERM; they give their command a
//! grace period, then kill it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use super::{tail, Backend, Launch, ShardEvent};

type Pids = Arc<Mutex<HashMap<(usize, u32), u32>>>;

pub struct LocalBackend {
    exe: PathBuf,
    jobs: usize,
    queue: VecDeque<(Arc<Launch>, u32)>,
    running: JoinSet<ShardEvent>,
    per_node: HashMap<usize, u32>,
    pids: Pids,
    outstanding: usize,
    interrupting: Arc<AtomicBool>,
}

impl LocalBackend {
    pub fn new(exe: PathBuf, jobs: usize) -> LocalBackend {
        LocalBackend {
            exe,
            jobs: jobs.max(1),
            queue: VecDeque::new(),
            running: JoinSet::new(),
            per_node: HashMap::new(),
            pids: Arc::default(),
            outstanding: 0,
            interrupting: Arc::default(),
        }
    }

    /// Starts queued shards while slots are free, oldest first, skipping
    /// nodes at their `max_parallel`.
    fn fill(&mut self) {
        while self.running.len() < self.jobs {
            let pos = self.queue.iter().position(|(l, _)| {
                let limit = l.resources.max_parallel.map_or(u32::MAX, |n| n.get());
                self.per_node.get(&l.node).copied().unwrap_or(0) < limit
            });
            let Some(pos) = pos else { break };
            let (launch, shard) = self.queue.remove(pos).expect("position is valid");
            *self.per_node.entry(launch.node).or_default() += 1;
            let (exe, pids, interrupting) = (self.exe.clone(), self.pids.clone(), self.interrupting.clone());
            self.running.spawn(async move { run_shard(&exe, &launch, shard, pids, interrupting).await });
        }
    }
}

impl Backend for LocalBackend {
    async fn launch(&mut self, mut launch: Launch) -> Result<(), String> {
        if launch.serve.is_some() {
            // The same job script as on SLURM starts, watches and stops the
            // inference server around the stage body; bash runs it here.
            let script = launch.script(&crate::workflow::SlurmSection::default(), &self.exe)?;
            let path = launch.job_file.with_file_name("job.local.sh");
            crate::store::write_atomic(&path, script.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            launch.script = Some(path);
        }
        let launch = Arc::new(launch);
        for &shard in &launch.shards {
            self.queue.push_back((launch.clone(), shard));
            self.outstanding += 1;
        }
        self.fill();
        Ok(())
    }

    async fn next(&mut self) -> Vec<ShardEvent> {
        let Some(joined) = self.running.join_next().await else {
            return std::future::pending().await;
        };
        self.outstanding -= 1;
        let ev = joined.expect("shard task does not panic");
        if let Some(n) = self.per_node.get_mut(&ev.node()) {
            *n -= 1;
        }
        self.fill();
        vec![ev]
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn next_is_cancel_safe(&self) -> bool {
        // `JoinSet::join_next` is cancel-safe, and nothing before it awaits.
        true
    }

    fn interrupt(&mut self) -> Vec<ShardEvent> {
        self.interrupting.store(true, Ordering::SeqCst);
        let dropped: Vec<ShardEvent> =
            self.queue.drain(..).map(|(l, shard)| ShardEvent::Interrupted { node: l.node, shard }).collect();
        self.outstanding -= dropped.len();
        for pid in self.pids.lock().expect("pid table").values() {
            // The shard's process group: `swestar exec` gives its command
            // SIGTERM, a grace period, then SIGKILL; a job script stops its
            // inference server.
            unsafe { libc::kill(-(*pid as i32), libc::SIGTERM) };
        }
        dropped
    }
}

async fn run_shard(exe: &Path, launch: &Launch, shard: u32, pids: Pids, interrupting: Arc<AtomicBool>) -> ShardEvent {
    let node = launch.node;
    let (err_log, out_log) = (launch.log(shard, "err"), launch.log(shard, "out"));
    let failed =
        |error: String| ShardEvent::Failed { node, shard, error, log_tail: tail(&err_log, 20), log: err_log.clone() };
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
    let (stdout, stderr) = match (open(&out_log), open(&err_log)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let mut cmd = match &launch.script {
        Some(script) => {
            let mut c = tokio::process::Command::new("bash");
            c.arg(script)
                .env("SLURM_ARRAY_TASK_ID", shard.to_string())
                .env("SWESTAR_LOGS", launch.log_dir.join(&launch.log_stem));
            c
        }
        None => {
            let mut c = tokio::process::Command::new(exe);
            c.arg("exec").arg("--job").arg(&launch.job_file).arg("--shard").arg(format!("{shard}/{}", launch.count));
            c
        }
    };
    cmd.stdin(std::process::Stdio::null()).stdout(stdout).stderr(stderr).process_group(0);
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
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {}: {e}", exe.display())),
    };
    if let Some(pid) = child.id() {
        pids.lock().expect("pid table").insert((node, shard), pid);
        if interrupting.load(Ordering::SeqCst) {
            unsafe { libc::kill(-(pid as i32), libc::SIGTERM) };
        }
    }
    let status = child.wait().await;
    pids.lock().expect("pid table").remove(&(node, shard));
    let status = match status {
        Ok(s) => s,
        Err(e) => return failed(format!("lost the stage process: {e}")),
    };
    if status.success() {
        return ShardEvent::Done { node, shard };
    }
    if interrupting.load(Ordering::SeqCst) {
        return ShardEvent::Interrupted { node, shard };
    }
    let mut ev = failed(match status.code() {
        Some(c) => format!("stage failed (exit status {c})"),
        None => "stage process was killed".to_string(),
    });
    if let ShardEvent::Failed { error, log_tail, .. } = &mut ev {
        if let Some(line) = super::stage_error(log_tail) {
            *error = line.to_string();
        }
    }
    ev
}
