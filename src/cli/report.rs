//! `swestar report`: one self-contained HTML file with an experiment's
//! figures, read from the store: the DAG, a stage table with costs, sweep
//! figures (a headline figure against a swept number, a line per value of
//! the other swept settings), Pass@k, first attempt against until-submit,
//! distributions that say whether the data is sane, and the workflow text
//! with the `--set`s its runs used. Nothing is fetched from a network:
//! the figures are inline SVG, the only script is inline.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::charts::{self, Figure, Series};
use super::history::{variant_rows, variants_of, Row};
use super::{build_plan, bytes, html as esc, load, only_variants, store_dir, Exit};
use crate::dag::{Decision, Plan};
use crate::store::{Manifest, Store, TableFormat};
use crate::workflow::Loaded;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Override a value: a dotted path into the TOML (as the runs had it).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Only these variants (repeatable).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// Where to write the HTML file.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

/// Distributions are drawn for at most this many artifacts of a stage,
/// so that a sweep of hundreds of variants keeps a readable report.
const DISTRIBUTIONS_PER_STAGE: usize = 6;

pub fn report(store_flag: Option<&Path>, args: ReportArgs) -> Result<ExitCode, Exit> {
    let mut loaded = load(&args.workflow, &args.sets)?;
    only_variants(&mut loaded, &args.variants)?;
    let dir = store_dir(store_flag, Some(&loaded));
    let store = Store::existing(&dir);
    let plan = build_plan(&loaded, store.as_ref())?;
    let page = page(&args.workflow, &loaded, &plan, store.as_ref()).map_err(|e| Exit::failed(format!("error: {e}")))?;
    crate::store::write_atomic(&args.output, page.html.as_bytes())
        .map_err(|e| Exit::failed(format!("error: cannot write {}: {e}", args.output.display())))?;
    eprintln!("wrote {} ({} figures, {})", args.output.display(), page.figures, bytes(page.html.len() as u64));
    Ok(ExitCode::SUCCESS)
}

pub struct Page {
    pub html: String,
    pub figures: usize,
}

/// A node's name on the page: `stage [settings its variants share]`, or
/// just the stage when every variant shares it.
fn label(plan: &Plan, i: usize) -> String {
    match variants_of(plan, i) {
        v if v.is_empty() => plan.nodes[i].stage.clone(),
        v => format!("{} [{v}]", plan.nodes[i].stage),
    }
}

fn manifest(plan: &Plan, i: usize) -> Option<&Manifest> {
    plan.nodes[i].decision.manifest()
}

fn state(plan: &Plan, i: usize) -> &'static str {
    let n = &plan.nodes[i];
    match (&n.decision, n.runnable) {
        (Decision::Cached { .. }, _) => "cached",
        (_, false) => "cannot",
        _ => "run",
    }
}

