//! `swestar agent`: one episode on one instance with every turn printed as
//! it happens, for debugging prompts and tools against a model server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::Exit;
use crate::agent::condense::{Budget, Policy};
use crate::agent::episode::{run_observed, EpisodeSpec, ExitReason, Limits, Turn};
use crate::agent::llm::{LlmClient, ModelConfig};
use crate::agent::prompts::{self, PromptContext};
use crate::agent::sandbox::{repo_from_tree, ContainerSpec, Isolation, Sandbox, SandboxSpec, TaskState};
use crate::agent::tokens::TokenCounter;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Instances as JSON Lines (SWE-smith / SWE-bench fields).
    #[arg(long)]
    tasks: PathBuf,
    /// The instance to run.
    #[arg(long)]
    instance: String,
    /// The repository: a git repository holding the base commit, or a plain
    /// source tree (committed the way examples/tasks/build_instances.py does).
    /// Optional with a container sandbox whose image holds the repository.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// OpenAI-compatible base URL, e.g. http://127.0.0.1:30000/v1
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "default")]
    model_name: String,
    /// Environment variable holding the API key.
    #[arg(long)]
    api_key_env: Option<String>,
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    max_tokens: Option<u32>,
    /// The model's tokenizer.json (default: estimate tokens from length).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 32768)]
    context_window: usize,
    #[arg(long, default_value_t = 50)]
    max_steps: u32,
    #[arg(long, default_value = "local", value_parser = isolation_parser())]
    sandbox: Isolation,
    /// The container image (default: the instance's `image_name`).
    #[arg(long)]
    image: Option<String>,
    /// podman or apptainer executable.
    #[arg(long)]
    container_program: Option<String>,
    /// Write the trajectory as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn find_instance(path: &Path, id: &str) -> Result<serde_json::Value, Exit> {
    let text = std::fs::read_to_string(path).map_err(|e| Exit::invalid(format!("error: {}: {e}", path.display())))?;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Exit::invalid(format!("error: {}:{}: not JSON: {e}", path.display(), n + 1)))?;
        if v["instance_id"] == id {
            return Ok(v);
        }
    }
    Err(Exit::invalid(format!("error: no instance `{id}` in {}", path.display())))
}

fn print_turn(t: &Turn) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "─── {} ({} tokens) ───\n{}", t.role, t.tokens, t.content.trim_end());
    let _ = out.flush();
}

pub fn agent(args: AgentArgs) -> Result<ExitCode, Exit> {
    let inst = find_instance(&args.tasks, &args.instance)?;
    let field = |k: &str| inst[k].as_str().unwrap_or_default().to_string();
    let task = TaskState {
        instance_id: field("instance_id"),
        base_commit: field("base_commit"),
        bug_patch: field("patch"),
        image: args.image.clone().unwrap_or_else(|| field("image_name")),
    };
    let failed = |e: String| Exit::failed(format!("error: {e}"));
    let scratch = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
    let source = match &args.repo {
        Some(repo) if repo.join(".git").exists() => Some(repo.clone()),
        Some(repo) => {
            let dest = scratch.path().join("source");
            let head = repo_from_tree(repo, &dest).map_err(|e| failed(e.to_string()))?;
            if head != task.base_commit {
                return Err(failed(format!(
                    "{} commits as {head}, but the instance's base commit is {}",
                    repo.display(),
                    task.base_commit
                )));
            }
            Some(dest)
        }
        None => None,
    };
    let container = match args.sandbox {
        Isolation::Podman | Isolation::Apptainer => {
            let default = if args.sandbox == Isolation::Podman { "podman" } else { "apptainer" };
            Some(ContainerSpec::new(args.container_program.as_deref().unwrap_or(default)))
        }
        _ => None,
    };
    let spec = SandboxSpec { isolation: args.sandbox, container };
    let sandbox = Sandbox::prepare(&spec, source.as_deref(), &task).map_err(|e| failed(e.to_string()))?;
    let repo = sandbox.repo.to_string_lossy().into_owned();
    let ctx = PromptContext {
        repo: &repo,
        repo_name: inst["repo"].as_str().unwrap_or(""),
        instance_id: &task.instance_id,
        problem_statement: inst["problem_statement"].as_str().unwrap_or(""),
        instance: &inst,
        params: &serde_json::Value::Null,
    };
    let system = prompts::render(prompts::SYSTEM, &ctx).map_err(failed)?;
    let instance_prompt = prompts::render(prompts::INSTANCE, &ctx).map_err(failed)?;
    let counter = match &args.tokenizer {
        Some(p) => TokenCounter::from_file(p).map_err(failed)?,
        None => TokenCounter::Estimate,
    };
    let mut config = ModelConfig::new(&args.model, &args.model_name);
    config.api_key = args.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
    config.temperature = args.temperature;
    config.max_tokens = args.max_tokens;
    let client = LlmClient::new(config).map_err(|e| failed(e.to_string()))?;
    let env: Vec<(String, String)> = ["PATH", "HOME", "USER", "LANG", "LC_ALL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let spec = EpisodeSpec {
        instance_id: &task.instance_id,
        system,
        task: instance_prompt,
        limits: Limits { max_steps: args.max_steps, command_timeout: Duration::from_secs(120), ..Limits::default() },
        budget: Budget { window: args.context_window, reserve: 2048.min(args.context_window / 4) },
        policy: Policy::default(),
        env,
        exclude: Vec::new(),
        counter: Arc::new(counter),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let t = runtime.block_on(run_observed(&client, &sandbox, spec, &print_turn));
    println!(
        "═══ {:?} after {} steps, {} prompt + {} completion tokens, {} masked, {:.1}s ═══",
        t.exit_reason, t.steps, t.prompt_tokens, t.completion_tokens, t.masked, t.wall_s
    );
    if let Some(e) = &t.error {
        println!("error: {e}");
    }
    println!("{}", if t.patch.is_empty() { "(no changes)".to_string() } else { t.patch.clone() });
    if let Some(out) = &args.out {
        let json = serde_json::to_vec_pretty(&t).expect("plain data");
        std::fs::write(out, json).map_err(|e| failed(format!("{}: {e}", out.display())))?;
    }
    Ok(if t.exit_reason == ExitReason::Submitted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `--sandbox`: one of the workflow's sandbox names.
fn isolation_parser() -> impl clap::builder::TypedValueParser<Value = Isolation> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Isolation::ALL.map(Isolation::name))
        .map(|s| Isolation::from_name(&s).expect("one of the listed names"))
}
