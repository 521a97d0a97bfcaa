//! The rollout stage through the real engine: `swestar run` on a workflow
//! over examples/tasks, the scripted teacher on 127.0.0.1, the local
//! sandbox, real bash and pytest. The trajectories table is read back from
//! the store's Parquet files; the patches are graded with real pytest.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{path_with_pytest, python, task_instances as instances, wait_for, Ctx, TASKS};
use swestar::agent::sandbox::{git, repo_from_tree, Sandbox, TaskState};
use swestar::agent::scripted::{Reply, ScriptedServer};
use swestar::store::table;

use swestar::agent::protocol::format_call as call;

/// Scripts that really fix two bugs, and a default that looks and submits
/// nothing.
fn scripts() -> HashMap<String, Vec<Reply>> {
    HashMap::from([
        (
            "currency_code_case".to_string(),
            vec![
                Reply::text(call(
                    "execute_bash",
                    &[("command", "python -m pytest -q tests/test_parse.py 2>&1 | tail -1")],
                )),
                Reply::text(call(
                    "execute_bash",
                    &[("command", "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py")],
                )),
                Reply::text(call("submit", &[])),
            ],
        ),
        (
            "sub_skips_currency_check".to_string(),
            vec![
                Reply::text(call("think", &[("thought", "__sub__ must check the currency like __add__.")])),
                Reply::text(call(
                    "execute_bash",
                    &[(
                        "command",
                        "sed -i '/def __sub__/a\\        self._check(other)' ledger/money.py && git diff --stat",
                    )],
                )),
                Reply::text(call("submit", &[])),
            ],
        ),
        (
            "*".to_string(),
            vec![
                Reply::text(call("execute_bash", &[("command", "ls ledger")])),
                Reply::text("I am done.".to_string()),
                Reply::text(call("submit", &[])),
            ],
        ),
    ])
}

fn workflow(extra: &str) -> String {
    format!(
        r#"[workflow]
name = "rollout-test"

[models.teacher]
base_url = "http://127.0.0.1:9/v1"
model = "teacher-7b"
temperature = 0.0
max_retries = 0
context_window = 16384

[data.tasks]
path = "{TASKS}/instances.jsonl"

[stages.rollout]
kind = "rollout"
inputs = {{ instances = "data.tasks" }}
model = "teacher"
repo = "{TASKS}/repo"
prompts = {{ instance = "prompts/instance.j2" }}
{extra}
"#
    )
}

const INSTANCE_PROMPT: &str = "Task {{ instance_id }} in {{ repo }} ({{ params.note }}):\n{{ problem_statement }}\n";

/// The stage's artifact read back; its messages are a list of structs.
fn rows_of(ctx: &Ctx, stage: &str, sets: &[&str]) -> Vec<serde_json::Value> {
    let out = ctx.path(&format!("{stage}.export.parquet"));
    let rows = ctx.export_rows("wf.toml", stage, sets);
    let (schema, _) = table::read_parquet(&[out.as_path()], Some(0)).unwrap();
    let messages = format!("{:?}", schema.field_with_name("messages").unwrap().data_type());
    assert!(messages.contains("Struct") && messages.contains("masked"), "{messages}");
    rows
}

