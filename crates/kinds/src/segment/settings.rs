//! A `segment` stage's keys: the student's window, reply reserve, masking
//! policy and tokenizer (the scaffold's settings the student will run
//! under), which turns to train, and the subset of trajectories to keep.

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
    /// Tokens of the window the scaffold keeps free for the student's reply.
    #[serde(default = "default_reserve")]
    pub reply_reserve: u64,
    /// The scaffold's observation masking for the student: `block` (masks
    /// down to `low_water` once full) or `fit` (just enough each turn).
    #[serde(default)]
    pub masking: Masking,
    /// Where `block` masks down to, as a fraction of the window.
    #[serde(default = "default_low_water")]
    pub low_water: f64,
    /// Train on replies that were malformed tool calls (answered with a
    /// format error); the turns around them are trained either way.
    #[serde(default)]
    pub train_format_errors: bool,
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

/// The scaffold's masking policies, as a stage names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    Fit,
    #[default]
    Block,
}

fn default_window() -> u64 {
    crate::agent::condense::DEFAULT_WINDOW as u64
}

fn default_reserve() -> u64 {
    crate::agent::condense::DEFAULT_REPLY_RESERVE as u64
}

fn default_low_water() -> f64 {
    crate::agent::condense::DEFAULT_LOW_WATER
}

pub(super) fn validate(w: SegmentStage, s: &mut Settings<'_>) -> SegmentSpec {
    s.needs_inputs("segment", &["trajectories"]);
    if w.window < 256 {
        s.fail(&["window"], format!("a window of {} tokens cannot hold a sample", w.window), None);
    }
    if w.reply_reserve >= w.window {
        s.fail(
            &["reply_reserve"],
            format!("the reply reserve ({}) must be smaller than the window ({})", w.reply_reserve, w.window),
            Some("set `reply_reserve` to the student's max_tokens"),
        );
    }
    if !(w.low_water > 0.0 && w.low_water < 1.0) {
        s.fail(&["low_water"], format!("{} must be between 0 and 1", w.low_water), None);
    }
    let policy = match w.masking {
        Masking::Fit => crate::agent::condense::Policy::Fit,
        Masking::Block => crate::agent::condense::Policy::Block { low_water: w.low_water },
    };
    let (tokenizer, tokenizer_hash) = s.tokenizer_file(&["tokenizer"], &w.tokenizer);
    SegmentSpec {
        window: w.window,
        reserve: w.reply_reserve,
        policy,
        train_format_errors: w.train_format_errors,
        tokenizer,
        tokenizer_hash,
        max_trajectories: w.max_trajectories.map(NonZeroU64::get),
        max_per_instance: w.max_per_instance.map(NonZeroU64::get),
        seed: w.seed,
    }
}
