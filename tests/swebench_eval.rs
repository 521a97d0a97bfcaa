//! The swebench_eval stage through `swestar run`: the scripted teacher on
//! 127.0.0.1 as the model under evaluation, the example tasks in local
//! sandboxes, every attempt graded with real pytest; both protocols and
//! their summaries.

mod common;

use std::collections::HashMap;

use common::{path_with_pytest, task_instance, Ctx, TASKS};
use serde_json::Value;
use swestar::agent::protocol::format_call as call;
use swestar::agent::scripted::{Reply, ScriptedServer};

fn workflow(protocol: &str) -> String {
    format!(
        r#"[workflow]
name = "eval"

[models.student]
base_url = "http://127.0.0.1:9/v1"
model = "student-7b"
max_retries = 0

[data.verified]
path = "instances.json"

[stages.eval]
kind = "swebench_eval"
inputs = {{ instances = "data.verified" }}
model = "student"
repo = "{TASKS}/repo"
parallel = 3
{protocol}
"#
    )
}

/// The statistics of the evaluation artifact run under `protocol`.
fn manifest_stats(ctx: &Ctx, protocol: &str) -> Value {
    ctx.objects()
        .iter()
        .map(|o| serde_json::from_str::<Value>(&std::fs::read_to_string(o.join("_manifest.json")).unwrap()).unwrap())
        .find(|m| m["kind"] == "swebench_eval" && m["stats"]["protocol"] == protocol)
        .unwrap_or_else(|| panic!("no evaluation under {protocol}"))["stats"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_until_submit_and_samples_are_graded_like_swebench() {
    let ctx = Ctx::new();
    let names = ["currency_code_case", "sub_skips_currency_check", "month_key_padding"];
    // As SWE-bench Verified ships: one JSON array, the test lists as
    // JSON-encoded strings.
    let rows: Vec<Value> = names
        .iter()
        .map(|n| {
            let mut i = task_instance(n);
            for k in ["FAIL_TO_PASS", "PASS_TO_PASS"] {
                i[k] = Value::String(i[k].to_string());
            }
            i
        })
        .collect();
    ctx.write("instances.json", &serde_json::to_string_pretty(&rows).unwrap());
    // Keyed by the problem statements' titles (the default prompt does
    // not name instances).
    let scripts = HashMap::from([
        (
            "Lowercase currency codes are rejected".to_string(),
            vec![
                Reply::text(call(
                    "execute_bash",
                    &[("command", "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py")],
                )),
                Reply::text(call("submit", &[])),
            ],
        ),
        // Gives up without a change every time.
        ("Subtracting euros from dollars silently succeeds".to_string(), vec![Reply::text(call("submit", &[]))]),
        // Submits a change that fixes nothing.
        (
            "monthly_totals keys are not YYYY-MM".to_string(),
            vec![
                Reply::text(call("execute_bash", &[("command", "echo '# checked' >> ledger/report.py")])),
                Reply::text(call("submit", &[])),
            ],
        ),
    ]);
    let server = ScriptedServer::start(scripts).await.unwrap();
    let url = format!("models.student.base_url={}", server.base_url());
    let run = |ctx: &Ctx, url: String| {
        let mut cmd = ctx.cmd(&["run", "wf.toml", "--json", "--set", &url]);
        cmd.env("PATH", path_with_pytest());
        tokio::task::spawn_blocking(move || common::Run::from(cmd.output().unwrap()))
    };

    ctx.write("wf.toml", &workflow("attempts_until_submit = 3"));
    let r = run(&ctx, url.clone()).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let rows = ctx.export_rows("wf.toml", "eval", &["--set", &url]);
    let of =
        |n: &str| -> Vec<&Value> { rows.iter().filter(|r| r["instance_id"].as_str().unwrap().ends_with(n)).collect() };
    let fixed = of("currency_code_case");
    assert_eq!(fixed.len(), 1, "submitted at the first attempt");
    assert_eq!((fixed[0]["resolved"].as_bool(), fixed[0]["counted"].as_bool()), (Some(true), Some(true)));
    assert_eq!(fixed[0]["resolution"], "RESOLVED_FULL");
    let empty = of("sub_skips_currency_check");
    assert_eq!(empty.len(), 3, "no patch submitted: attempted 3 times");
    assert!(empty.iter().all(|r| r["submitted"] == false && r["resolved"] == false));
    assert_eq!(empty.iter().map(|r| r["counted"] == true).collect::<Vec<_>>(), [false, false, true]);
    let wrong = of("month_key_padding");
    assert_eq!(wrong.len(), 1);
    assert_eq!((wrong[0]["submitted"].as_bool(), wrong[0]["resolved"].as_bool()), (Some(true), Some(false)));
    assert!(wrong[0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["group"] == "FAIL_TO_PASS" && t["status"] == "FAILED"));
    let stats = manifest_stats(&ctx, "attempts_until_submit = 3");
    assert_eq!(stats["instances"], 3, "{stats}");
    assert_eq!(stats["resolved"], 1);
    assert!((stats["resolved_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!((stats["submitted_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);

    // Predictions and the run report in the official harness's layouts.
    let preds = ctx.path("preds.jsonl");
    let r = ctx.swestar(&[
        "export",
        "wf.toml",
        "eval",
        "--as",
        "predictions",
        "--to",
        preds.to_str().unwrap(),
        "--set",
        &url,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let preds: Vec<Value> =
        std::fs::read_to_string(&preds).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 3);
    for p in &preds {
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["instance_id", "model_name_or_path", "model_patch"]);
        assert_eq!(p["model_name_or_path"], "student-7b");
    }
    let fix = preds.iter().find(|p| p["instance_id"].as_str().unwrap().ends_with("currency_code_case")).unwrap();
    assert!(fix["model_patch"].as_str().unwrap().contains("parts[1].upper()"));
    let report = ctx.path("report.json");
    let r =
        ctx.swestar(&["export", "wf.toml", "eval", "--as", "report", "--to", report.to_str().unwrap(), "--set", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["total_instances"], 3);
    assert_eq!(report["resolved_instances"], 1);
    assert_eq!(report["unresolved_instances"], 1);
    assert_eq!(report["empty_patch_instances"], 1);
    assert_eq!(report["schema_version"], 2);
    assert!(report["resolved_ids"][0].as_str().unwrap().ends_with("currency_code_case"));

    // The summary as a table.
    let summary = ctx.path("summary.parquet");
    let r = ctx.swestar(&[
        "export",
        "wf.toml",
        "eval",
        "--as",
        "summary",
        "--to",
        summary.to_str().unwrap(),
        "--set",
        &url,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, batches) = swestar::store::table::read_parquet(&[summary.as_path()], None).unwrap();
    let srow = &swestar::store::table::batches_to_json_rows(&batches).unwrap()[0];
    assert_eq!(srow["protocol"], "attempts_until_submit = 3");
    assert_eq!(srow["instances"], 3);
    assert!((srow["pass@1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9, "{srow}");

    // Pass@k: 2 independent samples each.
    ctx.write("wf.toml", &workflow("samples = 2"));
    let r = run(&ctx, url.clone()).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = ctx.export_rows("wf.toml", "eval", &["--set", &url]);
    assert_eq!(rows.len(), 6);
    let stats = manifest_stats(&ctx, "samples = 2");
    let p = &stats["pass_at_k"];
    assert!((p["pass@1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9, "{stats}");
    assert!((p["pass@2"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9, "{stats}");
    // Cached: no model call the second time.
    let before = server.requests().len();
    let r = run(&ctx, url.clone()).await.unwrap();
    assert_eq!(r.status_of("eval"), "cached");
    assert_eq!(server.requests().len(), before);
}
