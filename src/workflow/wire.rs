//! Wire types: the TOML as written, field for field. Every struct denies
//! unknown fields; no `flatten` or `untagged`, which would lose error
//! locations. Stage tables are kept raw here and deserialized per kind
//! (the `kind` key picks the struct), so each kind's fields are checked
//! against that kind alone and errors still point at the offending key.
//! The JSON Schema (`swestar schema`) is generated from these types.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

/// A swestar workflow: one experiment as a DAG of cached stages.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "swestar workflow")]
pub struct WorkflowFile {
    pub workflow: WorkflowSection,
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Data sources: Parquet or JSONL files on disk, hashed by content.
    #[serde(default)]
    pub data: IndexMap<String, DataSection>,
    /// The stages, by name. `kind` picks which fields a stage takes.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, StageSchema>")]
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
    #[serde(default)]
    pub description: Option<String>,
    /// Store directory (relative paths resolve against the workflow file's
    /// directory); overridden by `--store` and `SWESTAR_STORE`.
    #[serde(default)]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    #[serde(default)]
    pub kind: ExecutorKind,
    /// How many stages run at once (local executor); `-j` overrides it.
    #[serde(default)]
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Path of a `.parquet` or `.jsonl` file, relative to the workflow file.
    pub path: String,
    /// Defaults to the file's extension.
    #[serde(default)]
    pub format: Option<TableFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    Parquet,
    Jsonl,
}

/// Settings that decide where and how fast a stage runs, never what it
/// produces: they are left out of the cache key.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Wall-clock limit, e.g. "90m", "2h 30m"; a stage past it is killed.
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub mem: Option<String>,
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Split the stage into this many shards, run independently (a SLURM
    /// job array); the artifact holds one part per shard.
    #[serde(default)]
    pub shards: Option<u32>,
    /// At most this many shards at once.
    #[serde(default)]
    pub max_parallel: Option<u32>,
}

/// A `command` stage: a shell command rendered with minijinja.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandStage {
    /// The command, run by bash in the workflow's directory. Sees
    /// `{{ inputs.NAME }}`, `{{ params.NAME }}` and `{{ output }}`.
    pub run: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Input name → `data.NAME` or `stages.NAME`.
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    /// Stages that must finish first although no input names them.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Files the command reads (scripts, configs): their content enters
    /// the cache key.
    #[serde(default)]
    pub deps: Vec<String>,
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub params: toml::Table,
    /// Environment variables passed to the command; their values enter the
    /// cache key (hashed). Undeclared variables do not reach it.
    #[serde(default)]
    pub env: Vec<String>,
    /// `parquet` (default): inputs are Parquet files and the command writes
    /// Parquet to `{{ output }}`. `jsonl`: inputs are handed over as JSON
    /// Lines and the command writes JSON Lines, which swestar stores as
    /// Parquet.
    #[serde(default)]
    pub format: Option<TableFormat>,
    #[serde(default)]
    pub resources: Resources,
}

/// Schema-only view of a stage table: `kind` selects the variant.
#[derive(JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)]
enum StageSchema {
    Command(CommandStage),
}
