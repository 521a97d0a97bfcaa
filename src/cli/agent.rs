//! `swestar agent`: one episode on one instance with every turn printed as
//! it happens, for debugging prompts and tools against a model server. It
//! is a rollout stage's episode (the same agent, environment, limits and
//! reserves), with a printer on top.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::Exit;
use crate::agent::condense::{Budget, Policy, DEFAULT_REPLY_RESERVE};
use crate::agent::episode::{ExitReason, Limits, Turn};
use crate::agent::llm::ModelConfig;
use crate::agent::prompts;
use crate::agent::sandbox::{ContainerSpec, Isolation, SandboxSpec};
use crate::stages::api::wire::default_image;
use crate::stages::api::{PromptSource, StageModel};
use crate::stages::rollout::{Agent, RolloutLimits, RolloutSpec};
use crate::stages::workspace::{shell_env_with, Workspace};

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
    /// The model name the server expects.
    #[arg(long, default_value = "default")]
    model_name: String,
    /// Environment variable holding the API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Sampling temperature (default: the server's).
    #[arg(long)]
    temperature: Option<f64>,
    /// Most tokens per reply (default: the server's).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// The model's tokenizer.json (default: estimate tokens from length).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The model's context window in tokens.
    #[arg(long, default_value_t = crate::agent::condense::DEFAULT_WINDOW)]
    context_window: usize,
    /// Model calls before the episode ends (default: a rollout's, 100).
    #[arg(long)]
    max_steps: Option<u32>,
    /// Where the episode's commands run.
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
    // A closed stdout (`| head`) must not stop the episode: the trajectory
    // still goes to --out, and the exit status says how it ended.
    let _shown_if_stdout_is_open =
        writeln!(out, "─── {} ({} tokens) ───\n{}", t.role, t.tokens, t.content.trim_end()).and_then(|()| out.flush());
}

/// The rollout spec of the command line: a rollout stage's agent with
/// its defaults (limits, reply reserve, masking, prompts, environment),
/// overridden where a flag says so.
fn rollout_spec(args: &AgentArgs) -> Result<RolloutSpec, Exit> {
    let mut config = ModelConfig::new(&args.model, &args.model_name);
    config.temperature = args.temperature;
    config.max_tokens = args.max_tokens;
    let (window, reserve) = (args.context_window, DEFAULT_REPLY_RESERVE);
    if reserve >= window {
        return Err(Exit::invalid(format!(
            "error: --context-window {window} leaves no room: {reserve} tokens are kept for the reply"
        )));
    }
    let model = StageModel {
        name: args.model_name.clone(),
        config,
        api_key_env: args.api_key_env.clone(),
        tokenizer: args.tokenizer.clone(),
        tokenizer_hash: None,
        budget: Budget { window, reserve },
        policy: Policy::default(),
    };
    let container = match args.sandbox {
        Isolation::Podman | Isolation::Apptainer => {
            let default = args.sandbox.name();
            Some(ContainerSpec::new(args.container_program.as_deref().unwrap_or(default)))
        }
        _ => None,
    };
    let workspace = Workspace {
        sandbox: SandboxSpec { isolation: args.sandbox, container },
        image: args.image.clone().unwrap_or_else(default_image),
        repo: args.repo.as_ref().map(|r| r.to_string_lossy().into_owned()),
    };
    let d = Limits::default();
    let limits = RolloutLimits {
        max_steps: args.max_steps.unwrap_or(d.max_steps),
        wall_s: d.wall.as_secs(),
        max_total_tokens: d.max_total_tokens,
        max_format_errors: d.max_format_errors,
        command_timeout_s: d.command_timeout.as_secs(),
    };
    let builtin = |p: (&str, &str)| PromptSource { name: p.0.to_string(), path: None };
    Ok(RolloutSpec {
        model,
        serve: None,
        attempts: 1,
        parallel: 1,
        workspace,
        limits,
        system_prompt: builtin(prompts::SYSTEM),
        instance_prompt: builtin(prompts::INSTANCE),
        exclude: Vec::new(),
    })
}

pub fn agent(args: AgentArgs) -> Result<ExitCode, Exit> {
    let inst = find_instance(&args.tasks, &args.instance)?;
    let failed = |e: String| Exit::failed(format!("error: {e}"));
    let spec = rollout_spec(&args)?;
    let scratch = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
    let workdir = std::env::current_dir().map_err(|e| failed(e.to_string()))?;
    let env = shell_env_with(&[]);
    let agent = Agent::with(&spec, workdir, serde_json::Value::Null, env, scratch.path().join("sources"))
        .map_err(|e| failed(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    runtime.block_on(agent.probe()).map_err(|e| failed(e.to_string()))?;
    let t = runtime.block_on(agent.episode_observed(&inst, &print_turn)).map_err(failed)?;
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
