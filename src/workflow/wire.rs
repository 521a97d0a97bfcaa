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
    /// `local` (default) or `slurm`; `swestar run --executor` overrides it.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// How many shards run at once (local executor); `-j` overrides it.
    #[serde(default)]
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
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    /// Job time limit, e.g. "4h".
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub nodes: Option<u32>,
    #[serde(default)]
    pub gpus_per_node: Option<u32>,
    #[serde(default)]
    pub cpus_per_task: Option<u32>,
    /// Memory per node, e.g. "64G".
    #[serde(default)]
    pub mem: Option<String>,
    /// Extra `#SBATCH` options, e.g. ["--exclusive", "--constraint=a100"].
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before the stage body, e.g. ["module load cuda/12.4"].
    #[serde(default)]
    pub setup: Vec<String>,
    /// Array tasks of one stage at once (`--array=0-N%P`) unless the stage says otherwise.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Resubmissions of a shard lost to PREEMPTED, NODE_FAIL, BOOT_FAIL or TIMEOUT.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// First and longest wait between two polls of the run's jobs.
    #[serde(default)]
    pub poll_initial: Option<String>,
    #[serde(default)]
    pub poll_max: Option<String>,
    /// `auto` (default): `sacct` where accounting works, else `squeue`.
    #[serde(default)]
    pub accounting: Option<Accounting>,
    /// The swestar binary as compute nodes see it (default: this binary).
    #[serde(default)]
    pub swestar: Option<String>,
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
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop words besides the tool-call protocol's `</function`.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Per request, e.g. "10m".
    #[serde(default)]
    pub request_timeout: Option<String>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// The model's tokenizer.json, for exact token counts (else estimated).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// The model's context window in tokens (default 32768).
    #[serde(default)]
    pub context_window: Option<usize>,
    /// Tokens kept free for the reply (default 2048).
    #[serde(default)]
    pub reply_reserve: Option<usize>,
    /// Observation masking: `block` (default) masks down to `low_water` of the
    /// window once over budget, keeping prompt prefixes stable; `fit` masks
    /// just enough.
    #[serde(default)]
    pub masking: Option<MaskingPolicy>,
    /// For `block`: the fraction of the window to mask down to (default 0.7).
    #[serde(default)]
    pub low_water: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskingPolicy {
    Fit,
    Block,
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

pub use crate::store::TableFormat;

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
    /// SLURM overrides of `[executor.slurm]` for this stage.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    #[serde(default)]
    pub nodes: Option<u32>,
    /// Extra `#SBATCH` options, after the executor's.
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before the stage body, after the executor's.
    #[serde(default)]
    pub setup: Vec<String>,
}

/// What every stage has, whatever its kind.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageCommon {
    #[serde(default)]
    pub description: Option<String>,
    /// Input name → `data.NAME` or `stages.NAME`.
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    /// Stages that must finish first although no input names them.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Files the stage reads (scripts, configs): their content enters
    /// the cache key.
    #[serde(default)]
    pub deps: Vec<String>,
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub params: toml::Table,
    /// Environment variables passed to the stage; their values enter the
    /// cache key (hashed). Undeclared variables do not reach it.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub resources: Resources,
    /// A minijinja template for the SLURM job script, instead of the
    /// built-in one (relative to the workflow file; its content enters the
    /// cache key).
    #[serde(default)]
    pub template: Option<String>,
}

/// The keys of [`StageCommon`]: a stage table is split on them.
pub const COMMON_KEYS: &[&str] = &["description", "inputs", "needs", "deps", "params", "env", "resources", "template"];

/// A `command` stage: a shell command rendered with minijinja.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandStage {
    /// The command, run by bash in the workflow's directory. Sees
    /// `{{ inputs.NAME }}`, `{{ params.NAME }}` and `{{ output }}`.
    pub run: String,
    /// `parquet` (default): inputs are Parquet files and the command writes
    /// Parquet to `{{ output }}`. `jsonl`: inputs are handed over as JSON
    /// Lines and the command writes JSON Lines, which swestar stores as
    /// Parquet.
    #[serde(default)]
    pub format: Option<TableFormat>,
    /// An inference server the job starts on its node before the command
    /// runs (and stops after); the command finds it at `{{ serve.base_url }}`.
    #[serde(default)]
    pub serve: Option<ServeSection>,
}

