//! Results benchmark, on real artifacts made with the scripted teacher:
//!
//! 1. The forecast against reality: a rollout on N example instances, then
//!    `plan --json`'s forecast for 10 N and the measured run of 10 N.
//! 2. `report` on a store with 24 evaluated variants of
//!    workflows/local-demo.toml: its time and size (targets: < 1 s, < 2 MB).
//!
//! Prints the figures and writes them to target/bench-results.json.
//! `cargo bench --bench results` (needs SWESTAR_TEST_PYTHON, the venv with
//! pytest that .ci/run makes; SWESTAR_BENCH_ROWS sets N, default 24).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use swestar::agent::scripted::{Reply, ScriptedServer};

#[path = "../tests/common/demo.rs"]
mod demo;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn task_instances() -> Vec<Value> {
    std::fs::read_to_string(format!("{ROOT}/examples/tasks/instances.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn swestar(dir: &Path, args: &[&str]) -> (f64, String) {
    let py = std::env::var("SWESTAR_TEST_PYTHON").expect("SWESTAR_TEST_PYTHON: the venv .ci/run makes");
    let bin = Path::new(&py).parent().unwrap().display().to_string();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_swestar"))
        .args(args)
        .current_dir(dir)
        .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "swestar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `n` instances: the example tasks repeated under new ids.
fn instances(n: usize) -> String {
    let all = task_instances();
    (0..n)
        .map(|i| {
            let mut r = all[i % all.len()].clone();
            r["instance_id"] = Value::String(format!("{}.copy{i}", r["instance_id"].as_str().unwrap()));
            r.to_string() + "\n"
        })
        .collect()
}

fn forecast_vs_reality(base_url: &str, n: usize) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wf = format!(
        "[workflow]\nname = \"fc\"\n\n[models.teacher]\nbase_url = \"{base_url}\"\nmodel = \"teacher\"\n\n\
         [data.tasks]\npath = \"tasks.jsonl\"\n\n[stages.rollout]\nkind = \"rollout\"\ninputs = {{ instances = \"data.tasks\" }}\n\
         model = \"teacher\"\nrepo = \"{ROOT}/examples/tasks/repo\"\nparallel = 4\n"
    );
    std::fs::write(d.join("wf.toml"), wf).unwrap();
    std::fs::write(d.join("tasks.jsonl"), instances(n)).unwrap();
    let (first, _) = swestar(d, &["run", "wf.toml"]);
    std::fs::write(d.join("tasks.jsonl"), instances(10 * n)).unwrap();
    let (_, plan) = swestar(d, &["plan", "wf.toml", "--json"]);
    let plan: Value = serde_json::from_str(&plan).unwrap();
    let forecast = plan.as_array().unwrap().iter().find(|p| p["stage"] == "rollout").unwrap()["forecast"].clone();
    let (_, run) = swestar(d, &["run", "wf.toml", "--json"]);
    let record: Value = serde_json::from_str(&run).unwrap();
    let measured = record["stages"][0]["duration_s"].as_f64().unwrap();
    let predicted = forecast["wall_s"].as_f64().unwrap();
    let error = (predicted - measured) / measured;
    println!(
        "forecast   rollout of {} rows from one of {n}: forecast {predicted:.1} s, measured {measured:.1} s ({:+.0}%){}",
        10 * n,
        error * 100.0,
        if error.abs() <= 0.30 { "" } else { "  OUTSIDE 30%" }
    );
    serde_json::json!({"rows": n, "rows_forecast": 10 * n, "first_run_s": first, "forecast_s": predicted, "measured_s": measured, "error": error})
}

fn report_of_24_variants(base_url: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = std::fs::read_to_string(format!("{ROOT}/workflows/local-demo.toml"))
        .unwrap()
        .replace("../examples", &format!("{ROOT}/examples"))
        .replace("http://127.0.0.1:30000/v1", base_url)
        + "\n[sweep]\n\"stages.segment.max_trajectories\" = [1, 2, 3, 4, 5, 6]\n\"stages.eval.attempts_until_submit\" = [1, 2, 3, 4]\n";
    std::fs::write(d.join("sweep.toml"), text).unwrap();
    let (built, _) = swestar(d, &["run", "sweep.toml", "-j", "2"]);
    let times: Vec<f64> = (0..5).map(|_| swestar(d, &["report", "sweep.toml", "-o", "report.html"]).0).collect();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let bytes = std::fs::metadata(d.join("report.html")).unwrap().len();
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    let figures = html.matches("<figure ").count();
    println!(
        "report     24 evaluated variants: {best:.3} s (best of 5), {:.2} MB, {figures} figures  (targets < 1 s, < 2 MB; store built in {built:.0} s)",
        bytes as f64 / 1e6
    );
    serde_json::json!({"variants": 24, "report_s": best, "report_bytes": bytes, "figures": figures, "build_s": built})
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("SWESTAR_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut scripts = demo::scripts();
    scripts.insert("*".into(), vec![Reply::text(swestar::agent::protocol::format_call("submit", &[]))]);
    let server = runtime.block_on(ScriptedServer::start(scripts)).unwrap();
    let url = server.base_url();
    let forecast = forecast_vs_reality(&url, n);
    let report = report_of_24_variants(&url);
    let out = serde_json::json!({"forecast": forecast, "report": report});
    let path = Path::new(ROOT).join("target/bench-results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("wrote {}", path.display());
    drop(server);
}
