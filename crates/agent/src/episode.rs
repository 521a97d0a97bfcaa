//! One agent episode: the ReAct loop of model call → one tool call →
//! observation, with observation masking before every call, limits (steps,
//! wall time, total tokens, consecutive format errors) and an exit reason.
//! Every turn is recorded in the trajectory.
//!
//! Messages are counted with the model's tokenizer when one is configured
//! (else estimated, see `tokens`); the server's reported usage is recorded
//! as it comes. The prefix-cache figure compares the token ids of each
//! prompt with the previous one.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::condense::{self, Budget, Msg, Policy, Role};
use super::editor::{Editor, SessionFiles};
use super::llm::{LlmClient, Message};
use super::protocol::{self, STOP_WORDS};
use super::sandbox::Sandbox;
use super::tokens::{chatml_prompt, TokenCounter};
use super::tools::{self, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    Submitted,
    StepLimit,
    TimeLimit,
    /// The total token budget of the episode ran out.
    TokenLimit,
    ContextExhausted,
    FormatErrors,
    LlmError,
    SandboxError,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_steps: u32,
    pub wall: Duration,
    pub max_total_tokens: u64,
    pub max_format_errors: u32,
    pub command_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_steps: 100,
            wall: Duration::from_secs(3600),
            max_total_tokens: 5_000_000,
            max_format_errors: 3,
            command_timeout: Duration::from_secs(120),
        }
    }
}

/// One message as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
    pub tokens: u64,
    /// Replaced by the placeholder in the prompts after some point.
    pub masked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub instance_id: String,
    pub messages: Vec<Turn>,
    pub patch: String,
    pub exit_reason: ExitReason,
    pub error: Option<String>,
    pub steps: u32,
    pub format_errors: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub wall_s: f64,
    pub masked: u32,
    /// Prompt tokens a perfect prefix cache would have recomputed.
    pub recompute_tokens: u64,
}

/// What an episode needs besides the model.
pub struct EpisodeSpec<'a> {
    pub instance_id: &'a str,
    pub system: String,
    pub task: String,
    pub limits: Limits,
    pub budget: Budget,
    pub policy: Policy,
    /// Environment of the shells.
    pub env: Vec<(String, String)>,
    /// Paths the submitted patch leaves out (tests the task forbids editing).
    pub exclude: Vec<String>,
    pub counter: std::sync::Arc<TokenCounter>,
}

/// The prompt of each model call: masking before the call (a masked
/// observation stays masked), the latest observation cut in the middle
/// when even masking every older one leaves no room for it, and the
/// prefix-cache accounting against the previous call's prompt. The segment
/// stage replays trajectories through the same code, so a student is
/// trained on exactly the prompts this builds.
pub struct Window {
    budget: Budget,
    policy: Policy,
    counter: std::sync::Arc<TokenCounter>,
    placeholder_tokens: usize,
    masks: Vec<Msg>,
    previous: Vec<u32>,
}

/// How a message appears in one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Full,
    Masked,
    /// The latest observation, cut in the middle to fit: its text and
    /// tokens.
    Cut {
        content: String,
        tokens: usize,
    },
}

/// One call's prompt: how each message before it appears, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condensed {
    pub views: Vec<View>,
    pub tokens: usize,
}

impl Window {
    pub fn new(budget: Budget, policy: Policy, counter: std::sync::Arc<TokenCounter>) -> Window {
        let placeholder_tokens = counter.message("user", condense::PLACEHOLDER);
        Window { budget, policy, counter, placeholder_tokens, masks: Vec::new(), previous: Vec::new() }
    }

    /// Tokens of the masking placeholder, as a message.
    pub fn placeholder_tokens(&self) -> usize {
        self.placeholder_tokens
    }

    /// Masks `turns` for the next call (marking them, for the calls after)
    /// and says how each appears; `None` when even with every older
    /// observation masked and the latest one cut there is no room.
    pub fn condense(&mut self, turns: &mut [Turn], t: &mut Trajectory) -> Option<Condensed> {
        self.masks.clear();
        self.masks.extend(turns.iter().enumerate().map(|(i, m)| Msg {
            role: match (i, m.role.as_str()) {
                (0, _) => Role::System,
                (1, _) => Role::Task,
                (_, "assistant") => Role::Assistant,
                _ => Role::Observation,
            },
            tokens: m.tokens as usize,
            masked_tokens: self.placeholder_tokens,
            masked: m.masked,
        }));
        t.masked += condense::mask(&mut self.masks, self.budget, self.policy) as u32;
        for (turn, m) in turns.iter_mut().zip(&self.masks) {
            turn.masked = m.masked;
        }
        let mut views: Vec<View> =
            self.masks.iter().map(|m| if m.masked { View::Masked } else { View::Full }).collect();
        let limit = self.budget.window.saturating_sub(self.budget.reserve);
        let mut size = condense::total(&self.masks);
        if size > limit {
            // Only the latest observation can still give: cut it.
            let last = self.masks.len().checked_sub(1)?;
            if self.masks[last].role != Role::Observation || self.masks[last].masked {
                return None;
            }
            let room = limit.checked_sub(size - self.masks[last].tokens)?;
            let (content, tokens) = self.cut_to(&turns[last], room)?;
            size = size - self.masks[last].tokens + tokens;
            views[last] = View::Cut { content, tokens };
        }
        Some(Condensed { views, tokens: size })
    }

