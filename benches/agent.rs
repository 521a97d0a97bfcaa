//! Agent scaffold benchmark: CPU seconds per agent turn and turns per
//! second for 1, 40 and 200 concurrent episodes in one process, against the
//! scripted server answering instantly, so the figures are the scaffold's
//! own cost (prompt building, parsing, masking, the shell round trip).
//! Each episode runs 20 turns of `execute_bash` (a real command in its own
//! bash session), then submits. With SWESTAR_BENCH_MINI_PYTHON naming a
//! Python that has the pip package mini-swe-agent, the same episodes run in
//! mini-swe-agent (benches/mini_driver.py) against the same kind of server,
//! side by side.
//!
//! `cargo bench --bench agent` (SWESTAR_BENCH_TURNS sets turns per episode).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swestar::agent::condense::{Budget, Policy};
use swestar::agent::episode::{run, EpisodeSpec, ExitReason, Limits};
use swestar::agent::llm::{LlmClient, ModelConfig};
use swestar::agent::sandbox::{git, Sandbox, TaskState};
use swestar::agent::scripted::{Reply, ScriptedServer};
use swestar::agent::tokens::TokenCounter;

fn cpu_seconds() -> f64 {
    let usage = |who| {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

use swestar::agent::protocol::format_call as call;

async fn measure(
    episodes: usize,
    turns: usize,
    source: &Path,
    task: &TaskState,
    server: &ScriptedServer,
) -> serde_json::Value {
    let client = Arc::new(LlmClient::new(ModelConfig::new(server.base_url(), "bench")).unwrap());
    let sandboxes: Vec<Sandbox> = (0..episodes).map(|_| Sandbox::local(source, task).unwrap()).collect();
    let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap_or_default())];
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut handles = Vec::new();
    for (i, sandbox) in sandboxes.into_iter().enumerate() {
        let (client, env) = (client.clone(), env.clone());
        handles.push(tokio::spawn(async move {
            let spec = EpisodeSpec {
                instance_id: "bench",
                system: "You fix bugs.".into(),
                task: format!("episode {i}"),
                limits: Limits {
                    max_steps: turns as u32 + 5,
                    command_timeout: Duration::from_secs(60),
                    ..Limits::default()
                },
                budget: Budget { window: 32768, reserve: 2048 },
                policy: Policy::default(),
                env,
                exclude: vec![],
                counter: Arc::new(TokenCounter::Estimate),
            };
            run(&client, &sandbox, spec).await
        }));
    }
    let mut total_turns = 0;
    for h in handles {
        let t = h.await.unwrap();
        assert_eq!(t.exit_reason, ExitReason::Submitted, "{:?}", t.error);
        total_turns += t.steps as usize;
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    serde_json::json!({
        "episodes": episodes,
        "turns": total_turns,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_turn": cpu * 1e3 / total_turns as f64,
        "turns_per_s": total_turns as f64 / wall,
    })
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let turns: usize = std::env::var("SWESTAR_BENCH_TURNS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("app.py"), "def f():\n    return 1\n").unwrap();
        git(&source, &["init", "-q", "-b", "main"], None).unwrap();
        git(&source, &["add", "-A"], None).unwrap();
        git(&source, &["commit", "-q", "-m", "base"], None).unwrap();
        let base = git(&source, &["rev-parse", "HEAD"], None).unwrap().trim().to_string();
        let task = TaskState {
            instance_id: "bench".into(),
            base_commit: base,
            bug_patch: String::new(),
            image: String::new(),
        };
        let mut script: Vec<Reply> = (0..turns)
            .map(|_| {
                Reply::text(format!("Checking.\n{}", call("execute_bash", &[("command", "grep -n return app.py")])))
            })
            .collect();
        script.push(Reply::text(call("submit", &[])));
        let server = ScriptedServer::start(HashMap::from([("*".to_string(), script)])).await.unwrap();
        // The same turns in mini-swe-agent's format.
        let mut mini: Vec<Reply> = (0..turns)
            .map(|_| Reply::text("THOUGHT: Checking.\n\n```mswea_bash_command\ngrep -n return app.py\n```"))
            .collect();
        mini.push(Reply::text(
            "THOUGHT: Done.\n\n```mswea_bash_command\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
        ));
        let mini_server = ScriptedServer::start(HashMap::from([("*".to_string(), mini)])).await.unwrap();
        let mini_python = std::env::var("SWESTAR_BENCH_MINI_PYTHON").ok();
        let mut results = Vec::new();
        for episodes in [1, 40, 200] {
            let mut r = measure(episodes, turns, &source, &task, &server).await;
            r["scaffold"] = "swestar".into();
            println!("{}", serde_json::to_string(&r).unwrap());
            results.push(r);
            if let Some(python) = &mini_python {
                let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/mini_driver.py");
                let out = tokio::process::Command::new(python)
                    .args([driver, &mini_server.base_url(), &source.to_string_lossy(), &episodes.to_string()])
                    .env("MSWEA_SILENT_STARTUP", "1")
                    .output()
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                match text.lines().last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
                    Some(mut m) => {
                        m["scaffold"] = "mini-swe-agent".into();
                        println!("{}", serde_json::to_string(&m).unwrap());
                        results.push(m);
                    }
                    None => eprintln!("mini-swe-agent run failed: {text}{}", String::from_utf8_lossy(&out.stderr)),
                }
            }
        }
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let _ = std::fs::write(target.join("bench-agent.json"), serde_json::to_vec_pretty(&results).unwrap());
    });
}
