//! `swestar runs` (the store's run history) and `swestar dag` (a
//! workflow's graph as DOT or Mermaid, each node with its state).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::{build_plan, bytes, load, only_variants, store_dir, Exit};
use crate::dag::{Decision, Plan};
use crate::store::runs::{RunRecord, RunStatus, StageStatus};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Show every run: runs that only found everything cached are folded
    /// into one line per stretch otherwise.
    #[arg(long)]
    all: bool,
    /// Only the newest N runs.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print the runs as JSON (every run, newest first).
    #[arg(long)]
    json: bool,
}

/// One run, as the history lists it.
struct Line {
    record: RunRecord,
    status: RunStatus,
    seconds: Option<f64>,
    run: usize,
    cached: usize,
    failed: usize,
    variants: Vec<String>,
}

impl Line {
    fn of(store: &Store, record: RunRecord) -> Line {
        let status = if record.status == RunStatus::Running && !super::inspect::alive(store, &record) {
            RunStatus::Killed
        } else {
            record.status
        };
        let seconds = record.finished.as_deref().and_then(|f| {
            let (a, b) = (humantime::parse_rfc3339(&record.started).ok()?, humantime::parse_rfc3339(f).ok()?);
            Some(b.duration_since(a).ok()?.as_secs_f64())
        });
        let count = |s: &[StageStatus]| record.stages.iter().filter(|x| s.contains(&x.status)).count();
        let run = count(&[StageStatus::Committed]);
        let cached = count(&[StageStatus::Cached]);
        let failed = count(&[StageStatus::Failed, StageStatus::Interrupted, StageStatus::Skipped]);
        let mut variants: Vec<String> =
            record.stages.iter().flat_map(|s| s.variants.iter()).filter(|v| !v.is_empty()).cloned().collect();
        variants.sort();
        variants.dedup();
        Line { record, status, seconds, run, cached, failed, variants }
    }

    /// Found everything cached and did nothing.
    fn noop(&self) -> bool {
        self.status == RunStatus::Succeeded && self.run == 0 && self.failed == 0
    }

    fn json(&self) -> Value {
        json!({
            "id": self.record.id,
            "workflow": self.record.workflow,
            "variants": self.variants,
            "status": self.status,
            "started": self.record.started,
            "finished": self.record.finished,
            "duration_s": self.seconds,
            "stages": {"run": self.run, "cached": self.cached, "failed": self.failed},
            "host": self.record.host,
            "executor": self.record.executor,
            "noop": self.noop(),
        })
    }

    fn text(&self) -> String {
        let variants = match self.variants.len() {
            0 => String::new(),
            1..=3 => format!(" [{}]", self.variants.join(" | ")),
            n => format!(" [{n} variants]"),
        };
        let took = self.seconds.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into());
        let status = match self.status {
            RunStatus::Killed => "killed".to_string(),
            s => s.to_string(),
        };
        format!(
            "{}  {:<11} {:>8}  {} run, {} cached, {} failed  {}{}  {}",
            self.record.id,
            status,
            took,
            self.run,
            self.cached,
            self.failed,
            self.record.workflow,
            variants,
            if self.record.host.is_empty() { "-" } else { &self.record.host }
        )
    }
}

