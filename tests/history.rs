//! `swestar runs` (the run history, no-op runs folded) and `swestar dag`
//! (the graph as DOT, rendered by Graphviz, and as Mermaid, each node with
//! its state) on a real store.

mod common;

use common::Ctx;

const WF: &str = r#"[workflow]
name = "hist"

[data.nums]
path = "nums.jsonl"

[stages.double]
kind = "command"
format = "jsonl"
inputs = { nums = "data.nums" }
params = { factor = 2 }
run = "cp {{ inputs.nums }} {{ output }}"

[stages.total]
kind = "command"
format = "jsonl"
inputs = { doubled = "stages.double" }
needs = ["report"]
run = "cp {{ inputs.doubled }} {{ output }}"

[stages.report]
kind = "command"
format = "jsonl"
run = "echo '{\"ok\": 1}' > {{ output }}"

[sweep]
"stages.double.params.factor" = [2, 3]
"#;

/// `n` trajectories as JSON Lines: `rounds(t)` tool calls each, the
/// `r`-th answered by `observation(r)`.
fn trajectories(
    n: usize,
    system: &str,
    rounds: impl Fn(usize) -> usize,
    observation: impl Fn(usize) -> String,
) -> String {
    let call = "<function=execute_bash>\n<parameter=command>grep -n parse ledger/parse.py</parameter>\n</function>";
    (0..n)
        .map(|t| {
            let mut messages = vec![
                serde_json::json!({"role": "system", "content": system}),
                serde_json::json!({"role": "user", "content": format!("Fix issue {t}.")}),
            ];
            for r in 0..rounds(t) {
                messages.push(serde_json::json!({"role": "assistant", "content": call}));
                messages.push(serde_json::json!({"role": "user", "content": observation(r)}));
            }
            serde_json::json!({"instance_id": format!("i{t}"), "attempt": 0, "messages": messages}).to_string() + "\n"
        })
        .collect()
}

fn setup() -> Ctx {
    let ctx = Ctx::new();
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    ctx.write("wf.toml", WF);
    ctx
}

