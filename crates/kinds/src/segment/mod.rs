//! The `segment` kind: kept trajectories → training samples for a student
//! with a fixed context window.
//!
//! Train as you infer: the context of every trained assistant turn is
//! exactly the prompt the agent scaffold would give the student at that
//! turn. The trajectory is replayed through the scaffold's own prompt
//! builder (`agent::episode::Window`): the student's window and reply
//! reserve, the stage's masking policy (`fit` or `block`), masked
//! observations staying masked, the latest observation always there (cut in
//! the middle when nothing else gives). Consecutive turns share one sample
//! exactly when each one's prompt extends the one before (nothing was
//! masked or cut in between): the sample is the last of those prompts and
//! its reply, with each of the turns trainable. Every assistant turn is
//! trained once or counted untrained with its reason: a reply that was a
//! malformed tool call (unless `train_format_errors`), a prompt that
//! cannot fit even so (context exhausted: the scaffold would have stopped),
//! or a reply longer than the reserve (the student could not produce it).
//!
//! Token counts are those of the training framing (see
//! `agent::tokens::TokenCounter::message`), each message counted once per
//! trajectory.
//!
//! `max_trajectories` (with `seed`) and `max_per_instance` pick a subset
//! for scaling ablations: each trajectory gets a rank from a hash of the
//! seed, its instance and attempt; an instance keeps its lowest-ranked
//! `max_per_instance`, and of those the lowest-ranked `max_trajectories`
//! stay, so a smaller subset is always inside a larger one.

mod settings;
pub use settings::SegmentStage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::condense::{Budget, Policy, PLACEHOLDER};
use crate::agent::episode::{Trajectory, Turn, View, Window};
use crate::agent::tokens::TokenCounter;
use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::store::rows::{self, RowWriter};
use crate::store::shard::shard_range;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSpec {
    /// The student's context window, in tokens.
    pub window: u64,
    /// Tokens of the window kept free for the reply, as the scaffold does.
    pub reserve: u64,
    /// The scaffold's masking policy for the student.
    pub policy: Policy,
    /// Train on replies that were malformed tool calls.
    pub train_format_errors: bool,
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

/// Why an assistant turn is in no sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Untrained {
    /// The reply was a malformed tool call (answered with a format error).
    FormatError,
    /// Even with every older observation masked and the latest cut, the
    /// prompt does not fit: the scaffold would have stopped there.
    ContextExhausted,
    /// Prompt and reply exceed the window: the reply is longer than the
    /// reserve the student generates into.
    ReplyTooLong,
}

impl Untrained {
    pub fn name(self) -> &'static str {
        match self {
            Untrained::FormatError => "format_error",
            Untrained::ContextExhausted => "context_exhausted",
            Untrained::ReplyTooLong => "reply_too_long",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Untrained::FormatError => "malformed tool call",
            Untrained::ContextExhausted => "no room even with every observation masked",
            Untrained::ReplyTooLong => "reply longer than the reserve",
        }
    }
}

/// What one trajectory gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// Assistant turns trainable in some sample.
    pub trained: u64,
    pub untrained: BTreeMap<Untrained, u64>,
}

/// The student's side of a replay: window, reserve, policy, tokenizer.
pub struct Student {
    pub budget: Budget,
    pub policy: Policy,
    pub counter: Arc<TokenCounter>,
    pub train_format_errors: bool,
}

/// Consecutive turns whose prompts extend each other.
struct Group {
    /// The views of the last member's prompt.
    views: Vec<View>,
    prompt_tokens: usize,
    /// (turn index, trainable)
    members: Vec<(usize, bool)>,
}

/// Whether a reply is a malformed tool call, by the scaffold's own parser.
pub fn is_format_error(reply: &str) -> bool {
    static SPECS: std::sync::OnceLock<Vec<crate::agent::protocol::ToolSpec>> = std::sync::OnceLock::new();
    crate::agent::protocol::parse(reply, SPECS.get_or_init(crate::agent::tools::specs)).is_err()
}

