//! Episodes in real podman containers started from the example tasks' image
//! (examples/tasks/image/build.sh; .ci/run builds it): the repository the
//! image ships at /testbed, or the host working copy mounted there. The
//! shells are `podman exec -it … bash`; there is no network, a hung command
//! is killed inside the container and the session goes on, and the
//! container is gone after the episode.
//!
//! The last test runs a whole rollout stage through `swestar run` with
//! `sandbox = "podman"` and grades its patches in fresh containers.
//!
//! Without podman or the image these tests are skipped, except under CI,
//! where they fail.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use swestar::agent::condense::{Budget, Policy};
use swestar::agent::episode::{run, EpisodeSpec, ExitReason, Limits};
use swestar::agent::llm::{LlmClient, ModelConfig};
use swestar::agent::sandbox::{repo_from_tree, ContainerSpec, Isolation, Sandbox, SandboxSpec, TaskState};
use swestar::agent::scripted::{Reply, ScriptedServer};
use swestar::agent::tokens::TokenCounter;

const IMAGE: &str = "localhost/swestar-ledger:latest";

fn podman_ready() -> bool {
    let ok = Command::new("podman").args(["image", "exists", IMAGE]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI needs podman and {IMAGE} (examples/tasks/image/build.sh)");
        eprintln!("skipped: no podman or no {IMAGE} (run examples/tasks/image/build.sh)");
    }
    ok
}

fn task(name: &str) -> TaskState {
    let inst = common::task_instance(name);
    let field = |k: &str| inst[k].as_str().unwrap().to_string();
    TaskState {
        instance_id: field("instance_id"),
        base_commit: field("base_commit"),
        bug_patch: field("patch"),
        image: field("image_name"),
    }
}

use swestar::agent::protocol::format_call as call;

fn spec(instance_id: &str) -> EpisodeSpec<'_> {
    EpisodeSpec {
        instance_id,
        system: "sys".into(),
        task: "fix it".into(),
        limits: Limits { command_timeout: Duration::from_secs(2), ..Limits::default() },
        budget: Budget { window: 32768, reserve: 1024 },
        policy: Policy::default(),
        env: vec![("PATH".into(), "/host/only".into()), ("LANG".into(), "C.UTF-8".into())],
        exclude: vec![],
        counter: std::sync::Arc::new(TokenCounter::Estimate),
    }
}

