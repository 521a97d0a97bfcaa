//! `status`, `show`, `export` and `gc`: reading what runs left behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{build_plan, bytes, load, store_dir, Exit};
use crate::dag::{Decision, Node, Plan};
use crate::store::runs::{RunStatus, StageStatus};
use crate::store::{gc, table, Attempt, LockTimes, Locks, Manifest, Store, StoreError};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A run id (or its prefix); default: the last run.
    run: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The workflow file (TOML).
    workflow: PathBuf,
    /// The stage, by its name under [stages].
    stage: String,
    /// How many rows to print.
    #[arg(long, default_value_t = 10)]
    head: usize,
    /// Which sweep variant (when the stage differs between variants).
    #[arg(long)]
    variant: Option<String>,
    /// Override a value of the workflow: a dotted TOML path (stages.NAME.params.KEY=VALUE), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The workflow file (TOML).
    workflow: PathBuf,
    /// The stage, by its name under [stages].
    stage: String,
    /// Output file: .jsonl, .csv or .parquet (a table), .jsonl
    /// (predictions) or .json (report); `-` writes JSON Lines (or
    /// --format csv) to stdout.
    #[arg(long, value_name = "FILE|-")]
    to: PathBuf,
    /// The table's format, when the file name does not say it.
    #[arg(long, value_enum)]
    format: Option<ExportFormat>,
    /// What to write: the artifact's table (default), or for a
    /// swebench_eval stage the SWE-bench `predictions` (JSONL), the
    /// harness's run `report` (JSON), or the `summary` table (one row:
    /// protocol, resolved rate, Pass@k; .jsonl or .parquet).
    #[arg(long = "as", value_enum, default_value = "table")]
    as_: ExportAs,
    /// Which sweep variant (repeatable): with several whose stage differs,
    /// one file each, the variant's name before the extension
    /// (`out.n=1.jsonl`).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// Override a value of the workflow: a dotted TOML path (stages.NAME.params.KEY=VALUE), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Say what would be removed without removing anything.
    #[arg(long)]
    dry_run: bool,
    /// Keep only the newest N run records per workflow (older ones stop protecting their objects).
    #[arg(long, value_name = "N")]
    keep_runs: Option<usize>,
    /// Wait for another gc of the store to finish instead of failing
    /// (runs never stop gc: it leaves what they use alone).
    #[arg(long)]
    wait: bool,
}

fn open_existing(dir: &Path) -> Result<Store, Exit> {
    Store::existing(dir)
        .ok_or_else(|| Exit::failed(format!("error: no store at {} (nothing has run yet)", dir.display())))
}

