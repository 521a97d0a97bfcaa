//! Wire types: the TOML as written, field for field. Every struct denies
//! unknown fields; no `flatten` or `untagged` in what is deserialized,
//! which would lose error locations. Stage tables are kept raw here and
//! split: the keys every stage has go to [`StageCommon`], the rest to the
//! struct of the stage's kind (`kind` picks it), so each kind's fields are
//! checked against that kind alone and errors still point at the key.
//! (`flatten` appears only in schema-only types.)
//! The JSON Schema (`swestar schema`) is generated from these types.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
pub use swestar_vocab::duration::Duration;

/// A swestar workflow: one experiment as a DAG of cached stages.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "swestar workflow")]
pub struct WorkflowFile {
    pub workflow: WorkflowSection,
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Model endpoints the agent stages call, by name.
    #[serde(default)]
    pub models: IndexMap<String, ModelSection>,
    /// Data sources: Parquet or JSONL files on disk, hashed by content.
    #[serde(default)]
    pub data: IndexMap<String, DataSection>,
    /// The stages, by name. `kind` picks which fields a stage takes.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, crate::stages::StageSchema>")]
    pub stages: IndexMap<String, toml::Table>,
    /// Dotted paths (`"stages.train.params.lr"`) to lists of values; the
    /// cartesian product gives the variants.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Vec<serde_json::Value>>")]
    pub sweep: IndexMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSection {
    /// Names the experiment in run records and refs.
    pub name: String,
    pub description: Option<String>,
    /// Store directory (relative paths resolve against the workflow file's
    /// directory); overridden by `--store` and `SWESTAR_STORE`.
    pub store: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// `local` (default) or `slurm`; `swestar run --executor` overrides it.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// How many shards run at once (local executor); `-j` overrides it.
    pub jobs: Option<usize>,
    /// Defaults for every SLURM job; stages override them under `resources`.
    #[serde(default)]
    pub slurm: SlurmSection,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// SLURM job defaults and the executor's own settings. None of these
/// enter a cache key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    pub account: Option<String>,
    pub partition: Option<String>,
    pub qos: Option<String>,
    /// Job time limit, e.g. "4h" (unset: the partition's).
    pub time: Option<Duration>,
    pub nodes: Option<u32>,
    pub gpus_per_node: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// Memory per node, e.g. "64G".
    pub mem: Option<String>,
    /// Extra `#SBATCH` options, e.g. ["--exclusive", "--constraint=a100"].
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before the stage body, e.g. ["module load cuda/12.4"].
    #[serde(default)]
    pub setup: Vec<String>,
    /// Array tasks of one stage at once (`--array=0-N%P`) unless the stage says otherwise.
    pub max_parallel: Option<u32>,
    /// Resubmissions of a shard lost to PREEMPTED, NODE_FAIL, BOOT_FAIL or TIMEOUT.
    #[serde(default = "two")]
    pub max_retries: u32,
    /// First wait between two polls of the run's jobs.
    #[serde(default = "poll_initial")]
    pub poll_initial: Duration,
    /// Longest wait between two polls (at least `poll_initial`).
    #[serde(default = "poll_max")]
    pub poll_max: Duration,
    /// `auto`: `sacct` where accounting works, else `squeue`.
    #[serde(default)]
    pub accounting: Accounting,
    /// The swestar binary as compute nodes see it (default: this binary).
    pub swestar: Option<String>,
}

impl Default for SlurmSection {
    fn default() -> SlurmSection {
        toml::from_str("").expect("every setting has a default")
    }
}

fn two() -> u32 {
    2
}

fn poll_initial() -> Duration {
    Duration::from_secs(5)
}

fn poll_max() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    #[default]
    Auto,
    Sacct,
    Squeue,
}

/// An OpenAI-compatible model endpoint (SGLang, vLLM, llama.cpp, OpenAI).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// e.g. "http://127.0.0.1:30000/v1"; `--set models.NAME.base_url=...` points it elsewhere.
    pub base_url: String,
    /// The model name the server expects.
    pub model: String,
    /// Environment variable holding the API key (the key itself never goes in a workflow).
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
    /// Stop words besides the tool-call protocol's `</function`.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Per request.
    #[serde(default = "request_timeout")]
    pub request_timeout: Duration,
    /// Retries of a failed request (with exponential backoff).
    #[serde(default = "model_retries")]
    pub max_retries: u32,
    /// The model's tokenizer.json, for exact token counts (else estimated).
    pub tokenizer: Option<String>,
    /// The model's context window in tokens.
    #[serde(default = "context_window")]
    pub context_window: usize,
    /// Tokens kept free for the reply.
    #[serde(default = "reply_reserve")]
    pub reply_reserve: usize,
    /// Observation masking: `block` masks down to `low_water` of the
    /// window once over budget, keeping prompt prefixes stable; `fit` masks
    /// just enough.
    #[serde(default)]
    pub masking: MaskingPolicy,
    /// For `block`: the fraction of the window to mask down to.
    #[serde(default = "low_water")]
    pub low_water: f64,
}

fn request_timeout() -> Duration {
    crate::agent::llm::ModelConfig::new("", "").timeout.into()
}

fn model_retries() -> u32 {
    crate::agent::llm::ModelConfig::new("", "").max_retries
}

fn context_window() -> usize {
    crate::agent::condense::DEFAULT_WINDOW
}

fn reply_reserve() -> usize {
    crate::agent::condense::DEFAULT_REPLY_RESERVE
}

fn low_water() -> f64 {
    crate::agent::condense::DEFAULT_LOW_WATER
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskingPolicy {
    Fit,
    #[default]
    Block,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Path of a `.parquet` or `.jsonl` file, relative to the workflow file.
    pub path: String,
    /// Defaults to the file's extension.
    pub format: Option<TableFormat>,
}

pub use crate::store::TableFormat;

pub use crate::stages::api::wire::{Resources, StageCommon, COMMON_KEYS};
