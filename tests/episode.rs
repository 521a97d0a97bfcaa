//! A whole episode for real: the scripted teacher (the one allowed stand-in)
//! drives the agent through an example task in the local sandbox; the
//! commands run in real bash, the edit goes through the editor, and the
//! submitted patch makes the instance's FAIL_TO_PASS tests pass under real
//! pytest in a fresh copy of the buggy repository.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use swestar::agent::condense::{Budget, Policy};
use swestar::agent::episode::{run, EpisodeSpec, ExitReason, Limits};
use swestar::agent::llm::{LlmClient, ModelConfig};
use swestar::agent::prompts::{self, PromptContext};
use swestar::agent::sandbox::{git, repo_from_tree, Sandbox, TaskState};
use swestar::agent::scripted::{Reply, ScriptedServer};
use swestar::agent::tokens::{chatml_prompt, TokenCounter};

fn instance(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/instances.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|i| i["instance_id"].as_str().unwrap().ends_with(name))
        .unwrap()
}

fn env() -> Vec<(String, String)> {
    // pytest lives in the test venv (see .ci/run).
    vec![("PATH".into(), common::path_with_pytest()), ("HOME".into(), std::env::var("HOME").unwrap_or("/root".into()))]
}

/// An episode with default limits, estimated token counts and a 32k window.
fn basic_spec(task: impl Into<String>) -> EpisodeSpec<'static> {
    EpisodeSpec {
        instance_id: "test",
        system: "sys".into(),
        task: task.into(),
        limits: Limits::default(),
        budget: Budget { window: 32768, reserve: 1024 },
        policy: Policy::default(),
        env: env(),
        exclude: vec![],
        counter: std::sync::Arc::new(TokenCounter::Estimate),
    }
}

