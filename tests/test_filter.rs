//! The test_filter stage through `swestar run`: real patches on the
//! example tasks, tested with real pytest in local sandboxes and graded
//! with SWE-bench's semantics; the verdicts read back from Parquet.

mod common;

use std::path::Path;

use common::{path_with_pytest, task_instance as instance, Ctx, TASKS};
use swestar::agent::sandbox::{repo_from_tree, Sandbox, TaskState};

/// The diff a command makes in a fresh copy at the instance's task state.
fn patch_by(suffix: &str, command: &str) -> String {
    let inst = instance(suffix);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ledger");
    repo_from_tree(&Path::new(TASKS).join("repo"), &source).unwrap();
    let task = TaskState {
        instance_id: inst["instance_id"].as_str().unwrap().into(),
        base_commit: inst["base_commit"].as_str().unwrap().into(),
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let sb = Sandbox::local(&source, &task).unwrap();
    let ok = std::process::Command::new("bash").arg("-c").arg(command).current_dir(&sb.repo).status().unwrap();
    assert!(ok.success(), "{command}");
    sb.diff(&[]).unwrap()
}

#[test]
fn patches_are_tested_and_graded_like_swebench() {
    let fix = patch_by("currency_code_case", "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py");
    let wrong = patch_by("sub_skips_currency_check", "echo '# looked at it' >> ledger/money.py");
    // Fixes the F2P tests of the first instance, but breaks a P2P test.
    let regress = patch_by(
        "currency_code_case",
        "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py && sed -i 's/def __add__(self, other: \"Money\") -> \"Money\":/&\\n        raise RuntimeError(\"no\")/' ledger/money.py",
    );
    let garbage = "diff --git a/ledger/nope.py b/ledger/nope.py\n--- a/ledger/nope.py\n+++ b/ledger/nope.py\n@@ -1,1 +1,1 @@\n-x\n+y\n";
    // The fix with a context line that no longer matches: `git apply`
    // refuses it, the harness's last resort (`patch --fuzz=5`) takes it.
    let fuzzy = fix.replacen(
        "         currency, s = SYMBOLS[s[0]], s[1:].strip()\n",
        "         currency, s = SYMBOLS[s[0]], s[1:]\n",
        1,
    );
    assert_ne!(fuzzy, fix);
    let id = |s: &str| instance(s)["instance_id"].as_str().unwrap().to_string();
    let trajectories = [
        (id("currency_code_case"), 0, fix.clone()),
        (id("sub_skips_currency_check"), 0, wrong),
        (id("currency_code_case"), 1, regress),
        (id("month_key_padding"), 0, garbage.to_string()),
        (id("month_key_padding"), 1, String::new()),
        (id("currency_code_case"), 2, fuzzy),
    ];
    let ctx = Ctx::new();
    let lines: String = trajectories
        .iter()
        .map(|(i, a, p)| serde_json::json!({"instance_id": i, "attempt": a, "patch": p}).to_string() + "\n")
        .collect();
    ctx.write("trajectories.jsonl", &lines);
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "filter-test"

[data.tasks]
path = "{TASKS}/instances.jsonl"

[data.trajectories]
path = "trajectories.jsonl"

[stages.filter]
kind = "test_filter"
inputs = {{ trajectories = "data.trajectories", instances = "data.tasks" }}
repo = "{TASKS}/repo"
keep = "all"
parallel = 3
resources = {{ shards = 2 }}
"#
        ),
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "wf.toml", "--json"];
        args.extend_from_slice(extra);
        let r: common::Run = ctx.cmd(&args).env("PATH", path_with_pytest()).output().unwrap().into();
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        r
    };
    run(&[]);
    let rows = |sets: &[&str]| ctx.export_rows("wf.toml", "filter", sets);
    let all = rows(&[]);
    assert_eq!(all.len(), 6, "keep = all keeps every trajectory, in order");
    let status = |row: &serde_json::Value, test: &str| -> String {
        row["tests"].as_array().unwrap().iter().find(|t| t["name"] == test).unwrap()["status"].as_str().unwrap().into()
    };
    // The real fix: every F2P and P2P test passes under real pytest.
    let r = &all[0];
    assert_eq!((r["applied"].as_bool(), r["resolved"].as_bool()), (Some(true), Some(true)), "{r}");
    assert_eq!(r["resolution"], "RESOLVED_FULL");
    let inst = instance("currency_code_case");
    for t in inst["FAIL_TO_PASS"].as_array().unwrap().iter().chain(inst["PASS_TO_PASS"].as_array().unwrap()) {
        assert_eq!(status(r, t.as_str().unwrap()), "PASSED", "{t}");
    }
    assert_eq!(r["patch"].as_str().unwrap(), fix, "the trajectory's columns flow through");
    // A patch that does not fix the bug: applied, F2P still failing.
    let r = &all[1];
    assert_eq!((r["applied"].as_bool(), r["resolved"].as_bool()), (Some(true), Some(false)), "{r}");
    let f2p = instance("sub_skips_currency_check")["FAIL_TO_PASS"][0].as_str().unwrap().to_string();
    assert_eq!(status(r, &f2p), "FAILED");
    // F2P fixed but a P2P test broken: not resolved.
    let r = &all[2];
    assert!(!r["resolved"].as_bool().unwrap(), "{r}");
    assert_eq!(r["resolution"], "RESOLVED_NO");
    let broken: Vec<&serde_json::Value> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == "PASS_TO_PASS" && t["status"] != "PASSED")
        .collect();
    assert!(!broken.is_empty(), "{r}");
    // A patch that does not apply is reported as such.
    let r = &all[3];
    assert_eq!((r["applied"].as_bool(), r["evaluated"].as_bool()), (Some(false), Some(false)));
    assert!(r["test_error"].as_str().unwrap().contains("patch does not apply"), "{r}");
    // No patch: nothing to test.
    assert_eq!(all[4]["test_error"], "no patch");
    // Applied with fuzz, as the harness would, and resolved.
    assert_eq!((all[5]["applied"].as_bool(), all[5]["resolved"].as_bool()), (Some(true), Some(true)), "{}", all[5]);

    // keep = "resolved" (the default) passes on only the fix.
    let r = run(&["--set", "stages.filter.keep=\"resolved\""]);
    assert_eq!(r.status_of("filter"), "committed");
    let kept = rows(&["--set", "stages.filter.keep=\"resolved\""]);
    assert_eq!(kept.len(), 2);
    assert_eq!((kept[0]["attempt"].as_u64(), kept[1]["attempt"].as_u64()), (Some(0), Some(2)));
    assert_eq!(kept[0]["instance_id"], id("currency_code_case"));
    // Cached the second time.
    let r = run(&[]);
    assert_eq!(r.status_of("filter"), "cached");
}

#[test]
fn test_filter_settings_are_validated() {
    let ctx = Ctx::new();
    ctx.write("t.jsonl", "{}\n");
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "v"

[data.t]
path = "t.jsonl"

[stages.filter]
kind = "test_filter"
inputs = { trajectories = "data.t" }
repo = "nowhere"
keep = "some"
"#,
    );
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("stages.filter.keep"), "{}", r.stderr);
    let text =
        std::fs::read_to_string(ctx.path("wf.toml")).unwrap().replace("keep = \"some\"\n", "timeout = \"soon\"\n");
    ctx.write("wf.toml", &text);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    for needle in ["input named `instances`", "stages.filter.timeout"] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
}
