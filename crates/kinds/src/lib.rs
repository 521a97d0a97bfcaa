//! swestar's stage kinds. Each kind is one folder: `settings.rs` (the
//! stage table's keys as written, with their defaults, and their
//! validation into the kind's spec) and `mod.rs` (the spec, its part of
//! the cache key, and its execution), tied together by its [`api::Kind`]
//! impl. The list below registers every kind in one line; the kind's
//! module, the [`StageKind`] enum, the names, the schema entry and the
//! dispatch come from it.
//!
//! Below the kinds: [`api`] (what every kind builds on) and [`support`]
//! (sandboxed workspaces, test runs and the row driver with its logs that
//! several kinds share). Nothing here prints to a terminal except a
//! stage body's own progress lines on stderr, which land in its log.

pub mod api;
mod registry;
pub mod support;

pub use api::{runtime, shard_file, Job, JobInput, ShardRun, StageError};
pub use support::{log, rowwise, testrun, workspace};

use swestar_agent as agent;
use swestar_store as store;
use swestar_swebench as swebench;

// One line per kind: its folder, its spec, its variant of `StageKind`.
registry::register! {
    command::CommandSpec as Command,
    issue_synthesis::IssueSynthesisSpec as IssueSynthesis,
    rollout::RolloutSpec as Rollout,
    test_filter::TestFilterSpec as TestFilter,
    segment::SegmentSpec as Segment,
    sft::SftSpec as Sft,
    swebench_eval::EvalSpec as SwebenchEval,
}
