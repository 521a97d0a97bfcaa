//! The `segment` kind: kept trajectories → training samples for a student
//! with a fixed context window.
//!
//! A trajectory becomes chat messages in the training format (system,
//! task, assistant turns with their XML function calls, tool results as
//! user messages). One that fits the window (counted with the student's
//! tokenizer, ChatML framing included) is one sample. A longer one is cut
//! into samples that each end at an assistant turn and hold what the agent
//! would have seen there under observation masking: the system prompt,
//! the task, every assistant turn so far, the observations since the
//! previous sample's last trained turn, and as many older observations,
//! newest first, as still fit; the rest are the masking placeholder. Only
//! the assistant turns no earlier sample trained on are trainable, so
//! every turn is trained exactly once. A turn that cannot fit even with
//! every observation masked is not trained on (counted in the log).
//!
//! `max_trajectories` (with `seed`) and `max_per_instance` pick a subset
//! for scaling ablations: each trajectory gets a rank from a hash of the
//! seed, its instance and attempt; an instance keeps its lowest-ranked
//! `max_per_instance`, and of those the lowest-ranked `max_trajectories`
//! stay, so a smaller subset is always inside a larger one.

mod settings;
pub use settings::SegmentStage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::condense::PLACEHOLDER;
use crate::agent::tokens::TokenCounter;
use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::store::rows::{self, RowWriter};
use crate::store::shard::shard_range;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSpec {
    /// The student's context window, in tokens.
    pub window: u64,
    /// The student's tokenizer.json (`None`: an estimate of 4 bytes per
    /// token).
    pub tokenizer: Option<PathBuf>,
    /// Content hash of a tokenizer outside the workflow's directory.
    pub tokenizer_hash: Option<String>,
    pub max_trajectories: Option<u64>,
    pub max_per_instance: Option<u64>,
    pub seed: u64,
}

/// One message of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMessage {
    pub role: String,
    pub content: String,
    pub trainable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub messages: Vec<SampleMessage>,
    pub tokens: u64,
    pub trainable_tokens: u64,
}

/// A trajectory's message, with its token count in the student's framing.
#[derive(Debug, Clone)]
pub struct Turn {
    pub role: String,
    pub content: String,
    pub tokens: u64,
}

impl Turn {
    fn is_assistant(&self) -> bool {
        self.role == "assistant"
    }
}

/// Cuts one trajectory (system, task, then turns) into samples; also
/// returns how many assistant turns could not be trained on.
pub fn segment(turns: &[Turn], window: u64, placeholder: u64) -> (Vec<Sample>, usize) {
    if turns.len() < 3 {
        return (Vec::new(), 0);
    }
    let assistants: Vec<usize> = (2..turns.len()).filter(|&i| turns[i].is_assistant()).collect();
    let Some(&last) = assistants.last() else { return (Vec::new(), 0) };
    let masked_cost = |i: usize| if turns[i].is_assistant() { turns[i].tokens } else { placeholder };
    // Everything up to the last assistant turn, unmasked: one sample.
    let whole: u64 = turns[..=last].iter().map(|t| t.tokens).sum();
    if whole <= window {
        let sample = build(turns, last, &vec![false; last + 1], 1, placeholder);
        return (vec![sample], 0);
    }
    let head = turns[0].tokens + turns[1].tokens;
    let mut samples = Vec::new();
    let mut dropped = 0;
    // Index of the last assistant turn already trained on (1: none yet).
    let mut trained = 1usize;
    let mut pos = 0usize;
    while pos < assistants.len() {
        // Fully masked size up to each candidate end; the fresh
        // observations (after `trained`) unmasked.
        let cost = |end: usize, fresh_full: bool| -> u64 {
            let body: u64 = (2..=end)
                .map(|i| {
                    if !turns[i].is_assistant() && fresh_full && i > trained {
                        turns[i].tokens
                    } else {
                        masked_cost(i)
                    }
                })
                .sum();
            head + body
        };
        let mut end = None;
        for &k in &assistants[pos..] {
            if cost(k, true) <= window {
                end = Some((k, true));
            } else {
                break;
            }
        }
        if end.is_none() && cost(assistants[pos], false) <= window {
            end = Some((assistants[pos], false));
        }
        let Some((k, fresh_full)) = end else {
            // Even fully masked the next turn does not fit: neither will
            // any later one.
            dropped += assistants.len() - pos;
            break;
        };
        let mut masked: Vec<bool> = (0..=k).map(|i| i >= 2 && !turns[i].is_assistant()).collect();
        let mut budget = window - cost(k, fresh_full);
        if fresh_full {
            for (i, m) in masked.iter_mut().enumerate().take(k + 1).skip(trained + 1) {
                if !turns[i].is_assistant() {
                    *m = false;
                }
            }
        }
        // Older (or, if fresh ones did not fit, any) observations, newest
        // first, while they fit.
        let limit = if fresh_full { trained } else { k };
        for i in (2..limit).rev() {
            if turns[i].is_assistant() || !masked[i] {
                continue;
            }
            let extra = turns[i].tokens.saturating_sub(placeholder);
            if extra > budget {
                break;
            }
            budget -= extra;
            masked[i] = false;
        }
        samples.push(build(turns, k, &masked, trained + 1, placeholder));
        trained = k;
        pos = assistants.iter().position(|&a| a > k).unwrap_or(assistants.len());
    }
    (samples, dropped)
}

