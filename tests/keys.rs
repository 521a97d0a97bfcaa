//! Cache keys of the shipped workflows are a contract with every user's
//! store: a refactoring that changes one silently reruns (and re-buys) a
//! whole experiment. The keys of every stage of every example workflow are
//! compared with the values recorded in tests/fixtures/keys/. A kind whose
//! output really changes bumps its implementation version and records the
//! new keys deliberately (`SWESTAR_RECORD_KEYS=1 cargo test --test keys`).
//!
//! Only a stage whose inputs exist has a key before anything runs, so each
//! stage's stage inputs are pointed at a data source of the workflow: then
//! every key is computable from the plan alone.

mod common;

use std::collections::BTreeMap;

use common::{tokenizer, Ctx, TASKS};

const WORKFLOWS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows");

/// `stage [first variant +more]` → key, from `plan --json`, one line each.
fn keys(ctx: &Ctx, wf: &str, sets: &[String]) -> String {
    let mut args: Vec<&str> = Vec::new();
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    let plan = ctx.plan_json(wf, &args);
    let mut lines = BTreeMap::new();
    for p in plan.as_array().expect("a plan array") {
        let variants: Vec<&str> =
            p["variants"].as_array().map(|v| v.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
        let key = p["key"].as_str().unwrap_or_else(|| panic!("no key for {p} (are its inputs all data?)"));
        // A node is named by its stage and the first variant it serves.
        let serves = match variants.as_slice() {
            [] => String::new(),
            [one] => format!(" [{one}]"),
            [first, rest @ ..] => format!(" [{first} +{}]", rest.len()),
        };
        lines.insert(format!("{}{serves}", p["stage"].as_str().unwrap()), key.to_string());
    }
    lines.into_iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

fn compare(name: &str, got: &str) {
    let path = format!("{}/tests/fixtures/keys/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SWESTAR_RECORD_KEYS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let changed: Vec<String> = want
        .lines()
        .zip(got.lines())
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("  recorded {w}\n  now      {g}"))
        .collect();
    assert!(
        want == got,
        "cache keys of {name} changed; every user's store would rerun these stages:\n{}\n(recorded {} lines, now {})",
        changed.join("\n"),
        want.lines().count(),
        got.lines().count()
    );
}

#[test]
fn the_quickstart_keys_are_those_users_stores_hold() {
    let ctx = Ctx::new();
    let wf = format!("{WORKFLOWS}/quickstart.toml");
    // Downstream keys name upstream content, so the pipeline runs first.
    let r = ctx.run(&wf, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare("quickstart", &keys(&ctx, &wf, &[]));
}

#[test]
fn the_local_demo_keys_are_those_users_stores_hold() {
    let ctx = Ctx::new();
    let sets = [
        "stages.rollout.inputs.instances=\"data.tasks\"",
        "stages.filter.inputs.trajectories=\"data.tasks\"",
        "stages.segment.inputs.trajectories=\"data.tasks\"",
        "stages.sft.inputs.samples=\"data.tasks\"",
        "stages.eval.needs=[]",
    ]
    .map(String::from);
    compare("local-demo", &keys(&ctx, &format!("{WORKFLOWS}/local-demo.toml"), &sets));
}

/// The cluster workflows, with their data and model paths pointed at the
/// example tasks and the real Qwen tokenizer (as tests/workflows.rs does).
fn cluster_sets(ctx: &Ctx, tok: &str) -> Vec<String> {
    let demos = ctx.write("demos.jsonl", "{\"problem_statement\": \"Example issue.\"}\n");
    vec![
        format!("data.swesmith.path=\"{TASKS}/instances.jsonl\""),
        format!("data.verified.path=\"{TASKS}/instances.jsonl\""),
        format!("models.teacher.tokenizer=\"{tok}\""),
        format!("models.student.tokenizer=\"{tok}\""),
        format!("stages.segment.tokenizer=\"{tok}\""),
        format!("data.demonstrations.path=\"{}\"", demos.display()),
        "stages.rollout.inputs.instances=\"data.swesmith\"".into(),
        "stages.filter.inputs.trajectories=\"data.swesmith\"".into(),
        "stages.filter.inputs.instances=\"data.swesmith\"".into(),
        "stages.segment.inputs.trajectories=\"data.swesmith\"".into(),
        "stages.sft.inputs.samples=\"data.swesmith\"".into(),
        "stages.eval.inputs.model=\"data.verified\"".into(),
        "stages.eval.serve.model=\"/models/student\"".into(),
    ]
}

#[test]
fn the_swe_star_keys_are_those_users_stores_hold() {
    let Some(tok) = tokenizer() else { return };
    let ctx = Ctx::new();
    let sets = cluster_sets(&ctx, &tok);
    compare("swe-star", &keys(&ctx, &format!("{WORKFLOWS}/swe-star.toml"), &sets));
}

#[test]
fn the_scaling_ablation_keys_are_those_users_stores_hold() {
    let Some(tok) = tokenizer() else { return };
    let ctx = Ctx::new();
    let sets = cluster_sets(&ctx, &tok);
    compare("scaling-ablation", &keys(&ctx, &format!("{WORKFLOWS}/scaling-ablation.toml"), &sets));
}