/// A `rollout` stage: the agent on every instance of its `instances` input,
/// `attempts` times each; one trajectory row per attempt.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutStage {
    /// The `[models.NAME]` endpoint that drives the agent.
    pub model: String,
    /// Attempts per instance (default 1).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Episodes at once in each shard's process (default 8).
    #[serde(default)]
    pub parallel: Option<u32>,
    /// `local` (default; not isolated), `bubblewrap`, `podman` or `apptainer`.
    #[serde(default)]
    pub sandbox: Option<crate::agent::sandbox::Isolation>,
    /// The repository on this machine: a git repository holding the
    /// instances' base commits, or a plain source tree (committed the way
    /// examples/tasks does). May use instance fields, e.g.
    /// "/mirrors/{{ repo }}". Optional with a container whose image holds
    /// the repository. Not part of the cache key: the base commit pins it.
    #[serde(default)]
    pub repo: Option<String>,
    /// Container settings (podman, apptainer).
    #[serde(default)]
    pub container: Option<ContainerSection>,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Prompt templates (minijinja) instead of the built-in ones.
    #[serde(default)]
    pub prompts: PromptsSection,
    /// Pathspecs left out of every patch (test files the task forbids).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// An inference server the job starts on its node for the model (the
    /// model's `base_url` is then the server's).
    #[serde(default)]
    pub serve: Option<ServeSection>,
}

/// A `test_filter` stage: every trajectory's patch tested in a fresh
/// sandbox and graded as SWE-bench does.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFilterStage {
    /// `local` (default; not isolated), `bubblewrap`, `podman` or `apptainer`.
    #[serde(default)]
    pub sandbox: Option<crate::agent::sandbox::Isolation>,
    /// The repository on this machine (as for rollout).
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub container: Option<ContainerSection>,
    /// The test command, a template over instance fields and `test_files`
    /// (default "python3 -m pytest -rA --tb=no -p no:cacheprovider {{ test_files }}").
    #[serde(default)]
    pub test_cmd: Option<String>,
    /// The log parser (default: the instance's `log_parser`, else by repo).
    #[serde(default)]
    pub parser: Option<crate::swebench::parsers::Parser>,
    /// Time limit of one test run (default "30m").
    #[serde(default)]
    pub timeout: Option<String>,
    /// `resolved` (default): only resolving trajectories flow on; `all`.
    #[serde(default)]
    pub keep: Option<crate::stages::test_filter::Keep>,
    /// Test runs at once in each shard's process (default 8).
    #[serde(default)]
    pub parallel: Option<u32>,
}

/// An `issue_synthesis` stage: problem statements written by a model from
/// each instance's bug patch, failing test output and test sources.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueSynthesisStage {
    /// The `[models.NAME]` that writes the issues (temperature 0 unless set).
    pub model: String,
    /// `local` (default; not isolated), `bubblewrap`, `podman` or `apptainer`.
    #[serde(default)]
    pub sandbox: Option<crate::agent::sandbox::Isolation>,
    /// The repository on this machine (as for rollout).
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub container: Option<ContainerSection>,
    /// The command that runs the FAIL_TO_PASS tests, a template over
    /// instance fields, `tests` and `test_files` (default
    /// "python3 -m pytest -rA --tb=short -p no:cacheprovider {{ tests }}").
    #[serde(default)]
    pub test_cmd: Option<String>,
    /// The log parser (default: the instance's `log_parser`, else by repo).
    #[serde(default)]
    pub parser: Option<crate::swebench::parsers::Parser>,
    /// Time limit of the test run (default "10m").
    #[serde(default)]
    pub timeout: Option<String>,
    /// How many demonstrations the prompt shows (default 3).
    #[serde(default)]
    pub max_demonstrations: Option<usize>,
    /// How many failing tests' source the prompt shows (default 3).
    #[serde(default)]
    pub max_tests: Option<usize>,
    /// Test output longer than this many characters keeps its head and
    /// tail (default 8000).
    #[serde(default)]
    pub max_output_chars: Option<usize>,
    /// Prompt templates instead of templates/prompts/issue_synthesis/.
    #[serde(default)]
    pub prompts: SynthesisPrompts,
    /// An inference server the job starts on its node for the model.
    #[serde(default)]
    pub serve: Option<ServeSection>,
    /// Instances at once in each shard's process (default 8).
    #[serde(default)]
    pub parallel: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesisPrompts {
    #[serde(default)]
    pub system: Option<String>,
    /// Sees `demonstrations`, a list of problem statements.
    #[serde(default)]
    pub demonstrations: Option<String>,
    /// Sees the instance's fields, `test_output` and `test_sources`.
    #[serde(default)]
    pub instance: Option<String>,
}

