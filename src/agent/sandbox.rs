//! Sandboxes: where an episode's repository lives and its shells run. The
//! repository is a fresh git working copy in a temporary directory, at the
//! instance's buggy state. With `local` the shells run as the current user
//! on this machine, not isolated. With `bubblewrap` each shell runs in its
//! own PID namespace, without network (loopback only), with the system
//! read-only and only the repository writable; no root needed, so it works
//! inside a SLURM job.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::session::BashSession;

/// The task fields a sandbox needs.
#[derive(Debug, Clone)]
pub struct TaskState {
    pub instance_id: String,
    pub base_commit: String,
    /// The diff that puts the repository in the buggy state.
    pub bug_patch: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: {detail}")]
    Setup { what: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Fixed identity and dates, so that commits made here have the same hash
/// on every machine (the example tasks' base commit depends on it).
pub const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "swestar"),
    ("GIT_AUTHOR_EMAIL", "tasks@swestar.invalid"),
    ("GIT_COMMITTER_NAME", "swestar"),
    ("GIT_COMMITTER_EMAIL", "tasks@swestar.invalid"),
    ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00+00:00"),
    ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00+00:00"),
];

pub fn git(dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, SandboxError> {
    use std::io::Write;
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args).envs(GIT_ENV.iter().copied());
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(SandboxError::Setup {
            what: format!("git {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes a git repository of a plain source tree with one deterministic
/// commit (how the example tasks are distributed); returns its hash.
pub fn repo_from_tree(tree: &Path, dest: &Path) -> Result<String, SandboxError> {
    copy_tree(tree, dest)?;
    git(dest, &["init", "-q", "-b", "main"], None)?;
    git(dest, &["add", "-A"], None)?;
    git(dest, &["commit", "-q", "-m", "ledger 0.1.0"], None)?;
    Ok(git(dest, &["rev-parse", "HEAD"], None)?.trim().to_string())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "__pycache__" || name == ".pytest_cache" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Files that running code leaves behind, left out of every patch.
const BYPRODUCTS: &[&str] = &["**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**"];

/// How an episode's shells are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    #[default]
    Local,
    Bubblewrap,
}

/// A working copy at the buggy state of one instance.
pub struct LocalSandbox {
    _dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub isolation: Isolation,
}

impl LocalSandbox {
    /// Clones `source` (a git repository holding the base commit), checks
    /// out the base commit, applies the bug and commits it, so that the
    /// agent's changes are exactly `git diff HEAD`.
    pub fn prepare(source: &Path, task: &TaskState) -> Result<LocalSandbox, SandboxError> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("repo");
        let src = source.to_string_lossy().into_owned();
        git(dir.path(), &["clone", "-q", "--shared", &src, "repo"], None)?;
        git(&repo, &["checkout", "-q", &task.base_commit], None).map_err(|e| SandboxError::Setup {
            what: format!("{}: base commit {}", task.instance_id, task.base_commit),
            detail: e.to_string(),
        })?;
        if !task.bug_patch.trim().is_empty() {
            git(&repo, &["apply", "--whitespace=nowarn", "-"], Some(&task.bug_patch))?;
            git(&repo, &["commit", "-q", "-am", "task state"], None)?;
        }
        Ok(LocalSandbox { _dir: dir, repo, isolation: Isolation::Local })
    }

    /// The program a shell runs as: plain bash, or bash inside bubblewrap.
    pub fn shell_program(&self) -> Vec<String> {
        let bash = ["bash", "--norc", "--noprofile", "--noediting", "-i"].map(String::from);
        match self.isolation {
            Isolation::Local => bash.to_vec(),
            Isolation::Bubblewrap => {
                let repo = self.repo.to_string_lossy().into_owned();
                let mut p: Vec<String> =
                    ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind"]
                        .map(String::from)
                        .to_vec();
                p.extend([repo.clone(), repo.clone()]);
                p.extend(
                    ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent", "--chdir"]
                        .map(String::from),
                );
                p.push(repo);
                p.extend(bash);
                p
            }
        }
    }

    /// A bash session in the repository.
    pub async fn shell(&self, env: &[(String, String)]) -> std::io::Result<BashSession> {
        BashSession::start(&self.shell_program(), &self.repo, env).await
    }

    /// The agent's changes, excluding the files in `exclude` (the test
    /// files a task forbids touching).
    pub fn diff(&self, exclude: &[String]) -> Result<String, SandboxError> {
        // New files count too: stage everything, then diff the index.
        git(&self.repo, &["add", "-A"], None)?;
        let mut args = vec!["diff".to_string(), "--cached".into(), "HEAD".into(), "--".into(), ".".into()];
        args.extend(exclude.iter().map(|p| format!(":(exclude){p}")));
        // Byproducts of running the code are never part of a fix.
        args.extend(BYPRODUCTS.iter().map(|p| format!(":(exclude,glob){p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git(&self.repo, &args, None)
    }
}
