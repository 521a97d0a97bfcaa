//! A `test_filter` stage's keys: the workspace, the tests, what to keep.

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::Deserialize;
use swestar_vocab::duration::DurationText;

use super::{Keep, TestFilterSpec};
use crate::api::wire::{TestDefaults, TestsSection, WorkspaceSection};
use crate::api::{FromStage, Settings, WireSource};

/// A `test_filter` stage: every trajectory's patch tested in a fresh
/// sandbox and graded as SWE-bench does.
#[derive(Debug, Clone, JsonSchema)]
pub struct TestFilterStage {
    #[serde(flatten)]
    pub workspace: WorkspaceSection,
    #[serde(flatten)]
    pub tests: TestsSection<FilterTests>,
    #[serde(flatten)]
    pub own: TestFilterOwn,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFilterOwn {
    /// `resolved`: only resolving trajectories flow on; `all`: every
    /// trajectory, with its verdict.
    #[serde(default)]
    pub keep: Keep,
    /// Test runs at once in each shard's process.
    #[serde(default = "crate::api::count::<8>")]
    pub parallel: NonZeroU32,
}

/// The tests' defaults: pytest over the instance's test files, 30 minutes.
#[derive(Debug, Clone, JsonSchema)]
pub struct FilterTests;

impl TestDefaults for FilterTests {
    fn test_cmd() -> String {
        crate::testrun::DEFAULT_TEST_CMD.into()
    }
    fn timeout() -> DurationText {
        DurationText::from_secs(30 * 60)
    }
}

impl FromStage for TestFilterStage {
    fn from_stage<S: WireSource>(s: &mut S) -> Result<Self, S::Error> {
        Ok(TestFilterStage {
            workspace: s.take(WorkspaceSection::KEYS)?,
            tests: s.take(TestsSection::<FilterTests>::KEYS)?,
            own: s.rest()?,
        })
    }
}

pub(super) fn validate(w: TestFilterStage, s: &mut Settings<'_>) -> TestFilterSpec {
    s.needs_inputs("test_filter", &["trajectories", "instances"]);
    let workspace = s.workspace(&w.workspace);
    TestFilterSpec { workspace, tests: s.tests(&w.tests), keep: w.own.keep, parallel: w.own.parallel.get() }
}
