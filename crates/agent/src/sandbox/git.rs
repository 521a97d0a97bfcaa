//! Git in a sandbox's working copy: a fixed identity (so that commits
//! hash the same everywhere), running programs for their output, and
//! committing a plain source tree as a repository.

use std::path::Path;
use std::process::{Command, Stdio};

use super::SandboxError;

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

/// Runs a program to completion, feeding `stdin`; its stdout, or an error
/// carrying its stderr.
pub(super) fn output(
    program: &[String],
    stdin: Option<&str>,
    what: impl Fn() -> String,
) -> Result<String, SandboxError> {
    output_in(program, stdin, None, what)
}

pub(super) fn output_in(
    program: &[String],
    stdin: Option<&str>,
    cwd: Option<&Path>,
    what: impl Fn() -> String,
) -> Result<String, SandboxError> {
    use std::io::Write;
    let (exe, args) = program.split_first().expect("a program");
    let mut cmd = Command::new(exe);
    cmd.args(args).envs(GIT_ENV.iter().copied());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| SandboxError::Setup { what: what(), detail: format!("{exe}: {e}") })?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(SandboxError::Setup {
            what: what(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn git(dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, SandboxError> {
    let mut program = vec!["git".to_string(), "-C".into(), dir.to_string_lossy().into_owned()];
    program.extend(args.iter().map(|a| a.to_string()));
    output(&program, stdin, || format!("git {}", args.join(" ")))
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
