//! Where a stage that works on repository tasks gets its sandboxes:
//! the isolation, the container image (a template over instance fields),
//! the host repository (another template), and the instance's task state.
//! Shared by the kinds that run the agent or tests (rollout,
//! issue_synthesis, test_filter, swebench_eval).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::sandbox::{repo_from_tree, sweep_stale, Isolation, Sandbox, SandboxSpec, TaskState};
use crate::Job;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub sandbox: SandboxSpec,
    /// The container image, a template over instance fields.
    pub image: String,
    /// The host repository, a template over instance fields; relative
    /// paths resolve against the workflow's directory. Not in the key: the
    /// base commit pins what it holds.
    pub repo: Option<String>,
}

impl Workspace {
    /// What enters the cache key.
    pub fn definition(&self) -> Value {
        let container = self
            .sandbox
            .container
            .as_ref()
            .map(|c| json!({"image": self.image, "workdir": c.workdir, "network": c.network, "args": c.args}));
        json!({"isolation": self.sandbox.isolation, "container": container})
    }

    /// Removes containers that killed processes left behind (once per
    /// shard, before any is started).
    pub fn sweep(&self, who: &str) {
        if let (Isolation::Podman, Some(c)) = (self.sandbox.isolation, &self.sandbox.container) {
            for name in sweep_stale(&c.program) {
                swestar_vocab::progress!("{who}: removed container {name}, left behind by a killed process");
            }
        }
    }

    /// The task state of an instance row and the host repository it
    /// starts from (none when the image holds the repository).
    pub fn task(&self, row: &Value, workdir: &Path, sources: &Sources) -> Result<(TaskState, Option<PathBuf>), String> {
        let field = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let image =
            if self.sandbox.container.is_some() { render_field("image", &self.image, row)? } else { String::new() };
        let source = match &self.repo {
            Some(t) => {
                let rendered = render_field("repo", t, row)?;
                Some(sources.get(&workdir.join(rendered), &field("base_commit"))?)
            }
            None => None,
        };
        let state = TaskState {
            instance_id: field("instance_id"),
            base_commit: field("base_commit"),
            bug_patch: field("patch"),
            image,
        };
        Ok((state, source))
    }

    /// A fresh sandbox at the instance's task state (off the event loop:
    /// cloning and starting containers block).
    pub async fn open(&self, row: &Value, workdir: &Path, sources: &Sources) -> Result<Sandbox, String> {
        let (state, source) = self.task(row, workdir, sources)?;
        let spec = self.sandbox.clone();
        tokio::task::spawn_blocking(move || Sandbox::prepare(&spec, source.as_deref(), &state))
            .await
            .map_err(|e| format!("sandbox setup: {e}"))?
            .map_err(|e| format!("sandbox: {e}"))
    }
}

/// Host repositories, each made once per process: a git repository is used
/// as it is; a plain source tree is committed into scratch space (and must
/// then commit as the instance's base commit).
pub struct Sources {
    dir: PathBuf,
    made: Mutex<HashMap<PathBuf, Result<PathBuf, String>>>,
}

impl Sources {
    pub fn new(dir: PathBuf) -> Sources {
        Sources { dir, made: Mutex::new(HashMap::new()) }
    }

    fn get(&self, path: &Path, base_commit: &str) -> Result<PathBuf, String> {
        let mut made = self.made.lock().expect("not poisoned");
        let entry = made.entry(path.to_path_buf()).or_insert_with(|| {
            if !path.exists() {
                return Err(format!("repository {} does not exist", path.display()));
            }
            if path.join(".git").exists() {
                return Ok(path.to_path_buf());
            }
            let dest = self.dir.join(&blake3::hash(path.to_string_lossy().as_bytes()).to_hex()[..16]);
            let head = repo_from_tree(path, &dest).map_err(|e| format!("{}: {e}", path.display()))?;
            if !base_commit.is_empty() && head != base_commit {
                return Err(format!(
                    "{} commits as {head}, but the instance's base commit is {base_commit}",
                    path.display()
                ));
            }
            Ok(dest)
        });
        entry.clone()
    }
}

/// What the sandboxes of one shard share: host repositories (made once),
/// the shells' environment, and the workflow's directory that relative
/// repository paths resolve against.
pub struct Hosts {
    pub sources: Sources,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
}

impl Hosts {
    pub fn of(job: &Job, shard: &crate::ShardRun) -> Hosts {
        Hosts { sources: Sources::new(shard.tmp.join("sources")), env: shell_env(job), workdir: job.workdir.clone() }
    }
}

/// Renders a template over an instance row's fields.
pub fn render_field(what: &str, template: &str, row: &Value) -> Result<String, String> {
    let env = minijinja::Environment::new();
    env.render_str(template, minijinja::Value::from(minijinja::value::Serde(row)))
        .map_err(|e| format!("`{what}` template `{template}`: {e}"))
}

/// The environment of shells in sandboxes: what a shell needs to find
/// programs (as for command stages), plus the stage's declared variables.
pub fn shell_env(job: &Job) -> Vec<(String, String)> {
    shell_env_with(&job.env)
}

/// The shells' environment with `declared` variables besides the base ones.
pub fn shell_env_with(declared: &[String]) -> Vec<(String, String)> {
    crate::command::BASE_ENV
        .iter()
        .filter(|k| !matches!(**k, "TERM" | "SHELL"))
        .map(|k| k.to_string())
        .chain(declared.iter().cloned())
        .filter_map(|k| std::env::var(&k).ok().map(|v| (k, v)))
        .collect()
}
