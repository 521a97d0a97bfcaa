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
        .map(|o| serde_json::from_str::<Value>(&std::fs::read_to_string(o.join("manifest.json")).unwrap()).unwrap())
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
