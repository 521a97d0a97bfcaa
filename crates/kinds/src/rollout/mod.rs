//! The `rollout` kind: the agent on every instance of the `instances` input,
//! `attempts` times each, `parallel` episodes at once in one process; one
//! trajectory row per attempt.
//!
//! A shard takes a contiguous range of instance rows. Each finished
//! episode is appended at once to the shard's progress log in the staging
//! directory (`rollout-00007.jsonl`, one JSON row per line, flushed and
//! synced), so a crash or a kill loses only the episodes still running; a
//! rerun of the shard skips what the log holds. When every episode of the
//! shard is done, the log is written as the shard's Parquet file in
//! instance order.
//!
//! Episodes that lost the model (the endpoint failed after its retries) or
//! whose sandbox could not be made are infrastructure failures,
//! not data: they are not logged, and the shard fails after the others
//! finished, naming them, so that a rerun retries just those.
//!
//! The cache key holds what shapes trajectories: the served model name and
//! sampling, the context budget and masking policy, the tokenizer and
//! prompt templates (by content), limits, sandbox and image. Not the
//! endpoint's URL, key or timeouts, and not `parallel`.

pub mod settings;
pub use settings::RolloutStage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Fields, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rowwise::{self, LogOrder, Row, RowWork};
use super::workspace::{shell_env, Sources, Workspace};
use crate::agent::episode::{self, EpisodeSpec, ExitReason, Limits, Trajectory};
use crate::agent::llm::LlmClient;
use crate::agent::prompts::{self, PromptContext};
use crate::agent::sandbox::Sandbox;
use crate::agent::tokens::TokenCounter;
use crate::api::{serve_key, Job, Kind, PromptSource, Settings, ShardRun, StageError, StageModel};
use swestar_vocab::serve::Serve;

/// Names the scaffold in every trajectory row; bumped with `VERSION`.
pub const SCAFFOLD: &str = concat!("swestar-agent/", env!("CARGO_PKG_VERSION"), "+r1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutLimits {
    pub max_steps: u32,
    pub wall_s: u64,
    pub max_total_tokens: u64,
    pub max_format_errors: u32,
    pub command_timeout_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub model: StageModel,
    /// A server the job starts for the model; its URL replaces base_url.
    pub serve: Option<Serve>,
    pub attempts: u32,
    pub parallel: u32,
    pub workspace: Workspace,
    pub limits: RolloutLimits,
    pub system_prompt: PromptSource,
    pub instance_prompt: PromptSource,
    pub exclude: Vec<String>,
}

impl Kind for RolloutSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "rollout";
    type Wire = settings::RolloutStage;

    fn validate(wire: settings::RolloutStage, s: &mut Settings<'_>) -> RolloutSpec {
        settings::validate(wire, s)
    }

    fn serve(&self) -> Option<&Serve> {
        self.serve.as_ref()
    }

    const HEADLINE: &'static [&'static str] =
        &["trajectories", "mean_turns", "prompt_tokens", "completion_tokens", "submitted_rate"];

    fn stats(&self, shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        let mut out = crate::rowwise::row_stats(shards);
        let table = crate::store::rows::Table::open(shards, crate::store::TableFormat::Parquet)?;
        let (mut n, mut steps, mut prompt, mut completion, mut submitted) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let columns = ["steps", "prompt_tokens", "completion_tokens", "exit_reason"];
        for batch in table.read_columns(0, table.rows(), Some(&columns)) {
            for r in batch? {
                n += 1;
                steps += r["steps"].as_u64().unwrap_or(0);
                prompt += r["prompt_tokens"].as_u64().unwrap_or(0);
                completion += r["completion_tokens"].as_u64().unwrap_or(0);
                submitted += u64::from(r["exit_reason"] == "submitted");
            }
        }
        let rate = |x: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
        out.insert("trajectories".into(), serde_json::json!(n));
        out.insert("mean_turns".into(), serde_json::json!(rate(steps)));
        out.insert("prompt_tokens".into(), serde_json::json!(prompt));
        out.insert("completion_tokens".into(), serde_json::json!(completion));
        out.insert("submitted_rate".into(), serde_json::json!(rate(submitted)));
        Ok(out)
    }

    fn definition(&self) -> BTreeMap<String, Value> {
        let m = &self.model;
        let mut model = m.sampling_key();
        let extra = json!({
            "context_window": m.budget.window,
            "reply_reserve": m.budget.reserve,
            "masking": m.policy,
            "tokenizer": m.tokenizer_hash,
        });
        if let (Some(o), Value::Object(e)) = (model.as_object_mut(), extra) {
            o.extend(e);
        }
        BTreeMap::from([
            ("model".into(), model),
            ("attempts".into(), json!(self.attempts)),
            ("sandbox".into(), self.workspace.definition()),
            ("limits".into(), serde_json::to_value(&self.limits).expect("plain data")),
            ("system_prompt".into(), self.system_prompt.key(prompts::SYSTEM)),
            ("instance_prompt".into(), self.instance_prompt.key(prompts::INSTANCE)),
            ("exclude".into(), json!(self.exclude)),
            ("scaffold".into(), json!(SCAFFOLD)),
            ("serve".into(), serve_key(&self.serve)),
        ])
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        rowwise::drive(self, job, shard)
    }
}