/// Cuts one trajectory (system, task, then turns, each counted) into
/// samples by replaying it through the scaffold's prompt builder.
pub fn segment(turns: &[Turn], student: &Student) -> Outcome {
    let mut out = Outcome::default();
    let mut window = Window::new(student.budget, student.policy, student.counter.clone());
    let mut scratch = Trajectory::empty("");
    let mut history: Vec<Turn> = Vec::with_capacity(turns.len());
    let mut group: Option<Group> = None;
    let limit = student.budget.window;
    for (i, turn) in turns.iter().enumerate() {
        if i >= 2 && turn.role == "assistant" {
            let trainable = student.train_format_errors || !is_format_error(&turn.content);
            match window.condense(&mut history, &mut scratch) {
                None => {
                    close(&mut group, turns, &mut out);
                    out.count(trainable, Untrained::ContextExhausted);
                }
                Some(c) if c.tokens + turn.tokens as usize > limit => {
                    close(&mut group, turns, &mut out);
                    out.count(trainable, Untrained::ReplyTooLong);
                }
                Some(c) => {
                    if !trainable {
                        *out.untrained.entry(Untrained::FormatError).or_default() += 1;
                    }
                    match &mut group {
                        Some(g) if extends(&g.views, &c.views) => {
                            g.views = c.views;
                            g.prompt_tokens = c.tokens;
                            g.members.push((i, trainable));
                        }
                        _ => {
                            close(&mut group, turns, &mut out);
                            group = Some(Group { views: c.views, prompt_tokens: c.tokens, members: vec![(i, trainable)] });
                        }
                    }
                }
            }
        }
        history.push(Turn { masked: false, ..turn.clone() });
    }
    close(&mut group, turns, &mut out);
    out
}

impl Outcome {
    /// An untrained turn: a format error counts as one whatever else.
    fn count(&mut self, trainable: bool, why: Untrained) {
        let why = if trainable { why } else { Untrained::FormatError };
        *self.untrained.entry(why).or_default() += 1;
    }
}

/// Whether a prompt extends the previous one: the same views where that
/// one had messages, and every message since shown whole.
fn extends(before: &[View], now: &[View]) -> bool {
    now.len() > before.len()
        && now[..before.len()] == *before
        && now[before.len()..].iter().all(|v| *v == View::Full)
}

