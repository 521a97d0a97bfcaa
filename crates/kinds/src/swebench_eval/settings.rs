//! A `swebench_eval` stage's keys: the agent's (as rollout's), the
//! workspace, the attempt protocol and the tests.

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::Deserialize;
use swestar_vocab::duration::DurationText;

use super::{EvalSpec, Protocol};
use crate::api::wire::{TestDefaults, TestsSection, WorkspaceSection};
use crate::api::{FromStage, Settings, WireSource};
use crate::rollout::settings::{agent, AgentSection};

/// A `swebench_eval` stage: the agent on SWE-bench instances, graded as
/// the harness does.
#[derive(Debug, Clone, JsonSchema)]
pub struct EvalStage {
    #[serde(flatten)]
    pub agent: AgentSection,
    #[serde(flatten)]
    pub workspace: WorkspaceSection,
    #[serde(flatten)]
    pub tests: TestsSection<EvalTests>,
    #[serde(flatten)]
    pub own: EvalOwn,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalOwn {
    /// Attempt an instance again until a non-empty patch is submitted, at
    /// most this many times (unset with `samples` unset: 3, OpenHands'
    /// protocol).
    pub attempts_until_submit: Option<NonZeroU32>,
    /// Independent attempts per instance instead, for Pass@k.
    pub samples: Option<NonZeroU32>,
}

/// The tests' defaults: the harness's command for the instance, 30 minutes.
#[derive(Debug, Clone, JsonSchema)]
pub struct EvalTests;

impl TestDefaults for EvalTests {
    fn test_cmd() -> String {
        super::DEFAULT_TEST_CMD.into()
    }
    fn timeout() -> DurationText {
        DurationText::from_secs(30 * 60)
    }
}

impl FromStage for EvalStage {
    fn from_stage<S: WireSource>(s: &mut S) -> Result<Self, S::Error> {
        Ok(EvalStage {
            agent: s.take(AgentSection::KEYS)?,
            workspace: s.take(WorkspaceSection::KEYS)?,
            tests: s.take(TestsSection::<EvalTests>::KEYS)?,
            own: s.rest()?,
        })
    }
}

/// Attempts until a submission when neither protocol is set.
const UNTIL_SUBMIT: u32 = 3;

pub(super) fn validate(e: EvalStage, s: &mut Settings<'_>) -> EvalSpec {
    let agent = agent("swebench_eval", &e.agent, &e.workspace, 1, s);
    let protocol = match (e.own.attempts_until_submit, e.own.samples) {
        (Some(_), Some(_)) => {
            s.fail(&["samples"], "`samples` and `attempts_until_submit` are two protocols: set one".into(), None);
            Protocol::UntilSubmit(UNTIL_SUBMIT)
        }
        (None, Some(n)) => Protocol::Samples(n.get()),
        (Some(n), None) => Protocol::UntilSubmit(n.get()),
        (None, None) => Protocol::UntilSubmit(UNTIL_SUBMIT),
    };
    EvalSpec { agent, protocol, tests: s.tests(&e.tests) }
}
