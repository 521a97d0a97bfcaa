//! Sandboxes: where an episode's repository lives and its shells run.
//!
//! - `local`: a fresh git working copy in a temporary directory at the
//!   instance's buggy state; the shells run as the current user on this
//!   machine. Not isolated.
//! - `bubblewrap`: the same working copy; each shell runs in bwrap with its
//!   own PID namespace, no network (loopback only), the system read-only and
//!   only the repository writable.
//! - `podman`: one container per episode from the instance's image (single
//!   UID, no network unless asked), kept alive by `sleep infinity`; the
//!   shells are `podman exec -it … bash`. The repository is either the
//!   image's own (at `workdir`, as SWE-bench images ship it) or the host
//!   working copy bind-mounted there. Removed when the sandbox is dropped.
//! - `apptainer`: the same with an Apptainer instance (`instance start`,
//!   `exec instance://`, `instance stop`). Apptainer cannot be installed on
//!   our build machines, so only the commands built here are tested.
//!
//! None of them needs root, so all work inside a SLURM job.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::session::BashSession;

mod container;
mod git;

pub use container::sweep_stale;
use container::{unique_name, Container};
pub use git::{git, repo_from_tree, GIT_ENV};
use git::{output, output_in};

/// The task fields a sandbox needs.
#[derive(Debug, Clone, Default)]
pub struct TaskState {
    pub instance_id: String,
    pub base_commit: String,
    /// The diff that puts the repository in the buggy state.
    pub bug_patch: String,
    /// The container image (podman, apptainer).
    pub image: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: {detail}")]
    Setup { what: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Files that running code leaves behind, left out of every patch.
const BYPRODUCTS: &[&str] = &["**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**"];

/// How an episode's shells are confined (as a workflow names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    #[default]
    Local,
    Bubblewrap,
    Podman,
    Apptainer,
}

impl Isolation {
    pub const ALL: [Isolation; 4] = [Isolation::Local, Isolation::Bubblewrap, Isolation::Podman, Isolation::Apptainer];

    /// The name a workflow (and `swestar agent --sandbox`) uses.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Local => "local",
            Isolation::Bubblewrap => "bubblewrap",
            Isolation::Podman => "podman",
            Isolation::Apptainer => "apptainer",
        }
    }

    pub fn from_name(name: &str) -> Option<Isolation> {
        Isolation::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// Container settings of the `podman` and `apptainer` sandboxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Where the repository is inside the container.
    pub workdir: String,
    /// Network access (default: none, loopback only).
    pub network: bool,
    /// Extra arguments of `podman run` / `apptainer instance start`.
    pub args: Vec<String>,
    /// The podman or apptainer executable.
    pub program: String,
}

impl ContainerSpec {
    pub fn new(program: &str) -> ContainerSpec {
        ContainerSpec { workdir: "/testbed".into(), network: false, args: Vec::new(), program: program.into() }
    }
}

/// Everything that decides how a sandbox is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub isolation: Isolation,
    /// For podman and apptainer.
    pub container: Option<ContainerSpec>,
}

impl SandboxSpec {
    pub fn local() -> SandboxSpec {
        SandboxSpec { isolation: Isolation::Local, container: None }
    }
}

const SHELL: [&str; 5] = ["bash", "--norc", "--noprofile", "--noediting", "-i"];

/// A repository at the buggy state of one instance, and where its shells run.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// The working copy on this machine, when there is one.
    host_repo: Option<PathBuf>,
    /// The repository as the shells see it.
    pub repo: PathBuf,
    pub isolation: Isolation,
    container: Option<Container>,
}

impl Sandbox {
    /// A local working copy: clones `source` (a git repository holding the
    /// base commit), checks out the base commit, applies the bug and
    /// commits it, so that the agent's changes are exactly `git diff HEAD`.
    pub fn local(source: &Path, task: &TaskState) -> Result<Sandbox, SandboxError> {
        Sandbox::prepare(&SandboxSpec::local(), Some(source), task)
    }