/// Grades a patch the way test_filter will: a fresh buggy copy, the patch,
/// the FAIL_TO_PASS tests under real pytest.
fn f2p_pass(inst: &serde_json::Value, patch: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ledger");
    repo_from_tree(&Path::new(TASKS).join("repo"), &source).unwrap();
    let task = TaskState {
        instance_id: "g".into(),
        base_commit: inst["base_commit"].as_str().unwrap().into(),
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let fresh = Sandbox::local(&source, &task).unwrap();
    if !patch.is_empty() {
        git(&fresh.repo, &["apply", "-"], Some(patch)).unwrap();
    }
    let f2p: Vec<&str> = inst["FAIL_TO_PASS"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    std::process::Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(&f2p)
        .current_dir(&fresh.repo)
        .output()
        .unwrap()
        .status
        .success()
}

fn run_async(ctx: &Ctx, args: Vec<String>) -> tokio::task::JoinHandle<common::Run> {
    let mut cmd = ctx.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("PATH", path_with_pytest());
    tokio::task::spawn_blocking(move || cmd.output().unwrap().into())
}

fn args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "wf.toml", "--json"].map(String::from).to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_records_every_attempt_and_its_fixes_pass_the_tests() {
    let ctx = Ctx::new();
    ctx.write("prompts/instance.j2", INSTANCE_PROMPT);
    ctx.write(
        "wf.toml",
        &workflow("attempts = 2\nparallel = 4\nparams = { note = \"be brief\" }\nresources = { shards = 2 }\n"),
    );
    let server = ScriptedServer::start(scripts()).await.unwrap();
    let url = format!("models.teacher.base_url={}", server.base_url());

    let r = run_async(&ctx, args(&["--set", &url])).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.status_of("rollout"), "committed");
    let rows = rows_of(&ctx, "rollout", &["--set", &url]);
    let all = instances();
    assert_eq!(rows.len(), all.len() * 2, "one row per attempt");
    // In instance order, attempts in order, across both shards.
    for (i, inst) in all.iter().enumerate() {
        for a in 0..2 {
            let row = &rows[i * 2 + a];
            assert_eq!(row["instance_id"], inst["instance_id"]);
            assert_eq!(row["attempt"], a as u64);
            assert_eq!(row["model"], "teacher-7b");
            assert!(row["scaffold"].as_str().unwrap().starts_with("swestar-agent/"));
            assert!(row["wall_s"].as_f64().unwrap() > 0.0);
        }
    }
    let by_id = |suffix: &str| -> Vec<&serde_json::Value> {
        rows.iter().filter(|r| r["instance_id"].as_str().unwrap().ends_with(suffix)).collect()
    };
    let inst_of = |suffix: &str| all.iter().find(|i| i["instance_id"].as_str().unwrap().ends_with(suffix)).unwrap();

    // A real fix: submitted, the patch passes FAIL_TO_PASS (and the buggy
    // state does not).
    for row in by_id("currency_code_case") {
        assert_eq!(row["exit_reason"], "submitted");
        assert_eq!(row["steps"], 3);
        let patch = row["patch"].as_str().unwrap();
        assert!(patch.contains("parts[1].upper()"), "{patch}");
        assert!(f2p_pass(inst_of("currency_code_case"), patch));
        let msgs = row["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2 + 2 * 2 + 1, "system, task, two tool rounds, the submit");
        assert!(msgs[1]["content"].as_str().unwrap().contains("(be brief)"), "params reach the prompt");
        assert!(msgs[3]["content"].as_str().unwrap().contains("1 failed"), "{}", msgs[3]["content"]);
        assert!(msgs.iter().all(|m| m["tokens"].as_u64().unwrap() > 0 && m["masked"] == false));
    }
    assert!(!f2p_pass(inst_of("currency_code_case"), ""));
    for row in by_id("sub_skips_currency_check") {
        assert_eq!(row["exit_reason"], "submitted");
        assert!(f2p_pass(inst_of("sub_skips_currency_check"), row["patch"].as_str().unwrap()), "{}", row["patch"]);
    }
    // The default script: a reply without a tool call is a format error the
    // model is told about; an empty patch is recorded as such.
    for row in by_id("month_key_padding") {
        assert_eq!(row["exit_reason"], "submitted");
        assert_eq!(row["format_errors"], 1);
        assert_eq!(row["patch"], "");
    }

    // Everything again: cached, the model is not called.
    let before = server.requests().len();
    let r = run_async(&ctx, args(&["--set", &url])).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("rollout"), "cached");
    assert_eq!(server.requests().len(), before);
    // Another endpoint for the same model keeps the key; sampling does not.
    let plan = ctx.plan_json("wf.toml", &["--set", "models.teacher.base_url=http://10.0.0.1:30000/v1"]);
    assert_eq!(plan[0]["action"], "cached", "{plan}");
    let plan = ctx.plan_json("wf.toml", &["--set", "models.teacher.temperature=0.7"]);
    assert_eq!(plan[0]["action"], "run", "{plan}");
    assert!(plan[0]["reason"].as_str().unwrap().contains("temperature"), "{plan}");
}

