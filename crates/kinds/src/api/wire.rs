//! The parts of a stage table every kind shares, as written: the keys all
//! stages have ([`StageCommon`], with [`Resources`]) and the sub-tables
//! several kinds take ([`WorkspaceSection`], [`TestsSection`],
//! [`LimitsSection`], [`PromptsSection`], [`ServeSection`]). A default is
//! written once, as a serde default, so the JSON Schema carries it; an
//! `Option` is left only where unset means something.

use std::num::NonZeroU32;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use swestar_vocab::duration::{Duration, DurationText};
use swestar_vocab::serve::Engine;

use crate::agent::sandbox::Isolation;
use crate::swebench::parsers::Parser;

/// Settings that decide where and how fast a stage runs, never what it
/// produces: they are left out of the cache key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Wall-clock limit, e.g. "90m", "2h 30m"; a stage past it is killed.
    pub time: Option<Duration>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    pub gpus: Option<u32>,
    /// Split the stage into this many shards, run independently (a SLURM
    /// job array); the artifact holds one part per shard.
    #[serde(default = "crate::api::count::<1>")]
    pub shards: NonZeroU32,
    /// At most this many shards at once (unset: no limit but the executor's).
    pub max_parallel: Option<NonZeroU32>,
    /// SLURM overrides of `[executor.slurm]` for this stage.
    pub account: Option<String>,
    pub partition: Option<String>,
    pub qos: Option<String>,
    pub nodes: Option<u32>,
    /// Extra `#SBATCH` options, after the executor's.
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before the stage body, after the executor's.
    #[serde(default)]
    pub setup: Vec<String>,
}

impl Default for Resources {
    fn default() -> Resources {
        toml::from_str("").expect("every resource has a default")
    }
}

/// What every stage has, whatever its kind.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageCommon {
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
    pub template: Option<String>,
}

/// The keys of [`StageCommon`]: a stage table is split on them.
pub const COMMON_KEYS: &[&str] = &["description", "inputs", "needs", "deps", "params", "env", "resources", "template"];

/// Where a stage's sandboxes come from: `sandbox`, `repo` and
/// `[container]` of the kinds that work on repository tasks.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// `local` (not isolated), `bubblewrap`, `podman` or `apptainer`.
    #[serde(default)]
    pub sandbox: Isolation,
    /// The repository on this machine: a git repository holding the
    /// instances' base commits, or a plain source tree (committed the way
    /// examples/tasks does). May use instance fields, e.g.
    /// "/mirrors/{{ repo }}". Optional with a container whose image holds
    /// the repository. Not part of the cache key: the base commit pins it.
    pub repo: Option<String>,
    /// Container settings (podman, apptainer only).
    pub container: Option<ContainerSection>,
}

impl WorkspaceSection {
    pub const KEYS: &[&str] = &["sandbox", "repo", "container"];
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSection {
    /// The image, a template over instance fields.
    #[serde(default = "default_image")]
    pub image: String,
    /// The repository's directory in the container.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Give the container network access.
    #[serde(default)]
    pub network: bool,
    /// Extra `podman run` / `apptainer instance start` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The podman or apptainer executable (unset: the sandbox's name).
    pub program: Option<String>,
}

pub fn default_image() -> String {
    "{{ image_name }}".into()
}

fn default_workdir() -> String {
    crate::agent::sandbox::ContainerSpec::new("").workdir
}

/// The per-kind defaults of a [`TestsSection`].
pub trait TestDefaults {
    fn test_cmd() -> String;
    fn timeout() -> DurationText;
}

/// How a kind runs an instance's tests: `test_cmd`, `parser`, `timeout`.
/// The defaults are the kind's (`D`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[serde(bound = "")]
pub struct TestsSection<D: TestDefaults> {
    /// The test command, a template over instance fields, `tests` and
    /// `test_files` (shell-quoted, space-separated) and `swebench_test_cmd`
    /// (the harness's command for the instance).
    #[serde(default = "D::test_cmd")]
    pub test_cmd: String,
    /// The log parser (unset: the instance's `log_parser`, else by repo).
    pub parser: Option<Parser>,
    /// Time limit of one test run.
    #[serde(default = "D::timeout")]
    pub timeout: DurationText,
    #[serde(skip)]
    #[schemars(skip)]
    _defaults: std::marker::PhantomData<D>,
}

impl<D: TestDefaults> TestsSection<D> {
    pub const KEYS: &[&str] = &["test_cmd", "parser", "timeout"];
}

/// An agent's limits per episode.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Model calls per episode.
    #[serde(default = "limits::max_steps")]
    pub max_steps: u32,
    /// Wall time per episode.
    #[serde(default = "limits::wall")]
    pub wall: DurationText,
    /// Prompt plus completion tokens per episode.
    #[serde(default = "limits::max_total_tokens")]
    pub max_total_tokens: u64,
    /// Consecutive malformed replies that end an episode.
    #[serde(default = "limits::max_format_errors")]
    pub max_format_errors: u32,
    /// Default timeout of one bash command.
    #[serde(default = "limits::command_timeout")]
    pub command_timeout: DurationText,
}

impl Default for LimitsSection {
    fn default() -> LimitsSection {
        LimitsSection {
            max_steps: limits::max_steps(),
            wall: limits::wall(),
            max_total_tokens: limits::max_total_tokens(),
            max_format_errors: limits::max_format_errors(),
            command_timeout: limits::command_timeout(),
        }
    }
}

/// The agent's own defaults, read from the agent (written once there).
mod limits {
    use super::{Duration, DurationText};
    use crate::agent::episode::Limits;

    pub fn max_steps() -> u32 {
        Limits::default().max_steps
    }
    pub fn wall() -> DurationText {
        Duration::from(Limits::default().wall).into()
    }
    pub fn max_total_tokens() -> u64 {
        Limits::default().max_total_tokens
    }
    pub fn max_format_errors() -> u32 {
        Limits::default().max_format_errors
    }
    pub fn command_timeout() -> DurationText {
        Duration::from(Limits::default().command_timeout).into()
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptsSection {
    /// The system prompt template (relative to the workflow file; unset:
    /// the built-in one).
    pub system: Option<String>,
    /// The instance prompt template (unset: the built-in one).
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
    /// Port on the node (unset: a free one, picked when the job starts).
    pub port: Option<u16>,
    /// How long the server may take to become healthy.
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout: DurationText,
    /// The Python that has the engine installed.
    #[serde(default = "default_python")]
    pub python: String,
}

fn default_startup_timeout() -> DurationText {
    DurationText::from_secs(20 * 60)
}

fn default_python() -> String {
    "python3".into()
}