    /// The longest middle cut of a message that fits `room` tokens, if
    /// even the cut marker alone fits.
    fn cut_to(&self, turn: &Turn, room: usize) -> Option<(String, usize)> {
        let measure = |keep: usize| {
            let text = super::session::cut_middle(&turn.content, keep);
            let tokens = self.counter.message(&turn.role, &text);
            (text, tokens)
        };
        let best = measure(0);
        if best.1 > room {
            return None;
        }
        let (mut lo, mut hi, mut best) = (0usize, turn.content.chars().count(), best);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let m = measure(mid);
            if m.1 <= room {
                lo = mid;
                best = m;
            } else {
                hi = mid - 1;
            }
        }
        Some(best)
    }

    /// Masks `turns` for the next call and returns its prompt, counting
    /// masked observations and recomputed tokens into `t`; `None` when even
    /// fully masked the prompt does not fit.
    pub fn prompt(&mut self, turns: &mut [Turn], t: &mut Trajectory) -> Option<(Vec<Message>, usize)> {
        let condensed = self.condense(turns, t)?;
        let prompt: Vec<Message> = turns
            .iter()
            .zip(&condensed.views)
            .map(|(m, v)| match v {
                View::Full => Message::new(&m.role, m.content.clone()),
                View::Masked => Message::new(&m.role, condense::PLACEHOLDER.to_string()),
                View::Cut { content, .. } => Message::new(&m.role, content.clone()),
            })
            .collect();
        let ids = self.counter.encode(&chatml_prompt(prompt.iter().map(|m| (m.role.as_str(), m.content.as_str()))));
        t.recompute_tokens += condense::recompute(&self.previous, &ids) as u64;
        let size = ids.len();
        self.previous = ids;
        Some((prompt, size))
    }
}

/// What a masking policy costs on a recorded trajectory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// Model calls that fit.
    pub calls: u32,
    /// Prompt tokens sent over all calls.
    pub prompt_tokens: u64,
    /// Of those, the tokens a perfect prefix cache would recompute.
    pub recompute_tokens: u64,
    /// Observations masked.
    pub masked: u32,
    /// The context ran out before the recorded trajectory ended.
    pub exhausted: bool,
}

/// Replays the model calls of a recorded trajectory under a budget and a
/// policy: before each assistant turn, the prompt is everything before it.
/// The messages' own token counts are used (recounted with `counter` only
/// for the prefix comparison), so policies compare on identical inputs.
pub fn replay(messages: &[Turn], budget: Budget, policy: Policy, counter: std::sync::Arc<TokenCounter>) -> Replay {
    let mut window = Window::new(budget, policy, counter);
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    let mut t = Trajectory::empty("");
    let mut out = Replay::default();
    for m in messages {
        if m.role == "assistant" {
            let Some((_, size)) = window.prompt(&mut turns, &mut t) else {
                out.exhausted = true;
                break;
            };
            out.calls += 1;
            out.prompt_tokens += size as u64;
        }
        turns.push(Turn { masked: false, ..m.clone() });
    }
    out.recompute_tokens = t.recompute_tokens;
    out.masked = t.masked;
    out
}

impl Trajectory {
    /// A trajectory with nothing in it yet (also what a replay counts into).
    pub fn empty(instance_id: &str) -> Trajectory {
        Trajectory {
            instance_id: instance_id.to_string(),
            messages: Vec::new(),
            patch: String::new(),
            exit_reason: ExitReason::StepLimit,
            error: None,
            steps: 0,
            format_errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            wall_s: 0.0,
            masked: 0,
            recompute_tokens: 0,
        }
    }
}

/// Runs one episode in a sandbox.
pub async fn run(client: &LlmClient, sandbox: &Sandbox, spec: EpisodeSpec<'_>) -> Trajectory {
    run_observed(client, sandbox, spec, &|_| {}).await
}

