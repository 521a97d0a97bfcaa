//! The validated model a kind's settings refer to: model endpoints
//! ([`Model`], and [`StageModel`] as a stage uses one), prompt templates
//! ([`PromptSource`]) and files a stage reads ([`Dep`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use swestar_vocab::serve::Serve;

use super::StageError;
use crate::agent::condense::{Budget, Policy};
use crate::agent::llm::ModelConfig;

/// A validated `[models.NAME]`.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    /// The client settings (the API key is read when a stage runs).
    pub config: ModelConfig,
    pub api_key_env: Option<String>,
    /// The tokenizer as written (relative to the workflow) and resolved.
    pub tokenizer_rel: Option<String>,
    pub tokenizer: Option<PathBuf>,
    pub budget: Budget,
    pub policy: Policy,
}

/// A file a stage reads by path (scripts, templates).
#[derive(Debug, Clone)]
pub struct Dep {
    /// Relative to the workflow directory, with `/` separators: this is
    /// what enters the cache key, never the absolute path.
    pub rel: String,
    pub path: PathBuf,
}

/// A model endpoint as an agent stage uses it: `model = "NAME"` resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageModel {
    /// The `[models.NAME]` it comes from (for messages only).
    pub name: String,
    pub config: ModelConfig,
    pub api_key_env: Option<String>,
    pub tokenizer: Option<PathBuf>,
    /// Content hash of a tokenizer outside the workflow's directory (one
    /// inside it is a dependency of the stage instead).
    pub tokenizer_hash: Option<String>,
    pub budget: Budget,
    pub policy: Policy,
}

/// A prompt template: the built-in one, or a file next to the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSource {
    /// As the workflow names it, or the built-in template's name.
    pub name: String,
    /// `None`: built in.
    pub path: Option<PathBuf>,
}

impl StageModel {
    /// Fails when the endpoint does not answer (see `LlmClient::probe`),
    /// naming the model and the cause.
    pub async fn reach(&self, client: &crate::agent::llm::LlmClient) -> Result<(), StageError> {
        client
            .probe(crate::agent::llm::PROBE_DEADLINE)
            .await
            .map_err(|e| StageError::Failed(format!("cannot reach model `{}`: {e}", self.name)))
    }

    /// The client's settings at run time: the job's own server when the
    /// stage serves the model, the API key from its variable.
    pub fn runtime_config(&self, served: bool) -> Result<ModelConfig, StageError> {
        let mut config = self.config.clone();
        if served {
            // The job script started the server and says where it listens.
            config.base_url = std::env::var("SWESTAR_SERVE_URL").ok().filter(|u| !u.is_empty()).ok_or_else(|| {
                StageError::Failed("the model is served by the stage's job, but SWESTAR_SERVE_URL is not set".into())
            })?;
        }
        if let Some(var) = &self.api_key_env {
            config.api_key = Some(std::env::var(var).map_err(|_| {
                StageError::Failed(format!("model `{}`: the API key variable {var} is not set", self.name))
            })?);
        }
        Ok(config)
    }

    /// What of the model enters a cache key: the served name and sampling
    /// (not where it is reached, nor how patiently).
    pub fn sampling_key(&self) -> Value {
        let c = &self.config;
        json!({
            "model": c.model,
            "temperature": c.temperature,
            "top_p": c.top_p,
            "max_tokens": c.max_tokens,
            "seed": c.seed,
            "stop": c.stop,
        })
    }
}

/// What of a served model enters a cache key: engine, model, arguments.
pub fn serve_key(serve: &Option<Serve>) -> Value {
    json!(serve.as_ref().map(|s| json!({"engine": s.engine, "model": s.model, "args": s.args})))
}

impl PromptSource {
    /// What enters a cache key: a file by name (its content is a
    /// dependency), a built-in template by its hash.
    pub fn key(&self, builtin: (&str, &str)) -> Value {
        match &self.path {
            Some(_) => json!({"file": self.name}),
            None => json!({"builtin": blake3::hash(builtin.1.as_bytes()).to_hex().to_string()}),
        }
    }

    pub fn load(&self, builtin: (&'static str, &'static str)) -> Result<String, StageError> {
        match &self.path {
            None => Ok(builtin.1.to_string()),
            Some(p) => std::fs::read_to_string(p).map_err(|source| StageError::Io { path: p.clone(), source }),
        }
    }
}
