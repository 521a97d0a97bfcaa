//! The command line: argument parsing, store resolution, rendering of
//! plans and events, and the mapping of errors to exit statuses
//! (0 success, 1 a stage failed, 2 the workflow or arguments are invalid).

/// Appends formatted text to a page being built (a `String`: no error).
macro_rules! out {
    ($s:expr, $($t:tt)*) => { $s.push_str(&format!($($t)*)) };
}
/// `out!` and a newline.
macro_rules! outln {
    ($s:expr, $($t:tt)*) => {{ $s.push_str(&format!($($t)*)); $s.push('\n'); }};
}

mod agent;
mod charts;
mod history;
mod inspect;
mod kinds;
mod render;
mod report;
mod run;
mod terminal;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workflow::{self, Loaded, WorkflowError};

#[derive(Debug, Parser)]
#[command(name = "swestar", version, about = "Agentic-distillation experiments as declarative, cached pipelines")]
pub struct Cli {
    /// Store directory (default: [workflow] store, else .swestar in the current directory).
    #[arg(long, global = true, env = "SWESTAR_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Execute the stages that are not cached.
    Run(run::RunArgs),
    /// Show, per stage, whether it would run or is cached, and why.
    Plan(run::PlanArgs),
    /// Show what the last run (or RUN) did.
    Status(inspect::StatusArgs),
    /// List the store's runs, newest first (runs that found everything
    /// cached are folded).
    Runs(history::RunsArgs),
    /// Print the workflow's graph as DOT or Mermaid, with each stage's state.
    Dag(history::DagArgs),
    /// Print every variant's swept values and headline figures side by side.
    Compare(history::CompareArgs),
    /// Write an HTML report: the graph, stage costs, sweep figures, Pass@k
    /// and data distributions, self-contained (no network needed to read it).
    Report(report::ReportArgs),
    /// Write one trajectory or training sample as an HTML page (or --list them).
    View(view::ViewArgs),
    /// Print an artifact's schema, row count and first rows.
    Show(inspect::ShowArgs),
    /// Write an artifact to a .jsonl or .parquet file.
    Export(inspect::ExportArgs),
    /// Print the SLURM job script of a stage, exactly as it would be submitted.
    Render(render::RenderArgs),
    /// Remove objects that no ref or run record references.
    Gc(inspect::GcArgs),
    /// Print the JSON Schema of the workflow format.
    Schema,
    /// List the stage kinds, or show one kind's settings and their defaults.
    Kinds(kinds::KindsArgs),
    /// Run one agent episode on one instance, printing every turn.
    Agent(agent::AgentArgs),
    /// Run one stage body from a job file (used by the executors).
    #[command(hide = true)]
    Exec {
        #[arg(long)]
        job: PathBuf,
        /// Which shard to run: I/N (default 0/1).
        #[arg(long, value_name = "I/N", value_parser = crate::exec::job::parse_shard)]
        shard: Option<(u32, u32)>,
    },
}

/// A failure at the CLI edge, with its exit status.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn invalid(message: impl Into<String>) -> Exit {
        Exit { code: 2, message: message.into() }
    }
    pub fn failed(message: impl Into<String>) -> Exit {
        Exit { code: 1, message: message.into() }
    }
}

impl From<WorkflowError> for Exit {
    fn from(e: WorkflowError) -> Exit {
        match e {
            WorkflowError::Argument(m) => Exit::invalid(format!("error: {m}")),
            WorkflowError::Invalid(_) => Exit::invalid(e.to_string()),
            WorkflowError::Read { .. } => Exit::invalid(format!("error: {e}")),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(cli.store.as_deref(), args),
        Command::Plan(args) => run::plan(cli.store.as_deref(), args),
        Command::Status(args) => inspect::status(cli.store.as_deref(), args),
        Command::Runs(args) => history::runs(cli.store.as_deref(), args),
        Command::Dag(args) => history::dag(cli.store.as_deref(), args),
        Command::Compare(args) => history::compare(cli.store.as_deref(), args),
        Command::Report(args) => report::report(cli.store.as_deref(), args),
        Command::View(args) => view::view(cli.store.as_deref(), args),
        Command::Show(args) => inspect::show(cli.store.as_deref(), args),
        Command::Export(args) => inspect::export(cli.store.as_deref(), args),
        Command::Gc(args) => inspect::gc(cli.store.as_deref(), args),
        Command::Render(args) => render::render(cli.store.as_deref(), args),
        Command::Agent(args) => agent::agent(args),
        Command::Kinds(args) => kinds::kinds(args),
        Command::Schema => {
            print!("{}", workflow::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec { job, shard } => match crate::exec::job::run_job_file(&job, shard) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(Exit { code: e.exit_code(), message: format!("error: {e}") }),
        },
    };
    match result {
        Ok(code) => code,
        Err(exit) => {
            if !exit.message.is_empty() {
                use std::io::Write;
                // `swestar exec` writes to its log on the store's disk: when
                // that is full, the exit status is all that can be said.
                let _unsaid_if_stderr_is_full = writeln!(std::io::stderr(), "{}", exit.message);
            }
            ExitCode::from(exit.code)
        }
    }
}

/// Loads a workflow, mapping problems to exit status 2.
fn load(path: &Path, sets: &[String]) -> Result<Loaded, Exit> {
    Ok(workflow::load(path, sets)?)
}

/// Keeps only the named variants (all when none is named).
fn only_variants(loaded: &mut Loaded, names: &[String]) -> Result<(), Exit> {
    if names.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = loaded.variants.iter().map(|v| v.variant.name.clone()).collect();
    check_variants(names, &all)?;
    loaded.variants.retain(|v| names.contains(&v.variant.name));
    Ok(())
}

/// Every name is one of the variants, or the error says which are, with a
/// did-you-mean.
fn check_variants(names: &[String], all: &[String]) -> Result<(), Exit> {
    for name in names {
        if !all.contains(name) {
            let hint = workflow::did_you_mean(name, all.iter().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(Exit::invalid(format!("error: no variant `{name}`{hint}; variants: {}", all.join(", "))));
        }
    }
    Ok(())
}

/// Plans a loaded workflow against the store (`None`: nothing is cached
/// yet), keeping the store's stat cache current.
fn build_plan(loaded: &Loaded, store: Option<&crate::store::Store>) -> Result<crate::dag::Plan, Exit> {
    let mut stat = store.map(|s| s.stat_cache()).unwrap_or_default();
    let plan = crate::dag::Plan::build(&loaded.variants, store, &mut stat)
        .map_err(|e| Exit::invalid(format!("error: {e}")))?;
    if store.is_some() {
        if let Err(e) = stat.save() {
            // Only a cache: the next plan hashes the data again.
            eprintln!("warning: cannot save the store's stat cache: {e}");
        }
    }
    Ok(plan)
}

/// `--store`/`SWESTAR_STORE`, else the workflow's `[workflow] store`, else
/// `.swestar` in the current directory.
fn store_dir(flag: Option<&Path>, loaded: Option<&Loaded>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| loaded.and_then(|l| l.variants[0].store.clone()))
        .unwrap_or_else(|| PathBuf::from(".swestar"))
}

/// Human-readable byte counts.
/// Text made safe for HTML, in elements and in quoted attributes.
fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