/// The sample ending at turn `end`, observations masked as given, the
/// assistant turns from `first_trainable` on trainable.
fn build(turns: &[Turn], end: usize, masked: &[bool], first_trainable: usize, placeholder: u64) -> Sample {
    let mut messages = Vec::with_capacity(end + 1);
    let (mut tokens, mut trainable_tokens) = (0, 0);
    for (i, t) in turns[..=end].iter().enumerate() {
        let trainable = t.is_assistant() && i >= first_trainable;
        let role = match (i, t.role.as_str()) {
            (0, _) => "system",
            (_, "assistant") => "assistant",
            // The task and tool results: what the model was told.
            _ => "user",
        };
        let content = if masked[i] { PLACEHOLDER.to_string() } else { t.content.clone() };
        tokens += if masked[i] { 0 } else { t.tokens };
        if trainable {
            trainable_tokens += t.tokens;
        }
        messages.push(SampleMessage { role: role.into(), content, trainable });
    }
    let placeholders = masked.iter().filter(|m| **m).count() as u64;
    Sample { messages, tokens: tokens + placeholders * placeholder, trainable_tokens }
}

/// The samples table's schema.
pub fn schema() -> Schema {
    let message = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("trainable", DataType::Boolean, false),
    ]);
    Schema::new(vec![
        Field::new("instance_id", DataType::Utf8, false),
        Field::new("attempt", DataType::UInt32, false),
        Field::new("segment", DataType::UInt32, false),
        Field::new("segments", DataType::UInt32, false),
        Field::new("messages", DataType::List(Arc::new(Field::new("item", DataType::Struct(message), false))), false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("trainable_tokens", DataType::UInt64, false),
    ])
}