    /// Makes the sandbox `spec` describes. With a `source` repository the
    /// working copy is made on this machine (and mounted into a container);
    /// without one, a container's image must hold the repository at its
    /// workdir.
    pub fn prepare(spec: &SandboxSpec, source: Option<&Path>, task: &TaskState) -> Result<Sandbox, SandboxError> {
        let dir = tempfile::Builder::new().prefix("swestar-sandbox-").tempdir()?;
        let host_repo = match source {
            Some(src) => {
                let repo = dir.path().join("repo");
                let src = src.to_string_lossy().into_owned();
                // A container sees only the working copy, so it must not
                // borrow objects from the source by path (--shared).
                let shared = matches!(spec.isolation, Isolation::Local | Isolation::Bubblewrap);
                let mut args = vec!["clone", "-q"];
                if shared {
                    args.push("--shared");
                }
                args.extend([src.as_str(), "repo"]);
                git(dir.path(), &args, None)?;
                Some(repo)
            }
            None => None,
        };
        let container = match spec.isolation {
            Isolation::Local | Isolation::Bubblewrap => None,
            engine => {
                let Some(c) = spec.container.clone() else {
                    return Err(SandboxError::Setup {
                        what: format!("{}: {engine:?} sandbox", task.instance_id),
                        detail: "no container settings".into(),
                    });
                };
                if task.image.is_empty() {
                    return Err(SandboxError::Setup {
                        what: format!("{}: {engine:?} sandbox", task.instance_id),
                        detail: "the instance names no image".into(),
                    });
                }
                Some(Container { engine, spec: c, name: unique_name(&task.instance_id) })
            }
        };
        let repo = match (&container, &host_repo) {
            (Some(c), _) => PathBuf::from(&c.spec.workdir),
            (None, Some(r)) => r.clone(),
            (None, None) => {
                return Err(SandboxError::Setup {
                    what: format!("{}: {:?} sandbox", task.instance_id, spec.isolation),
                    detail: "no source repository".into(),
                })
            }
        };
        let mut sandbox = Sandbox { dir, host_repo, repo, isolation: spec.isolation, container: None };
        if sandbox.host_repo.is_some() {
            sandbox.set_task_state(task)?;
        }
        if let Some(c) = container {
            let start = c.start_command(&task.image, sandbox.host_repo.as_deref());
            // Kept before starting, so that a failed start is cleaned up too.
            sandbox.container = Some(c);
            output(&start, None, || format!("{}: starting a container from {}", task.instance_id, task.image))?;
            if sandbox.host_repo.is_none() {
                sandbox.set_task_state(task)?;
            }
        }
        Ok(sandbox)
    }