/// Runs one episode, showing each message to `observe` as it is added.
pub async fn run_observed(
    client: &LlmClient,
    sandbox: &Sandbox,
    spec: EpisodeSpec<'_>,
    observe: &(dyn Fn(&Turn) + Sync),
) -> Trajectory {
    let started = Instant::now();
    let specs = tools::specs();
    let system = format!("{}{}", spec.system.trim_end(), protocol::system_suffix(&specs));
    let counter = spec.counter.clone();
    let turn = |role: &str, content: String| Turn {
        role: role.into(),
        tokens: counter.message(role, &content) as u64,
        content,
        masked: false,
    };
    let mut turns = vec![turn("system", system), turn("user", spec.task.clone())];
    turns.iter().for_each(observe);
    let mut t = Trajectory::empty(spec.instance_id);
    let shells = async {
        let shell = sandbox.shell(&spec.env).await?;
        let files = sandbox.shell(&spec.env).await?;
        Ok::<_, std::io::Error>((shell, files))
    };
    let (mut shell, mut file_shell) = match shells.await {
        Ok(s) => s,
        Err(e) => {
            t.exit_reason = ExitReason::SandboxError;
            t.error = Some(e.to_string());
            t.messages = turns;
            return t;
        }
    };
    let mut editor = Editor::new(&sandbox.repo);
    let mut window = Window::new(spec.budget, spec.policy, counter.clone());
    let mut consecutive_errors = 0;

    let exit = loop {
        if t.steps >= spec.limits.max_steps {
            break ExitReason::StepLimit;
        }
        if started.elapsed() >= spec.limits.wall {
            break ExitReason::TimeLimit;
        }
        if t.prompt_tokens + t.completion_tokens >= spec.limits.max_total_tokens {
            break ExitReason::TokenLimit;
        }
        let Some((prompt, _)) = window.prompt(&mut turns, &mut t) else {
            break ExitReason::ContextExhausted;
        };

        let reply = match client.chat(&prompt, STOP_WORDS).await {
            Ok(r) => r,
            Err(e) => {
                t.error = Some(e.to_string());
                break ExitReason::LlmError;
            }
        };
        t.steps += 1;
        t.prompt_tokens += reply.usage.prompt_tokens;
        t.completion_tokens += reply.usage.completion_tokens;
        let content = reply.content;
        turns.push(turn("assistant", content.clone()));
        observe(&turns[turns.len() - 1]);
        let observation = match protocol::parse(&content, &specs) {
            Err(e) => {
                t.format_errors += 1;
                consecutive_errors += 1;
                if consecutive_errors >= spec.limits.max_format_errors {
                    break ExitReason::FormatErrors;
                }
                format!("ERROR:\n{e}")
            }
            Ok(parsed) => {
                consecutive_errors = 0;
                let mut files = SessionFiles { session: &mut file_shell };
                match tools::dispatch(&parsed.call, &mut shell, &mut editor, &mut files, spec.limits.command_timeout)
                    .await
                {
                    Ok(Outcome::Submit) => break ExitReason::Submitted,
                    Ok(Outcome::Observation(text)) => protocol::observation(&parsed.call.name, &text),
                    Err(e) => {
                        t.error = Some(e.to_string());
                        break ExitReason::SandboxError;
                    }
                }
            }
        };
        turns.push(turn("user", observation));
        observe(&turns[turns.len() - 1]);
    };
    t.exit_reason = exit;
    match sandbox.diff(&spec.exclude) {
        Ok(p) => t.patch = p,
        Err(e) if t.error.is_none() => t.error = Some(format!("cannot take the patch: {e}")),
        Err(_) => {}
    }
    shell.close().await;
    file_shell.close().await;
    t.messages = turns;
    t.wall_s = started.elapsed().as_secs_f64();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: &str, words: usize) -> Turn {
        let content = (0..words).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        Turn {
            role: role.into(),
            tokens: TokenCounter::Estimate.message(role, &content) as u64,
            content,
            masked: false,
        }
    }

    #[test]
    fn replay_compares_policies_on_the_same_messages() {
        let mut msgs = vec![turn("system", 50), turn("user", 50)];
        for _ in 0..30 {
            msgs.push(turn("assistant", 20));
            msgs.push(turn("user", 300));
        }
        let counter = std::sync::Arc::new(TokenCounter::Estimate);
        let budget = Budget { window: 4000, reserve: 200 };
        let fit = replay(&msgs, budget, Policy::Fit, counter.clone());
        let block = replay(&msgs, budget, Policy::Block { low_water: 0.6 }, counter.clone());
        assert_eq!((fit.calls, block.calls), (30, 30));
        assert!(!fit.exhausted && !block.exhausted);
        assert!(fit.masked > 0 && block.masked >= fit.masked);
        // Fit changes the prompt early on nearly every call once full.
        assert!(block.recompute_tokens * 2 < fit.recompute_tokens, "{fit:?} {block:?}");
        // With room for everything, nothing is masked and each call only
        // adds the new turns: the recomputed tokens are the last prompt.
        let all = replay(&msgs, Budget { window: 1 << 20, reserve: 0 }, Policy::Fit, counter);
        assert_eq!(all.masked, 0);
        assert!(all.recompute_tokens < all.prompt_tokens / 10, "{all:?}");
        // A window too small for system + task is exhausted at once.
        let tiny = replay(
            &msgs,
            Budget { window: 100, reserve: 10 },
            Policy::Fit,
            std::sync::Arc::new(TokenCounter::Estimate),
        );
        assert!(tiny.exhausted && tiny.calls == 0);
    }
}