impl Kind for SegmentSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "segment";
    type Wire = settings::SegmentStage;

    fn validate(wire: settings::SegmentStage, s: &mut Settings<'_>) -> SegmentSpec {
        settings::validate(wire, s)
    }

    fn definition(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("window".into(), json!(self.window)),
            // A tokenizer beside the workflow is a dependency instead.
            ("tokenizer".into(), json!(self.tokenizer_hash)),
            ("estimate".into(), json!(self.tokenizer.is_none())),
            ("max_trajectories".into(), json!(self.max_trajectories)),
            ("max_per_instance".into(), json!(self.max_per_instance)),
            ("seed".into(), json!(self.seed)),
        ])
    }

    fn stats(&self, shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        self.token_stats(shards)
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        let input =
            job.inputs.get("trajectories").ok_or_else(|| StageError::Failed("no `trajectories` input".into()))?;
        let table = rows::Table::open(&input.paths, input.format)?;
        let total = table.rows();
        let selected = self.select(&table)?;
        let (lo, hi) = shard_range(total as usize, shard.index, shard.count);
        let counter = Arc::new(match &self.tokenizer {
            Some(p) => TokenCounter::from_file(p).map_err(StageError::Failed)?,
            None => TokenCounter::Estimate,
        });
        let placeholder = counter.message("user", PLACEHOLDER) as u64;
        let mut writer = RowWriter::create(&shard.output, Arc::new(schema()))?;
        let (mut trajectories, mut samples, mut dropped) = (0u64, 0u64, 0usize);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        for batch in table.read(lo as u64, hi as u64) {
            let batch: Vec<Value> =
                batch?.into_iter().filter(|r| selected.as_ref().is_none_or(|s| s.contains(&identity(r)))).collect();
            // Token counting dominates: the batch's rows are counted on
            // every core.
            let chunk = batch.len().div_ceil(threads).max(1);
            let results: Vec<Result<(Vec<Sample>, usize), String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(chunk)
                    .map(|rows| {
                        let counter = counter.clone();
                        let window = self.window;
                        scope.spawn(move || {
                            rows.iter()
                                .map(|row| turns_of(row, &counter).map(|t| segment(&t, window, placeholder)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().expect("segmenting does not panic")).collect()
            });
            for (row, result) in batch.iter().zip(results) {
                let (instance_id, attempt) = identity(row);
                let (cut, lost) =
                    result.map_err(|e| StageError::Failed(format!("{instance_id} attempt {attempt}: {e}")))?;
                trajectories += 1;
                dropped += lost;
                let n = cut.len();
                for (i, s) in cut.into_iter().enumerate() {
                    samples += 1;
                    writer.push(&json!({
                        "instance_id": instance_id,
                        "attempt": attempt,
                        "segment": i,
                        "segments": n,
                        "messages": s.messages,
                        "tokens": s.tokens,
                        "trainable_tokens": s.trainable_tokens,
                    }))?;
                }
            }
        }
        writer.finish()?;
        swestar_vocab::progress!(
            "segment: shard {}/{}: {trajectories} trajectories → {samples} samples ({dropped} assistant turns too long to train on)",
            shard.index, shard.count
        );
        Ok(())
    }
}

/// A trajectory's rank and identity (instance, attempt).
type Ranked = ([u8; 32], (String, u32));

/// Minimum, median, maximum and mean of a list of counts.
fn summary(mut v: Vec<u64>) -> Value {
    if v.is_empty() {
        return json!({"min": 0, "median": 0, "max": 0, "mean": 0.0});
    }
    v.sort_unstable();
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] as f64 } else { (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0 };
    let mean = v.iter().sum::<u64>() as f64 / n as f64;
    json!({"min": v[0], "median": median, "max": v[n - 1], "mean": mean})
}

fn identity(row: &Value) -> (String, u32) {
    (
        row.get("instance_id").and_then(Value::as_str).unwrap_or_default().to_string(),
        row.get("attempt").and_then(Value::as_u64).unwrap_or(0) as u32,
    )
}

/// A trajectory row's messages, counted in the student's framing.
fn turns_of(row: &Value, counter: &TokenCounter) -> Result<Vec<Turn>, String> {
    let messages = row.get("messages").and_then(Value::as_array).ok_or("no `messages` list")?;
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str).ok_or(format!("message {i} has no role"))?;
            let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
            Ok(Turn { role: role.into(), content: content.into(), tokens: counter.message(role, content) as u64 })
        })
        .collect()
}

impl SegmentSpec {
    /// Token statistics of all samples: per-sample tokens and trainable
    /// tokens (min/median/max/mean), totals, sample and trajectory counts.
    fn token_stats(&self, shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        let table = rows::Table::open(shards, crate::store::TableFormat::Parquet)?;
        let (mut tokens, mut trainable, mut trajectories) = (Vec::new(), Vec::new(), 0u64);
        for batch in table.read_columns(0, table.rows(), Some(&["segment", "tokens", "trainable_tokens"])) {
            for row in batch? {
                tokens.push(row["tokens"].as_u64().unwrap_or(0));
                trainable.push(row["trainable_tokens"].as_u64().unwrap_or(0));
                trajectories += u64::from(row["segment"].as_u64() == Some(0));
            }
        }
        let (total, total_trainable) = (tokens.iter().sum::<u64>(), trainable.iter().sum::<u64>());
        Ok(BTreeMap::from([
            ("samples".into(), json!(tokens.len())),
            ("trajectories".into(), json!(trajectories)),
            ("tokens".into(), json!(total)),
            ("trainable_tokens".into(), json!(total_trainable)),
            ("tokens_per_sample".into(), summary(tokens)),
            ("trainable_tokens_per_sample".into(), summary(trainable)),
        ]))
    }