impl RowWork for RolloutSpec {
    const NAME: &'static str = "rollout";
    const INPUT: &'static str = "instances";
    const NOUN: &'static str = "instances";
    const UNIT: &'static str = "episode";
    const ORDER: LogOrder = LogOrder::Keyed;
    type Shared = Agent;

    fn parallel(&self) -> u32 {
        self.parallel
    }

    fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    fn units(&self) -> u32 {
        self.attempts
    }

    fn schema(&self, _job: &Job) -> Result<arrow_schema::SchemaRef, StageError> {
        Ok(Arc::new(schema()))
    }

    fn shared(&self, job: &Job, shard: &ShardRun) -> Result<Agent, StageError> {
        Agent::new(self, job, shard)
    }

    async fn check(agent: &Agent) -> Result<(), StageError> {
        agent.probe().await
    }

    async fn work(agent: Arc<Agent>, row: Value, attempt: u32) -> Result<Row, String> {
        let t = agent.episode(&row).await?;
        Ok(Row::Kept(row_json(&t, attempt, &agent.spec.model.config.model)))
    }

}

impl RolloutSpec {
    fn episode_limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_steps: l.max_steps,
            wall: Duration::from_secs(l.wall_s),
            max_total_tokens: l.max_total_tokens,
            max_format_errors: l.max_format_errors,
            command_timeout: Duration::from_secs(l.command_timeout_s),
        }
    }

    /// The rendered prompts of one row, with the repository's path as a
    /// marker, filled in once the sandbox exists. Checks the row's
    /// workspace (image and repository templates) too, so a bad row fails
    /// before anything starts.
    fn prepare(
        &self,
        row: &Value,
        workdir: &Path,
        sources: &Sources,
        system_t: &str,
        instance_t: &str,
        params: &Value,
    ) -> Result<(String, String), String> {
        let (state, _) = self.workspace.task(row, workdir, sources)?;
        let ctx = PromptContext {
            repo: REPO_MARK,
            repo_name: row.get("repo").and_then(Value::as_str).unwrap_or(""),
            instance_id: &state.instance_id,
            problem_statement: row.get("problem_statement").and_then(Value::as_str).unwrap_or(""),
            instance: row,
            params,
        };
        let system = prompts::render((self.system_prompt.name.as_str(), system_t), &ctx)?;
        let task = prompts::render((self.instance_prompt.name.as_str(), instance_t), &ctx)?;
        Ok((system, task))
    }
}

/// What every episode of a stage shares: the model client, the token
/// counter, the prompt templates, the shells' environment and the host
/// repositories. Used by rollout and by swebench_eval.
pub struct Agent {
    pub spec: RolloutSpec,
    client: LlmClient,
    counter: Arc<TokenCounter>,
    system_t: String,
    instance_t: String,
    params: Value,
    pub env: Vec<(String, String)>,
    pub sources: Sources,
    pub workdir: PathBuf,
}

impl Agent {
    pub fn new(spec: &RolloutSpec, job: &Job, shard: &ShardRun) -> Result<Agent, StageError> {
        let params = serde_json::to_value(&job.params).expect("plain data");
        Agent::with(spec, job.workdir.clone(), params, shell_env(job), shard.tmp.join("sources"))
    }