#[test]
fn runs_lists_real_runs_newest_first_and_folds_the_no_op_ones() {
    let ctx = setup();
    let first = ctx.run("wf.toml", &["--variant", "factor=2"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    for _ in 0..3 {
        assert_eq!(ctx.run("wf.toml", &["--variant", "factor=2"]).code, 0);
    }
    let last = ctx.run("wf.toml", &[]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    let r = ctx.swestar(&["runs"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The header, the last run (factor=3's double copies the same rows as
    // factor=2's, so its total is cut off early), the folded no-op runs,
    // the first run.
    let lines: Vec<&str> = r.stdout.lines().skip(1).collect();
    let id = |run: &common::Run| run.json()["id"].as_str().unwrap().to_string();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with(&id(&last)) && lines[0].contains("1 run, 4 cached, 0 failed"), "{}", r.stdout);
    assert!(lines[1].starts_with("… 3 no-op runs (everything cached)"), "{}", r.stdout);
    assert!(lines[2].starts_with(&id(&first)) && lines[2].contains("3 run, 0 cached, 0 failed"), "{}", r.stdout);
    assert!(lines[2].contains("succeeded") && lines[2].contains("hist [factor=2]"), "{}", r.stdout);

    let all = ctx.swestar(&["runs", "--all"]);
    assert_eq!(all.stdout.lines().count(), 1 + 5, "{}", all.stdout);
    let json: serde_json::Value = serde_json::from_str(&ctx.swestar(&["runs", "--json"]).stdout).unwrap();
    let runs = json.as_array().unwrap();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0]["id"], id(&last));
    assert_eq!(runs[0]["variants"], serde_json::json!(["factor=2", "factor=3"]));
    assert_eq!(runs.iter().filter(|r| r["noop"] == true).count(), 3);
    assert!(runs.iter().all(|r| r["status"] == "succeeded" && r["duration_s"].as_f64().is_some()));
    assert_eq!(runs[4]["stages"], serde_json::json!({"run": 3, "cached": 0, "failed": 0}));
    let limited = ctx.swestar(&["runs", "--limit", "1"]);
    assert_eq!(limited.stdout.lines().count(), 2);
}

#[test]
fn dag_prints_the_graph_with_each_stage_state_as_dot_and_mermaid() {
    let ctx = setup();
    let before = ctx.swestar(&["dag", "wf.toml"]);
    assert_eq!(before.code, 0, "{}", before.stderr);
    assert_eq!(before.stdout.matches("run: no cached artifact").count(), 5, "{}", before.stdout);
    assert_eq!(ctx.run("wf.toml", &["--variant", "factor=2"]).code, 0);
    let dot = ctx.swestar(&["dag", "wf.toml"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    let text = &dot.stdout;
    assert!(text.starts_with("digraph \"hist\" {"), "{text}");
    assert!(text.contains("label=\"double\\n[factor=2]\\ncached: 1 rows"), "{text}");
    assert!(text.contains("label=\"double\\n[factor=3]\\nrun: no cached artifact"), "{text}");
    assert_eq!(text.matches("[label=\"doubled\"]").count(), 2, "{text}");
    assert_eq!(text.matches("[style=dashed]").count(), 2, "needs edges: {text}");
    // Graphviz reads it (from .ci/run's packages).
    let svg = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match svg {
        Ok(mut child) => {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let svg = String::from_utf8_lossy(&out.stdout);
            assert_eq!(svg.matches("class=\"node\"").count(), 5, "{svg}");
            assert_eq!(svg.matches("class=\"edge\"").count(), 4, "{svg}");
        }
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI installs graphviz: {e}");
            eprintln!("skipped the rendering: no dot ({e})");
        }
    }
    let m = ctx.swestar(&["dag", "wf.toml", "--format", "mermaid", "--variant", "factor=2"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    let lines: Vec<&str> = m.stdout.lines().collect();
    assert_eq!(lines[0], "flowchart TD");
    assert_eq!(lines.iter().filter(|l| l.ends_with(":::cached")).count(), 3, "{}", m.stdout);
    assert!(m.stdout.contains(" -->|doubled| ") && m.stdout.contains(" -.-> "), "{}", m.stdout);
}

/// `compare` puts a sweep's variants side by side: the swept values, then
/// each stage kind's headline figures from the manifests, as a table, JSON
/// or CSV, and only the figures asked for.
#[test]
fn compare_shows_each_variants_swept_values_and_headline_figures() {
    let ctx = Ctx::new();
    ctx.write(
        "t.jsonl",
        &trajectories(3, &"You fix bugs. ".repeat(20), |t| 10 + 5 * t, |r| format!("line {r}: x\n").repeat(60)),
    );
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "cmp"

[data.t]
path = "t.jsonl"

[stages.segment]
kind = "segment"
inputs = { trajectories = "data.t" }
window = 2048
reply_reserve = 256

[sweep]
"stages.segment.window" = [2048, 8192]
"#,
    );
    // Before anything ran: the variants, no figures.
    let r = ctx.swestar(&["compare", "wf.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("window=2048  2048    -"), "{}", r.stdout);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);

    let json: serde_json::Value = serde_json::from_str(&ctx.swestar(&["compare", "wf.toml", "--json"]).stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["variant"], "window=2048");
    assert_eq!(rows[0]["settings"]["window"], "2048");
    let (small, large) = (&rows[0]["metrics"], &rows[1]["metrics"]);
    // The same 45 turns trained either way; a small window needs more samples.
    assert_eq!(small["segment.trained_turns"], 45);
    assert_eq!(large["segment.trained_turns"], 45);
    assert!(small["segment.samples"].as_u64() > large["segment.samples"].as_u64(), "{json}");
    assert!(small["wall_s"].as_f64().unwrap() > 0.0);

    let r = ctx.swestar(&["compare", "wf.toml", "--csv", "--metrics", "samples,trained_turns"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "variant,window,segment.samples,segment.trained_turns");
    assert!(lines[1].starts_with("window=2048,2048,") && lines[1].ends_with(",45"), "{}", r.stdout);
    assert_eq!(lines.len(), 3);
    let table = ctx.swestar(&["compare", "wf.toml"]);
    assert!(
        table.stdout.lines().next().unwrap().starts_with("variant      window  segment.samples"),
        "{}",
        table.stdout
    );
}

/// `plan` forecasts what it would run from what earlier artifacts of the
/// same kinds took, scaled to the input's rows; none without history, and
/// a stage whose input size depends on an upstream one says so.
#[test]
fn plan_forecasts_the_cost_of_what_it_would_run_from_history() {
    let ctx = Ctx::new();
    ctx.write("t.jsonl", &trajectories(12, "You fix bugs.", |_| 6, |r| format!("line {r}\n").repeat(40)));
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "fc"

[data.t]
path = "t.jsonl"

[stages.segment]
kind = "segment"
inputs = { trajectories = "data.t" }
window = 2048
reply_reserve = 256

[stages.copy]
kind = "command"
inputs = { s = "stages.segment" }
run = "cp {{ inputs.s }} {{ output }}"

[sweep]
"stages.segment.window" = [2048, 4096]
"#,
    );
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert!(r.stdout.contains("no forecast yet: no earlier artifact of these kinds in this store"), "{}", r.stdout);
    assert_eq!(ctx.run("wf.toml", &["--variant", "window=2048"]).code, 0);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert!(r.stdout.contains("segment [window=4096]  12 rows: ≈ "), "{}", r.stdout);
    assert!(r.stdout.contains("from 1 artifact(s)"), "{}", r.stdout);
    assert!(r.stdout.contains("copy [window=4096]     its input's size is known once segment ran"), "{}", r.stdout);
    assert!(r.stdout.contains("(and 1 stage(s) not forecast)"), "{}", r.stdout);
    let plan = ctx.plan_json("wf.toml", &[]);
    let f: Vec<&serde_json::Value> = plan.as_array().unwrap().iter().map(|n| &n["forecast"]).collect();
    assert_eq!(f[0]["forecast"], "nothing", "cached: {plan}");
    let cost = f.iter().find(|x| x["forecast"] == "cost").expect("one costed stage");
    assert_eq!(cost["rows_in"], 12);
    assert!(cost["wall_s"].as_f64().unwrap() > 0.0 && cost["node_hours"].as_f64().unwrap() > 0.0);
    assert!(f.iter().any(|x| x["forecast"] == "rows_unknown" && x["upstream"] == "segment"));
}