pub fn runs(store_flag: Option<&Path>, args: RunsArgs) -> Result<ExitCode, Exit> {
    let dir = store_dir(store_flag, None);
    let store = Store::existing(&dir)
        .ok_or_else(|| Exit::failed(format!("error: no store at {} (nothing has run yet)", dir.display())))?;
    let mut lines: Vec<Line> = store.runs().into_iter().rev().map(|r| Line::of(&store, r)).collect();
    if let Some(n) = args.limit {
        lines.truncate(n);
    }
    if args.json {
        let all: Vec<Value> = lines.iter().map(Line::json).collect();
        println!("{}", serde_json::to_string_pretty(&all).expect("plain data"));
        return Ok(ExitCode::SUCCESS);
    }
    if lines.is_empty() {
        println!("no run recorded in {}", store.root.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("run                             status          took  stages                      workflow  host");
    let mut folded: Vec<&Line> = Vec::new();
    let flush = |folded: &mut Vec<&Line>| {
        match folded.as_slice() {
            [] => {}
            [one] => println!("{}", one.text()),
            [newest, .., oldest] => println!(
                "… {} no-op runs (everything cached), {} to {}  (--all shows them)",
                folded.len(),
                oldest.record.id,
                newest.record.id
            ),
        }
        folded.clear();
    };
    for line in &lines {
        if line.noop() && !args.all {
            folded.push(line);
            continue;
        }
        flush(&mut folded);
        println!("{}", line.text());
    }
    flush(&mut folded);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DagFormat {
    Dot,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Graphviz DOT (`| dot -Tsvg`) or a Mermaid flowchart.
    #[arg(long, value_enum, default_value = "dot")]
    format: DagFormat,
    /// Override a value: a dotted path into the TOML.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Only this variant of the sweep (repeatable).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
}

/// A node's state in the graph: a word, a detail and a colour.
fn state(plan: &Plan, i: usize) -> (&'static str, String, &'static str) {
    let node = &plan.nodes[i];
    match &node.decision {
        Decision::Cached { manifest, .. } => {
            ("cached", format!("{} rows, {}", manifest.rows, bytes(manifest.bytes)), "#d4edda")
        }
        Decision::Run { .. } if !node.runnable => ("cannot run yet", "files missing".into(), "#e2e3e5"),
        Decision::Run { reasons, .. } => {
            let why = reasons.first().map(|r| r.to_string()).unwrap_or_default();
            ("run", why, "#fff3cd")
        }
    }
}

/// The variants of a node, for its label: the swept settings they all
/// share (`n=1`), else how many they are; empty without a sweep, or when
/// every variant shares the node.
pub(super) fn variants_of(plan: &Plan, i: usize) -> String {
    let vs: Vec<&str> = plan.nodes[i].variants.iter().filter(|v| !v.is_empty()).map(String::as_str).collect();
    if vs.is_empty() || vs.len() == plan.variants.len() {
        return String::new();
    }
    // Variant names are `key=value` pairs joined by commas.
    let common: Vec<&str> = vs[0].split(',').filter(|kv| vs.iter().all(|v| v.split(',').any(|x| x == *kv))).collect();
    if common.is_empty() {
        format!("{} variants", vs.len())
    } else {
        common.join(",")
    }
}

pub fn dag(store_flag: Option<&Path>, args: DagArgs) -> Result<ExitCode, Exit> {
    let mut loaded = load(&args.workflow, &args.sets)?;
    only_variants(&mut loaded, &args.variants)?;
    let store = Store::existing(&store_dir(store_flag, Some(&loaded)));
    let plan = build_plan(&loaded, store.as_ref())?;
    print!(
        "{}",
        match args.format {
            DagFormat::Dot => dot(&plan),
            DagFormat::Mermaid => mermaid(&plan),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A node's label in either syntax (its stage, the settings its variants
/// share, its state), the state's word and colour; `q` escapes text and
/// `br` breaks a line.
fn node_label(plan: &Plan, i: usize, q: &dyn Fn(&str) -> String, br: &str) -> (String, &'static str, &'static str) {
    let (word, detail, colour) = state(plan, i);
    let mut label = q(&plan.nodes[i].stage);
    let variants = variants_of(plan, i);
    if !variants.is_empty() {
        label.push_str(&format!("{br}[{}]", q(&variants)));
    }
    label.push_str(&format!("{br}{word}: {}", q(&detail)));
    (label, word, colour)
}

fn dot(plan: &Plan) -> String {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n",
        q(&plan.workflow)
    );
    for i in 0..plan.nodes.len() {
        let (label, _, colour) = node_label(plan, i, &q, "\\n");
        out.push_str(&format!("  n{i} [label=\"{label}\", fillcolor=\"{colour}\"];\n"));
    }
    for (i, n) in plan.nodes.iter().enumerate() {
        for e in &n.upstream {
            match &e.input {
                Some(input) => out.push_str(&format!("  n{} -> n{i} [label=\"{}\"];\n", e.node, q(input))),
                None => out.push_str(&format!("  n{} -> n{i} [style=dashed];\n", e.node)),
            }
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid(plan: &Plan) -> String {
    // Mermaid labels take HTML entities, not backslash escapes.
    let q = |s: &str| s.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;");
    let mut out = String::from("flowchart TD\n");
    for i in 0..plan.nodes.len() {
        let (label, word, _) = node_label(plan, i, &q, "<br/>");
        let class = match word {
            "cached" => "cached",
            "run" => "run",
            _ => "blocked",
        };
        out.push_str(&format!("  n{i}[\"{label}\"]:::{class}\n"));
    }
    for (i, n) in plan.nodes.iter().enumerate() {
        for e in &n.upstream {
            match &e.input {
                Some(input) => out.push_str(&format!("  n{} -->|{}| n{i}\n", e.node, q(input))),
                None => out.push_str(&format!("  n{} -.-> n{i}\n", e.node)),
            }
        }
    }
    out.push_str("  classDef cached fill:#d4edda\n  classDef run fill:#fff3cd\n  classDef blocked fill:#e2e3e5\n");
    out
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Override a value: a dotted path into the TOML.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Only these variants (repeatable).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// Only these figures, by name or ending (`resolved_rate`,
    /// `segment.samples`), comma-separated.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    metrics: Vec<String>,
    /// Print JSON: one object per variant.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV: a header, then one line per variant.
    #[arg(long)]
    csv: bool,
}

/// One variant's swept values and headline figures.
pub(super) struct Row {
    pub variant: String,
    pub settings: Vec<(String, String)>,
    pub metrics: Vec<(String, Value)>,
}

/// Every variant's swept values and its stages' headline figures (those
/// not computed yet are missing), plus `wall_s`: its stages' times summed.
pub(super) fn variant_rows(loaded: &crate::workflow::Loaded, plan: &Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    for wf in &loaded.variants {
        let mut metrics: Vec<(String, Value)> = Vec::new();
        let mut wall = 0.0;
        let mut complete = true;
        for node in plan.nodes.iter().filter(|n| n.variants.contains(&wf.variant.name)) {
            let Some(manifest) = node.decision.manifest() else {
                complete = false;
                continue;
            };
            wall += manifest.duration_s;
            for h in node.spec.kind.headline() {
                match manifest.stats.get(*h) {
                    Some(Value::Object(entries)) => {
                        metrics.extend(entries.iter().map(|(k, v)| (format!("{}.{k}", node.stage), v.clone())))
                    }
                    Some(v) => metrics.push((format!("{}.{h}", node.stage), v.clone())),
                    None => {}
                }
            }
        }
        // The stages' own times, one after another: what it took to compute
        // this variant, shared stages included.
        metrics.push(("wall_s".into(), if complete { json!(wall) } else { Value::Null }));
        let settings = wf
            .variant
            .settings
            .iter()
            .map(|(k, v)| (k.rsplit('.').next().unwrap_or(k).to_string(), v.clone()))
            .collect();
        rows.push(Row { variant: wf.variant.name.clone(), settings, metrics });
    }
    rows
}

pub fn compare(store_flag: Option<&Path>, args: CompareArgs) -> Result<ExitCode, Exit> {
    let mut loaded = load(&args.workflow, &args.sets)?;
    only_variants(&mut loaded, &args.variants)?;
    let store = Store::existing(&store_dir(store_flag, Some(&loaded)));
    let plan = build_plan(&loaded, store.as_ref())?;
    let keep = |name: &str| {
        args.metrics.is_empty() || args.metrics.iter().any(|m| name == m || name.ends_with(&format!(".{m}")))
    };
    let mut rows = variant_rows(&loaded, &plan);
    for r in &mut rows {
        r.metrics.retain(|(name, _)| keep(name));
    }
    // Every figure any variant has, in first-seen order.
    let mut columns: Vec<String> = Vec::new();
    for r in &rows {
        for (name, _) in &r.metrics {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    let swept: Vec<String> =
        rows.first().map(|r| r.settings.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let cell = |r: &Row, c: &str| r.metrics.iter().find(|(n, _)| n == c).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
    if args.json {
        let all: Vec<Value> = rows
            .iter()
            .map(|r| {
                let settings: serde_json::Map<String, Value> =
                    r.settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                let metrics: serde_json::Map<String, Value> = columns.iter().map(|c| (c.clone(), cell(r, c))).collect();
                json!({"variant": r.variant, "settings": settings, "metrics": metrics})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all).expect("plain data"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut header: Vec<String> = vec!["variant".into()];
    header.extend(swept.iter().cloned());
    header.extend(columns.iter().cloned());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut line = vec![if r.variant.is_empty() { "-".into() } else { r.variant.clone() }];
            line.extend(r.settings.iter().map(|(_, v)| v.clone()));
            line.extend(columns.iter().map(|c| figure(&cell(r, c))));
            line
        })
        .collect();
    if args.csv {
        let esc = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        println!("{}", header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(","));
        for line in &table {
            let cells: Vec<String> = line.iter().map(|c| if c == "-" { String::new() } else { esc(c) }).collect();
            println!("{}", cells.join(","));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| table.iter().map(|l| l[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let render = |cells: &[String]| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    println!("{}", render(&header));
    for line in &table {
        println!("{}", render(line));
    }
    Ok(ExitCode::SUCCESS)
}

/// A figure as a table shows it: rates and losses to three decimals,
/// counts whole, `-` where there is none (not computed yet).
pub(super) fn figure(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 100.0 {
                format!("{f:.1}")
            } else {
                format!("{f:.3}")
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
