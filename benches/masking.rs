//! Observation masking, `fit` against `block`, on the same recorded
//! trajectories: for each context window, the prompt tokens sent and the
//! tokens a perfect prefix cache would have to recompute (prefill work the
//! inference server cannot reuse), plus observations masked; then what the
//! segment stage makes of the same trajectories for a student with that
//! window under each policy (samples that are exactly the scaffold's
//! prompts): samples, their tokens, trainable tokens, turns trained.
//!
//! The trajectories are recorded first: real episodes on every example task
//! (examples/tasks) in the local sandbox, driven by the scripted server with
//! commands a teacher runs while exploring (cat, grep, pytest -v, git log),
//! 40 model calls each, all counted with the Qwen tokenizer when
//! SWESTAR_TEST_TOKENIZER (or .cache/tokenizers/qwen3/tokenizer.json)
//! exists. With SWESTAR_BENCH_TRAJECTORIES naming a trajectories Parquet
//! file (`swestar export WF rollout --to FILE.parquet`), those are replayed
//! instead.
//!
//! `cargo bench --bench masking`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swestar::agent::condense::{Budget, Policy};
use swestar::agent::episode::{replay, run, EpisodeSpec, Limits, Replay, Turn};
use swestar::agent::llm::{LlmClient, ModelConfig};
use swestar::agent::sandbox::{repo_from_tree, Sandbox, TaskState};
use swestar::agent::scripted::{Reply, ScriptedServer};
use swestar::agent::tokens::TokenCounter;
use swestar::stages::segment::{segment, Student};

const TASKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks");

fn call(command: &str) -> Reply {
    Reply::text(format!(
        "Let me look further.\n<function=execute_bash>\n<parameter=command>{command}</parameter>\n</function>"
    ))
}

/// 40 exploring calls, then submit.
fn script() -> Vec<Reply> {
    let commands = [
        "cat ledger/money.py",
        "cat ledger/parse.py",
        "cat ledger/report.py",
        "python -m pytest -v -p no:cacheprovider 2>&1 | tail -40",
        "grep -rn 'def ' ledger tests",
        "cat tests/test_money.py",
        "cat tests/test_parse.py",
        "cat tests/test_report.py",
        "git log --stat | head -40",
        "python -m pytest -q -p no:cacheprovider 2>&1 | tail -15",
    ];
    let mut s: Vec<Reply> = (0..40).map(|i| call(commands[i % commands.len()])).collect();
    s.push(Reply::text("<function=submit>\n</function>"));
    s
}

fn counter() -> TokenCounter {
    let path = std::env::var("SWESTAR_TEST_TOKENIZER")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/tokenizers/qwen3/tokenizer.json").into());
    if Path::new(&path).is_file() {
        TokenCounter::from_file(Path::new(&path)).expect("tokenizer")
    } else {
        eprintln!("no tokenizer.json: estimating tokens");
        TokenCounter::Estimate
    }
}