/// Builds the page.
pub fn page(path: &Path, loaded: &Loaded, plan: &Plan, store: Option<&Store>) -> Result<Page, String> {
    let mut figures: Vec<(String, Figure)> = Vec::new();
    let boxes: Vec<charts::Box> = (0..plan.nodes.len())
        .map(|i| {
            let detail = match manifest(plan, i) {
                Some(m) => format!("{} rows · {} · {:.1}s", m.rows, bytes(m.bytes), m.duration_s),
                None => match state(plan, i) {
                    "cannot" => "cannot run yet".into(),
                    _ => "not computed".into(),
                },
            };
            charts::Box {
                label: label(plan, i),
                detail,
                state: state(plan, i),
                upstream: plan.nodes[i].upstream.iter().map(|e| e.node).collect(),
            }
        })
        .collect();
    figures.push(("dag".into(), charts::dag("Stages and their states", &boxes)?));

    let rows = variant_rows(loaded, plan);
    for f in sweep_figures(&rows)? {
        figures.push(("sweep".into(), f));
    }
    for f in eval_figures(plan)? {
        figures.push(("eval".into(), f));
    }
    if let Some(store) = store {
        for f in distributions(plan, store)? {
            figures.push(("data".into(), f));
        }
    }

    let mut h = String::with_capacity(256 * 1024);
    let title = format!("swestar report: {}", plan.workflow);
    out!(h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n",
        esc(&title),
        STYLE
    );
    let generated = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    out!(
        h,
        "<h1>{}</h1>\n<p class=\"meta\">{} · {} variant(s) · {} stage(s) · store {} · generated {generated}</p>\n",
        esc(&title),
        esc(&path.display().to_string()),
        loaded.variants.len(),
        plan.nodes.len(),
        esc(&store.map(|s| s.root.display().to_string()).unwrap_or_else(|| "(none yet)".into())),
    );
    let section = |h: &mut String, id: &str, heading: &str, figures: &[(String, Figure)]| {
        let mine: Vec<&Figure> = figures.iter().filter(|(k, _)| k == id).map(|(_, f)| f).collect();
        if mine.is_empty() {
            return;
        }
        out!(h, "<h2>{heading}</h2>\n<div class=\"figs\">\n");
        for f in mine {
            out!(
                h,
                "<figure class=\"fig\" data-title=\"{}\" data-points=\"{}\">{}<figcaption>{}</figcaption></figure>\n",
                esc(&f.title),
                f.points,
                f.svg,
                esc(&f.title)
            );
        }
        h.push_str("</div>\n");
    };
    section(&mut h, "dag", "The graph", &figures);
    h.push_str(
        "<p class=\"meta\">green: in the store · amber: to run · grey: cannot run yet (its files are missing)</p>\n",
    );
    h.push_str("<h2>Stages</h2>\n");
    h.push_str(&stage_table(plan));
    h.push_str("<h2>Variants</h2>\n");
    h.push_str(&variant_table(&rows));
    section(&mut h, "sweep", "Sweeps", &figures);
    section(&mut h, "eval", "Evaluation", &figures);
    section(&mut h, "data", "Is the data sane?", &figures);
    h.push_str("<h2>Workflow</h2>\n");
    if let Some(store) = store {
        h.push_str(&runs_table(store, &plan.workflow));
    }
    out!(h, "<pre class=\"wf\">{}</pre>\n", esc(&loaded.source.text));
    out!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
    Ok(Page { html: h, figures: figures.len() })
}

/// A metric's numeric value.
fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

/// For every numeric swept setting, every figure that varies across the
/// variants against it, one line per combination of the other settings.
fn sweep_figures(rows: &[Row]) -> Result<Vec<Figure>, String> {
    let mut out = Vec::new();
    let Some(first) = rows.first() else { return Ok(out) };
    let settings: Vec<String> = first.settings.iter().map(|(k, _)| k.clone()).collect();
    let value = |r: &Row, k: &str| r.settings.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut metrics: Vec<String> = Vec::new();
    for r in rows {
        for (name, _) in &r.metrics {
            if !metrics.contains(name) {
                metrics.push(name.clone());
            }
        }
    }
    for x in &settings {
        let xs: Vec<Option<f64>> = rows.iter().map(|r| value(r, x).parse::<f64>().ok()).collect();
        let distinct: HashSet<u64> = xs.iter().flatten().map(|f| f.to_bits()).collect();
        if xs.iter().any(Option::is_none) || distinct.len() < 2 {
            continue;
        }
        let log = charts::wants_log(&xs.iter().flatten().copied().collect::<Vec<_>>());
        for m in &metrics {
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (r, xv) in rows.iter().zip(&xs) {
                let Some(y) = r.metrics.iter().find(|(n, _)| n == m).and_then(|(_, v)| num(v)) else { continue };
                let others: Vec<String> =
                    settings.iter().filter(|k| *k != x).map(|k| format!("{k}={}", value(r, k))).collect();
                series.entry(others.join(", ")).or_default().push((xv.unwrap_or_default(), y));
            }
            // Worth a figure only if it changes along x on some line.
            let varies = series.values().any(|pts| pts.iter().any(|p| (p.1 - pts[0].1).abs() > 1e-12));
            if !varies {
                continue;
            }
            let series: Vec<Series> = series.into_iter().map(|(name, points)| Series { name, points }).collect();
            let title = format!("{m} against {x}");
            out.push(charts::lines(&title, &format!("{x}{}", if log { " (log)" } else { "" }), m, &series, log)?);
        }
    }
    Ok(out)
}