fn container_exists(name: &str) -> bool {
    let out = Command::new("podman").args(["ps", "-a", "--format", "{{.Names}}"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l == name)
}

fn podman() -> SandboxSpec {
    SandboxSpec { isolation: Isolation::Podman, container: Some(ContainerSpec::new("podman")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_podman_episode_fixes_the_bug_in_the_images_repository() {
    if !podman_ready() {
        return;
    }
    let task = task("sub_skips_currency_check");
    let sandbox = tokio::task::spawn_blocking({
        let task = task.clone();
        move || Sandbox::prepare(&podman(), None, &task).unwrap()
    })
    .await
    .unwrap();
    let name = sandbox.container_name().unwrap().to_string();
    assert!(container_exists(&name));
    assert_eq!(sandbox.repo, Path::new("/testbed"));
    let probe =
        "echo pid=$$ uid=$(id -u) path=$PATH lang=$LANG map=$(tr -s ' ' < /proc/self/uid_map); pwd; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let script = vec![
        Reply::text(call("execute_bash", &[("command", probe)])),
        Reply::text(call(
            "execute_bash",
            &[("command", "git log --oneline --all | cat; git branch -a | cat; sleep 1000")],
        )),
        Reply::text(call("execute_bash", &[("command", "echo still here; jobs; python3 -m pytest -q 2>&1 | tail -1")])),
        Reply::text(call(
            "str_replace_editor",
            &[
                ("command", "str_replace"),
                ("path", "/testbed/ledger/money.py"),
                ("old_str", "    def __sub__(self, other: \"Money\") -> \"Money\":\n"),
                ("new_str", "    def __sub__(self, other: \"Money\") -> \"Money\":\n        self._check(other)\n"),
            ],
        )),
        Reply::text(call("execute_bash", &[("command", "python3 -m pytest -q 2>&1 | tail -1")])),
        Reply::text(call("str_replace_editor", &[("command", "view"), ("path", "/etc/passwd")])),
        Reply::text(call("submit", &[])),
    ];
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
    let client = LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap();
    let t = run(&client, &sandbox, spec(&task.instance_id)).await;
    assert_eq!(t.exit_reason, ExitReason::Submitted, "{:?} {:#?}", t.error, t.messages);
    let obs = |step: usize| t.messages[2 + 2 * step + 1].content.clone();
    let probe = obs(0);
    assert!(probe.contains("uid=0 "), "single UID, root in the container: {probe}");
    // Rootless (tests/podman/rootless.sh runs these tests as a user with no
    // subordinate IDs): container root is that one host UID and nothing else.
    let host_uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if host_uid.trim() != "0" {
        assert!(probe.contains(&format!("map= 0 {} 1\n", host_uid.trim())), "one UID mapped: {probe}");
    }
    assert!(!probe.contains("/host/only"), "the host's PATH stays outside: {probe}");
    assert!(probe.contains("lang=C.UTF-8"), "{probe}");
    assert!(probe.contains("\n/testbed\n"), "{probe}");
    assert!(probe.trim_end().ends_with("\nlo") || probe.contains("\nlo\n"), "loopback only: {probe}");
    assert!(!probe.contains("eth0"), "{probe}");
    let hung = obs(1);
    assert!(hung.contains("task state"), "{hung}");
    assert!(
        !hung.contains("ledger 0.1.0") && !hung.contains("main"),
        "the base, with the bug's diff, stays hidden: {hung}"
    );
    assert!(hung.contains("timed out") || hung.contains("timeout"), "{hung}");
    let after = obs(2);
    assert!(after.contains("still here"), "the session survives the kill: {after}");
    assert!(after.contains("1 failed, 29 passed"), "{after}");
    assert!(obs(4).contains("30 passed"), "{}", obs(4));
    assert!(obs(5).contains("not within the repository") || obs(5).contains("outside"), "{}", obs(5));
    assert!(t.patch.contains("+        self._check(other)") && t.patch.contains("ledger/money.py"), "{}", t.patch);
    assert!(!t.patch.contains("__pycache__"), "{}", t.patch);
    drop(sandbox);
    assert!(!container_exists(&name), "the container is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_podman_sandbox_can_mount_the_host_working_copy() {
    if !podman_ready() {
        return;
    }
    let task = task("currency_code_case");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ledger");
    let head = repo_from_tree(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/repo")), &source).unwrap();
    assert_eq!(head, task.base_commit);
    let sandbox = Sandbox::prepare(&podman(), Some(&source), &task).unwrap();
    let name = sandbox.container_name().unwrap().to_string();
    let script = vec![
        Reply::text(call(
            "execute_bash",
            &[(
                "command",
                "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py && echo new > NOTES.txt && python3 -m pytest -q 2>&1 | tail -1",
            )],
        )),
        Reply::text(call("submit", &[])),
    ];
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
    let client = LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap();
    let t = run(&client, &sandbox, spec(&task.instance_id)).await;
    assert_eq!(t.exit_reason, ExitReason::Submitted, "{:?} {:#?}", t.error, t.messages);
    assert!(t.messages[3].content.contains("passed") && !t.messages[3].content.contains("failed"), "{:?}", t.messages);
    assert!(t.patch.contains("parts[1].upper()") && t.patch.contains("+++ b/NOTES.txt"), "{}", t.patch);
    drop(sandbox);
    assert!(!container_exists(&name));
}

#[test]
fn a_missing_image_is_a_clear_sandbox_error_and_leaves_nothing_behind() {
    if !podman_ready() {
        return;
    }
    let mut task = task("currency_code_case");
    task.image = "localhost/swestar-no-such-image:0".into();
    let err = Sandbox::prepare(&podman(), None, &task).err().expect("no such image");
    let text = err.to_string();
    assert!(text.contains("starting a container from localhost/swestar-no-such-image:0"), "{text}");
    let out = Command::new("podman").args(["ps", "-a", "--format", "{{.Names}}"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("currency_code_case"), "no container left over");
}

#[test]
fn containers_left_by_a_killed_process_are_swept() {
    if !podman_ready() {
        return;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    // A PID that is not running: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let name = format!("swestar-sweep-test-{dead}");
    let label = format!("swestar.owner={host}:{dead}");
    let live_name = format!("swestar-sweep-live-{}", std::process::id());
    let live_label = format!("swestar.owner={host}:{}", std::process::id());
    for (n, l) in [(&name, &label), (&live_name, &live_label)] {
        let ok = Command::new("podman")
            .args(["run", "-d", "--name", n, "--label", l, "--network", "none", IMAGE, "sleep", "infinity"])
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
    let removed = swestar::agent::sandbox::sweep_stale("podman");
    assert!(removed.contains(&name), "{removed:?}");
    assert!(!removed.contains(&live_name), "a running owner keeps its container");
    assert!(!container_exists(&name) && container_exists(&live_name));
    Command::new("podman").args(["rm", "-f", "-t", "0", &live_name]).output().unwrap();
}

fn podman_names(filter: &str) -> Vec<String> {
    let out = Command::new("podman").args(["ps", "-a", "--filter", filter, "--format", "{{.Names}}"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Applies a patch in a fresh container at the instance's buggy state and
/// runs its FAIL_TO_PASS tests there: true when they all pass.
async fn f2p_pass_in_container(name: &str, patch: &str) -> bool {
    let inst = common::task_instance(name);
    let task = task(name);
    let sandbox = tokio::task::spawn_blocking(move || Sandbox::prepare(&podman(), None, &task).unwrap()).await.unwrap();
    if !patch.is_empty() {
        sandbox.git(&["apply", "-"], Some(patch)).unwrap();
    }
    let tests: Vec<&str> = inst["FAIL_TO_PASS"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let mut shell = sandbox.shell(&[("LANG".into(), "C.UTF-8".into())]).await.unwrap();
    let cmd = format!("python3 -m pytest -q -p no:cacheprovider {}", tests.join(" "));
    let out = shell.run(&cmd, Duration::from_secs(120)).await.unwrap();
    shell.close().await;
    out.exit_code == Some(0)
}

/// A rollout stage with `sandbox = "podman"` through the real engine: one
/// container per episode from each instance's `image_name`, the repository
/// the image ships; the trajectories read back from the store, the fixes
/// pass their tests in fresh containers, and no container outlives the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_podman_rollout_runs_through_the_engine() {
    if !podman_ready() {
        return;
    }
    let ctx = common::Ctx::new();
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "podman-rollout"

[models.teacher]
base_url = "http://127.0.0.1:9/v1"
model = "teacher-7b"
max_retries = 0

[data.tasks]
path = "{}/examples/tasks/instances.jsonl"

[stages.rollout]
kind = "rollout"
inputs = {{ instances = "data.tasks" }}
model = "teacher"
sandbox = "podman"
parallel = 4
limits = {{ command_timeout = "60s" }}
container = {{ args = ["--label", "swestar.test=rollout-{}"] }}
"#,
            env!("CARGO_MANIFEST_DIR"),
            std::process::id()
        ),
    );
    let fix = |sed: &str| {
        vec![
            Reply::text(call("execute_bash", &[("command", "pwd; id -u; python3 -m pytest -q 2>&1 | tail -1")])),
            Reply::text(call("execute_bash", &[("command", sed)])),
            Reply::text(call("submit", &[])),
        ]
    };
    // The default prompts do not name the instance: scripts are picked by
    // the problem statement's title.
    let scripts = HashMap::from([
        (
            "Lowercase currency codes are rejected".to_string(),
            fix("sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py"),
        ),
        (
            "Subtracting euros from dollars silently succeeds".to_string(),
            fix("sed -i '/def __sub__/a\\        self._check(other)' ledger/money.py"),
        ),
        ("*".to_string(), vec![Reply::text(call("submit", &[]))]),
    ]);
    let server = ScriptedServer::start(scripts).await.unwrap();
    let url = format!("models.teacher.base_url={}", server.base_url());
    let cmd = {
        let mut c = ctx.cmd(&["run", "wf.toml", "--json", "--set", &url]);
        c.env_remove("CI");
        c
    };
    // Other tests in this binary run containers meanwhile: this run's
    // carry a label of their own (an extra `podman run` argument), watched
    // while it runs and looked for after.
    let mine = format!("swestar.test=rollout-{}", std::process::id());
    let run = |mut c: Command, mine: String| {
        tokio::task::spawn_blocking(move || {
            let mut child =
                c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
            let mut seen = 0;
            while child.try_wait().unwrap().is_none() {
                seen = seen.max(podman_names(&format!("label={mine}")).len());
                std::thread::sleep(Duration::from_millis(100));
            }
            (seen, common::Run::from(child.wait_with_output().unwrap()))
        })
    };
    let (seen, r) = run(cmd, mine.clone()).await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.status_of("rollout"), "committed");
    assert!(seen > 0, "the episodes ran in labelled containers");
    let left = podman_names(&format!("label={mine}"));
    assert!(left.is_empty(), "every episode's container is removed: {left:?}");

    let rows = ctx.export_rows("wf.toml", "rollout", &["--set", &url]);
    assert_eq!(rows.len(), 10);
    for row in &rows {
        assert_eq!(row["exit_reason"], "submitted", "{row}");
        let id = row["instance_id"].as_str().unwrap();
        let name = id.rsplit('.').next().unwrap();
        let patch = row["patch"].as_str().unwrap();
        if name == "currency_code_case" || name == "sub_skips_currency_check" {
            let first = row["messages"][3]["content"].as_str().unwrap_or_else(|| panic!("{row}"));
            assert!(first.contains("/testbed\n0\n") && first.contains("1 failed, 29 passed"), "{first}");
            assert!(!patch.is_empty());
            assert!(f2p_pass_in_container(name, patch).await, "{name}: {patch}");
            assert!(!f2p_pass_in_container(name, "").await, "{name} fails without the fix");
        } else {
            assert_eq!(patch, "", "{id}");
        }
    }
    // The image is part of the key: another image is another rollout.
    let plan = ctx.plan_json("wf.toml", &["--set", &url]);
    assert_eq!(plan[0]["action"], "cached", "{plan}");
    let plan = ctx.plan_json("wf.toml", &["--set", &url, "--set", "stages.rollout.container.image=localhost/other:1"]);
    assert_eq!(plan[0]["action"], "run", "{plan}");
}
