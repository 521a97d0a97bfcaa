//! The segment stage through `swestar run` with the real Qwen tokenizer:
//! long trajectories cut into samples that fit the window, every assistant
//! turn trained exactly once, subsets for scaling ablations.

mod common;

use std::collections::HashMap;

use common::Ctx;
use serde_json::{json, Value};
use swestar::agent::tokens::TokenCounter;

fn tokenizer() -> Option<String> {
    let t = std::env::var("SWESTAR_TEST_TOKENIZER").ok();
    if t.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI sets SWESTAR_TEST_TOKENIZER");
        eprintln!("skipped: SWESTAR_TEST_TOKENIZER is not set");
    }
    t
}

/// A trajectory of `rounds` tool calls with observations of varied length.
fn trajectory(id: &str, attempt: u32, rounds: usize) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a software engineer. ".repeat(40)}),
        json!({"role": "user", "content": format!("Fix issue {id}: amounts are parsed wrongly.")}),
    ];
    for r in 0..rounds {
        messages.push(json!({"role": "assistant", "content": format!(
            "Step {r} of {id}/{attempt}: look further.\n<function=execute_bash>\n<parameter=command>grep -n parse ledger/*.py | head -{r}</parameter>\n</function>"
        )}));
        let lines: String = (0..(20 + 37 * r % 90))
            .map(|i| format!("ledger/parse.py:{i}: def parse_amount_{r}_{i}(text): return text.split()\n"))
            .collect();
        messages.push(json!({"role": "user", "content": lines}));
    }
    json!({"instance_id": id, "attempt": attempt, "messages": messages, "patch": ""})
}