async fn record(counter: Arc<TokenCounter>) -> Vec<Vec<Turn>> {
    let instances: Vec<serde_json::Value> = std::fs::read_to_string(format!("{TASKS}/instances.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ledger");
    repo_from_tree(&Path::new(TASKS).join("repo"), &source).unwrap();
    let server = ScriptedServer::start(HashMap::from([("*".to_string(), script())])).await.unwrap();
    let client = Arc::new(LlmClient::new(ModelConfig::new(server.base_url(), "bench")).unwrap());
    let python = std::env::var("SWESTAR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let bin = Path::new(&python).parent().map(Path::to_path_buf).unwrap_or_default();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut handles = Vec::new();
    for inst in instances {
        let field = |k: &str| inst[k].as_str().unwrap().to_string();
        let task = TaskState {
            instance_id: field("instance_id"),
            base_commit: field("base_commit"),
            bug_patch: field("patch"),
            image: String::new(),
        };
        let problem = field("problem_statement");
        let sandbox = Sandbox::local(&source, &task).unwrap();
        let (client, counter, path) = (client.clone(), counter.clone(), path.clone());
        handles.push(tokio::spawn(async move {
            let spec = EpisodeSpec {
                instance_id: &task.instance_id,
                system: "You are a careful software engineer.".into(),
                task: format!("Fix the issue.\n{problem}"),
                limits: Limits { max_steps: 50, ..Limits::default() },
                // Recorded without masking: the policies are applied on replay.
                budget: Budget { window: 1 << 30, reserve: 0 },
                policy: Policy::Fit,
                env: vec![("PATH".into(), path)],
                exclude: vec![],
                counter,
            };
            run(&client, &sandbox, spec).await.messages
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn load(path: &Path) -> Vec<Vec<Turn>> {
    let (_, batches) = swestar::store::table::read_parquet(&[path], None).expect("trajectories");
    swestar::store::table::batches_to_json_rows(&batches)
        .unwrap()
        .into_iter()
        .map(|row| serde_json::from_value(row["messages"].clone()).expect("messages"))
        .collect()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counter = Arc::new(counter());
    let trajectories = match std::env::var_os("SWESTAR_BENCH_TRAJECTORIES") {
        Some(p) => load(&PathBuf::from(p)),
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(record(counter.clone()))
        }
    };
    let tokens: u64 = trajectories.iter().flatten().map(|m| m.tokens).sum();
    println!(
        "{} trajectories, {} messages, {} tokens in all (largest {})",
        trajectories.len(),
        trajectories.iter().map(Vec::len).sum::<usize>(),
        tokens,
        trajectories.iter().map(|t| t.iter().map(|m| m.tokens).sum::<u64>()).max().unwrap_or(0)
    );
    println!(
        "{:>7} {:<11} {:>6} {:>14} {:>14} {:>8} {:>7} {:>9}",
        "window", "policy", "calls", "prompt_tokens", "recompute", "recomp%", "masked", "exhausted"
    );
    for window in [8192usize, 16384, 32768] {
        let budget = Budget { window, reserve: 1024 };
        for policy in [Policy::Fit, Policy::Block { low_water: 0.7 }, Policy::Block { low_water: 0.5 }] {
            let mut sum = Replay::default();
            let mut exhausted = 0;
            for t in &trajectories {
                let r = replay(t, budget, policy, counter.clone());
                sum.calls += r.calls;
                sum.prompt_tokens += r.prompt_tokens;
                sum.recompute_tokens += r.recompute_tokens;
                sum.masked += r.masked;
                exhausted += usize::from(r.exhausted);
            }
            let name = match policy {
                Policy::Fit => "fit".to_string(),
                Policy::Block { low_water } => format!("block@{low_water}"),
            };
            println!(
                "{:>7} {:<11} {:>6} {:>14} {:>14} {:>7.1}% {:>7} {:>9}",
                window,
                name,
                sum.calls,
                sum.prompt_tokens,
                sum.recompute_tokens,
                100.0 * sum.recompute_tokens as f64 / sum.prompt_tokens.max(1) as f64,
                sum.masked,
                exhausted
            );
        }
    }
    println!();
    println!(
        "segment: {:>7} {:<11} {:>8} {:>14} {:>14} {:>8} {:>10}",
        "window", "policy", "samples", "tokens", "trainable", "trained", "untrained"
    );
    for window in [8192usize, 16384, 32768] {
        for policy in [Policy::Fit, Policy::Block { low_water: 0.7 }, Policy::Block { low_water: 0.5 }] {
            let student = Student {
                budget: Budget { window, reserve: 1024 },
                policy,
                counter: counter.clone(),
                train_format_errors: false,
            };
            let (mut samples, mut tokens, mut trainable, mut trained, mut untrained) = (0, 0, 0, 0, 0);
            for t in &trajectories {
                let out = segment(t, &student);
                samples += out.samples.len();
                tokens += out.samples.iter().map(|s| s.tokens).sum::<u64>();
                trainable += out.samples.iter().map(|s| s.trainable_tokens).sum::<u64>();
                trained += out.trained;
                untrained += out.untrained.values().sum::<u64>();
            }
            let name = match policy {
                Policy::Fit => "fit".to_string(),
                Policy::Block { low_water } => format!("block@{low_water}"),
            };
            println!(
                "segment: {window:>7} {name:<11} {samples:>8} {tokens:>14} {trainable:>14} {trained:>8} {untrained:>10}"
            );
        }
    }
}
