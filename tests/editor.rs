//! `str_replace_editor` on real files: every command and every message,
//! checked against OpenHands' wording.

use std::path::Path;

use swestar::agent::editor::{Command, Editor, LocalFiles};

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("repo");
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("pkg/a.py"), "def f():\n    return 1\n\n\ndef g():\n    return 1\n").unwrap();
    std::fs::write(root.join(".hidden"), "x").unwrap();
    let r = root.display().to_string();
    (dir, r)
}

async fn run(editor: &mut Editor, c: Command) -> Result<String, String> {
    editor.run(&mut LocalFiles, c).await
}

fn view(path: &str, range: Option<Vec<i64>>) -> Command {
    Command::View { path: path.into(), view_range: range }
}

#[tokio::test]
async fn view_numbers_lines_like_cat_n_and_honours_ranges() {
    let (_d, root) = setup();
    let mut e = Editor::new(Path::new(&root));
    let file = format!("{root}/pkg/a.py");
    let out = run(&mut e, view(&file, None)).await.unwrap();
    assert_eq!(
        out,
        format!("Here's the result of running `cat -n` on {file}:\n     1\tdef f():\n     2\t    return 1\n     3\t\n     4\t\n     5\tdef g():\n     6\t    return 1\n     7\t\n")
    );
    let out = run(&mut e, view(&file, Some(vec![5, 6]))).await.unwrap();
    assert_eq!(
        out,
        format!("Here's the result of running `cat -n` on {file}:\n     5\tdef g():\n     6\t    return 1\n")
    );
    let out = run(&mut e, view(&file, Some(vec![5, -1]))).await.unwrap();
    assert!(out.ends_with("     6\t    return 1\n"), "{out}");
    let out = run(&mut e, view(&file, Some(vec![5, 99]))).await.unwrap();
    assert!(out.ends_with("\nNOTE: We only show up to 6 since there's only 6 lines in this file\n"), "{out}");
    let err = run(&mut e, view(&file, Some(vec![0, 2]))).await.unwrap_err();
    assert_eq!(err, "Invalid `view_range` parameter: [0, 2]. Its first element `0` should be within the range of lines of the file: [1, 6].");
    let err = run(&mut e, view(&file, Some(vec![4, 2]))).await.unwrap_err();
    assert!(err.ends_with("Its second element `2` should be greater than or equal to the first element `4`."), "{err}");
    let err = run(&mut e, view(&file, Some(vec![1]))).await.unwrap_err();
    assert!(err.ends_with("It should be a list of two integers."), "{err}");
}

#[tokio::test]
async fn view_of_a_directory_lists_two_levels_and_counts_hidden_entries() {
    let (_d, root) = setup();
    let mut e = Editor::new(Path::new(&root));
    let out = run(&mut e, view(&root, None)).await.unwrap();
    assert_eq!(
        out,
        format!(
            "Here's the files and directories up to 2 levels deep in {root}, excluding hidden items:\n{root}/\n{root}/pkg/\n{root}/pkg/a.py\n\n1 hidden files/directories in this directory are excluded. You can use 'ls -la {root}' to see them."
        )
    );
    let err = run(&mut e, view(&root, Some(vec![1, 2]))).await.unwrap_err();
    assert!(err.ends_with("The `view_range` parameter is not allowed when `path` points to a directory."), "{err}");
}

#[tokio::test]
async fn str_replace_edits_once_and_shows_a_snippet_or_says_why_not() {
    let (_d, root) = setup();
    let mut e = Editor::new(Path::new(&root));
    let file = format!("{root}/pkg/a.py");
    let sr = |old: &str, new: &str| Command::StrReplace {
        path: file.clone(),
        old_str: Some(old.into()),
        new_str: Some(new.into()),
    };
    let err = run(&mut e, sr("return 1", "return 2")).await.unwrap_err();
    assert_eq!(err, "No replacement was performed. Multiple occurrences of old_str `return 1` in lines [2, 6]. Please ensure it is unique.");
    let err = run(&mut e, sr("return 3", "return 2")).await.unwrap_err();
    assert_eq!(err, format!("No replacement was performed, old_str `return 3` did not appear verbatim in {file}."));
    let err = run(&mut e, sr("def g", "def g")).await.unwrap_err();
    assert_eq!(
        err,
        "Invalid `new_str` parameter: def g. No replacement was performed. `new_str` and `old_str` must be different."
    );
    let out = run(&mut e, sr("def g():\n    return 1", "def g():\n    return 2")).await.unwrap();
    assert_eq!(
        out,
        // As OpenHands computes it: from line max(0, 5 - 4) + 1 to 5 + 4 + 1.
        format!("The file {file} has been edited. Here's the result of running `cat -n` on a snippet of {file}:\n     2\t    return 1\n     3\t\n     4\t\n     5\tdef g():\n     6\t    return 2\n     7\t\nReview the changes and make sure they are as expected. Edit the file again if necessary.")
    );
    assert!(std::fs::read_to_string(&file).unwrap().ends_with("return 2\n"));
    // Undo brings the file back, and then there is nothing left to undo.
    let out = run(&mut e, Command::UndoEdit { path: file.clone() }).await.unwrap();
    assert!(
        out.starts_with(&format!(
            "Last edit to {file} undone successfully. Here's the result of running `cat -n` on {file}:\n"
        )),
        "{out}"
    );
    assert!(std::fs::read_to_string(&file).unwrap().ends_with("return 1\n"));
    let err = run(&mut e, Command::UndoEdit { path: file.clone() }).await.unwrap_err();
    assert_eq!(err, format!("No edit history found for {file}."));
}

