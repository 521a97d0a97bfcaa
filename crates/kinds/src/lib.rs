//! swestar's stage kinds. Each kind is one folder: `settings.rs` (the
//! stage table's keys as written, with their defaults, and their
//! validation into the kind's spec) and `mod.rs` (the spec, its part of
//! the cache key, and its execution), tied together by its [`api::Kind`]
//! impl. The list below registers every kind once; the [`StageKind`]
//! enum, the names, the schema entry and the dispatch come from it.
//!
//! Below the kinds: [`api`] (what every kind builds on) and [`support`]
//! (sandboxed workspaces, test runs and the ordered row driver that
//! several kinds share). Nothing here prints to a terminal except a
//! stage body's own progress lines on stderr, which land in its log.

pub mod api;
mod registry;
pub mod support;

pub mod command;
pub mod issue_synthesis;
pub mod rollout;
pub mod segment;
pub mod sft;
pub mod swebench_eval;
pub mod test_filter;

pub use api::{runtime, shard_file, Job, JobInput, ShardRun, StageError};
pub use support::{ordered, testrun, workspace};

use swestar_agent as agent;
use swestar_store as store;
use swestar_swebench as swebench;

registry::register! {
    Command => command::CommandSpec,
    IssueSynthesis => issue_synthesis::IssueSynthesisSpec,
    Rollout => rollout::RolloutSpec,
    TestFilter => test_filter::TestFilterSpec,
    Segment => segment::SegmentSpec,
    Sft => sft::SftSpec,
    SwebenchEval => swebench_eval::EvalSpec,
}