    /// The agent of a rollout spec outside a stage (`swestar agent`):
    /// relative repositories resolve against `workdir`, shells get `env`,
    /// plain source trees are committed under `scratch`.
    pub fn with(
        spec: &RolloutSpec,
        workdir: PathBuf,
        params: Value,
        env: Vec<(String, String)>,
        scratch: PathBuf,
    ) -> Result<Agent, StageError> {
        let config = spec.model.runtime_config(spec.serve.is_some())?;
        Ok(Agent {
            client: LlmClient::new(config).map_err(|e| StageError::Failed(e.to_string()))?,
            counter: Arc::new(match &spec.model.tokenizer {
                Some(p) => TokenCounter::from_file(p).map_err(StageError::Failed)?,
                None => TokenCounter::Estimate,
            }),
            system_t: spec.system_prompt.load(prompts::SYSTEM)?,
            instance_t: spec.instance_prompt.load(prompts::INSTANCE)?,
            params,
            env,
            sources: Sources::new(scratch),
            workdir,
            spec: spec.clone(),
        })
    }

    /// Fails when the model endpoint does not answer (see `LlmClient::probe`).
    pub async fn probe(&self) -> Result<(), StageError> {
        self.spec.model.reach(&self.client).await
    }

    /// One episode on an instance row in a fresh sandbox. `Err`: the
    /// episode could not run or lost the model (not data: not recorded).
    pub async fn episode(&self, row: &Value) -> Result<Trajectory, String> {
        let t = self.episode_observed(row, &|_| {}).await?;
        if t.exit_reason == ExitReason::LlmError {
            return Err(t.error.unwrap_or_default());
        }
        Ok(t)
    }

    /// One episode, each message shown to `observe` as it is added. `Err`:
    /// the episode could not run; one that lost the model is returned as
    /// it ended.
    pub async fn episode_observed(
        &self,
        row: &Value,
        observe: &(dyn Fn(&episode::Turn) + Sync),
    ) -> Result<Trajectory, String> {
        let spec = &self.spec;
        let id = row["instance_id"].as_str().unwrap_or_default().to_string();
        let (system, task_prompt) =
            spec.prepare(row, &self.workdir, &self.sources, &self.system_t, &self.instance_t, &self.params)?;
        let sandbox = spec.workspace.open(row, &self.workdir, &self.sources).await?;
        let ep = EpisodeSpec {
            instance_id: &id,
            system: render_with_repo(&system, &sandbox),
            task: render_with_repo(&task_prompt, &sandbox),
            limits: spec.episode_limits(),
            budget: spec.model.budget,
            policy: spec.model.policy,
            env: self.env.clone(),
            exclude: spec.exclude.clone(),
            counter: self.counter.clone(),
        };
        let t = episode::run_observed(&self.client, &sandbox, ep, observe).await;
        // Removing a container takes a moment; not on the event loop.
        let _ = tokio::task::spawn_blocking(move || drop(sandbox)).await;
        Ok(t)
    }
}

/// Stands for the repository's path while prompts are rendered.
const REPO_MARK: &str = "\u{0}SWESTAR_REPO\u{0}";

fn render_with_repo(text: &str, sandbox: &Sandbox) -> String {
    text.replace(REPO_MARK, &sandbox.repo.to_string_lossy())
}

/// A trajectory as a row of the output table.
pub fn row_json(t: &Trajectory, attempt: u32, model: &str) -> String {
    let mut v = serde_json::to_value(t).expect("plain data");
    let o = v.as_object_mut().expect("a struct");
    o.insert("attempt".into(), json!(attempt));
    o.insert("model".into(), json!(model));
    o.insert("scaffold".into(), json!(SCAFFOLD));
    serde_json::to_string(&v).expect("plain data")
}

/// The trajectories table's schema.
pub fn schema() -> Schema {
    let message = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("masked", DataType::Boolean, false),
    ]);
    Schema::new(vec![
        Field::new("instance_id", DataType::Utf8, false),
        Field::new("attempt", DataType::UInt32, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("scaffold", DataType::Utf8, false),
        Field::new("messages", DataType::List(Arc::new(Field::new("item", DataType::Struct(message), false))), false),
        Field::new("patch", DataType::Utf8, false),
        Field::new("exit_reason", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("steps", DataType::UInt32, false),
        Field::new("format_errors", DataType::UInt32, false),
        Field::new("prompt_tokens", DataType::UInt64, false),
        Field::new("completion_tokens", DataType::UInt64, false),
        Field::new("wall_s", DataType::Float64, false),
        Field::new("masked", DataType::UInt32, false),
        Field::new("recompute_tokens", DataType::UInt64, false),
    ])
}