/// A `swebench_eval` stage: the agent on SWE-bench instances, graded as
/// the harness does.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalStage {
    /// The `[models.NAME]` endpoint of the model under evaluation.
    pub model: String,
    /// Attempt an instance again until a non-empty patch is submitted, at
    /// most this many times (default 3, OpenHands' protocol).
    #[serde(default)]
    pub attempts_until_submit: Option<u32>,
    /// Independent attempts per instance instead, for Pass@k.
    #[serde(default)]
    pub samples: Option<u32>,
    /// Instances at once in each shard's process (default 8).
    #[serde(default)]
    pub parallel: Option<u32>,
    #[serde(default)]
    pub sandbox: Option<crate::agent::sandbox::Isolation>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub container: Option<ContainerSection>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub prompts: PromptsSection,
    /// Pathspecs left out of every patch.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The test command (default "{{ swebench_test_cmd }}": the harness's
    /// command for the instance's repository and version).
    #[serde(default)]
    pub test_cmd: Option<String>,
    #[serde(default)]
    pub parser: Option<crate::swebench::parsers::Parser>,
    /// Time limit of one test run (default "30m").
    #[serde(default)]
    pub timeout: Option<String>,
    /// An inference server the job starts on its node for the model
    /// under evaluation (the model's `base_url` is then the server's).
    #[serde(default)]
    pub serve: Option<ServeSection>,
}

/// An `sft` stage: training samples → a torchtune full fine-tuning run.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftStage {
    /// The student: `{ size = "32B" }` (Qwen2.5 / Qwen2.5-Coder builders),
    /// or `{ component = "torchtune.models.…", args = { … } }`.
    pub model: SftModelSection,
    /// The base checkpoint's directory (relative to the workflow or
    /// absolute); may use `{{ size }}`, e.g. "/models/Qwen2.5-Coder-{{ size }}-Instruct".
    pub checkpoint_dir: String,
    /// A file name, a list, or `{ filename_format, max_filenames }`
    /// (default: the Hub's safetensors shards for the size).
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub checkpoint_files: Option<toml::Value>,
    /// `hf` (default, safetensors), `torchtune` (a .pt state dict), or a
    /// checkpointer component.
    #[serde(default)]
    pub checkpointer: Option<String>,
    /// torchtune's model type for the checkpointer (default "QWEN2").
    #[serde(default)]
    pub model_type: Option<String>,
    /// vocab.json and merges.txt (default: in checkpoint_dir).
    #[serde(default)]
    pub tokenizer: Option<SftTokenizerSection>,
    /// Longest sample in tokens (default 32768).
    #[serde(default)]
    pub max_seq_len: Option<u64>,
    /// Peak learning rate of the cosine schedule (default 5e-5).
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Linear warm-up steps (default 100).
    #[serde(default)]
    pub warmup_steps: Option<u64>,
    /// Default 3.
    #[serde(default)]
    pub epochs: Option<u32>,
    #[serde(default)]
    pub max_steps_per_epoch: Option<u64>,
    /// Per device (default 1).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Default 8.
    #[serde(default)]
    pub gradient_accumulation_steps: Option<u32>,
    /// Default 1.0.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// `bf16` (default) or `fp32`.
    #[serde(default)]
    pub dtype: Option<String>,
    /// `cuda` (default) or `cpu`.
    #[serde(default)]
    pub device: Option<String>,
    /// Default true.
    #[serde(default)]
    pub activation_checkpointing: Option<bool>,
    /// Default true (needs CUDA).
    #[serde(default)]
    pub activation_offloading: Option<bool>,
    /// Default false.
    #[serde(default)]
    pub fsdp_cpu_offload: Option<bool>,
    /// `local` (default), `slurm` or `none` (prepare the dataset and config only).
    #[serde(default)]
    pub launch: Option<crate::stages::sft::Launch>,
    /// Nodes of the run (default 1; with `slurm`, `resources.nodes`).
    #[serde(default)]
    pub nnodes: Option<u32>,
    /// Processes (GPUs) per node (default 1; with `slurm`, 4).
    #[serde(default)]
    pub nproc_per_node: Option<u32>,
    /// The `tune` executable (default "tune"); not in the cache key.
    #[serde(default)]
    pub tune: Option<String>,
    /// Rendezvous port on the first node (default 29500).
    #[serde(default)]
    pub rdzv_port: Option<u16>,
    /// A torchtune config template instead of templates/torchtune/full_finetune.yaml.j2.
    #[serde(default)]
    pub config_template: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftModelSection {
    /// 0.5B, 1.5B, 3B, 7B, 14B, 32B or 72B.
    #[serde(default)]
    pub size: Option<String>,
    /// A torchtune model builder instead of the size's.
    #[serde(default)]
    pub component: Option<String>,
    /// Arguments of `component`.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub args: toml::Table,
    /// How the output names the base model (default from size or component).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftTokenizerSection {
    pub vocab: String,
    pub merges: String,
}