fn source_repo(dir: &Path, base: &str) -> PathBuf {
    let source = dir.join("ledger");
    let head = repo_from_tree(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/repo")), &source).unwrap();
    assert_eq!(head, base, "the example repository's commit is deterministic");
    source
}

/// The real Qwen tokenizer (.ci/run fetches it).
fn qwen_tokenizer() -> TokenCounter {
    let path = std::env::var("SWESTAR_TEST_TOKENIZER")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/tokenizers/qwen3/tokenizer.json").to_string());
    TokenCounter::from_file(Path::new(&path)).unwrap()
}

use swestar::agent::protocol::format_call as call;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_teacher_fixes_a_real_bug_end_to_end() {
    let inst = instance("currency_code_case");
    let base = inst["base_commit"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path(), base);
    let task = TaskState {
        instance_id: inst["instance_id"].as_str().unwrap().into(),
        base_commit: base.into(),
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let sandbox = Sandbox::local(&source, &task).unwrap();
    let repo = sandbox.repo.display().to_string();
    let script = vec![
        Reply::text(format!(
            "Let me reproduce the failure first.\n{}",
            call("execute_bash", &[("command", "python -m pytest -q tests/test_parse.py 2>&1 | tail -3")])
        )),
        Reply::text("I think the parser does not normalize the code."),
        Reply::text(call(
            "str_replace_editor",
            &[
                ("command", "str_replace"),
                ("path", &format!("{repo}/ledger/parse.py")),
                ("old_str", "        s, currency = parts[0], parts[1]"),
                ("new_str", "        s, currency = parts[0], parts[1].upper()"),
            ],
        )),
        Reply::text(call("execute_bash", &[("command", "python -m pytest -q 2>&1 | tail -1")])),
        Reply::text(format!("All tests pass.\n{}", call("submit", &[]))),
    ];
    let server = ScriptedServer::start(HashMap::from([("Lowercase currency codes are rejected".to_string(), script)]))
        .await
        .unwrap();
    let client = LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap();
    let ctx = PromptContext {
        repo: &repo,
        repo_name: "swestar/ledger",
        instance_id: inst["instance_id"].as_str().unwrap(),
        problem_statement: inst["problem_statement"].as_str().unwrap(),
        instance: &serde_json::Value::Null,
        params: &serde_json::Value::Null,
    };
    let spec = EpisodeSpec {
        instance_id: inst["instance_id"].as_str().unwrap(),
        system: prompts::render(prompts::SYSTEM, &ctx).unwrap(),
        task: prompts::render(prompts::INSTANCE, &ctx).unwrap(),
        limits: Limits { command_timeout: Duration::from_secs(60), ..Limits::default() },
        budget: Budget { window: 32768, reserve: 2048 },
        policy: Policy::default(),
        env: env(),
        exclude: vec!["tests".into()],
        counter: std::sync::Arc::new(qwen_tokenizer()),
    };
    let t = run(&client, &sandbox, spec).await;
    assert_eq!(t.exit_reason, ExitReason::Submitted, "{:?}\n{:#?}", t.error, t.messages);
    assert_eq!((t.steps, t.format_errors), (5, 1));
    // The reproduction really ran pytest and saw the failure.
    assert!(t.messages[3].content.starts_with("EXECUTION RESULT of [execute_bash]:\n"), "{}", t.messages[3].content);
    assert!(t.messages[3].content.contains("1 failed"), "{}", t.messages[3].content);
    assert!(
        t.messages[5].content.contains("no function call"),
        "the format error is explained: {}",
        t.messages[5].content
    );
    assert!(t.messages[9].content.contains("30 passed"), "{}", t.messages[9].content);
    assert!(t.patch.contains("+        s, currency = parts[0], parts[1].upper()"), "{}", t.patch);
    assert!(t.prompt_tokens > 0 && t.completion_tokens > 0 && t.recompute_tokens > 0);
    // Counted with the real tokenizer. Nothing was masked, so every prompt
    // extends the previous one and a prefix cache recomputes, over the whole
    // episode, exactly the tokens of the last prompt.
    assert!(t.messages[0].tokens > 500, "{}", t.messages[0].tokens);
    assert_eq!(t.masked, 0);
    let last_prompt = &t.messages[..t.messages.len() - 1];
    let ids =
        qwen_tokenizer().encode(&chatml_prompt(last_prompt.iter().map(|m| (m.role.as_str(), m.content.as_str()))));
    assert_eq!(t.recompute_tokens, ids.len() as u64);
    // The scripted server saw the stop word and the tool listing.
    let sent = server.requests();
    assert_eq!(sent[0]["stop"], serde_json::json!(["</function"]));
    assert!(sent[0]["messages"][0]["content"].as_str().unwrap().contains("---- BEGIN FUNCTION #1: execute_bash ----"));

    // Graded the way test_filter will: a fresh buggy copy, the patch, pytest.
    let fresh = Sandbox::local(&source, &task).unwrap();
    git(&fresh.repo, &["apply", "-"], Some(&t.patch)).unwrap();
    let python = common::python();
    let f2p: Vec<String> =
        inst["FAIL_TO_PASS"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let out = std::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(&f2p)
        .current_dir(&fresh.repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // And without the patch those tests fail: the grading means something.
    let buggy = Sandbox::local(&source, &task).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(&f2p)
        .current_dir(&buggy.repo)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn limits_end_episodes_with_their_reason() {
    let inst = instance("rows_line_number");
    let base = inst["base_commit"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path(), base);
    let task = TaskState {
        instance_id: "x".into(),
        base_commit: base.into(),
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let sandbox = Sandbox::local(&source, &task).unwrap();
    let chatter = vec![Reply::text("hmm"); 10];
    let thinking = vec![Reply::text(call("think", &[("thought", "still thinking")])); 10];
    let server =
        ScriptedServer::start(HashMap::from([("CHATTY".to_string(), chatter), ("THINKER".to_string(), thinking)]))
            .await
            .unwrap();
    let client = LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap();
    let spec = |task: &str, limits: Limits, window: usize| EpisodeSpec {
        limits,
        budget: Budget { window, reserve: 100 },
        policy: Policy::Fit,
        ..basic_spec(task)
    };
    let t = run(&client, &sandbox, spec("CHATTY", Limits { max_format_errors: 3, ..Limits::default() }, 32768)).await;
    assert_eq!((t.exit_reason, t.steps), (ExitReason::FormatErrors, 3));
    let t = run(&client, &sandbox, spec("THINKER", Limits { max_steps: 4, ..Limits::default() }, 32768)).await;
    assert_eq!((t.exit_reason, t.steps), (ExitReason::StepLimit, 4));
    assert!(t.patch.is_empty());
    // A window too small for the system prompt and the task.
    let t = run(&client, &sandbox, spec("THINKER", Limits::default(), 500)).await;
    assert_eq!((t.exit_reason, t.steps), (ExitReason::ContextExhausted, 0));
    // No server: the LLM error ends the episode.
    let mut c = ModelConfig::new(
        format!(
            "http://127.0.0.1:{}/v1",
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        ),
        "m",
    );
    c.max_retries = 0;
    let t = run(&LlmClient::new(c).unwrap(), &sandbox, spec("THINKER", Limits::default(), 32768)).await;
    assert_eq!(t.exit_reason, ExitReason::LlmError);
    assert!(t.error.is_some());
}

/// Many episodes in one process at once, each with its own sandbox and
/// two shells, against one scripted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_episodes() {
    let inst = instance("month_key_padding");
    let base = inst["base_commit"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path(), &base);
    let script = vec![
        Reply::text(call("think", &[("thought", "look around first")])),
        Reply::text(call("execute_bash", &[("command", "grep -c def ledger/report.py")])),
        Reply::text(call("submit", &[])),
    ];
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
    let client = std::sync::Arc::new(LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap());
    let task = TaskState {
        instance_id: "c".into(),
        base_commit: base,
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let mut handles = Vec::new();
    for i in 0..200 {
        let sandbox = Sandbox::local(&source, &task).unwrap();
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let spec = basic_spec(format!("episode {i}"));
            run(&client, &sandbox, spec).await
        }));
    }
    let mut done = 0;
    for h in handles {
        let t = h.await.unwrap();
        assert_eq!(t.exit_reason, ExitReason::Submitted, "{:?}", t.error);
        assert!(
            t.messages[5].content.starts_with("EXECUTION RESULT of [execute_bash]:\n3\n"),
            "{}",
            t.messages[5].content
        );
        done += 1;
    }
    assert_eq!(done, 200);
    assert_eq!(server.requests().len(), 600);
}

/// In bubblewrap the agent's commands see their own PID namespace, no
/// network and a read-only system; the repository stays writable, so the
/// episode still works (tests run, the editor edits, the patch is taken).
#[tokio::test]
async fn a_bubblewrap_sandbox_confines_commands_and_still_runs_the_episode() {
    use swestar::agent::sandbox::{Isolation, SandboxSpec};
    let inst = instance("sub_skips_currency_check");
    let base = inst["base_commit"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path(), &base);
    let task = TaskState {
        instance_id: "b".into(),
        base_commit: base,
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let spec = SandboxSpec { isolation: Isolation::Bubblewrap, container: None };
    let sandbox = Sandbox::prepare(&spec, Some(&source), &task).unwrap();
    let repo = sandbox.repo.display().to_string();
    let escape = dir.path().join("escaped");
    let probe = format!(
        "echo pid=$$; touch /etc/swestar-escape 2>&1 | tail -1; touch {} 2>&1 | tail -1; python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\" 2>&1 | tail -1",
        escape.display()
    );
    let script = vec![
        Reply::text(call("execute_bash", &[("command", &probe)])),
        Reply::text(call(
            "str_replace_editor",
            &[
                ("command", "str_replace"),
                ("path", &format!("{repo}/ledger/money.py")),
                ("old_str", "    def __sub__(self, other: \"Money\") -> \"Money\":\n"),
                ("new_str", "    def __sub__(self, other: \"Money\") -> \"Money\":\n        self._check(other)\n"),
            ],
        )),
        Reply::text(call("execute_bash", &[("command", "python -m pytest -q 2>&1 | tail -1")])),
        Reply::text(call("submit", &[])),
    ];
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
    let client = LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap();
    let spec = basic_spec("fix it");
    let t = run(&client, &sandbox, spec).await;
    assert_eq!(t.exit_reason, ExitReason::Submitted, "{:?} {:#?}", t.error, t.messages);
    let probe_out = &t.messages[3].content;
    assert!(probe_out.contains("pid=2\n") || probe_out.contains("pid=3\n"), "own PID namespace: {probe_out}");
    assert!(probe_out.contains("'/etc/swestar-escape': Read-only file system"), "system read-only: {probe_out}");
    assert!(probe_out.matches("cannot touch").count() == 2, "nothing outside the repository is writable: {probe_out}");
    assert!(probe_out.contains("OSError") || probe_out.contains("unreachable"), "no network: {probe_out}");
    assert!(!Path::new("/etc/swestar-escape").exists() && !escape.exists());
    assert!(t.messages[7].content.contains("30 passed"), "{}", t.messages[7].content);
    assert!(t.patch.contains("+        self._check(other)"), "{}", t.patch);
}

/// `swestar agent` runs one episode from the command line and prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_command_prints_every_turn_and_the_patch() {
    let script = vec![
        Reply::text(call("execute_bash", &[("command", "grep -n 'parts\\[1\\]' ledger/parse.py")])),
        Reply::text(call(
            "execute_bash",
            &[(
                "command",
                "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py && python -m pytest -q 2>&1 | tail -1",
            )],
        )),
        Reply::text(call("submit", &[])),
    ];
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let traj = out_dir.path().join("t.json");
    let id = instance("currency_code_case")["instance_id"].as_str().unwrap().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swestar"));
    cmd.args(["agent", "--tasks", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/instances.jsonl")])
        .args(["--instance", &id, "--repo", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/repo")])
        .args(["--model", &server.base_url(), "--out"])
        .arg(&traj)
        .env_clear()
        .envs(env());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("─── system ("), "{stdout}");
    assert!(stdout.contains("<issue_description>\nLowercase currency codes are rejected"), "{stdout}");
    assert!(stdout.contains("26:        s, currency = parts[0], parts[1]\n"), "{stdout}");
    assert!(stdout.contains("30 passed"), "{stdout}");
    assert!(stdout.contains("═══ Submitted after 3 steps"), "{stdout}");
    assert!(stdout.contains("+        s, currency = parts[0], parts[1].upper()"), "{stdout}");
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&traj).unwrap()).unwrap();
    assert_eq!(t["exit_reason"], "submitted");
    assert_eq!(t["steps"], 3);
}
