//! An `issue_synthesis` stage's keys: the model, the workspace, the
//! failing tests' run, and what the prompt shows.

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::Deserialize;
use swestar_vocab::duration::DurationText;

use super::IssueSynthesisSpec;
use crate::agent::prompts::{SYNTHESIS_DEMONSTRATIONS, SYNTHESIS_INSTANCE, SYNTHESIS_SYSTEM};
use crate::api::wire::{ServeSection, TestDefaults, TestsSection, WorkspaceSection};
use crate::api::{FromStage, Settings, WireSource};

/// An `issue_synthesis` stage: problem statements written by a model from
/// each instance's bug patch, failing test output and test sources.
#[derive(Debug, Clone, JsonSchema)]
pub struct IssueSynthesisStage {
    #[serde(flatten)]
    pub workspace: WorkspaceSection,
    #[serde(flatten)]
    pub tests: TestsSection<SynthesisTests>,
    #[serde(flatten)]
    pub own: IssueSynthesisOwn,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueSynthesisOwn {
    /// The `[models.NAME]` that writes the issues (temperature 0 unless set).
    pub model: String,
    /// How many demonstrations the prompt shows.
    #[serde(default = "three")]
    pub max_demonstrations: usize,
    /// How many failing tests' source the prompt shows.
    #[serde(default = "three")]
    pub max_tests: usize,
    /// Test output longer than this many characters keeps its head and tail.
    #[serde(default = "default_max_output_chars")]
    pub max_output_chars: usize,
    /// Prompt templates instead of templates/prompts/issue_synthesis/.
    #[serde(default)]
    pub prompts: SynthesisPrompts,
    /// An inference server the job starts on its node for the model.
    pub serve: Option<ServeSection>,
    /// Instances at once in each shard's process.
    #[serde(default = "crate::api::count::<8>")]
    pub parallel: NonZeroU32,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesisPrompts {
    pub system: Option<String>,
    /// Sees `demonstrations`, a list of problem statements.
    pub demonstrations: Option<String>,
    /// Sees the instance's fields, `test_output` and `test_sources`.
    pub instance: Option<String>,
}

/// The tests' defaults: the FAIL_TO_PASS tests by id with short
/// tracebacks, 10 minutes.
#[derive(Debug, Clone, JsonSchema)]
pub struct SynthesisTests;

impl TestDefaults for SynthesisTests {
    fn test_cmd() -> String {
        super::DEFAULT_TEST_CMD.into()
    }
    fn timeout() -> DurationText {
        DurationText::from_secs(10 * 60)
    }
}

fn three() -> usize {
    3
}

fn default_max_output_chars() -> usize {
    8000
}

impl FromStage for IssueSynthesisStage {
    fn from_stage<S: WireSource>(s: &mut S) -> Result<Self, S::Error> {
        Ok(IssueSynthesisStage {
            workspace: s.take(WorkspaceSection::KEYS)?,
            tests: s.take(TestsSection::<SynthesisTests>::KEYS)?,
            own: s.rest()?,
        })
    }
}

pub(super) fn validate(w: IssueSynthesisStage, s: &mut Settings<'_>) -> IssueSynthesisSpec {
    let o = &w.own;
    let model = s.model_ref(&o.model);
    s.needs_inputs("issue_synthesis", &["instances"]);
    let workspace = s.workspace(&w.workspace);
    let tests = s.tests(&w.tests);
    let p = &o.prompts;
    let system_prompt = s.prompt(&["prompts", "system"], &p.system, SYNTHESIS_SYSTEM);
    let demonstrations_prompt = s.prompt(&["prompts", "demonstrations"], &p.demonstrations, SYNTHESIS_DEMONSTRATIONS);
    let instance_prompt = s.prompt(&["prompts", "instance"], &p.instance, SYNTHESIS_INSTANCE);
    IssueSynthesisSpec {
        model,
        workspace,
        tests,
        system_prompt,
        demonstrations_prompt,
        instance_prompt,
        max_demonstrations: o.max_demonstrations,
        max_tests: o.max_tests,
        max_output_chars: o.max_output_chars,
        parallel: o.parallel.get(),
        serve: o.serve.as_ref().map(|sv| s.serve(sv)),
    }
}
