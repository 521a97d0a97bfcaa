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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::workspace::{shell_env, Sources, Workspace};
use crate::agent::episode::{self, EpisodeSpec, ExitReason, Limits, Trajectory};
use crate::agent::llm::LlmClient;
use crate::agent::prompts::{self, PromptContext};
use crate::agent::sandbox::Sandbox;
use crate::agent::tokens::TokenCounter;
use crate::api::{serve_key, Job, Kind, PromptSource, Settings, ShardRun, StageError, StageModel};
use crate::store::table;
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
        let rows = read_instances(job)?;
        let (lo, hi) = crate::store::shard::shard_range(rows.len(), shard.index, shard.count);
        let log_path = job.stage_dir.join(format!("rollout-{:05}.jsonl", shard.index));
        let done = read_log(&log_path)?;
        let mut todo = Vec::new();
        for (i, row) in rows.iter().enumerate().take(hi).skip(lo) {
            let id = instance_id(row, i)?;
            for attempt in 0..self.attempts {
                if !done.contains(&(id.clone(), attempt)) {
                    todo.push((i, attempt));
                }
            }
        }
        let total = (hi - lo) * self.attempts as usize;
        eprintln!(
            "rollout: shard {}/{}: instances {lo}..{hi}, {} episodes, {} already done, {} at once",
            shard.index,
            shard.count,
            total,
            total - todo.len(),
            self.parallel
        );
        if !todo.is_empty() {
            self.workspace.sweep("rollout");
            shard.cancel.handle_in_process();
            let runtime = super::runtime(shard)?;
            let failures = runtime.block_on(self.run_episodes(job, shard, &rows, todo, &log_path))?;
            if !failures.is_empty() {
                let first = &failures[0];
                return Err(StageError::Failed(format!(
                    "{} episode(s) could not run and were not recorded (a rerun retries them); first: {} attempt {}: {}",
                    failures.len(),
                    first.0,
                    first.1,
                    first.2
                )));
            }
        }
        write_output(&log_path, &rows[lo..hi], &shard.output)
    }
}

/// One infrastructure failure: instance, attempt, what happened.
type Failure = (String, u32, String);

impl RolloutSpec {
    async fn run_episodes(
        &self,
        job: &Job,
        shard: &ShardRun,
        rows: &[Value],
        todo: Vec<(usize, u32)>,
        log_path: &Path,
    ) -> Result<Vec<Failure>, StageError> {
        let agent = Arc::new(Agent::new(self, job, shard)?);
        let log = Arc::new(tokio::sync::Mutex::new(Log::open(log_path)?));
        let permits = Arc::new(tokio::sync::Semaphore::new(self.parallel.max(1) as usize));
        let mut tasks: tokio::task::JoinSet<Result<(), Failure>> = tokio::task::JoinSet::new();
        for (i, attempt) in todo {
            let row = rows[i].clone();
            let (agent, permits, log) = (agent.clone(), permits.clone(), log.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let id = row["instance_id"].as_str().unwrap_or_default().to_string();
                let t = agent.episode(&row).await.map_err(|e| (id.clone(), attempt, e))?;
                let line = row_json(&t, attempt, &agent.spec.model.config.model);
                log.lock().await.append(&line).map_err(|e| (id.clone(), attempt, format!("progress log: {e}")))?;
                Ok(())
            });
        }
        let mut failures = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), tasks.join_next()).await;
            match next {
                Ok(None) => break,
                Ok(Some(Ok(Ok(())))) => {}
                Ok(Some(Ok(Err(f)))) => {
                    eprintln!("rollout: {} attempt {}: {}", f.0, f.1, f.2);
                    failures.push(f);
                }
                Ok(Some(Err(e))) => failures.push(("?".into(), 0, format!("episode task: {e}"))),
                Err(_) => {}
            }
            if shard.cancel.requested() {
                // Dropping the episodes closes their shells and removes
                // their containers; what finished is in the log.
                tasks.shutdown().await;
                return Err(StageError::Terminated);
            }
        }
        failures.sort();
        Ok(failures)
    }

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

/// The rows of the `instances` input, as JSON objects (an instances
/// table is small next to the trajectories made from it).
fn read_instances(job: &Job) -> Result<Vec<Value>, StageError> {
    let input = job.inputs.get("instances").ok_or_else(|| StageError::Failed("no `instances` input".into()))?;
    Ok(crate::store::rows::read_all(&input.paths, input.format)?)
}