pub fn status(store_flag: Option<&Path>, args: StatusArgs) -> Result<ExitCode, Exit> {
    let store = open_existing(&store_dir(store_flag, None))?;
    let runs = store.runs();
    let run = match &args.run {
        Some(id) => runs.iter().rev().find(|r| r.id.starts_with(id.as_str())).ok_or_else(|| {
            let recent: Vec<&str> = runs.iter().rev().take(3).map(|r| r.id.as_str()).collect();
            let known = if recent.is_empty() {
                "it has no runs yet".to_string()
            } else {
                format!("the latest: {} (`swestar runs` lists them all)", recent.join(", "))
            };
            Exit::invalid(format!("error: no run `{id}` in store {}; {known}", store.root.display()))
        })?,
        None => runs
            .last()
            .ok_or_else(|| Exit::failed(format!("error: no run recorded in store {} yet", store.root.display())))?,
    };
    let mut run = run.clone();
    if run.status == RunStatus::Running && !alive(&store, &run) {
        run.status = RunStatus::Killed;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run).expect("plain data"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run {}  {}  {}  ({} executor)",
        run.id,
        run.workflow,
        run.status,
        if run.executor.is_empty() { "local" } else { &run.executor }
    );
    println!("  started  {}", run.started);
    if let Some(f) = &run.finished {
        println!("  finished {f}");
    }
    let width = run.stages.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    for s in &run.stages {
        let variants = if s.variants.iter().any(|v| !v.is_empty()) {
            format!(" [{}]", s.variants.join(" | "))
        } else {
            String::new()
        };
        let key = s.key.as_deref().map(|k| &k[..12.min(k.len())]).unwrap_or("-");
        let extra = match (s.rows, s.duration_s) {
            (Some(r), Some(d)) => format!("  {r} rows in {d:.1}s"),
            _ => String::new(),
        };
        let reason = s.reason.as_deref().filter(|r| !r.is_empty()).map(|r| format!("  ({r})")).unwrap_or_default();
        println!("  {:<11} {:<width$}  {key}{extra}{reason}{variants}", s.status, s.stage);
        if let Some(j) = &s.jobs {
            let ids = j.job_ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            println!(
                "              jobs {ids}: {} queued, {} running, {} done, {} failed, {} retried",
                j.queued, j.running, j.done, j.failed, j.retried
            );
        }
        if s.status == StageStatus::Failed {
            if let Some(log) = &s.log {
                println!("              log: {}", log.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a run's orchestrator lives: its process, on its own host; from
/// another host, its lock's heartbeat, given twice the stale time for the
/// hosts' clocks to disagree.
pub(super) fn alive(store: &Store, run: &crate::store::runs::RunRecord) -> bool {
    if run.host.is_empty() || run.host == crate::store::lock::hostname() {
        return Path::new(&format!("/proc/{}", run.pid)).exists();
    }
    let lock = store.root.join("locks").join(format!("run-{}.lock", run.id));
    let beat = std::fs::metadata(lock).and_then(|m| m.modified()).ok();
    beat.and_then(|t| t.elapsed().ok().or(Some(std::time::Duration::ZERO)))
        .is_some_and(|age| age < LockTimes::from_env().stale * 2)
}

/// The committed artifact of a stage under the workflow's current settings.
fn artifact(
    store_flag: Option<&Path>,
    workflow: &Path,
    sets: &[String],
    stage: &str,
    variant: Option<&str>,
) -> Result<(Store, Manifest), Exit> {
    let variants: Vec<String> = variant.map(str::to_string).into_iter().collect();
    let (store, mut found) = artifacts(store_flag, workflow, sets, stage, &variants, false)?;
    let (_, manifest) = found.remove(0);
    Ok((store, manifest))
}

/// The committed artifacts of a stage for the named variants (one per
/// distinct node, with the first of the named variants it belongs to);
/// `many` allows more than one.
fn artifacts(
    store_flag: Option<&Path>,
    workflow: &Path,
    sets: &[String],
    stage: &str,
    variants: &[String],
    many: bool,
) -> Result<(Store, Vec<(String, Manifest)>), Exit> {
    let loaded = load(workflow, sets)?;
    let store = open_existing(&store_dir(store_flag, Some(&loaded)))?;
    let plan = build_plan(&loaded, Some(&store))?;
    let nodes = find_nodes(&plan, workflow, stage, variants, many)?;
    let mut out = Vec::new();
    for node in nodes {
        let name = node.variants.iter().find(|v| variants.contains(v)).unwrap_or(&node.variants[0]).clone();
        match &node.decision {
            Decision::Cached { manifest, .. } => out.push((name, (**manifest).clone())),
            Decision::Run { reasons, .. } => {
                let which = if name.is_empty() { String::new() } else { format!(" (variant {name})") };
                return Err(Exit::failed(format!(
                    "error: stage `{stage}`{which} has no artifact for the current settings (it would run: {})",
                    reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")
                )));
            }
        }
    }
    Ok((store, out))
}

/// The distinct nodes of a stage for the named variants (all variants when
/// none is named); `many` allows more than one.
pub(super) fn find_nodes<'a>(
    plan: &'a Plan,
    workflow: &Path,
    stage: &str,
    variants: &[String],
    many: bool,
) -> Result<Vec<&'a Node>, Exit> {
    let mut nodes: Vec<_> = plan.nodes.iter().filter(|n| n.stage == stage).collect();
    if nodes.is_empty() {
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.stage.as_str()).collect();
        let hint =
            crate::workflow::did_you_mean(stage, names).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        return Err(Exit::invalid(format!("error: no stage named `{stage}` in {}{hint}", workflow.display())));
    }
    super::check_variants(variants, &plan.variants)?;
    if !variants.is_empty() {
        nodes.retain(|n| n.variants.iter().any(|x| variants.contains(x)));
    }
    if nodes.len() > 1 && !many {
        return Err(Exit::invalid(format!(
            "error: stage `{stage}` differs between variants; pick one with --variant (variants: {})",
            plan.variants.join(", ")
        )));
    }
    Ok(nodes)
}

pub fn show(store_flag: Option<&Path>, args: ShowArgs) -> Result<ExitCode, Exit> {
    let (store, manifest) = artifact(store_flag, &args.workflow, &args.sets, &args.stage, args.variant.as_deref())?;
    let parts = store.part_paths(&manifest);
    let refs: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
    let (_, batches) = table::read_parquet(&refs, Some(args.head)).map_err(|e| Exit::failed(format!("error: {e}")))?;
    if args.json {
        let rows = table::batches_to_json_rows(&batches).map_err(|e| Exit::failed(format!("error: {e}")))?;
        let out = serde_json::json!({
            "stage": manifest.stage,
            "key": manifest.key,
            "rows": manifest.rows,
            "bytes": manifest.bytes,
            "parts": manifest.parts.len(),
            "schema": manifest.schema,
            "head": rows,
            "path": store.object_dir(&manifest.key),
            "dataset": store.parts_dir(&manifest),
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("plain data"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}  key {}  {} rows  {}  {} part(s)",
        manifest.stage,
        manifest.key.short(),
        manifest.rows,
        bytes(manifest.bytes),
        manifest.parts.len()
    );
    println!("  {}", store.object_dir(&manifest.key).display());
    println!("  parts, to read as one table: {}", store.parts_dir(&manifest).display());
    println!("schema:");
    for f in &manifest.schema {
        println!("  {}: {}{}", f.name, f.data_type, if f.nullable { "" } else { " (not null)" });
    }
    if !batches.is_empty() {
        let text =
            arrow_cast::pretty::pretty_format_batches(&batches).map_err(|e| Exit::failed(format!("error: {e}")))?;
        println!("first {} rows:\n{text}", batches.iter().map(|b| b.num_rows()).sum::<usize>());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportAs {
    Table,
    Predictions,
    Report,
    Summary,
}

pub fn export(store_flag: Option<&Path>, args: ExportArgs) -> Result<ExitCode, Exit> {
    if args.as_ != ExportAs::Table {
        return export_swebench(store_flag, args);
    }
    let stdout = args.to.as_os_str() == "-";
    let ext = args.to.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let format = match (args.format, ext.as_str()) {
        (Some(f), _) => f,
        (None, _) if stdout => ExportFormat::Jsonl,
        (None, "jsonl") => ExportFormat::Jsonl,
        (None, "parquet") => ExportFormat::Parquet,
        (None, "csv") => ExportFormat::Csv,
        (None, _) => {
            let to = args.to.display();
            return Err(Exit::invalid(format!(
                "error: --to {to}: write a .jsonl, .csv or .parquet file (or - for stdout), or name it with --format"
            )));
        }
    };
    if stdout && format == ExportFormat::Parquet {
        return Err(Exit::invalid("error: --to -: Parquet goes to a file; stdout takes --format jsonl or csv"));
    }
    if !stdout {
        check_out_dir(&args.to)?;
    }
    let (store, found) = artifacts(store_flag, &args.workflow, &args.sets, &args.stage, &args.variants, true)?;
    if found.len() > 1 && (args.variants.is_empty() || stdout) {
        return Err(Exit::invalid(format!(
            "error: stage `{}` differs between variants; pick {}",
            args.stage,
            if stdout { "one with --variant" } else { "them with --variant (repeatable)" }
        )));
    }
    let several = found.len() > 1;
    for (variant, manifest) in found {
        let parts = store.part_paths(&manifest);
        let refs: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
        if stdout {
            return to_stdout(&refs, format.text().expect("checked above"));
        }
        let to = if several { per_variant(&args.to, &variant) } else { args.to.clone() };
        let rows = to_file(&refs, format, &to)?;
        eprintln!("wrote {rows} rows of {} to {}", manifest.stage, to.display());
    }
    Ok(ExitCode::SUCCESS)
}

impl ExportFormat {
    fn text(self) -> Option<table::TextFormat> {
        match self {
            ExportFormat::Jsonl => Some(table::TextFormat::Jsonl),
            ExportFormat::Csv => Some(table::TextFormat::Csv),
            ExportFormat::Parquet => None,
        }
    }
}

/// An artifact's parts to stdout as text. A closed pipe (`| head`) is the
/// reader being done, not an error.
fn to_stdout(refs: &[&Path], text: table::TextFormat) -> Result<ExitCode, Exit> {
    use std::io::Write;
    let dash = Path::new("-");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = table::parquet_to_text(refs, text, &mut out, dash)
        .and_then(|_| out.flush().map_err(|e| table::TableError::Io { path: dash.into(), source: e }));
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::BrokenPipe) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Exit::failed(format!("error: {e}"))),
    }
}

/// An artifact's parts to a file, written beside it and renamed into
/// place, so that a failed export never leaves half a file: its rows.
fn to_file(refs: &[&Path], format: ExportFormat, to: &Path) -> Result<u64, Exit> {
    use std::io::Write;
    let tmp = partial(to);
    let io = |e: std::io::Error| Exit::failed(format!("error: {}: {e}", to.display()));
    let failed = |e: table::TableError| Exit::failed(format!("error: {e}"));
    let rows = match format.text() {
        Some(text) => std::fs::File::create(&tmp).map_err(io).and_then(|f| {
            let mut out = std::io::BufWriter::new(f);
            let rows = table::parquet_to_text(refs, text, &mut out, to).map_err(failed)?;
            out.flush().map_err(io)?;
            Ok(rows)
        }),
        None => table::concat_parquet(refs, &tmp).map_err(failed),
    };
    let rows = rows.inspect_err(|_| {
        let _gone_or_never_made = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, to).map_err(io)?;
    Ok(rows)
}

/// The hidden file an export is written to before it is renamed into place.
fn partial(to: &Path) -> PathBuf {
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    to.with_file_name(format!(".{name}.partial"))
}

/// An output file's directory must exist: said about the file the user
/// named, not about the temporary one beside it.
fn check_out_dir(to: &Path) -> Result<(), Exit> {
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(Exit::invalid(format!(
        "error: --to {}: there is no directory {} (create it first)",
        to.display(),
        dir.display()
    )))
}

/// `out.jsonl` for variant `n=1`: `out.n=1.jsonl`.
fn per_variant(to: &Path, variant: &str) -> PathBuf {
    let safe: String = variant.chars().map(|c| if c == '/' || c.is_whitespace() { '_' } else { c }).collect();
    let stem = to.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match to.extension() {
        Some(ext) => format!("{stem}.{safe}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{safe}"),
    };
    to.with_file_name(name)
}

/// Predictions JSONL or the run report of a swebench_eval artifact, in the
/// official harness's layouts, so results can be checked with it.
fn export_swebench(store_flag: Option<&Path>, args: ExportArgs) -> Result<ExitCode, Exit> {
    if args.variants.len() > 1 {
        return Err(Exit::invalid("error: --as predictions, report and summary take one --variant"));
    }
    let (store, manifest) =
        artifact(store_flag, &args.workflow, &args.sets, &args.stage, args.variants.first().map(String::as_str))?;
    if manifest.kind != "swebench_eval" {
        return Err(Exit::invalid(format!(
            "error: stage `{}` is a {} stage; predictions and reports come from swebench_eval stages",
            manifest.stage, manifest.kind
        )));
    }
    check_out_dir(&args.to)?;
    if args.as_ == ExportAs::Summary {
        return export_summary(&manifest, &args.to);
    }
    let parts = store.part_paths(&manifest);
    let table = crate::store::rows::Table::open(&parts, crate::workflow::TableFormat::Parquet)
        .map_err(|e| Exit::failed(format!("error: {e}")))?;
    let columns = ["instance_id", "model", "patch", "counted", "applied", "resolved"];
    // The counted attempt of each instance (the first, under samples).
    let mut counted: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    let mut all = std::collections::BTreeSet::new();
    for batch in table.read_columns(0, table.rows(), Some(&columns)) {
        for row in batch.map_err(|e| Exit::failed(format!("error: {e}")))? {
            let id = row["instance_id"].as_str().unwrap_or_default().to_string();
            all.insert(id.clone());
            if row["counted"].as_bool() == Some(true) {
                counted.entry(id).or_insert(row);
            }
        }
    }
    let text = match args.as_ {
        ExportAs::Predictions => counted
            .iter()
            .map(|(id, r)| {
                serde_json::json!({"instance_id": id, "model_name_or_path": r["model"], "model_patch": r["patch"]})
                    .to_string()
                    + "\n"
            })
            .collect::<String>(),
        _ => {
            let ids = |f: &dyn Fn(&serde_json::Value) -> bool| -> Vec<String> {
                counted.iter().filter(|(_, r)| f(r)).map(|(id, _)| id.clone()).collect()
            };
            let empty = |r: &serde_json::Value| r["patch"].as_str().unwrap_or("").trim().is_empty();
            let applied = |r: &serde_json::Value| r["applied"].as_bool() == Some(true);
            let resolved = |r: &serde_json::Value| r["resolved"].as_bool() == Some(true);
            let completed = ids(&|r| !empty(r) && applied(r));
            let resolved_ids = ids(&|r| !empty(r) && applied(r) && resolved(r));
            let unresolved_ids = ids(&|r| !empty(r) && applied(r) && !resolved(r));
            let empty_ids = ids(&|r| empty(r));
            let error_ids = ids(&|r| !empty(r) && !applied(r));
            let submitted: Vec<String> = counted.keys().cloned().collect();
            let incomplete: Vec<String> = all.iter().filter(|id| !counted.contains_key(*id)).cloned().collect();
            let none: Vec<String> = Vec::new();
            let report = serde_json::json!({
                "total_instances": all.len(),
                "submitted_instances": submitted.len(),
                "completed_instances": completed.len(),
                "resolved_instances": resolved_ids.len(),
                "unresolved_instances": unresolved_ids.len(),
                "infra_failure_instances": 0,
                "ambiguous_failure_instances": 0,
                "empty_patch_instances": empty_ids.len(),
                "error_instances": error_ids.len(),
                "completed_ids": completed,
                "incomplete_ids": incomplete,
                "empty_patch_ids": empty_ids,
                "submitted_ids": submitted,
                "resolved_ids": resolved_ids,
                "unresolved_ids": unresolved_ids,
                "infra_failure_ids": none,
                "ambiguous_failure_ids": none,
                "error_ids": error_ids,
                "schema_version": 2,
            });
            serde_json::to_string_pretty(&report).expect("plain data") + "\n"
        }
    };
    crate::store::write_atomic(&args.to, text.as_bytes())
        .map_err(|e| Exit::failed(format!("error: {}: {e}", args.to.display())))?;
    eprintln!("wrote the {:?} of {} to {}", args.as_, manifest.stage, args.to.display());
    Ok(ExitCode::SUCCESS)
}

/// The evaluation's summary (its manifest's statistics) as a one-row table:
/// protocol, instances, attempts, resolved and submitted rates, and one
/// `pass@k` column per k.
fn export_summary(manifest: &crate::store::manifest::Manifest, to: &Path) -> Result<ExitCode, Exit> {
    let ext = to.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "jsonl" && ext != "parquet" {
        return Err(Exit::invalid(format!("error: --to {}: write a .jsonl or .parquet file", to.display())));
    }
    let mut row = serde_json::Map::new();
    row.insert("stage".into(), serde_json::json!(manifest.stage));
    for (k, v) in &manifest.stats {
        match (k.as_str(), v) {
            ("pass_at_k", serde_json::Value::Object(p)) => row.extend(p.clone()),
            _ => {
                row.insert(k.clone(), v.clone());
            }
        }
    }
    let line = serde_json::Value::Object(row).to_string() + "\n";
    let fail = |e: String| Exit::failed(format!("error: {}: {e}", to.display()));
    if ext == "jsonl" {
        crate::store::write_atomic(to, line.as_bytes()).map_err(|e| fail(e.to_string()))?;
    } else {
        // The one JSON line beside the target, converted into place.
        let (src, tmp) = (partial(to).with_extension("jsonl"), partial(to));
        let converted = std::fs::write(&src, line)
            .map_err(|e| e.to_string())
            .and_then(|()| table::jsonl_to_parquet(&src, &tmp).map_err(|e| e.to_string()))
            .and_then(|_| std::fs::rename(&tmp, to).map_err(|e| e.to_string()));
        for leftover in [&src, &tmp] {
            let _gone_or_never_made = std::fs::remove_file(leftover);
        }
        converted.map_err(fail)?;
    }
    eprintln!("wrote the summary of {} to {}", manifest.stage, to.display());
    Ok(ExitCode::SUCCESS)
}

pub fn gc(store_flag: Option<&Path>, args: GcArgs) -> Result<ExitCode, Exit> {
    let store = open_existing(&store_dir(store_flag, None))?;
    // Even a dry run takes the gc lock.
    let store = super::open_writable(&store.root)?;
    let fail = |e: StoreError| Exit::failed(format!("error: {e}"));
    let locks = Locks::new(&store.root, "gc", LockTimes::from_env()).map_err(fail)?;
    let guard = if args.wait {
        locks
            .lock("gc", |holder| {
                eprintln!("waiting for the store's other gc ({})", holder.map(|o| o.to_string()).unwrap_or_default())
            })
            .map_err(fail)?
    } else {
        match locks.try_lock("gc").map_err(fail)? {
            Attempt::Acquired(g) => g,
            Attempt::Held(holder) => {
                return Err(fail(StoreError::Locked {
                    store: store.root.clone(),
                    holder: holder.map(|o| o.to_string()).unwrap_or_else(|| "another gc".into()),
                }))
            }
        }
    };
    let report = gc::collect(&store, &locks, &guard, args.keep_runs, args.dry_run).map_err(fail)?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for (key, b) in &report.removed {
        println!("  {verb} {}  {}", key.short(), bytes(*b));
    }
    for (path, holder) in &report.in_use {
        println!("  kept {} (in use: {holder})", path.display());
    }
    println!(
        "{verb} {} objects ({}), {} leftovers, {} run records; kept {} objects",
        report.removed.len(),
        bytes(report.bytes()),
        report.leftovers.len(),
        report.runs_removed.len(),
        report.kept
    );
    Ok(ExitCode::SUCCESS)
}
