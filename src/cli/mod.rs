//! The command line: argument parsing, store resolution, rendering of
//! plans and events, and the mapping of errors to exit statuses
//! (0 success, 1 a stage failed, 2 the workflow or arguments are invalid,
//! 128 + the signal that stopped a run).

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
mod grade;
mod history;
mod inspect;
mod kinds;
mod render;
mod report;
mod run;
mod serve;
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
    /// Write an artifact to a .jsonl, .csv or .parquet file, or to stdout.
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
    /// Grade a recorded SWE-bench test log for an instance and print the
    /// harness's report JSON.
    Grade(grade::GradeArgs),
    /// Serve recorded model replies on 127.0.0.1 (OpenAI-compatible), to
    /// run a workflow end to end without a model.
    Serve(serve::ServeArgs),
    /// Print a shell completion script (bash: `source <(swestar completions bash)`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
        Command::Grade(args) => grade::grade(args),
        Command::Serve(args) => serve::serve(args),
        Command::Kinds(args) => kinds::kinds(args),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "swestar", &mut out);
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| Exit::failed(format!("error: {e}")))
                .map(|()| ExitCode::SUCCESS)
        }
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

/// Loads a workflow, mapping problems to exit status 2. A workflow with
/// no stages is valid (a skeleton being written), but every command would
/// then say nothing without saying why.
fn load(path: &Path, sets: &[String]) -> Result<Loaded, Exit> {
    let loaded = workflow::load(path, sets)?;
    if loaded.variants.iter().all(|v| v.stages.is_empty()) {
        eprintln!("warning: {}: the workflow has no stages (add [stages.NAME] tables): nothing to do", path.display());
    }
    Ok(loaded)
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

/// Opens (or creates) a store to write to; one that cannot be written is
/// the user's `--store` to change (status 2).
fn open_writable(dir: &Path) -> Result<crate::store::Store, Exit> {
    crate::store::Store::open(dir).map_err(|e| match e {
        crate::store::StoreError::ReadOnly { .. } => Exit::invalid(format!("error: {e}")),
        e => Exit::failed(format!("error: cannot open store: {e}")),
    })
}

/// Text made safe for HTML, in elements and in quoted attributes.
fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Human-readable byte counts.
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` explains every argument of every command a user can see.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !arg.is_hide_set() && !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "swestar", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
        super::Cli::command().debug_assert();
    }
}
