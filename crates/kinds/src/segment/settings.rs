//! A `segment` stage's keys: the student's window and tokenizer, and the
//! subset of trajectories to keep.

use std::num::NonZeroU64;

use schemars::JsonSchema;
use serde::Deserialize;

use super::SegmentSpec;
use crate::api::Settings;

/// A `segment` stage: trajectories → training samples that fit the
/// student's context window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentStage {
    /// The student's context window in tokens.
    #[serde(default = "default_window")]
    pub window: u64,
    /// The student's tokenizer.json (unset: an estimate of 4 bytes per token).
    pub tokenizer: Option<String>,
    /// Keep at most this many trajectories (chosen by `seed`; unset: all).
    pub max_trajectories: Option<NonZeroU64>,
    /// Keep at most this many trajectories per instance (unset: all).
    pub max_per_instance: Option<NonZeroU64>,
    /// Seed of the subset choice.
    #[serde(default)]
    pub seed: u64,
}

crate::whole_table!(SegmentStage);

fn default_window() -> u64 {
    crate::agent::condense::DEFAULT_WINDOW as u64
}

pub(super) fn validate(w: SegmentStage, s: &mut Settings<'_>) -> SegmentSpec {
    s.needs_inputs("segment", &["trajectories"]);
    if w.window < 256 {
        s.fail(&["window"], format!("a window of {} tokens cannot hold a sample", w.window), None);
    }
    let (tokenizer, tokenizer_hash) = s.tokenizer_file(&["tokenizer"], &w.tokenizer);
    SegmentSpec {
        window: w.window,
        tokenizer,
        tokenizer_hash,
        max_trajectories: w.max_trajectories.map(NonZeroU64::get),
        max_per_instance: w.max_per_instance.map(NonZeroU64::get),
        seed: w.seed,
    }
}
