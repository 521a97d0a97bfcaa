//! Results you can look at, on real artifacts: a sweep of
//! workflows/local-demo.toml (segment.max_trajectories × eval
//! attempts_until_submit, both numeric) run against the scripted teacher,
//! then `compare`, `report` (opened in headless Chromium with the network
//! off), `runs`, `dag` and `view` on its store.

mod common;

use std::collections::HashMap;

use common::demo::scripts;
use common::{path_with_pytest, Ctx};
use swestar::agent::scripted::ScriptedServer;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/local-demo.toml");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// Every `<figure …>` of a page: its attributes by name.
fn figures(dom: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    for chunk in dom.split("<figure ").skip(1) {
        let head = &chunk[..chunk.find('>').expect("a closed tag")];
        let mut attrs = HashMap::new();
        for part in head.split("\" ") {
            if let Some((k, v)) = part.split_once("=\"") {
                attrs.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
            }
        }
        out.push(attrs);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_demo_sweep_compares_reports_lists_draws_and_views() {
    let ctx = Ctx::new();
    let server = ScriptedServer::start(scripts()).await.unwrap();
    let text = std::fs::read_to_string(DEMO).unwrap().replace("../examples", EXAMPLES)
        + "\n[sweep]\n\"stages.segment.max_trajectories\" = [1, 4]\n\"stages.eval.attempts_until_submit\" = [1, 3]\n";
    ctx.write("sweep.toml", &text);
    let sets = [
        "--set".to_string(),
        format!("models.teacher.base_url={}", server.base_url()),
        "--set".to_string(),
        format!("models.student.base_url={}", server.base_url()),
    ];
    let with_sets = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(sets.iter().cloned());
        v
    };
    let run_args = with_sets(&["run", "sweep.toml", "--json"]);
    let mut cmd = ctx.cmd(&run_args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("PATH", path_with_pytest());
    let r = tokio::task::spawn_blocking(move || common::Run::from(cmd.output().unwrap())).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let swestar = |args: &[&str]| {
        let a = with_sets(args);
        ctx.swestar(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // compare: four variants, each with its swept values and figures.
    let c = swestar(&["compare", "sweep.toml", "--json"]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let rows = c.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let max: u64 = row["settings"]["max_trajectories"].as_str().unwrap().parse().unwrap();
        assert_eq!(row["metrics"]["segment.samples"], max.min(4), "{row}");
        assert_eq!(row["metrics"]["filter.rows_out"], 4, "{row}");
        assert_eq!(row["metrics"]["eval.resolved_rate"], 0.1, "one of ten: {row}");
        assert!(row["metrics"]["wall_s"].as_f64().unwrap() > 0.0);
    }

    // runs: the sweep's run, with the sets it was given.
    let runs = ctx.swestar(&["runs", "--json"]);
    assert_eq!(runs.code, 0, "{}", runs.stderr);
    assert_eq!(runs.json().as_array().unwrap().len(), 1);

    // dag: every stage of every variant, with its state.
    let dag = swestar(&["dag", "sweep.toml", "--format", "mermaid"]);
    assert_eq!(dag.code, 0, "{}", dag.stderr);
    for stage in ["synthesize", "rollout", "filter", "segment", "sft", "eval"] {
        assert!(dag.stdout.contains(stage), "{stage}: {}", dag.stdout);
    }
    assert!(!dag.stdout.contains(":::run"), "everything is in the store: {}", dag.stdout);

    // report: one file, nothing fetched, every figure drawn in a browser.
    let page = ctx.path("report.html");
    let rep = swestar(&["report", "sweep.toml", "-o", page.to_str().unwrap()]);
    assert_eq!(rep.code, 0, "{}", rep.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    for fetch in ["src=\"http", "href=\"http", "src='http", "@import", "url(http"] {
        assert!(!html.contains(fetch), "the report fetches something: {fetch}");
    }
    assert!(html.contains("attempts_until_submit"), "the workflow text is in the report");
    assert!(
        html.contains(&format!("models.teacher.base_url={}", server.base_url())),
        "the run's --set is in the report"
    );
    let (dom, console) = common::browse(&page, &ctx.path("chromium-profile"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    let figs = figures(&dom);
    let by_title: HashMap<&str, &HashMap<String, String>> =
        figs.iter().map(|f| (f["data-title"].as_str(), f)).collect();
    for f in &figs {
        // What the browser counted in the rendered SVG is what was plotted,
        // and the figure's own title is drawn in it.
        assert_eq!(f.get("data-rendered-points"), f.get("data-points"), "{f:?}");
        assert_eq!(f.get("data-rendered-title"), f.get("data-title"), "{f:?}");
        assert!(f["data-rendered-width"].parse::<u32>().unwrap() > 300, "{f:?}");
    }
    let points = |title: &str| -> usize {
        by_title.get(title).unwrap_or_else(|| panic!("no figure `{title}` among {:?}", by_title.keys()))
            ["data-rendered-points"]
            .parse()
            .unwrap()
    };
    // 6 stages: synthesize, rollout and filter shared; segment and sft per
    // max_trajectories; eval per variant.
    assert_eq!(points("Stages and their states"), 3 + 2 * 2 + 4);
    assert_eq!(points("segment.samples against max_trajectories"), 4, "two lines of two");
    assert_eq!(points("Pass@k against k: eval"), 4, "Pass@1 of each evaluated variant");
    assert_eq!(points("First attempt against until submit (≤3): eval"), 8);
    let rollout = ctx.export_rows("sweep.toml", "rollout", &sets.iter().map(String::as_str).collect::<Vec<_>>());
    let reasons: std::collections::HashSet<&str> = rollout.iter().map(|r| r["exit_reason"].as_str().unwrap()).collect();
    assert_eq!(points("Exit reasons: rollout"), reasons.len());
    assert!(
        by_title.keys().any(|t| t.starts_with("Tokens per training sample (window 32.8k): segment [")),
        "{:?}",
        by_title.keys()
    );
    assert!(by_title.contains_key("Turns per trajectory: rollout"));

    // view --list: every trajectory with its verdict from the filter.
    let list = swestar(&["view", "sweep.toml", "rollout", "--list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 20, "{}", list.stdout);
    assert_eq!(lines.iter().filter(|l| l.ends_with("  resolved")).count(), 4, "{}", list.stdout);
    let fixed = lines.iter().find(|l| l.ends_with("  resolved")).unwrap();
    let id = fixed.split_whitespace().next().unwrap();

    // view: the resolved trajectory, its call, the patch and the filter's tests.
    let traj = ctx.path("traj.html");
    let v =
        swestar(&["view", "sweep.toml", "rollout", "--instance", id, "--attempt", "0", "-o", traj.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let (dom, console) = common::browse(&traj, &ctx.path("chromium-profile"));
    assert!(console.is_empty(), "{console:?}");
    assert!(dom.contains("Turn 1") && dom.contains("&lt;function=execute_bash&gt;"), "{dom}");
    assert!(dom.contains("never masked"), "a short episode masks nothing: {dom}");
    assert!(dom.contains("resolved (graded by stage filter)"), "{dom}");
    assert!(dom.contains("FAIL_TO_PASS") && dom.contains("PASSED"), "per-test statuses: {dom}");
    assert!(dom.contains("diff --git"), "the final patch: {dom}");

    // view a training sample: exactly its messages, the trained turns marked.
    let sample = ctx.path("sample.html");
    let v = swestar(&[
        "view",
        "sweep.toml",
        "segment",
        "--variant",
        "max_trajectories=4,attempts_until_submit=1",
        "--instance",
        id,
        "--attempt",
        "0",
        "-o",
        sample.to_str().unwrap(),
    ]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let page = std::fs::read_to_string(&sample).unwrap();
    assert_eq!(page.matches("data-trainable=\"true\"").count(), 2, "the call and the submit: {page}");
    assert!(page.contains("data-trainable=\"false\""));
    // A mistyped instance says which exist.
    let bad = swestar(&["view", "sweep.toml", "rollout", "--instance", &format!("{id}x"), "-o", "x.html"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("did you mean"), "{}", bad.stderr);
}
