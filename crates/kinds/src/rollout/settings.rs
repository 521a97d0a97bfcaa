//! A `rollout` stage's keys: the agent's settings (shared with
//! `swebench_eval` as [`AgentSection`]), the workspace, and `attempts`.

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{RolloutLimits, RolloutSpec};
use crate::api::wire::{LimitsSection, PromptsSection, ServeSection, WorkspaceSection};
use crate::api::{FromStage, Settings, WireSource};

/// A `rollout` stage: the agent on every instance of its `instances` input,
/// `attempts` times each; one trajectory row per attempt.
#[derive(Debug, Clone, JsonSchema)]
pub struct RolloutStage {
    #[serde(flatten)]
    pub agent: AgentSection,
    #[serde(flatten)]
    pub workspace: WorkspaceSection,
    #[serde(flatten)]
    pub own: RolloutOwn,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutOwn {
    /// Attempts per instance.
    #[serde(default = "crate::api::count::<1>")]
    pub attempts: NonZeroU32,
}

impl FromStage for RolloutStage {
    fn from_stage<S: WireSource>(s: &mut S) -> Result<Self, S::Error> {
        Ok(RolloutStage {
            agent: s.take(AgentSection::KEYS)?,
            workspace: s.take(WorkspaceSection::KEYS)?,
            own: s.rest()?,
        })
    }
}

/// The agent's settings, as `rollout` and `swebench_eval` take them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The `[models.NAME]` endpoint that drives the agent.
    pub model: String,
    /// Episodes at once in each shard's process.
    #[serde(default = "crate::api::count::<8>")]
    pub parallel: NonZeroU32,
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
    pub serve: Option<ServeSection>,
}

impl AgentSection {
    pub const KEYS: &[&str] = &["model", "parallel", "limits", "prompts", "exclude", "serve"];
}

pub(super) fn validate(w: RolloutStage, s: &mut Settings<'_>) -> RolloutSpec {
    agent("rollout", &w.agent, &w.workspace, w.own.attempts.get(), s)
}

/// The agent's spec, as `rollout` and `swebench_eval` run it; the prompt
/// templates and the model's tokenizer become dependencies.
pub(crate) fn agent(
    kind: &str,
    a: &AgentSection,
    workspace: &WorkspaceSection,
    attempts: u32,
    s: &mut Settings<'_>,
) -> RolloutSpec {
    let model = s.model_ref(&a.model);
    s.needs_inputs(kind, &["instances"]);
    let workspace = s.workspace(workspace);
    let l = &a.limits;
    let limits = RolloutLimits {
        max_steps: l.max_steps,
        wall_s: s.duration(&["limits", "wall"], &l.wall).secs(),
        max_total_tokens: l.max_total_tokens,
        max_format_errors: l.max_format_errors,
        command_timeout_s: s.duration(&["limits", "command_timeout"], &l.command_timeout).secs(),
    };
    let system_prompt = s.prompt(&["prompts", "system"], &a.prompts.system, crate::agent::prompts::SYSTEM);
    let instance_prompt = s.prompt(&["prompts", "instance"], &a.prompts.instance, crate::agent::prompts::INSTANCE);
    let serve = a.serve.as_ref().map(|sv| s.serve(sv));
    RolloutSpec {
        model,
        serve,
        attempts,
        parallel: a.parallel.get(),
        workspace,
        limits,
        system_prompt,
        instance_prompt,
        exclude: a.exclude.clone(),
    }
}
