//! `swestar run` and `swestar plan`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::terminal::{plan_text, Reporter};
use super::{build_plan, load, only_variants, store_dir, Exit};
use crate::exec::local::LocalBackend;
use crate::exec::slurm::{OnInterrupt, SlurmBackend};
use crate::exec::{run as core, Outcome, RunOptions};
use crate::store::runs::{new_run_id, RunRecord};
use crate::store::{Attempt, LockTimes, Locks, Store};
use crate::workflow::ExecutorKind;
use std::io::IsTerminal;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Override a value: a dotted path into the TOML (stages.train.params.lr=1e-5).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run only these stages (and what they need).
    #[arg(long = "only", value_name = "STAGE")]
    only: Vec<String>,
    #[command(flatten)]
    force: ForceArgs,
    /// Run only this variant of the sweep (repeatable; see `plan`).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// How many stages run at once (default: [executor] jobs, else the number of CPUs).
    #[arg(short = 'j', long = "jobs")]
    jobs: Option<usize>,
    /// Where stages run (default: [executor] kind, else local).
    #[arg(long, value_name = "local|slurm", value_parser = ["local", "slurm"])]
    executor: Option<String>,
    /// After a failure, go on with the stages that do not depend on it.
    #[arg(long)]
    keep_going: bool,
    /// SLURM: on Ctrl-C, cancel the run's jobs or keep them running for the
    /// next run to adopt (default: ask on a terminal, else cancel).
    #[arg(long, value_name = "ask|cancel|keep", value_parser = ["ask", "cancel", "keep"])]
    on_interrupt: Option<String>,
    /// Print the run record as JSON when done.
    #[arg(long)]
    json: bool,
}

/// Recomputing stages although they are cached.
#[derive(Debug, Args)]
struct ForceArgs {
    /// Recompute STAGE even if its artifact is cached, replacing it; the
    /// stages after it rerun only if its output changes.
    #[arg(long = "force", value_name = "STAGE")]
    stages: Vec<String>,
    /// Recompute every stage.
    #[arg(long)]
    force_all: bool,
}