/// Pass@k against k per evaluation stage, and first attempt against
/// until-submit, one line per evaluated artifact.
fn eval_figures(plan: &Plan) -> Result<Vec<Figure>, String> {
    let mut out = Vec::new();
    let mut stages: Vec<&str> = Vec::new();
    for n in plan.nodes.iter().filter(|n| n.spec.kind.name() == "swebench_eval") {
        if !stages.contains(&n.stage.as_str()) {
            stages.push(&n.stage);
        }
    }
    for stage in stages {
        let mut pass = Vec::new();
        let mut until = Vec::new();
        let mut max_attempts = 1.0f64;
        for i in (0..plan.nodes.len()).filter(|i| plan.nodes[*i].stage == stage) {
            let Some(m) = manifest(plan, i) else { continue };
            let name = label(plan, i);
            let mut points: Vec<(f64, f64)> = m
                .stats
                .get("pass_at_k")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.strip_prefix("pass@")?.parse::<f64>().ok()?, num(v)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let protocol = m.stats.get("protocol").and_then(Value::as_str).unwrap_or_default();
            if let Some(max) = protocol.strip_prefix("attempts_until_submit = ").and_then(|v| v.parse::<f64>().ok()) {
                if let (Some(first), Some(rate)) = (points.first(), m.stats.get("resolved_rate").and_then(num)) {
                    max_attempts = max_attempts.max(max);
                    until.push(Series { name: name.clone(), points: vec![(1.0, first.1), (max, rate)] });
                }
            }
            if !points.is_empty() {
                pass.push(Series { name: name.clone(), points });
            }
        }
        if !pass.is_empty() {
            out.push(charts::lines(&format!("Pass@k against k: {stage}"), "k (attempts)", "Pass@k", &pass, false)?);
        }
        if !until.is_empty() {
            out.push(charts::lines(
                &format!("First attempt against until submit (≤{max_attempts}): {stage}"),
                "attempts allowed",
                "resolved rate",
                &until,
                false,
            )?);
        }
    }
    Ok(out)
}