fn instance_id(row: &Value, i: usize) -> Result<String, StageError> {
    row.get("instance_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| StageError::Failed(format!("instances row {i} has no `instance_id` string")))
}

/// The shard's progress log, opened for appending.
struct Log {
    file: std::fs::File,
}

impl Log {
    fn open(path: &Path) -> Result<Log, StageError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| StageError::Io { path: path.to_path_buf(), source })?;
        Ok(Log { file })
    }

    /// One row, on disk before this returns.
    fn append(&mut self, row: &str) -> std::io::Result<()> {
        let mut line = row.to_string();
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }
}

/// The (instance, attempt) pairs a progress log holds. A torn last line
/// (the process died while writing it) is cut off, so appends continue
/// after the last whole row.
fn read_log(path: &Path) -> Result<HashSet<(String, u32)>, StageError> {
    let io = |source| StageError::Io { path: path.to_path_buf(), source };
    let mut done = HashSet::new();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(io(e)),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut good = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let Ok(row) = serde_json::from_str::<Value>(&line) else { break };
        let (Some(id), Some(attempt)) = (row["instance_id"].as_str(), row["attempt"].as_u64()) else { break };
        done.insert((id.to_string(), attempt as u32));
        good += n as u64;
    }
    let len = std::fs::metadata(path).map_err(io)?.len();
    if good < len {
        eprintln!("rollout: {}: dropping {} bytes of a torn last row", path.display(), len - good);
        std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(good)).map_err(io)?;
    }
    Ok(done)
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

/// The log's rows in instance order (then attempt), as Parquet.
fn write_output(log_path: &Path, rows: &[Value], output: &Path) -> Result<(), StageError> {
    fn io(p: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
        move |source| StageError::Io { path: p.to_path_buf(), source }
    }
    let order: HashMap<&str, usize> =
        rows.iter().enumerate().filter_map(|(i, r)| Some((r.get("instance_id")?.as_str()?, i))).collect();
    let text = match std::fs::read_to_string(log_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(log_path)(e)),
    };
    let mut lines: Vec<((usize, u64), &str)> = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| StageError::Failed(format!("{}: damaged row: {e}", log_path.display())))?;
        let pos = v["instance_id"].as_str().and_then(|id| order.get(id)).copied().unwrap_or(usize::MAX);
        lines.push(((pos, v["attempt"].as_u64().unwrap_or(0)), line));
    }
    lines.sort_by_key(|(k, _)| *k);
    lines.dedup_by_key(|(k, _)| *k);
    let schema = Arc::new(schema());
    let file = std::fs::File::create(output).map_err(io(output))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(table::writer_properties()))
        .map_err(|e| StageError::Failed(format!("{}: {e}", output.display())))?;
    for chunk in lines.chunks(256) {
        let mut buf = Vec::new();
        for (_, l) in chunk {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
            .build_decoder()
            .map_err(|e| StageError::Failed(e.to_string()))?;
        decoder.decode(&buf).map_err(|e| StageError::Failed(format!("{}: {e}", log_path.display())))?;
        if let Some(batch) = decoder.flush().map_err(|e| StageError::Failed(e.to_string()))? {
            writer.write(&batch).map_err(|e| StageError::Failed(format!("{}: {e}", output.display())))?;
        }
    }
    writer.close().map_err(|e| StageError::Failed(format!("{}: {e}", output.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_row_is_cut_and_whole_rows_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("rollout-00000.jsonl");
        std::fs::write(&log, "{\"instance_id\":\"a\",\"attempt\":0}\n{\"instance_id\":\"a\",\"attempt\":1}\n{\"instance_id\":\"b\",\"att").unwrap();
        let done = read_log(&log).unwrap();
        assert_eq!(done, HashSet::from([("a".to_string(), 0), ("a".to_string(), 1)]));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.ends_with("\"attempt\":1}\n"), "{text}");
        let mut l = Log::open(&log).unwrap();
        l.append("{\"instance_id\":\"b\",\"attempt\":0}").unwrap();
        assert_eq!(read_log(&log).unwrap().len(), 3);
    }
}