#[tokio::test]
async fn insert_after_a_line_and_check_its_range() {
    let (_d, root) = setup();
    let mut e = Editor::new(Path::new(&root));
    let file = format!("{root}/pkg/a.py");
    let ins = |line: i64, text: &str| Command::Insert {
        path: file.clone(),
        insert_line: Some(line),
        new_str: Some(text.into()),
    };
    let out = run(&mut e, ins(2, "\n\ndef h():\n    return 3")).await.unwrap();
    assert!(out.starts_with(&format!("The file {file} has been edited. Here's the result of running `cat -n` on a snippet of the edited file:\n     1\tdef f():")), "{out}");
    assert!(out.ends_with("Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary."));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "def f():\n    return 1\n\n\ndef h():\n    return 3\n\n\ndef g():\n    return 1\n"
    );
    let out = run(&mut e, ins(0, "import os")).await.unwrap();
    assert!(out.contains("     1\timport os"), "{out}");
    let err = run(&mut e, ins(99, "x")).await.unwrap_err();
    assert_eq!(err, "Invalid `insert_line` parameter: 99. It should be within the range of allowed values: [0, 11]");
    let err = run(&mut e, Command::Insert { path: file.clone(), insert_line: None, new_str: Some("x".into()) })
        .await
        .unwrap_err();
    assert_eq!(err, "Parameter `insert_line` is required for command: insert.");
}

#[tokio::test]
async fn create_refuses_existing_files_and_paths_are_checked() {
    let (_d, root) = setup();
    let mut e = Editor::new(Path::new(&root));
    let new = format!("{root}/pkg/b.py");
    let out = run(&mut e, Command::Create { path: new.clone(), file_text: Some("x = 1\n".into()) }).await.unwrap();
    assert_eq!(out, format!("File created successfully at: {new}"));
    let err = run(&mut e, Command::Create { path: new.clone(), file_text: Some("y".into()) }).await.unwrap_err();
    assert_eq!(err, format!("Invalid `path` parameter: {new}. File already exists at: {new}. Cannot overwrite files using command `create`."));
    let err = run(&mut e, Command::Create { path: format!("{root}/c.py"), file_text: None }).await.unwrap_err();
    assert_eq!(err, "Parameter `file_text` is required for command: create.");
    let err = run(&mut e, view("pkg/a.py", None)).await.unwrap_err();
    assert_eq!(err, format!("Invalid `path` parameter: pkg/a.py. The path should be an absolute path, starting with `/`. Maybe you meant {root}/pkg/a.py?"));
    let err = run(&mut e, view(&format!("{root}/nope.py"), None)).await.unwrap_err();
    assert!(err.ends_with("does not exist. Please provide a valid path."), "{err}");
    let err = run(&mut e, Command::UndoEdit { path: format!("{root}/pkg") }).await.unwrap_err();
    assert!(err.ends_with("is a directory and only the `view` command can be used on directories."), "{err}");
    // Paths outside the repository are refused, however they are spelled.
    for outside in ["/etc/passwd".to_string(), format!("{root}/../escape.txt")] {
        let err =
            run(&mut e, Command::Create { path: outside.clone(), file_text: Some("x".into()) }).await.unwrap_err();
        assert!(err.contains("outside the repository"), "{outside}: {err}");
    }
    assert!(!Path::new(&format!("{root}/../escape.txt")).exists());
}

