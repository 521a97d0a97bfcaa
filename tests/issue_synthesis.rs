//! The issue_synthesis stage through `swestar run`: real failing tests on
//! the example tasks in local sandboxes, the scripted teacher on 127.0.0.1
//! writing the statements; an instance whose tests pass with the bug is
//! dropped and reported.

mod common;

use std::collections::HashMap;

use common::{path_with_pytest, task_instance, Ctx, TASKS};
use serde_json::{json, Value};
use swestar::agent::scripted::{Reply, ScriptedServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_written_from_failing_tests_and_broken_instances_dropped() {
    let ctx = Ctx::new();
    let mut rows: Vec<Value> = ["currency_code_case", "sub_skips_currency_check", "month_key_padding"]
        .iter()
        .map(|s| task_instance(s))
        .collect();
    // Its "bug" changes nothing: the FAIL_TO_PASS tests pass.
    let mut broken = task_instance("rows_line_number");
    broken["instance_id"] = json!("swestar__ledger.c4272977.no_bug");
    broken["patch"] = json!("");
    rows.insert(1, broken);
    for r in &mut rows {
        r["problem_statement"] = json!("stale");
    }
    ctx.write("instances.jsonl", &rows.iter().map(|r| r.to_string() + "\n").collect::<String>());
    ctx.write(
        "demos.jsonl",
        "{\"problem_statement\": \"DEMO ONE: `Decimal('1.10')` prints 1.1\"}\n{\"problem_statement\": \"DEMO TWO: crash on empty CSV\"}\n",
    );
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "synth"

[models.teacher]
base_url = "http://127.0.0.1:9/v1"
model = "teacher-7b"
max_retries = 0

[data.raw]
path = "instances.jsonl"

[data.demos]
path = "demos.jsonl"

[stages.synthesize]
kind = "issue_synthesis"
inputs = {{ instances = "data.raw", demonstrations = "data.demos" }}
model = "teacher"
repo = "{TASKS}/repo"
parallel = 3
"#
        ),
    );
    let scripts: HashMap<String, Vec<Reply>> = ["currency_code_case", "sub_skips_currency_check", "month_key_padding"]
        .iter()
        .map(|k| (format!("c4272977.{k}"), vec![Reply::text(format!("Statement for {k}.\n"))]))
        .collect();
    // The instance prompt names the repository and the bug's diff; the
    // key is found in it (the demonstrations come first).
    let scripts = scripts
        .into_iter()
        .map(|(k, v)| {
            let inst = task_instance(k.rsplit('.').next().unwrap());
            let marker = inst["patch"]
                .as_str()
                .unwrap()
                .lines()
                .find(|l| l.starts_with("-") && !l.starts_with("---"))
                .unwrap()
                .to_string();
            (marker, v)
        })
        .collect();
    let server = ScriptedServer::start(scripts).await.unwrap();
    let url = format!("models.teacher.base_url={}", server.base_url());
    let run = |sets: Vec<String>| {
        let mut args = vec!["run".to_string(), "wf.toml".into(), "--json".into()];
        args.extend(sets);
        let mut cmd = ctx.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("PATH", path_with_pytest());
        tokio::task::spawn_blocking(move || common::Run::from(cmd.output().unwrap()))
    };
    let r = run(vec!["--set".into(), url.clone()]).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = ctx.export_rows("wf.toml", "synthesize", &["--set", &url]);
    let ids: Vec<&str> = out.iter().map(|r| r["instance_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "the broken instance is dropped: {ids:?}");
    assert!(!ids.iter().any(|i| i.ends_with("no_bug")));
    for row in &out {
        let id = row["instance_id"].as_str().unwrap();
        let name = id.rsplit('.').next().unwrap();
        assert_eq!(row["problem_statement"], format!("Statement for {name}."), "{row}");
        assert_eq!(row["synthesis_model"], "teacher-7b");
        assert_eq!(row["synthesis_prompt_hash"].as_str().unwrap().len(), 64);
        assert_eq!(row["FAIL_TO_PASS"], task_instance(name)["FAIL_TO_PASS"], "the instance's columns flow through");
    }
    // It was reported in the stage's log.
    let stage = &r.json()["stages"][0];
    let log = std::fs::read_to_string(stage["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("dropped swestar__ledger.c4272977.no_bug") && log.contains("pass with the bug applied"),
        "{log}"
    );

    // What the model was asked: system, demonstrations, then the instance
    // with its diff, the real failing output and the tests' source.
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one call per kept instance");
    let req = requests
        .iter()
        .find(|q| q["messages"][2]["content"].as_str().unwrap().contains("parts[1]"))
        .expect("the currency_code_case request");
    assert_eq!(req["temperature"], 0.0, "temperature 0 by default");
    let m = req["messages"].as_array().unwrap();
    assert_eq!(
        (m[0]["role"].as_str(), m[1]["role"].as_str(), m[2]["role"].as_str()),
        (Some("system"), Some("user"), Some("user"))
    );
    assert!(
        m[1]["content"].as_str().unwrap().contains("DEMO ONE")
            && m[1]["content"].as_str().unwrap().contains("DEMO TWO")
    );
    let inst = m[2]["content"].as_str().unwrap();
    assert!(inst.contains("diff --git a/ledger/parse.py"), "{inst}");
    assert!(inst.contains("FAILED tests/test_parse.py::test_currency_code_suffix"), "real pytest output: {inst}");
    assert!(inst.contains("def test_currency_code_suffix("), "the test's source: {inst}");
    assert!(!inst.contains("stale"));

    // Cached on a rerun; other demonstrations are another key.
    let r = run(vec!["--set".into(), url.clone()]).await.unwrap();
    assert_eq!(r.status_of("synthesize"), "cached");
    ctx.write("demos.jsonl", "{\"problem_statement\": \"DEMO THREE\"}\n");
    let plan = ctx.plan_json("wf.toml", &["--set", &url]);
    assert_eq!(plan[0]["action"], "run", "{plan}");
}

#[test]
fn issue_synthesis_settings_are_validated() {
    let ctx = Ctx::new();
    ctx.write("i.jsonl", "{}\n");
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "v"

[models.teacher]
base_url = "http://127.0.0.1:9/v1"
model = "t"

[data.i]
path = "i.jsonl"

[stages.synth]
kind = "issue_synthesis"
inputs = {{ instances = "data.i", demonstrations = "data.demos" }}
model = "teacher"
repo = "{TASKS}/repo"
prompts = {{ instance = "nope.j2" }}
"#
        ),
    );
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("stages.synth.inputs.demonstrations") && r.stderr.contains("no data source named `demos`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("stages.synth.prompts.instance"), "{}", r.stderr);
}