/// A `segment` stage: trajectories → training samples that fit the
/// student's context window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentStage {
    /// The student's context window in tokens (default 32768).
    #[serde(default)]
    pub window: Option<u64>,
    /// The student's tokenizer.json (default: an estimate of 4 bytes per token).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Keep at most this many trajectories (chosen by `seed`).
    #[serde(default)]
    pub max_trajectories: Option<u64>,
    /// Keep at most this many trajectories per instance.
    #[serde(default)]
    pub max_per_instance: Option<u64>,
    /// Seed of the subset choice (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSection {
    /// The image, a template over instance fields (default "{{ image_name }}").
    #[serde(default)]
    pub image: Option<String>,
    /// The repository's directory in the container (default "/testbed").
    #[serde(default)]
    pub workdir: Option<String>,
    /// Give the container network access (default false).
    #[serde(default)]
    pub network: Option<bool>,
    /// Extra `podman run` / `apptainer instance start` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The podman or apptainer executable (default: by sandbox name).
    #[serde(default)]
    pub program: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Model calls per episode (default 100).
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Wall time per episode (default "1h").
    #[serde(default)]
    pub wall: Option<String>,
    /// Prompt plus completion tokens per episode (default 5000000).
    #[serde(default)]
    pub max_total_tokens: Option<u64>,
    /// Consecutive malformed replies that end an episode (default 3).
    #[serde(default)]
    pub max_format_errors: Option<u32>,
    /// Default timeout of one bash command (default "2m").
    #[serde(default)]
    pub command_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptsSection {
    /// The system prompt template (relative to the workflow file).
    #[serde(default)]
    pub system: Option<String>,
    /// The instance prompt template.
    #[serde(default)]
    pub instance: Option<String>,
}

/// An OpenAI-compatible inference server started for a stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    pub engine: Engine,
    /// Model path or hub id, as the engine takes it; or `stages.NAME`, an
    /// sft stage among the inputs, to serve the checkpoint it trained.
    pub model: String,
    /// Extra engine arguments (they enter the cache key: they can change outputs).
    #[serde(default)]
    pub args: Vec<String>,
    /// Port on the node (default: a free one, picked when the job starts).
    #[serde(default)]
    pub port: Option<u16>,
    /// How long the server may take to become healthy (default "20m").
    #[serde(default)]
    pub startup_timeout: Option<String>,
    /// The Python that has the engine installed (default "python3").
    #[serde(default)]
    pub python: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
pub enum Engine {
    #[serde(rename = "sglang")]
    Sglang,
    #[serde(rename = "vllm")]
    Vllm,
    /// llama.cpp through llama-cpp-python's server (`python -m llama_cpp.server`).
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
}

/// Schema-only view of a stage table: `kind` selects the variant.
#[derive(JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code, clippy::large_enum_variant)]
enum StageSchema {
    Command(CommandSchema),
    Rollout(RolloutSchema),
    TestFilter(TestFilterSchema),
    Segment(SegmentSchema),
    IssueSynthesis(IssueSynthesisSchema),
    Sft(SftSchema),
    SwebenchEval(EvalSchema),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CommandSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: CommandStage,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RolloutSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: RolloutStage,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TestFilterSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: TestFilterStage,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SegmentSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: SegmentStage,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IssueSynthesisSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: IssueSynthesisStage,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SftSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: SftStage,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct EvalSchema {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: EvalStage,
}