/// The orchestrator is killed (-9) while one episode waits on a slow model:
/// the episodes that finished are in the shard's progress log and are not
/// run again; the rerun runs only the missing one. An episode whose model
/// endpoint fails is not recorded: the stage fails naming it, and the rerun
/// retries just that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_episodes_survive_a_kill_and_failed_ones_are_retried_alone() {
    let ctx = Ctx::new();
    ctx.write("prompts/instance.j2", INSTANCE_PROMPT);
    ctx.write("wf.toml", &workflow("parallel = 3\nparams = { note = \"n\" }\n"));
    let all = instances();
    let mut s = scripts();
    let slow = vec![Reply::Slow { delay: Duration::from_secs(600), then: Box::new(Reply::text(call("submit", &[]))) }];
    s.insert("month_key_padding".into(), slow);
    let server = ScriptedServer::start(s).await.unwrap();
    let url = format!("models.teacher.base_url={}", server.base_url());
    let mut cmd = ctx.cmd(&["run", "wf.toml", "--set", &url]);
    cmd.env("PATH", path_with_pytest()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let staging = ctx.store().join("staging");
    let log = move || -> Option<PathBuf> {
        let dir = std::fs::read_dir(&staging).ok()?.flatten().next()?.path();
        Some(dir.join("rollout-00000.jsonl"))
    };
    let lines =
        |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map_or(0, |t| t.lines().count());
    wait_for("all but the slow episode logged", 120, || lines(&log()) == all.len() - 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = log().unwrap();
    assert_eq!(lines(&Some(logged.clone())), all.len() - 1);
    assert!(ctx.objects().is_empty(), "nothing committed");

    // Rerun against a server where the slow instance now fails once with a
    // 500 (no retries configured): everything else is already done.
    let mut s = scripts();
    let fail = vec![Reply::Fail { status: 500, times: 1, then: Box::new(Reply::text(call("submit", &[]))) }];
    s.insert("month_key_padding".into(), fail);
    let server = ScriptedServer::start(s).await.unwrap();
    let url = format!("models.teacher.base_url={}", server.base_url());
    let r = run_async(&ctx, args(&["--set", &url])).await.unwrap();
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("1 episode(s) could not run") && r.stderr.contains("month_key_padding"), "{}", r.stderr);
    let asked: Vec<String> = server
        .requests()
        .iter()
        .map(|q| q["messages"][1]["content"].as_str().unwrap().lines().next().unwrap().to_string())
        .collect();
    assert_eq!(asked.len(), 1, "only the missing episode asks the model: {asked:?}");
    assert!(asked[0].contains("month_key_padding"));
    assert_eq!(lines(&Some(logged.clone())), all.len() - 1, "the failed episode is not recorded");

    // Once more: the endpoint answers now; only that episode runs.
    let r = run_async(&ctx, args(&["--set", &url])).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.requests().len(), 2);
    let rows = rows_of(&ctx, "rollout", &["--set", &url]);
    assert_eq!(rows.len(), all.len());
    let ids: Vec<&str> = rows.iter().map(|r| r["instance_id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = all.iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected, "instance order, whatever the order episodes finished in");
}

/// A model endpoint nobody listens on fails the stage before any episode
/// starts, naming the cause, however many retries the model allows; no
/// episode is recorded and nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_fails_the_stage_at_once_with_the_cause() {
    let ctx = Ctx::new();
    ctx.write("prompts/instance.j2", INSTANCE_PROMPT);
    ctx.write("wf.toml", &workflow("params = { note = \"n\" }\n"));
    // Port 1 on loopback: nothing listens, the connection is refused.
    let r = run_async(
        &ctx,
        args(&["--set", "models.teacher.base_url=http://127.0.0.1:1/v1", "--set", "models.teacher.max_retries=8"]),
    )
    .await
    .unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot reach model `teacher`: connection refused at http://127.0.0.1:1/v1"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("attempt 2 of 9"), "no episode retried against it: {}", r.stderr);
    assert!(ctx.objects().is_empty(), "nothing committed");
}

/// Bad rollout settings are reported with file, line and key.
#[test]
fn rollout_settings_are_validated_with_locations() {
    let ctx = Ctx::new();
    ctx.write("prompts/instance.j2", INSTANCE_PROMPT);
    let wf = workflow("").replace("model = \"teacher\"", "model = \"teachr\"");
    ctx.write("wf.toml", &wf);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("wf.toml:17:9:") && r.stderr.contains("key `stages.rollout.model`"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `teacher`?"), "{}", r.stderr);

    ctx.write("wf.toml", &workflow("sandbox = \"podmn\"\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("stages.rollout.sandbox") && r.stderr.contains("podman"), "{}", r.stderr);

    ctx.write("wf.toml", &workflow("[stages.rollout.limits]\nwall = \"soon\"\nmax_stepz = 3\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("max_stepz"), "{}", r.stderr);

    ctx.write("wf.toml", &workflow("[stages.rollout.limits]\nwall = \"soon\"\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("key `stages.rollout.limits.wall`") && r.stderr.contains("not a duration"),
        "{}",
        r.stderr
    );

    ctx.write("wf.toml", &workflow("[stages.rollout.container]\nimage = \"x\"\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("container settings do not apply to the `local` sandbox"), "{}", r.stderr);

    let wf = workflow("").replace("inputs = { instances = \"data.tasks\" }", "inputs = { tasks = \"data.tasks\" }");
    ctx.write("wf.toml", &wf);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("needs an input named `instances`"), "{}", r.stderr);
}