    /// Base commit checked out, bug applied and committed.
    fn set_task_state(&self, task: &TaskState) -> Result<(), SandboxError> {
        if !task.base_commit.is_empty() {
            self.git(&["checkout", "-q", &task.base_commit], None).map_err(|e| SandboxError::Setup {
                what: format!("{}: base commit {}", task.instance_id, task.base_commit),
                detail: e.to_string(),
            })?;
        }
        if !task.bug_patch.trim().is_empty() {
            self.git(&["apply", "--whitespace=nowarn", "-"], Some(&task.bug_patch)).map_err(|e| {
                SandboxError::Setup {
                    what: format!("{}: applying the bug patch", task.instance_id),
                    detail: e.to_string(),
                }
            })?;
        }
        // The task state becomes the repository's only history: a commit on
        // top of the base would show the injected bug to the agent
        // (`git log -p`). The agent's changes are then `git diff HEAD`.
        self.git(&["checkout", "-q", "--orphan", "swestar-task"], None)?;
        self.git(&["add", "-A"], None)?;
        self.git(
            &["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "--allow-empty", "-m", "task state"],
            None,
        )?;
        let refs = self.git(&["for-each-ref", "--format=%(refname)"], None)?;
        for r in refs.lines().filter(|r| *r != "refs/heads/swestar-task") {
            self.git(&["update-ref", "-d", r], None)?;
        }
        self.git(&["reflog", "expire", "--expire=now", "--all"], None)?;
        Ok(())
    }

    /// Runs git on the repository: here when the working copy is here,
    /// else inside the container.
    pub fn git(&self, args: &[&str], stdin: Option<&str>) -> Result<String, SandboxError> {
        match (&self.host_repo, &self.container) {
            (Some(r), _) => git(r, args, stdin),
            (None, Some(c)) => {
                let env: Vec<(String, String)> = GIT_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let mut program = c.exec_prefix(&env, false);
                program.push("git".into());
                program.extend(args.iter().map(|a| a.to_string()));
                output(&program, stdin, || format!("git {} (in {})", args.join(" "), c.name))
            }
            (None, None) => unreachable!("a sandbox has a working copy or a container"),
        }
    }

    /// Runs a program in the repository (here when the working copy is
    /// here, else inside the container), `stdin` fed to it; its stdout, or
    /// an error with its stderr.
    pub fn exec(&self, program: &[&str], stdin: Option<&str>) -> Result<String, SandboxError> {
        let args: Vec<String> = program.iter().map(|a| a.to_string()).collect();
        let what = || program.join(" ");
        match (&self.host_repo, &self.container) {
            (Some(r), _) => output_in(&args, stdin, Some(r), what),
            (None, Some(c)) => {
                let env: Vec<(String, String)> = GIT_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let mut full = c.exec_prefix(&env, false);
                full.extend(args);
                output_in(&full, stdin, None, what)
            }
            (None, None) => unreachable!("a sandbox has a working copy or a container"),
        }
    }

    /// The program a shell runs as.
    pub fn shell_program(&self, env: &[(String, String)]) -> Vec<String> {
        let bash = SHELL.map(String::from);
        if let Some(c) = &self.container {
            // The host's PATH and HOME mean nothing in the image.
            let env: Vec<(String, String)> = env
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL"))
                .cloned()
                .chain([("TERM".to_string(), "dumb".to_string())])
                .collect();
            let mut p = c.exec_prefix(&env, true);
            p.extend(bash);
            return p;
        }
        match self.isolation {
            Isolation::Bubblewrap => {
                let repo = self.repo.to_string_lossy().into_owned();
                let mut p: Vec<String> =
                    ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind"]
                        .map(String::from)
                        .to_vec();
                p.extend([repo.clone(), repo.clone()]);
                for dir in hidden_by_private_tmp(env) {
                    let dir = dir.to_string_lossy().into_owned();
                    p.extend(["--ro-bind".to_string(), dir.clone(), dir]);
                }
                p.extend(
                    ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent", "--chdir"]
                        .map(String::from),
                );
                p.push(repo);
                p.extend(bash);
                p
            }
            _ => bash.to_vec(),
        }
    }

    /// A bash session in the repository.
    pub async fn shell(&self, env: &[(String, String)]) -> std::io::Result<BashSession> {
        let cwd = self.host_repo.as_deref().unwrap_or(self.dir.path());
        // The exec client runs here and needs this machine's environment
        // (PATH, XDG_RUNTIME_DIR of a rootless podman); the shell inside
        // gets `env` through the client's own options.
        let host: Vec<(String, String)>;
        let process_env = if self.container.is_some() {
            host = std::env::vars().collect();
            &host
        } else {
            env
        };
        let mut session = BashSession::start(&self.shell_program(env), cwd, process_env).await?;
        if let Some(c) = &self.container {
            // The terminal's foreground group on this side is `podman exec`
            // itself; a hung command is killed from inside the container.
            session.kill_inside(c.exec_prefix(&[], false)).await?;
        }
        Ok(session)
    }

    /// The agent's changes, excluding the files in `exclude` (the test
    /// files a task forbids touching).
    pub fn diff(&self, exclude: &[String]) -> Result<String, SandboxError> {
        // New files count too: stage everything, then diff the index.
        self.git(&["add", "-A"], None)?;
        let mut args = vec!["diff".to_string(), "--cached".into(), "HEAD".into(), "--".into(), ".".into()];
        args.extend(exclude.iter().map(|p| format!(":(exclude){p}")));
        // Byproducts of running the code are never part of a fix.
        args.extend(BYPRODUCTS.iter().map(|p| format!(":(exclude,glob){p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.git(&args, None)
    }

    /// The container's name, if the sandbox runs one.
    pub fn container_name(&self) -> Option<&str> {
        self.container.as_ref().map(|c| c.name.as_str())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            let stop = c.stop_command();
            let _ = Command::new(&stop[0]).args(&stop[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// The directories on the shell's PATH that bubblewrap's private `/tmp`
/// would hide (a job-local virtual environment, a tool unpacked to
/// `$TMPDIR`), each as the root that must stay visible: a Python virtual
/// environment whole (its `bin/` links into `lib/`), else the directory.
fn hidden_by_private_tmp(env: &[(String, String)]) -> Vec<PathBuf> {
    let Some((_, path)) = env.iter().find(|(k, _)| k == "PATH") else { return Vec::new() };
    let mut roots: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(path) {
        let Ok(dir) = dir.canonicalize() else { continue };
        if !dir.starts_with("/tmp") || dir == Path::new("/tmp") {
            continue;
        }
        let root = match dir.parent() {
            Some(venv) if dir.ends_with("bin") && venv.join("pyvenv.cfg").is_file() => venv.to_path_buf(),
            _ => dir,
        };
        if !roots.iter().any(|r| root.starts_with(r)) {
            roots.retain(|r| !r.starts_with(&root));
            roots.push(root);
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_names_are_the_workflow_names() {
        for i in Isolation::ALL {
            assert_eq!(serde_json::to_value(i).unwrap(), i.name());
            assert_eq!(Isolation::from_name(i.name()), Some(i));
        }
        assert_eq!(Isolation::from_name("docker"), None);
    }

    #[test]
    fn bubblewrap_keeps_the_paths_tools_under_tmp_visible() {
        let tmp = tempfile::Builder::new().prefix("swestar-path").tempdir_in("/tmp").unwrap();
        let venv = tmp.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        let tools = tmp.path().join("tools");
        std::fs::create_dir_all(tools.join("sub")).unwrap();
        let path = std::env::join_paths([
            venv.join("bin"),
            PathBuf::from("/usr/bin"),
            tools.clone(),
            tools.join("sub"),
            tmp.path().join("missing"),
        ])
        .unwrap();
        let env = [("PATH".to_string(), path.to_string_lossy().into_owned())];
        assert_eq!(hidden_by_private_tmp(&env), [venv.clone(), tools.clone()], "venvs whole, nested dirs once");
        let s = Sandbox {
            dir: tempfile::tempdir().unwrap(),
            host_repo: Some("/work/r".into()),
            repo: "/work/r".into(),
            isolation: Isolation::Bubblewrap,
            container: None,
        };
        let shell = s.shell_program(&env).join(" ");
        let venv = venv.display();
        assert!(shell.contains(&format!("--tmpfs /tmp --bind /work/r /work/r --ro-bind {venv} {venv} ")), "{shell}");
        assert!(hidden_by_private_tmp(&[("PATH".into(), "/usr/bin:/tmp".into())]).is_empty());
    }

    // Apptainer cannot be installed on the build machines: these commands
    // are checked against its documented command line only.
}