/// The same commands through the sandbox's bash session and on local files
/// give the same messages and leave the same files.
#[tokio::test]
async fn through_a_bash_session_the_editor_behaves_the_same() {
    use swestar::agent::editor::SessionFiles;
    use swestar::agent::session::BashSession;
    let (_a, local_root) = setup();
    let (_b, session_root) = setup();
    let big: String = (0..3000).map(|i| format!("line {i} with some text to make it long\n")).collect();
    let script = |root: &str| {
        vec![
            view(root, None),
            view(&format!("{root}/pkg/a.py"), Some(vec![2, 5])),
            Command::Create { path: format!("{root}/pkg/big.txt"), file_text: Some(big.clone()) },
            Command::StrReplace {
                path: format!("{root}/pkg/big.txt"),
                old_str: Some("line 2999 with".into()),
                new_str: Some("LAST\nline".into()),
            },
            Command::Insert {
                path: format!("{root}/pkg/a.py"),
                insert_line: Some(1),
                new_str: Some("    '''doc ünïcode'''".into()),
            },
            Command::StrReplace {
                path: format!("{root}/pkg/a.py"),
                old_str: Some("nope".into()),
                new_str: Some("x".into()),
            },
            Command::UndoEdit { path: format!("{root}/pkg/big.txt") },
            view(&format!("{root}/pkg/a.py"), None),
            view(&format!("{root}/missing.py"), None),
        ]
    };
    let mut local = Editor::new(Path::new(&local_root));
    let mut local_out = Vec::new();
    for c in script(&local_root) {
        local_out.push(format!("{:?}", local.run(&mut LocalFiles, c).await).replace(&local_root, "ROOT"));
    }
    let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap())];
    let mut session = BashSession::start(&[], Path::new(&session_root), &env).await.unwrap();
    let mut remote = Editor::new(Path::new(&session_root));
    let mut remote_out = Vec::new();
    for c in script(&session_root) {
        let mut files = SessionFiles { session: &mut session };
        remote_out.push(format!("{:?}", remote.run(&mut files, c).await).replace(&session_root, "ROOT"));
    }
    session.close().await;
    assert_eq!(local_out, remote_out);
    for f in ["pkg/a.py", "pkg/big.txt"] {
        assert_eq!(
            std::fs::read(format!("{local_root}/{f}")).unwrap(),
            std::fs::read(format!("{session_root}/{f}")).unwrap(),
            "{f}"
        );
    }
}

/// Parsed model replies run as tools against a real shell and real files.
#[tokio::test]
async fn tool_calls_run_in_the_shell_and_the_editor() {
    use std::time::Duration;
    use swestar::agent::editor::SessionFiles;
    use swestar::agent::protocol::parse;
    use swestar::agent::session::BashSession;
    use swestar::agent::tools::{dispatch, specs, Outcome};
    let (_d, root) = setup();
    let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap())];
    let mut shell = BashSession::start(&[], Path::new(&root), &env).await.unwrap();
    let mut second = BashSession::start(&[], Path::new(&root), &env).await.unwrap();
    let mut editor = Editor::new(Path::new(&root));
    let specs = specs();
    let step = |reply: String| parse(&reply, &specs).unwrap().call;
    let call = step(
        "<function=execute_bash>\n<parameter=command>cd pkg && grep -n 'return' a.py</parameter>\n</function>".into(),
    );
    let mut files = SessionFiles { session: &mut second };
    let out = dispatch(&call, &mut shell, &mut editor, &mut files, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        out,
        Outcome::Observation("2:    return 1\n6:    return 1\n\n[Command finished with exit code 0]".into())
    );
    let call = step(format!(
        "Fix g.\n<function=str_replace_editor>\n<parameter=command>str_replace</parameter>\n<parameter=path>{root}/pkg/a.py</parameter>\n<parameter=old_str>def g():\n    return 1</parameter>\n<parameter=new_str>def g():\n    return 2</parameter>\n</function>"
    ));
    let mut files = SessionFiles { session: &mut second };
    let Outcome::Observation(text) =
        dispatch(&call, &mut shell, &mut editor, &mut files, Duration::from_secs(10)).await.unwrap()
    else {
        panic!("not an observation")
    };
    assert!(text.starts_with(&format!("The file {root}/pkg/a.py has been edited.")), "{text}");
    let call = step("<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>pkg/a.py</parameter>\n</function>".into());
    let mut files = SessionFiles { session: &mut second };
    let Outcome::Observation(text) =
        dispatch(&call, &mut shell, &mut editor, &mut files, Duration::from_secs(10)).await.unwrap()
    else {
        panic!("not an observation")
    };
    assert!(text.starts_with("ERROR:\nInvalid `path` parameter: pkg/a.py."), "{text}");
    let call = step("<function=execute_bash>\n<parameter=command>sleep 30</parameter>\n<parameter=timeout>1</parameter>\n</function>".into());
    let mut files = SessionFiles { session: &mut second };
    let Outcome::Observation(text) =
        dispatch(&call, &mut shell, &mut editor, &mut files, Duration::from_secs(10)).await.unwrap()
    else {
        panic!("not an observation")
    };
    assert!(text.contains("timed out after 1 seconds"), "{text}");
    let call = step("Done.\n<function=submit>\n</function>".into());
    let mut files = SessionFiles { session: &mut second };
    assert_eq!(
        dispatch(&call, &mut shell, &mut editor, &mut files, Duration::from_secs(10)).await.unwrap(),
        Outcome::Submit
    );
    shell.close().await;
    second.close().await;
}