#[test]
fn long_trajectories_become_samples_that_fit_and_train_each_turn_once() {
    let Some(tok) = tokenizer() else { return };
    let ctx = Ctx::new();
    let trajs = [trajectory("a", 0, 3), trajectory("b", 0, 40), trajectory("b", 1, 25), trajectory("c", 0, 12)];
    ctx.write("t.jsonl", &trajs.iter().map(|t| t.to_string() + "\n").collect::<String>());
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "seg"

[data.t]
path = "t.jsonl"

[stages.segment]
kind = "segment"
inputs = {{ trajectories = "data.t" }}
window = 4096
reply_reserve = 512
tokenizer = "{tok}"
resources = {{ shards = 2 }}
"#
        ),
    );
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The done line accounts for every turn.
    let turn_count: usize = trajs.iter().map(|t| t["messages"].as_array().unwrap().len() / 2 - 1).sum();
    assert!(
        r.stderr.contains("4 trajectories in, ")
            && r.stderr.contains(&format!("{turn_count} assistant turns: {turn_count} trained")),
        "{}",
        r.stderr
    );
    let export = |sets: &[&str]| ctx.export_rows("wf.toml", "segment", sets);
    let samples = export(&[]);
    let counter = TokenCounter::from_file(std::path::Path::new(&tok)).unwrap();
    let mut trained: HashMap<String, usize> = HashMap::new();
    let mut per_traj: HashMap<(String, u64), usize> = HashMap::new();
    for s in &samples {
        let msgs = s["messages"].as_array().unwrap();
        let counted: usize =
            msgs.iter().map(|m| counter.message(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).sum();
        assert_eq!(counted as u64, s["tokens"].as_u64().unwrap(), "the token count is the real tokenizer's");
        assert!(counted <= 4096, "a sample fits the window: {counted}");
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(msgs.last().unwrap()["role"], "assistant");
        assert!(msgs.iter().all(|m| ["system", "user", "assistant"].contains(&m["role"].as_str().unwrap())));
        for m in msgs.iter().filter(|m| m["trainable"] == true) {
            assert_eq!(m["role"], "assistant");
            *trained.entry(m["content"].as_str().unwrap().to_string()).or_default() += 1;
        }
        *per_traj.entry((s["instance_id"].as_str().unwrap().into(), s["attempt"].as_u64().unwrap())).or_default() += 1;
    }
    let turns: Vec<String> = trajs
        .iter()
        .flat_map(|t| t["messages"].as_array().unwrap().clone())
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(trained.len(), turns.len());
    assert!(turns.iter().all(|t| trained[t] == 1), "every assistant turn trained exactly once");
    assert_eq!(per_traj[&("a".into(), 0)], 1, "a short trajectory is one sample");
    assert!(per_traj[&("b".into(), 0)] > 2, "{per_traj:?}");
    // The manifest records the token statistics of the samples.
    let manifest: Value = ctx
        .objects()
        .iter()
        .map(|o| serde_json::from_str::<Value>(&std::fs::read_to_string(o.join("_manifest.json")).unwrap()).unwrap())
        .find(|m| m["kind"] == "segment")
        .unwrap();
    let stats = &manifest["stats"];
    let tokens: Vec<u64> = samples.iter().map(|s| s["tokens"].as_u64().unwrap()).collect();
    let trainable: u64 = samples.iter().map(|s| s["trainable_tokens"].as_u64().unwrap()).sum();
    assert_eq!(stats["samples"], samples.len() as u64, "{stats}");
    assert_eq!(stats["trajectories"], 4);
    assert_eq!(stats["trajectories_in"], 4);
    assert_eq!(stats["trajectories_with_samples"], 4);
    assert_eq!(stats["assistant_turns"], turns.len() as u64);
    assert_eq!(stats["trained_turns"], turns.len() as u64);
    assert_eq!(stats["untrained_turns"], json!({}));
    assert_eq!(stats["tokens"], tokens.iter().sum::<u64>());
    assert_eq!(stats["trainable_tokens"], trainable);
    assert_eq!(stats["tokens_per_sample"]["max"], *tokens.iter().max().unwrap());
    assert_eq!(stats["tokens_per_sample"]["min"], *tokens.iter().min().unwrap());
    // Some sample masks old observations and keeps the recent ones.
    assert!(samples.iter().any(|s| s["messages"].to_string().contains("<MASKED>")));

    // Subsets: one per instance, then two in all (inside the first subset).
    let r = ctx.run("wf.toml", &["--set", "stages.segment.max_per_instance=1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids = |rows: &[Value]| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = rows
            .iter()
            .map(|s| (s["instance_id"].as_str().unwrap().to_string(), s["attempt"].as_u64().unwrap()))
            .collect();
        v.dedup();
        v
    };
    let each = ids(&export(&["--set", "stages.segment.max_per_instance=1"]));
    assert_eq!(each.len(), 3, "{each:?}");
    let r = ctx
        .run("wf.toml", &["--set", "stages.segment.max_per_instance=1", "--set", "stages.segment.max_trajectories=2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let two =
        ids(&export(&["--set", "stages.segment.max_per_instance=1", "--set", "stages.segment.max_trajectories=2"]));
    assert_eq!(two.len(), 2);
    assert!(two.iter().all(|t| each.contains(t)), "a smaller subset is inside the larger one");
}

/// Input that gives nothing to train on fails the stage with the reason
/// (here a window smaller than system prompt and task), instead of
/// committing an empty table.
#[test]
fn no_sample_from_a_non_empty_input_fails_and_says_why() {
    let ctx = Ctx::new();
    let trajs = [trajectory("a", 0, 3), trajectory("b", 0, 5)];
    ctx.write("t.jsonl", &trajs.iter().map(|t| t.to_string() + "\n").collect::<String>());
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "seg"

[data.t]
path = "t.jsonl"

[stages.segment]
kind = "segment"
inputs = { trajectories = "data.t" }
window = 300
reply_reserve = 100
"#,
    );
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no training sample: 2 trajectories in, 0 samples from 0; 8 assistant turns: 0 trained, 8 not trained: no room even with every observation masked (8)"),
        "{}",
        r.stderr
    );
    assert!(ctx.objects().is_empty(), "nothing committed");
}

/// Real episodes, recorded: the agent explores an example task in a local
/// sandbox (real bash, real files, the real test suite) for 16 calls driven
/// by the scripted server, unmasked. Segmented for a small student window
/// under each policy, every trained turn's context is exactly the prompt
/// the scaffold builds at that turn (replayed through `Window::prompt`),
/// counts are the messages' own, no observation shorter than the
/// placeholder is masked, and every turn is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_episodes_train_on_the_scaffolds_own_prompts() {
    use std::sync::Arc;
    use swestar::agent::condense::{Budget, Policy, PLACEHOLDER};
    use swestar::agent::episode::{run, EpisodeSpec, Limits, Trajectory, Turn, Window};
    use swestar::agent::llm::{LlmClient, ModelConfig};
    use swestar::agent::protocol::format_call;
    use swestar::agent::sandbox::{repo_from_tree, Sandbox, TaskState};
    use swestar::agent::scripted::{Reply, ScriptedServer};
    use swestar::stages::segment::{segment, Student};

    let counter = Arc::new(match tokenizer() {
        Some(t) => TokenCounter::from_file(std::path::Path::new(&t)).unwrap(),
        None => TokenCounter::Estimate,
    });
    let commands = [
        "cat ledger/money.py",
        "cat ledger/parse.py",
        "grep -rn 'def ' ledger",
        "python -m pytest -q -p no:cacheprovider 2>&1 | tail -30",
        "echo ok",
        "cat tests/test_parse.py",
        "git log --stat | head -30",
        "true",
    ];
    let mut script: Vec<Reply> = (0..16)
        .map(|i| Reply::text(format_call("execute_bash", &[("command", commands[i % commands.len()])])))
        .collect();
    // One malformed call among them: answered with a format error.
    script[9] = Reply::text("<function=execute_bash>\n<parameter=command>ls -la".to_string());
    script.push(Reply::text(format_call("submit", &[])));
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
    let client = LlmClient::new(ModelConfig::new(server.base_url(), "teacher")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("repo");
    repo_from_tree(&std::path::Path::new(common::TASKS).join("repo"), &source).unwrap();
    let inst = &common::task_instances()[0];
    let field = |k: &str| inst[k].as_str().unwrap().to_string();
    let task = TaskState {
        instance_id: field("instance_id"),
        base_commit: field("base_commit"),
        bug_patch: field("patch"),
        image: String::new(),
    };
    let sandbox = Sandbox::local(&source, &task).unwrap();
    let spec = EpisodeSpec {
        instance_id: &task.instance_id,
        system: "You are a careful software engineer.".into(),
        task: format!("Fix the issue.\n{}", field("problem_statement")),
        limits: Limits { max_steps: 30, max_format_errors: 5, ..Limits::default() },
        budget: Budget { window: 1 << 30, reserve: 0 },
        policy: Policy::Fit,
        env: vec![("PATH".into(), common::path_with_pytest())],
        exclude: vec![],
        counter: counter.clone(),
    };
    let turns: Vec<Turn> = run(&client, &sandbox, spec).await.messages;
    let assistant_turns = turns.iter().skip(2).filter(|t| t.role == "assistant").count() as u64;
    assert_eq!(assistant_turns, 17);
    let largest = turns.iter().skip(2).map(|t| t.tokens).max().unwrap();
    let placeholder = counter.message("user", PLACEHOLDER) as u64;

    for policy in [Policy::Fit, Policy::Block { low_water: 0.7 }, Policy::Block { low_water: 0.5 }] {
        // A window the largest observation alone nearly fills.
        let budget = Budget { window: (largest as usize * 3 / 2).max(1500), reserve: 256 };
        let student = Student { budget, policy, counter: counter.clone(), train_format_errors: false };
        let out = segment(&turns, &student);
        assert!(out.samples.len() > 1, "{policy:?}: the episode needs several samples");
        assert_eq!(out.trained + out.untrained.values().sum::<u64>(), assistant_turns, "{policy:?}");
        assert_eq!(out.untrained.get(&swestar::stages::segment::Untrained::FormatError), Some(&1));

        let mut window = Window::new(budget, policy, counter.clone());
        let mut scratch = Trajectory::empty("");
        let mut history: Vec<Turn> = Vec::new();
        let mut prompts: HashMap<usize, Vec<String>> = HashMap::new();
        for (i, t) in turns.iter().enumerate() {
            if i >= 2 && t.role == "assistant" {
                if let Some((p, _)) = window.prompt(&mut history, &mut scratch) {
                    prompts.insert(i, p.into_iter().map(|m| m.content).collect());
                }
            }
            history.push(Turn { masked: false, ..t.clone() });
        }
        let mut trained = 0;
        for s in &out.samples {
            let counted: u64 = s.messages.iter().map(|m| counter.message(&m.role, &m.content) as u64).sum();
            assert_eq!(counted, s.tokens, "{policy:?}: token for token");
            assert!(s.tokens <= budget.window as u64);
            for (k, m) in s.messages.iter().enumerate() {
                if m.trainable {
                    trained += 1;
                    let context: Vec<&str> = s.messages[..k].iter().map(|m| m.content.as_str()).collect();
                    let prompt: Vec<&str> = prompts[&k].iter().map(String::as_str).collect();
                    assert_eq!(context, prompt, "{policy:?}: turn {k}");
                }
                if m.content == PLACEHOLDER {
                    assert!(turns[k].tokens > placeholder, "{policy:?}: message {k} masked though short");
                }
            }
        }
        assert_eq!(trained, out.trained);
    }
}
