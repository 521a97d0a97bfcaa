//! Inference servers a stage's job starts on its node: which engine, which
//! model, and the command line that starts it. The engine names are the
//! ones a workflow writes (`engine = "sglang"`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shell::shell_quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
pub enum Engine {
    #[serde(rename = "sglang")]
    Sglang,
    #[serde(rename = "vllm")]
    Vllm,
    /// llama.cpp through llama-cpp-python's server (`python -m llama_cpp.server`).
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
}

/// A validated `[serve]` section: the server a job starts before its body
/// runs and stops after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Serve {
    pub engine: Engine,
    /// As the workflow names it (this enters the key)...
    pub model: String,
    /// ...and as the engine is given it (relative paths made absolute).
    pub model_path: String,
    pub args: Vec<String>,
    pub port: Option<u16>,
    pub startup_timeout_s: u64,
    pub python: String,
}

impl Serve {
    /// The command that starts the server (listening on `$port`) and the
    /// path that answers once it is ready.
    pub fn launch_command(&self) -> (String, &'static str) {
        let py = shell_quote(&self.python);
        let model = shell_quote(&self.model_path);
        let args: String = self.args.iter().map(|a| format!(" {}", shell_quote(a))).collect();
        match self.engine {
            Engine::Sglang => (
                format!("{py} -m sglang.launch_server --model-path {model} --host 127.0.0.1 --port \"$port\"{args}"),
                "/health",
            ),
            Engine::Vllm => (
                format!(
                    "{py} -m vllm.entrypoints.openai.api_server --model {model} --host 127.0.0.1 --port \"$port\"{args}"
                ),
                "/health",
            ),
            Engine::LlamaCpp => (
                format!("{py} -m llama_cpp.server --model {model} --host 127.0.0.1 --port \"$port\"{args}"),
                "/v1/models",
            ),
        }
    }
}
