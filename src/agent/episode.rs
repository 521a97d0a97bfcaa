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
    let placeholder_tokens = counter.message("user", condense::PLACEHOLDER);
    let mut turns = vec![turn("system", system), turn("user", spec.task.clone())];
    turns.iter().for_each(observe);
    let mut t = Trajectory {
        instance_id: spec.instance_id.to_string(),
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
    };
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
    let mut masks: Vec<Msg> = Vec::new();
    let mut previous: Vec<u32> = Vec::new();
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
        // Mask before the call; masking state is kept across turns.
        masks.truncate(0);
        masks.extend(turns.iter().enumerate().map(|(i, m)| Msg {
            role: match (i, m.role.as_str()) {
                (0, _) => Role::System,
                (1, _) => Role::Task,
                (_, "assistant") => Role::Assistant,
                _ => Role::Observation,
            },
            tokens: m.tokens as usize,
            masked_tokens: placeholder_tokens,
            masked: m.masked,
        }));
        t.masked += condense::mask(&mut masks, spec.budget, spec.policy) as u32;
        for (turn, m) in turns.iter_mut().zip(&masks) {
            turn.masked = m.masked;
        }
        if condense::total(&masks) + spec.budget.reserve > spec.budget.window {
            break ExitReason::ContextExhausted;
        }
        let prompt: Vec<Message> = turns
            .iter()
            .map(|m| {
                Message::new(&m.role, if m.masked { condense::PLACEHOLDER.to_string() } else { m.content.clone() })
            })
            .collect();
        let ids = counter.encode(&chatml_prompt(prompt.iter().map(|m| (m.role.as_str(), m.content.as_str()))));
        t.recompute_tokens += condense::recompute(&previous, &ids) as u64;
        previous = ids;

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