/// Turns a finished group into its sample (if any turn in it trains).
fn close(group: &mut Option<Group>, turns: &[Turn], out: &mut Outcome) {
    let Some(g) = group.take() else { return };
    if !g.members.iter().any(|(_, t)| *t) {
        return;
    }
    let &(last, _) = g.members.last().expect("a group has members");
    let trainable: HashSet<usize> = g.members.iter().filter(|(_, t)| *t).map(|(i, _)| *i).collect();
    let mut messages = Vec::with_capacity(last + 1);
    let mut trainable_tokens = 0;
    for (i, t) in turns[..=last].iter().enumerate() {
        let role = match (i, t.role.as_str()) {
            (0, _) => "system",
            (_, "assistant") => "assistant",
            // The task and tool results: what the model was told.
            _ => "user",
        };
        let content = match g.views.get(i) {
            Some(View::Masked) => PLACEHOLDER.to_string(),
            Some(View::Cut { content, .. }) => content.clone(),
            Some(View::Full) | None => t.content.clone(),
        };
        let train = trainable.contains(&i);
        if train {
            trainable_tokens += t.tokens;
        }
        messages.push(SampleMessage { role: role.into(), content, trainable: train });
    }
    out.trained += trainable.len() as u64;
    out.samples.push(Sample { messages, tokens: (g.prompt_tokens as u64) + turns[last].tokens, trainable_tokens });
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
    // 2: samples are the scaffold's own prompts (train as you infer).
    const VERSION: u32 = 2;
    const NAME: &'static str = "segment";
    type Wire = settings::SegmentStage;

    fn validate(wire: settings::SegmentStage, s: &mut Settings<'_>) -> SegmentSpec {
        settings::validate(wire, s)
    }

    const HEADLINE: &'static [&'static str] = &["samples", "trainable_tokens", "trained_turns"];

    fn definition(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("window".into(), json!(self.window)),
            ("reply_reserve".into(), json!(self.reserve)),
            ("masking".into(), json!(self.policy)),
            ("train_format_errors".into(), json!(self.train_format_errors)),
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

    fn summary(&self, stats: &BTreeMap<String, Value>) -> Option<String> {
        let mut acc = Accounting::default();
        acc.merge_json(&Value::Object(stats.clone().into_iter().collect()));
        Some(acc.line())
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
        let student = Student {
            budget: Budget { window: self.window as usize, reserve: self.reserve as usize },
            policy: self.policy,
            counter: counter.clone(),
            train_format_errors: self.train_format_errors,
        };
        let mut writer = RowWriter::create(&shard.output, Arc::new(schema()))?;
        let mut acc = Accounting::default();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        for batch in table.read(lo as u64, hi as u64) {
            let batch: Vec<Value> =
                batch?.into_iter().filter(|r| selected.as_ref().is_none_or(|s| s.contains(&identity(r)))).collect();
            // Token counting dominates: the batch's rows are counted on
            // every core.
            let chunk = batch.len().div_ceil(threads).max(1);
            let results: Vec<Result<Outcome, String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(chunk)
                    .map(|rows| {
                        let student = &student;
                        scope.spawn(move || {
                            rows.iter()
                                .map(|row| turns_of(row, &student.counter).map(|t| segment(&t, student)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().expect("segmenting does not panic")).collect()
            });
            for (row, result) in batch.iter().zip(results) {
                let (instance_id, attempt) = identity(row);
                let outcome =
                    result.map_err(|e| StageError::Failed(format!("{instance_id} attempt {attempt}: {e}")))?;
                acc.add(&outcome);
                let n = outcome.samples.len();
                for (i, s) in outcome.samples.into_iter().enumerate() {
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
        // The counts the samples cannot tell (what went in, what was not
        // trained and why) go beside the shard, for `stats`.
        let side = accounting_path(&shard.output);
        crate::store::write_atomic(&side, &serde_json::to_vec(&acc.to_json()).expect("plain data"))
            .map_err(|e| StageError::Failed(format!("{}: {e}", side.display())))?;
        swestar_vocab::progress!("segment: shard {}/{}: {}", shard.index, shard.count, acc.line());
        Ok(())
    }
}

/// Where a shard's accounting goes: beside its output.
fn accounting_path(shard: &Path) -> PathBuf {
    shard.with_extension("accounting.json")
}

/// What went in and what came of it, per shard and then in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accounting {
    pub trajectories: u64,
    pub with_samples: u64,
    pub samples: u64,
    pub turns: u64,
    pub trained: u64,
    pub untrained: BTreeMap<Untrained, u64>,
}

impl Accounting {
    fn add(&mut self, o: &Outcome) {
        self.trajectories += 1;
        self.with_samples += u64::from(!o.samples.is_empty());
        self.samples += o.samples.len() as u64;
        self.trained += o.trained;
        self.turns += o.trained + o.untrained.values().sum::<u64>();
        for (k, v) in &o.untrained {
            *self.untrained.entry(*k).or_default() += v;
        }
    }

    fn to_json(&self) -> Value {
        let untrained: serde_json::Map<String, Value> =
            self.untrained.iter().map(|(k, v)| (k.name().to_string(), json!(v))).collect();
        json!({
            "trajectories_in": self.trajectories,
            "trajectories_with_samples": self.with_samples,
            "samples": self.samples,
            "assistant_turns": self.turns,
            "trained_turns": self.trained,
            "untrained_turns": untrained,
        })
    }

    fn merge_json(&mut self, v: &Value) {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        self.trajectories += n("trajectories_in");
        self.with_samples += n("trajectories_with_samples");
        self.samples += n("samples");
        self.turns += n("assistant_turns");
        self.trained += n("trained_turns");
        for why in [Untrained::FormatError, Untrained::ContextExhausted, Untrained::ReplyTooLong] {
            let c = v.get("untrained_turns").and_then(|u| u.get(why.name())).and_then(Value::as_u64).unwrap_or(0);
            if c > 0 {
                *self.untrained.entry(why).or_default() += c;
            }
        }
    }

    /// "14 trajectories in, 54 samples from 14; 84 turns: 61 trained, 23
    /// untrained: no room even with every observation masked (20), ..."
    pub fn line(&self) -> String {
        let untrained: u64 = self.untrained.values().sum();
        let mut text = format!(
            "{} trajectories in, {} samples from {}; {} assistant turns: {} trained",
            self.trajectories, self.samples, self.with_samples, self.turns, self.trained
        );
        if untrained > 0 {
            let mut by: Vec<(&Untrained, &u64)> = self.untrained.iter().collect();
            by.sort_by(|a, b| b.1.cmp(a.1));
            let why: Vec<String> = by.iter().map(|(k, v)| format!("{} ({v})", k.describe())).collect();
            text.push_str(&format!(", {untrained} not trained: {}", why.join(", ")));
        }
        text
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

/// A trajectory row's messages, counted in the student's framing, once.
fn turns_of(row: &Value, counter: &TokenCounter) -> Result<Vec<Turn>, String> {
    let messages = row.get("messages").and_then(Value::as_array).ok_or("no `messages` list")?;
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str).ok_or(format!("message {i} has no role"))?;
            let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
            Ok(Turn {
                role: role.into(),
                content: content.into(),
                tokens: counter.message(role, content) as u64,
                masked: false,
            })
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
        let mut acc = Accounting::default();
        for shard in shards {
            let side = accounting_path(shard);
            let bytes = std::fs::read(&side).map_err(|e| StageError::Failed(format!("{}: {e}", side.display())))?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| StageError::Failed(format!("{}: {e}", side.display())))?;
            acc.merge_json(&v);
        }
        // Input that gave nothing to train on is a failed stage, with the
        // reason, not an empty success.
        if acc.trajectories > 0 && tokens.is_empty() {
            return Err(StageError::Failed(format!(
                "no training sample: {} (window {}, reserve {})",
                acc.line(),
                self.window,
                self.reserve
            )));
        }
        let mut stats = BTreeMap::from([
            ("samples".into(), json!(tokens.len())),
            ("trajectories".into(), json!(trajectories)),
            ("tokens".into(), json!(total)),
            ("trainable_tokens".into(), json!(total_trainable)),
            ("tokens_per_sample".into(), summary(tokens)),
            ("trainable_tokens_per_sample".into(), summary(trainable)),
        ]);
        if let Value::Object(counts) = acc.to_json() {
            stats.extend(counts);
        }
        Ok(stats)
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
    use crate::agent::episode::Window;

    const CALL: &str = "<function=execute_bash>\n<parameter=command>ls -la</parameter>\n</function>";
    const BROKEN: &str = "<function=execute_bash>\n<parameter=command>ls -la";

    fn counter() -> Arc<TokenCounter> {
        Arc::new(TokenCounter::Estimate)
    }

    fn msg(role: &str, content: String) -> Turn {
        let tokens = TokenCounter::Estimate.message(role, &content) as u64;
        Turn { role: role.into(), content, tokens, masked: false }
    }

    /// system, task, then one (assistant, observation) per observation
    /// size in bytes; `broken` replies are malformed calls.
    fn trajectory(observations: &[usize], broken: &[usize]) -> Vec<Turn> {
        let mut v = vec![msg("system", "s".repeat(400)), msg("user", "t".repeat(200))];
        for (i, &bytes) in observations.iter().enumerate() {
            let reply = if broken.contains(&i) { BROKEN.to_string() } else { format!("{CALL}{i}") };
            v.push(msg("assistant", reply));
            let text: String = (0..bytes).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).collect();
            v.push(msg("user", text));
        }
        v
    }

    fn student(window: usize, reserve: usize, policy: Policy) -> Student {
        Student { budget: Budget { window, reserve }, policy, counter: counter(), train_format_errors: false }
    }

    /// Every trained turn's context in its sample is the scaffold's prompt
    /// at that turn (replayed independently through `Window::prompt`), and
    /// every count is the messages' own.
    fn check_train_as_infer(turns: &[Turn], st: &Student, out: &Outcome) {
        let mut window = Window::new(st.budget, st.policy, st.counter.clone());
        let mut scratch = Trajectory::empty("");
        let mut history: Vec<Turn> = Vec::new();
        let mut prompts: HashMap<usize, Vec<String>> = HashMap::new();
        for (i, t) in turns.iter().enumerate() {
            if i >= 2 && t.role == "assistant" {
                if let Some((p, _)) = window.prompt(&mut history, &mut scratch) {
                    prompts.insert(i, p.into_iter().map(|m| m.content).collect());
                }
            }
            history.push(Turn { masked: false, ..t.clone() });
        }
        let placeholder = st.counter.message("user", PLACEHOLDER) as u64;
        for s in &out.samples {
            assert!(s.tokens <= st.budget.window as u64, "{} > {}", s.tokens, st.budget.window);
            let counted: u64 = s.messages.iter().map(|m| st.counter.message(&m.role, &m.content) as u64).sum();
            assert_eq!(counted, s.tokens, "tokens are the messages' own");
            assert_eq!(s.messages.last().map(|m| m.role.as_str()), Some("assistant"));
            for (k, m) in s.messages.iter().enumerate() {
                if m.trainable {
                    let context: Vec<&str> = s.messages[..k].iter().map(|m| m.content.as_str()).collect();
                    let prompt: Vec<&str> = prompts[&k].iter().map(String::as_str).collect();
                    assert_eq!(context, prompt, "turn {k}: context differs from the scaffold's prompt");
                    assert_ne!(s.messages[k - 1].content, PLACEHOLDER, "turn {k} sees the observation it answers");
                }
                if m.content == PLACEHOLDER {
                    assert!(turns[k].tokens > placeholder, "message {k} was not longer than its placeholder");
                }
            }
        }
        let assistant_turns = turns.iter().skip(2).filter(|t| t.role == "assistant").count() as u64;
        assert_eq!(out.trained + out.untrained.values().sum::<u64>(), assistant_turns, "every turn accounted for");
        let trainable: u64 = out.samples.iter().map(|s| s.messages.iter().filter(|m| m.trainable).count() as u64).sum();
        assert_eq!(trainable, out.trained, "each trained turn in exactly one sample");
    }

    #[test]
    fn a_short_trajectory_is_one_sample_with_every_turn_trainable() {
        let turns = trajectory(&[100, 100, 100], &[]);
        let st = student(4096, 512, Policy::default());
        let out = segment(&turns, &st);
        assert_eq!((out.samples.len(), out.trained), (1, 3));
        assert!(out.untrained.is_empty());
        check_train_as_infer(&turns, &st, &out);
    }

    #[test]
    fn long_observations_under_both_policies_train_on_the_scaffolds_prompts() {
        let sizes: Vec<usize> = (0..40).map(|i| 300 + (i * 397) % 2500).collect();
        let turns = trajectory(&sizes, &[]);
        for policy in [Policy::Fit, Policy::Block { low_water: 0.7 }, Policy::Block { low_water: 0.5 }] {
            let st = student(3000, 400, policy);
            let out = segment(&turns, &st);
            assert!(out.samples.len() > 2, "{policy:?}: {}", out.samples.len());
            assert_eq!(out.trained, 40, "{policy:?}: {:?}", out.untrained);
            check_train_as_infer(&turns, &st, &out);
        }
        // Block changes the prompt once per block: fewer, longer samples.
        let fit = segment(&turns, &student(3000, 400, Policy::Fit));
        let block = segment(&turns, &student(3000, 400, Policy::Block { low_water: 0.5 }));
        assert!(block.samples.len() < fit.samples.len(), "{} vs {}", block.samples.len(), fit.samples.len());
    }

    #[test]
    fn an_observation_larger_than_the_window_is_cut_in_the_middle() {
        let turns = trajectory(&[200, 40_000, 200], &[]);
        let st = student(4000, 500, Policy::default());
        let out = segment(&turns, &st);
        assert_eq!(out.trained, 3, "{:?}", out.untrained);
        check_train_as_infer(&turns, &st, &out);
        let cut = out
            .samples
            .iter()
            .flat_map(|s| &s.messages)
            .find(|m| m.content.contains("characters cut from the middle of the output"))
            .expect("the huge observation appears cut");
        assert!(cut.content.starts_with("bcdef"), "its head is kept");
    }

    #[test]
    fn many_short_observations_are_never_masked() {
        // 60 observations of a few bytes: shorter than the placeholder.
        let mut sizes = vec![3000usize; 5];
        sizes.extend(std::iter::repeat_n(4, 60));
        let turns = trajectory(&sizes, &[]);
        let st = student(3500, 300, Policy::Fit);
        let out = segment(&turns, &st);
        check_train_as_infer(&turns, &st, &out);
    }

    #[test]
    fn malformed_calls_are_not_taught_but_their_neighbours_are() {
        let turns = trajectory(&[100, 100, 100, 100], &[1]);
        let st = student(4096, 512, Policy::default());
        let out = segment(&turns, &st);
        assert_eq!(out.trained, 3);
        assert_eq!(out.untrained.get(&Untrained::FormatError), Some(&1));
        let trained: Vec<&str> =
            out.samples.iter().flat_map(|s| &s.messages).filter(|m| m.trainable).map(|m| m.content.as_str()).collect();
        assert!(trained.iter().all(|c| *c != BROKEN), "{trained:?}");
        check_train_as_infer(&turns, &st, &out);
        let taught = segment(&turns, &Student { train_format_errors: true, ..st });
        assert_eq!((taught.trained, taught.untrained.len()), (4, 0));
    }

    #[test]
    fn a_window_smaller_than_system_and_task_trains_nothing_and_says_why() {
        let turns = trajectory(&[100, 100], &[]);
        let st = student(200, 50, Policy::default());
        let out = segment(&turns, &st);
        assert!(out.samples.is_empty());
        assert_eq!(out.untrained.get(&Untrained::ContextExhausted), Some(&2));
        let mut acc = Accounting::default();
        acc.add(&out);
        assert_eq!(
            acc.line(),
            "1 trajectories in, 0 samples from 0; 2 assistant turns: 0 trained, 2 not trained: no room even with every observation masked (2)"
        );
    }

    #[test]
    fn a_reply_longer_than_the_reserve_is_not_trained() {
        let mut turns = trajectory(&[100, 100, 100], &[]);
        // The second reply alone nearly fills the window; the third turn's
        // prompt, which holds it, cannot fit at all.
        turns[4] = msg("assistant", format!("{CALL}{}", "x".repeat(7200)));
        let st = student(2000, 400, Policy::default());
        let out = segment(&turns, &st);
        assert_eq!(out.untrained.get(&Untrained::ReplyTooLong), Some(&1), "{:?}", out.untrained);
        assert_eq!(out.untrained.get(&Untrained::ContextExhausted), Some(&1), "{:?}", out.untrained);
        assert_eq!(out.trained, 1);
        check_train_as_infer(&turns, &st, &out);
    }
}