/// Counts of a string column's values, most frequent first.
fn counts(values: impl Iterator<Item = String>) -> Vec<(String, f64)> {
    let mut c: BTreeMap<String, u64> = BTreeMap::new();
    for v in values {
        *c.entry(v).or_default() += 1;
    }
    let mut out: Vec<(String, f64)> = c.into_iter().map(|(k, n)| (k, n as f64)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Turns per trajectory and exit reasons (agent stages), tokens per
/// training sample against the window (segment), dropped rows by cause
/// (row-wise stages): for each distinct artifact, a few per stage.
fn distributions(plan: &Plan, store: &Store) -> Result<Vec<Figure>, String> {
    let mut out = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut per_stage: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..plan.nodes.len() {
        let Some(m) = manifest(plan, i) else { continue };
        let n = &plan.nodes[i];
        if !seen.insert(m.key.to_string()) {
            continue;
        }
        let count = per_stage.entry(&n.stage).or_default();
        *count += 1;
        if *count > DISTRIBUTIONS_PER_STAGE {
            continue;
        }
        let name = label(plan, i);
        let read = |columns: &[&str]| -> Result<Vec<serde_json::Map<String, Value>>, String> {
            let rows = crate::store::rows::read_all_columns(&store.part_paths(m), TableFormat::Parquet, Some(columns))
                .map_err(|e| format!("reading {}: {e}", n.stage))?;
            Ok(rows.into_iter().filter_map(|r| if let Value::Object(o) = r { Some(o) } else { None }).collect())
        };
        match n.spec.kind.name() {
            "rollout" | "swebench_eval" => {
                let rows = read(&["steps", "exit_reason"])?;
                let mut steps: Vec<u64> = rows.iter().filter_map(|r| r.get("steps")?.as_u64()).collect();
                steps.sort_unstable();
                // Few distinct turn counts: a bar each; else twenty bins.
                let turns: Vec<(String, f64)> = if steps.last().copied().unwrap_or(0) <= 40 {
                    let mut c: BTreeMap<u64, u64> = BTreeMap::new();
                    for s in &steps {
                        *c.entry(*s).or_default() += 1;
                    }
                    c.into_iter().map(|(s, n)| (s.to_string(), n as f64)).collect()
                } else {
                    let f: Vec<f64> = steps.iter().map(|s| *s as f64).collect();
                    charts::binned(&f, 20, 0.0).0.into_iter().map(|(l, c, _)| (l, c)).collect()
                };
                out.push(charts::bars(
                    &format!("Turns per trajectory: {name}"),
                    "turns",
                    "trajectories",
                    &turns,
                    None,
                )?);
                let reasons = counts(rows.iter().filter_map(|r| Some(r.get("exit_reason")?.as_str()?.to_string())));
                out.push(charts::bars(
                    &format!("Exit reasons: {name}"),
                    "exit reason",
                    "trajectories",
                    &reasons,
                    None,
                )?);
            }
            "segment" => {
                let rows = read(&["tokens"])?;
                let tokens: Vec<f64> = rows.iter().filter_map(|r| r.get("tokens")?.as_f64()).collect();
                let window = m.preimage.definition.get("window").and_then(Value::as_f64).unwrap_or(0.0);
                let (bins, width) = charts::binned(&tokens, 20, window);
                // Bars are the bins that hold samples: the rule goes after
                // the last one whose upper bound is within the window.
                let at = (window > 0.0).then(|| {
                    let within = bins.iter().filter(|(_, _, upper)| *upper <= window + width * 1e-9).count();
                    (within as f64 - 0.5, "window")
                });
                let bins: Vec<(String, f64)> = bins.into_iter().map(|(l, c, _)| (l, c)).collect();
                let title = format!("Tokens per training sample (window {}): {name}", charts::short(window));
                out.push(charts::bars(&title, "tokens", "samples", &bins, at)?);
            }
            _ => {}
        }
        if let Some(dropped) = m.stats.get("dropped").and_then(Value::as_object).filter(|d| !d.is_empty()) {
            let causes: Vec<(String, f64)> =
                dropped.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).filter(|(_, v)| *v > 0.0).collect();
            if !causes.is_empty() {
                out.push(charts::bars(&format!("Dropped rows by cause: {name}"), "cause", "rows", &causes, None)?);
            }
        }
    }
    Ok(out)
}

fn stage_table(plan: &Plan) -> String {
    let mut h = String::from(
        "<table><thead><tr><th>stage</th><th>state</th><th>rows in</th><th>rows out</th><th>bytes</th><th>shards</th><th>wall</th><th>CPU-hours</th><th>node-hours</th><th>model tokens</th><th>trajectories / node-hour</th></tr></thead><tbody>\n",
    );
    for i in 0..plan.nodes.len() {
        let m = manifest(plan, i);
        let cell = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let stat = |k: &str| m.and_then(|m| m.stats.get(k)).and_then(Value::as_u64);
        let rows_in = stat("rows_in").or_else(|| stat("trajectories_in"));
        let usage = m.and_then(|m| m.usage.as_ref());
        let node_hours = usage.map(|u| u.node_hours());
        let tokens = match (stat("prompt_tokens"), stat("completion_tokens")) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
        };
        let rollout = plan.nodes[i].spec.kind.name() == "rollout";
        let per_node_hour = match (stat("trajectories").filter(|_| rollout), node_hours) {
            (Some(t), Some(nh)) if nh > 0.0 => Some(format!("{:.0}", t as f64 / nh)),
            _ => None,
        };
        outln!(h,
            "<tr><td>{}</td><td class=\"{st}\">{st}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&label(plan, i)),
            cell(rows_in.map(|n| n.to_string())),
            cell(m.map(|m| m.rows.to_string())),
            cell(m.map(|m| bytes(m.bytes))),
            cell(m.map(|m| m.parts.len().to_string())),
            cell(m.map(|m| format!("{:.1} s", m.duration_s))),
            cell(usage.map(|u| charts::sig3(u.cpu_s / 3600.0))),
            cell(node_hours.map(|nh| format!("{}{}", charts::sig3(nh), usage.and_then(|u| u.accounted_by.as_deref()).map(|a| format!(" ({a})")).unwrap_or_default()))),
            cell(tokens.map(|t| t.to_string())),
            cell(per_node_hour),
            st = state(plan, i),
        );
    }
    h.push_str("</tbody></table>\n<p class=\"meta\">CPU-hours: the shards' processes (user and system time). Node-hours: SLURM's accounting (sacct) where a stage ran on SLURM, else its shards' wall time.</p>\n");
    h
}