impl ForceArgs {
    fn apply(&self, plan: &mut crate::dag::Plan, store: Option<&Store>) -> Result<(), Exit> {
        plan.force(&self.stages, self.force_all, store).map_err(|e| Exit::invalid(format!("error: {e}")))
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The workflow file (TOML).
    workflow: PathBuf,
    /// Override a value of the workflow: a dotted TOML path (stages.NAME.params.KEY=VALUE), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(flatten)]
    force: ForceArgs,
    /// Plan only this variant of the sweep (repeatable).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

pub fn plan(store_flag: Option<&Path>, args: PlanArgs) -> Result<ExitCode, Exit> {
    let mut loaded = load(&args.workflow, &args.sets)?;
    only_variants(&mut loaded, &args.variants)?;
    let dir = store_dir(store_flag, Some(&loaded));
    let store = Store::existing(&dir);
    let mut plan = build_plan(&loaded, store.as_ref())?;
    args.force.apply(&mut plan, store.as_ref())?;
    let forecast = crate::dag::forecast::forecast(&plan, store.as_ref());
    if args.json {
        let mut json = plan.to_json();
        let selected = plan.nodes.iter().zip(&forecast).filter(|(n, _)| n.selected).map(|(_, f)| f);
        if let Some(nodes) = json.as_array_mut() {
            for (node, f) in nodes.iter_mut().zip(selected) {
                node["forecast"] = serde_json::to_value(f).expect("plain data");
            }
        }
        println!("{}", serde_json::to_string_pretty(&json).expect("plain data"));
    } else {
        let read = match &store {
            Some(s) => s.root.display().to_string(),
            None => format!("{} (not created yet: nothing is cached)", dir.display()),
        };
        println!("plan for {} ({}), store {read}", plan.workflow, args.workflow.display());
        print!("{}", plan_text(&plan));
        println!("{} stages: {}", plan.nodes.len(), plan.summary());
        print!("{}", super::terminal::forecast_text(&plan, &forecast));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(store_flag: Option<&Path>, args: RunArgs) -> Result<ExitCode, Exit> {
    let mut loaded = load(&args.workflow, &args.sets)?;
    only_variants(&mut loaded, &args.variants)?;
    let dir = store_dir(store_flag, Some(&loaded));
    let store = super::open_writable(&dir)?;
    let run_id = new_run_id();
    // Other runs share the store; this run's lock says it is alive (for
    // `status` and gc on any host) for as long as it beats.
    let locks = Locks::new(&store.root, &format!("run {run_id}"), LockTimes::from_env())
        .map_err(|e| Exit::failed(format!("error: {e}")))?;
    let _alive = match locks.try_lock(&format!("run-{run_id}")) {
        Ok(Attempt::Acquired(g)) => g,
        Ok(Attempt::Held(_)) => return Err(Exit::failed(format!("error: run id {run_id} is taken: try again"))),
        Err(e) => return Err(Exit::failed(format!("error: {e}"))),
    };
    let mut plan = build_plan(&loaded, Some(&store))?;
    args.force.apply(&mut plan, Some(&store))?;
    plan.select(&args.only).map_err(|e| Exit::invalid(format!("error: {e}")))?;
    let summary = plan.summary();
    let total = plan.nodes.iter().filter(|n| n.selected).count();

    let mut record = RunRecord {
        id: run_id.clone(),
        workflow: plan.workflow.clone(),
        workflow_path: std::fs::canonicalize(&args.workflow).unwrap_or(args.workflow.clone()),
        pid: std::process::id(),
        host: crate::store::lock::hostname(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        finished: None,
        status: crate::store::runs::RunStatus::Running,
        executor: String::new(),
        polls: None,
        sets: args.sets.clone(),
        stages: core::initial_records(&plan),
    };
    let slurm = match args.executor.as_deref() {
        Some(kind) => kind == "slurm",
        None => loaded.variants[0].executor == ExecutorKind::Slurm,
    };
    record.executor = if slurm { "slurm" } else { "local" }.into();
    eprintln!("run {run_id}: {} ({}), store {}", plan.workflow, args.workflow.display(), store.root.display());
    eprintln!("{total} stages: {summary}");
    let jobs = args
        .jobs
        .or(loaded.variants[0].jobs)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .max(1);
    let opts = RunOptions {
        jobs,
        keep_going: args.keep_going,
        run_id: run_id.clone(),
        exe: std::env::current_exe().map_err(|e| Exit::failed(format!("error: cannot find own binary: {e}")))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Exit::failed(format!("error: cannot start runtime: {e}")))?;
    let started = std::time::Instant::now();
    let (outcome, reporter) = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(async move {
            let mut reporter = Reporter::new();
            while let Some(event) = rx.recv().await {
                reporter.handle(event);
            }
            reporter
        });
        let outcome = if slurm {
            let on_interrupt = match args.on_interrupt.as_deref() {
                Some("cancel") => OnInterrupt::Cancel,
                Some("keep") => OnInterrupt::Keep,
                Some(_) => OnInterrupt::Ask(Box::new(ask_cancel)),
                None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
                    OnInterrupt::Ask(Box::new(ask_cancel))
                }
                None => OnInterrupt::Cancel,
            };
            match SlurmBackend::new(&run_id, &loaded.variants[0].slurm, opts.exe.clone(), on_interrupt).await {
                Ok(mut backend) => Ok(core::execute(&plan, &store, &opts, &mut backend, &mut record, &locks, tx).await),
                Err(e) => Err(e),
            }
        } else {
            let mut backend = LocalBackend::new(opts.exe.clone(), opts.jobs);
            Ok(core::execute(&plan, &store, &opts, &mut backend, &mut record, &locks, tx).await)
        };
        let reporter = printer.await.expect("reporter task");
        (outcome, reporter)
    });
    let outcome = outcome.map_err(|e| Exit::failed(format!("error: {e}")))?;
    record.status = outcome.into();
    record.finished = Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    // The final record: when even that cannot be written (a full disk),
    // say so here; `status` would otherwise show a run that never ended.
    let unrecorded = store.write_run(&record).err();
    let outcome = if unrecorded.is_some() && outcome == Outcome::Succeeded { Outcome::Failed } else { outcome };

    let secs = started.elapsed().as_secs_f64();
    let r = &reporter;
    let line = if r.committed == 0 && r.failed == 0 && r.interrupted == 0 && r.skipped == 0 {
        format!("nothing to do: all {} stages cached ({secs:.2}s)", r.cached)
    } else {
        let mut parts = vec![format!("{} committed", r.committed), format!("{} cached", r.cached)];
        if r.early_cutoff > 0 {
            parts.push(format!("{} cut off early", r.early_cutoff));
        }
        if r.failed > 0 {
            parts.push(format!("{} failed", r.failed));
        }
        if r.skipped > 0 {
            parts.push(format!("{} skipped", r.skipped));
        }
        if r.interrupted > 0 {
            parts.push(format!("{} interrupted", r.interrupted));
        }
        format!("run {}: {} ({secs:.1}s)", crate::store::runs::RunStatus::from(outcome), parts.join(", "))
    };
    eprintln!("{line}");
    if let Some(e) = unrecorded {
        eprintln!("error: cannot write the run record: {e}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record).expect("plain data"));
    }
    match outcome {
        Outcome::Succeeded => Ok(ExitCode::SUCCESS),
        Outcome::Failed => Ok(ExitCode::from(1)),
        // The shell's convention: 128 + the signal (130 Ctrl-C, 143 SIGTERM).
        Outcome::Interrupted(signal) => Ok(ExitCode::from((128 + signal).clamp(0, 255) as u8)),
    }
}

/// Ctrl-C during a SLURM run, on a terminal: cancel the run's jobs (the
/// default), or leave them for the next run to adopt.
fn ask_cancel(jobs: usize) -> bool {
    use std::io::Write;
    eprint!("  cancel the run's {jobs} queued or running shard jobs (scancel)? [Y/n] ");
    // An unflushed or unreadable terminal means nobody can answer: cancel.
    if std::io::stderr().flush().is_err() {
        return true;
    }
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return true;
    }
    !answer.trim().to_ascii_lowercase().starts_with('n')
}
