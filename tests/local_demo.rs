//! workflows/local-demo.toml end to end: every stage for real on the
//! example tasks (synthesis runs the failing tests, rollout and eval run
//! episodes in local sandboxes, test_filter grades with pytest, segment
//! and sft prepare training data), with the scripted server on 127.0.0.1
//! as teacher and student. A second run is fully cached; changing one
//! segment setting reruns exactly segment, sft and eval.

mod common;

use std::collections::HashMap;

use common::demo::scripts;
use common::{path_with_pytest, Ctx};
use swestar::agent::scripted::ScriptedServer;

const WF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/local-demo.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_demo_runs_every_stage_and_reruns_only_what_changed() {
    let ctx = Ctx::new();
    let server = ScriptedServer::start(scripts()).await.unwrap();
    let sets = vec![
        "--set".to_string(),
        format!("models.teacher.base_url={}", server.base_url()),
        "--set".to_string(),
        format!("models.student.base_url={}", server.base_url()),
    ];
    let run = |extra: Vec<String>| {
        let mut args = vec!["run".to_string(), WF.into(), "--json".into()];
        args.extend(extra);
        let mut cmd = ctx.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("PATH", path_with_pytest());
        tokio::task::spawn_blocking(move || common::Run::from(cmd.output().unwrap()))
    };
    let r = run(sets.clone()).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for stage in ["synthesize", "rollout", "filter", "segment", "sft", "eval"] {
        assert_eq!(r.status_of(stage), "committed", "{stage}");
    }
    let set_refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    let rows = |stage: &str| ctx.export_rows(WF, stage, &set_refs);
    let synth = rows("synthesize");
    assert_eq!(synth.len(), 10);
    assert!(synth.iter().all(|r| r["problem_statement"].as_str().unwrap().starts_with("Issue about ")));
    assert_eq!(rows("rollout").len(), 20, "two attempts at each of ten instances");
    let kept = rows("filter");
    assert_eq!(kept.len(), 4, "the two fixes, twice each, pass their tests");
    assert!(kept.iter().all(|r| r["resolved"] == true));
    let samples = rows("segment");
    assert_eq!(samples.len(), 4);
    let sft = rows("sft");
    assert_eq!((sft[0]["rows"].as_u64(), sft[0]["trained"].as_bool()), (Some(4), Some(false)));
    let eval = rows("eval");
    let resolved: Vec<&str> =
        eval.iter().filter(|r| r["resolved"] == true).map(|r| r["instance_id"].as_str().unwrap()).collect();
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0].ends_with("currency_code_case"));
    assert_eq!(eval.len(), 1 + 9 * 3, "the others are attempted three times");

    // Everything again: cached, and no model call.
    let before = server.requests().len();
    let r = run(sets.clone()).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", r.statuses());
    assert_eq!(server.requests().len(), before);

    // One segment setting: segment, sft and eval run again, nothing else.
    let mut changed = set_refs.clone();
    changed.extend(["--set", "stages.segment.window=16384"]);
    let plan = ctx.plan_json(WF, &changed);
    let actions: HashMap<String, String> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["stage"].as_str().unwrap().to_string(), p["action"].as_str().unwrap().to_string()))
        .collect();
    for stage in ["synthesize", "rollout", "filter"] {
        assert_eq!(actions[stage], "cached", "{stage}: {plan}");
    }
    for stage in ["segment", "sft", "eval"] {
        assert_eq!(actions[stage], "run", "{stage}: {plan}");
    }
}

/// Without pytest, synthesize's tests cannot run: that is the environment,
/// not the instances. The stage fails naming the cause and commits
/// nothing; once pytest is there, the next run computes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pytest_synthesize_fails_with_the_cause_and_reruns_once_it_is_there() {
    let ctx = Ctx::new();
    let server = ScriptedServer::start(scripts()).await.unwrap();
    // A python3 that sees no site-packages at all: `-m pytest` cannot start.
    let shim = ctx.path("nopytest");
    std::fs::create_dir_all(&shim).unwrap();
    ctx.write("nopytest/python3", &format!("#!/bin/sh\nexec {} -S \"$@\"\n", common::python()));
    std::process::Command::new("chmod").args(["+x"]).arg(shim.join("python3")).status().unwrap();
    let without = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap_or_default());
    let run = |path: String| {
        let args = [
            "run".to_string(),
            WF.into(),
            "--only".into(),
            "synthesize".into(),
            "--json".into(),
            "--set".into(),
            format!("models.teacher.base_url={}", server.base_url()),
            "--set".into(),
            format!("models.student.base_url={}", server.base_url()),
        ];
        let mut cmd = ctx.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("PATH", path);
        tokio::task::spawn_blocking(move || common::Run::from(cmd.output().unwrap()))
    };
    let r = run(without).await.unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status_of("synthesize"), "failed");
    assert!(r.stderr.contains("failed because of the environment"), "{}", r.stderr);
    assert!(r.stderr.contains("No module named pytest"), "{}", r.stderr);
    assert!(ctx.objects().is_empty(), "nothing committed");

    let r = run(path_with_pytest()).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("synthesize"), "committed");
    // The stage's done line, in its log: what went in and what came out.
    let log = r.json()["stages"][0]["log"].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("10 instances in, 10 rows out"), "{log}");
}