fn variant_table(rows: &[Row]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for r in rows {
        for (name, _) in &r.metrics {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    let settings: Vec<String> =
        rows.first().map(|r| r.settings.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut h = String::from("<table><thead><tr><th>variant</th>");
    for c in settings.iter().chain(&columns) {
        out!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr></thead><tbody>\n");
    for r in rows {
        out!(h, "<tr><td>{}</td>", esc(if r.variant.is_empty() { "-" } else { &r.variant }));
        for (_, v) in &r.settings {
            out!(h, "<td>{}</td>", esc(v));
        }
        for c in &columns {
            let v =
                r.metrics.iter().find(|(n, _)| n == c).map(|(_, v)| super::history::figure(v)).unwrap_or("-".into());
            out!(h, "<td>{}</td>", esc(&v));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    h
}

/// The runs of this workflow, newest first, with the `--set`s they had.
fn runs_table(store: &Store, workflow: &str) -> String {
    let runs: Vec<_> = store.runs().into_iter().rev().filter(|r| r.workflow == workflow).collect();
    if runs.is_empty() {
        return "<p>No run of this workflow is recorded in the store.</p>\n".into();
    }
    let mut h = String::from("<table><thead><tr><th>run</th><th>started</th><th>status</th><th>host</th><th>executor</th><th>--set</th></tr></thead><tbody>\n");
    for r in runs.iter().take(50) {
        outln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&r.id),
            esc(&r.started),
            r.status,
            esc(&r.host),
            esc(&r.executor),
            esc(&r.sets.join(" ")),
        );
    }
    if runs.len() > 50 {
        outln!(h, "<tr><td colspan=\"6\">… {} older runs</td></tr>", runs.len() - 50);
    }
    h.push_str("</tbody></table>\n");
    h
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
.meta{color:#666}table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}.cached{color:#2a7a3a}.run{color:#a67c00}.cannot{color:#777}\
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #eee;max-width:100%;overflow-x:auto}figcaption{font-size:.8em;color:#555;padding:2px 6px}\
pre.wf{background:#f8f8f8;padding:1em;overflow:auto;font-size:.8em}";

/// Counts, in the browser, what each figure drew: a check that the SVG
/// was parsed as SVG, and a place for a reader to see it.
const SCRIPT: &str = "document.querySelectorAll('figure.fig').forEach(function(f){\
var s=f.querySelector('svg');var n=s?s.querySelectorAll('circle').length:0;\
f.setAttribute('data-rendered-points',String(n));\
var b=s?s.getBoundingClientRect():null;f.setAttribute('data-rendered-width',String(b?Math.round(b.width):0));\
var t=s?s.querySelector('text'):null;f.setAttribute('data-rendered-title',t?t.textContent.trim():'');});";