    /// The (instance, attempt) pairs the subset settings keep, or `None`
    /// for all. Reads only those two columns of the whole input.
    fn select(&self, table: &rows::Table) -> Result<Option<HashSet<(String, u32)>>, StageError> {
        if self.max_trajectories.is_none() && self.max_per_instance.is_none() {
            return Ok(None);
        }
        let rank = |id: &(String, u32)| -> [u8; 32] {
            let mut h = blake3::Hasher::new();
            h.update(&self.seed.to_le_bytes());
            h.update(id.0.as_bytes());
            h.update(&[0]);
            h.update(&id.1.to_le_bytes());
            *h.finalize().as_bytes()
        };
        let mut by_instance: HashMap<String, Vec<Ranked>> = HashMap::new();
        for batch in table.read_columns(0, table.rows(), Some(&["instance_id", "attempt"])) {
            for row in batch? {
                let id = identity(&row);
                by_instance.entry(id.0.clone()).or_default().push((rank(&id), id));
            }
        }
        let mut pool = Vec::new();
        for (_, mut v) in by_instance {
            v.sort();
            if let Some(k) = self.max_per_instance {
                v.truncate(k as usize);
            }
            pool.extend(v);
        }
        pool.sort();
        if let Some(n) = self.max_trajectories {
            pool.truncate(n as usize);
        }
        Ok(Some(pool.into_iter().map(|(_, id)| id).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(role: &str, tokens: u64) -> Turn {
        Turn { role: role.into(), content: format!("{role}-{tokens}"), tokens }
    }

    /// system, task, then n rounds of (assistant, observation).
    fn trajectory(n: usize, obs: u64) -> Vec<Turn> {
        let mut v = vec![t("system", 100), t("user", 50)];
        for _ in 0..n {
            v.push(t("assistant", 20));
            v.push(t("user", obs));
        }
        v
    }

    #[test]
    fn a_short_trajectory_is_one_sample_with_every_turn_trainable() {
        let (s, dropped) = segment(&trajectory(3, 30), 1000, 5);
        assert_eq!((s.len(), dropped), (1, 0));
        let m = &s[0].messages;
        assert_eq!(m.last().unwrap().role, "assistant", "ends at the last assistant turn");
        assert_eq!(m.iter().filter(|m| m.trainable).count(), 3);
        assert_eq!(s[0].tokens, 100 + 50 + 3 * 20 + 2 * 30);
    }

    #[test]
    fn a_long_trajectory_is_cut_and_every_turn_is_trained_once() {
        let turns = trajectory(30, 200);
        let (samples, dropped) = segment(&turns, 1500, 5);
        assert_eq!(dropped, 0);
        assert!(samples.len() > 3, "{}", samples.len());
        let mut trained = Vec::new();
        for s in &samples {
            assert!(s.tokens <= 1500, "{}", s.tokens);
            assert_eq!(s.messages.last().unwrap().role, "assistant");
            assert_eq!(s.messages[0].content, "system-100", "the system prompt stays");
            assert_eq!(s.messages[1].content, "user-50", "the task stays");
            assert!(s.messages.iter().filter(|m| m.role == "assistant").all(|m| m.content != PLACEHOLDER));
            for (i, m) in s.messages.iter().enumerate() {
                if m.trainable {
                    trained.push(i);
                    // A trained turn sees the observation before it.
                    assert_ne!(s.messages[i - 1].content, PLACEHOLDER, "turn {i}");
                }
            }
            let counted: u64 = s
                .messages
                .iter()
                .map(|m| {
                    if m.content == PLACEHOLDER {
                        5
                    } else {
                        m.content.rsplit('-').next().unwrap().parse::<u64>().unwrap()
                    }
                })
                .sum();
            assert_eq!(counted, s.tokens);
        }
        let expected: Vec<usize> = (0..30).map(|r| 2 + 2 * r).collect();
        assert_eq!(trained, expected, "each assistant turn trainable exactly once, in order");
    }

    #[test]
    fn a_turn_that_cannot_fit_is_dropped_not_truncated() {
        let mut turns = trajectory(2, 10);
        turns[4].tokens = 5000; // the second assistant turn
        let (samples, dropped) = segment(&turns, 1000, 5);
        assert_eq!((samples.len(), dropped), (1, 1));
    }
}
