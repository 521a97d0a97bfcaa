//! The persistent bash session with real bash on a real pseudo-terminal.

mod common;

use std::time::{Duration, Instant};

use swestar::agent::editor::{Command, Editor, LocalFiles};
use swestar::agent::session::BashSession;

async fn session(dir: &std::path::Path) -> BashSession {
    let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap()), ("HOME".to_string(), "/root".to_string())];
    BashSession::start(&[], dir, &env).await.expect("bash starts")
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn cwd_env_and_background_jobs_persist_and_exit_codes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path()).await;
    let out = s.run("mkdir sub && cd sub && export GREETING=hello", T).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_code), ("", Some(0)));
    let out = s.run("pwd; echo $GREETING", T).await.unwrap();
    assert_eq!(out.output, format!("{}/sub\nhello\n", dir.path().canonicalize().unwrap().display()));
    let out = s.run("sleep 30 & echo started", T).await.unwrap();
    assert!(out.output.contains("started"), "{out:?}");
    let out = s.run("jobs | wc -l", T).await.unwrap();
    assert_eq!(out.output.trim(), "1", "the background job is still there");
    let out = s.run("ls /nonexistent", T).await.unwrap();
    assert_eq!(out.exit_code, Some(2));
    assert!(out.output.contains("No such file"), "stderr is captured: {out:?}");
    let out = s.run("false", T).await.unwrap();
    assert_eq!(out.exit_code, Some(1));
    s.close().await;
}

#[tokio::test]
async fn multi_line_commands_and_heredocs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path()).await;
    let out = s.run("for i in 1 2 3; do\n  echo line $i\ndone", T).await.unwrap();
    assert_eq!(out.output, "line 1\nline 2\nline 3\n");
    let out = s.run(&format!("cat > f.py <<'PY'\nprint('x' * 3)\nPY\n{} f.py", common::python()), T).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_code), ("xxx\n", Some(0)));
    s.close().await;
}

#[tokio::test]
async fn a_hanging_command_is_stopped_and_the_session_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path()).await;
    s.run("export KEEP=1", T).await.unwrap();
    let t = Instant::now();
    let out = s.run("sleep 1000", Duration::from_millis(500)).await.unwrap();
    assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // A shell loop (no child process to kill) is interrupted too.
    let out = s.run("while true; do :; done", Duration::from_millis(500)).await.unwrap();
    assert!(out.timed_out, "{out:?}");
    // A command that ignores Ctrl-C is killed.
    let out = s.run("bash -c 'trap \"\" INT; sleep 1000'", Duration::from_millis(300)).await.unwrap();
    assert!(out.timed_out, "{out:?}");
    let out = s.run("echo $KEEP", T).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_code), ("1\n", Some(0)), "same session");
    s.close().await;
}

#[tokio::test]
async fn endless_output_is_cut_in_the_middle_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path()).await;
    s.output_limit = 1000;
    let out = s.run("yes abc", Duration::from_millis(700)).await.unwrap();
    assert!(out.timed_out);
    assert!(out.truncated > 100_000, "{}", out.truncated);
    assert!(out.output.len() < 1200);
    assert!(out.output.starts_with("abc\nabc\n"), "{}", &out.output[..20]);
    assert!(out.output.contains("characters cut from the middle"));
    let out = s.run("seq 1 100000", T).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(out.output.starts_with("1\n2\n") && out.output.ends_with("99999\n100000\n"), "{}", out.output);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let path = dir.path().to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut s = session(&path).await;
            let out = s.run(&format!("echo session {i}"), T).await.unwrap();
            s.close().await;
            out.output
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), format!("session {i}\n"));
    }
}

/// Python trusts a cached .pyc whose source has the same size and mtime
/// second. The agent's shells write no caches, so a same-size edit in the
/// same second as the last run is what the next run executes (the mtime is
/// set back to the run's second to make "the same second" certain).
#[tokio::test]
async fn a_same_second_same_size_edit_is_what_python_runs_next() {
    let python = common::python();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("m.py"), "X = 1\n").unwrap();
    let mut s = session(&root).await;
    let import = format!("{python} -c 'import m; print(m.X)'");
    let out = s.run(&import, T).await.unwrap();
    assert_eq!(out.output, "1\n", "{out:?}");
    let out = s.run("stat -c %Y m.py", T).await.unwrap();
    let second = out.output.trim().to_string();
    let mut editor = Editor::new(&root);
    let path = root.join("m.py").display().to_string();
    let edit = Command::StrReplace { path, old_str: Some("X = 1".into()), new_str: Some("X = 2".into()) };
    editor.run(&mut LocalFiles, edit).await.unwrap();
    let out = s.run(&format!("touch -d @{second} m.py && stat -c '%Y %s' m.py"), T).await.unwrap();
    assert_eq!(out.output.trim(), format!("{second} 6"), "same second, same size");
    let out = s.run(&import, T).await.unwrap();
    assert_eq!(out.output, "2\n", "the edited source runs: {out:?}");
    assert!(!root.join("__pycache__").exists(), "no bytecode cache is written");
    s.close().await;
}
