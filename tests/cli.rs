//! The command line as people meet it: completions, suggestions for typos,
//! terminals that cannot draw, signals, unusable stores and outputs, and
//! data errors that name their line.

mod common;

use std::process::Stdio;

use common::{read_pid, wait_for, Ctx};

const ONE: &str = r#"[workflow]
name = "one"

[stages.a]
kind = "command"
format = "jsonl"
params = { max_tokens = 60, tag = "v1" }
run = "echo '{\"n\": {{ params.max_tokens }}}' > {{ output }}"
"#;

#[test]
fn completions_are_scripts_the_shells_accept() {
    let ctx = Ctx::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = ctx.swestar(&["completions", shell]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("swestar") && r.stdout.contains("export"), "{shell}: {}", r.stdout);
    }
    // Real bash loads the script and completes subcommands with it.
    let script = ctx.write("swestar.bash", &ctx.swestar(&["completions", "bash"]).stdout);
    let probe = format!(
        "source {}; COMP_WORDS=(swestar pl); COMP_CWORD=1; COMP_LINE='swestar pl'; COMP_POINT=10; \
         _swestar swestar pl swestar; echo \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash").args(["--norc", "-c", &probe]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "plan");
}

#[test]
fn typos_get_a_did_you_mean() {
    let ctx = Ctx::new();
    ctx.write("wf.toml", ONE);
    let r = ctx.swestar(&["plna", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("similar subcommand exists: 'plan'"), "{}", r.stderr);
    let r = ctx.swestar(&["run", "wf.toml", "--forse", "a"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("similar argument exists: '--force'"), "{}", r.stderr);
    // A common stage key, misspelt in a kind's table.
    ctx.write("typo.toml", &ONE.replace("params =", "parms ="));
    let r = ctx.swestar(&["plan", "typo.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("typo.toml:7:1: key `stages.a.parms`: unknown field `parms` for a `command` stage"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `params`?"), "{}", r.stderr);
    assert!(r.stderr.contains("every stage takes kind, description, inputs, needs"), "{}", r.stderr);
}

#[test]
fn an_empty_workflow_is_valid_but_warned_about() {
    let ctx = Ctx::new();
    ctx.write("empty.toml", "[workflow]\nname = \"e\"\n[stages]\n");
    let r = ctx.swestar(&["plan", "empty.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning: empty.toml: the workflow has no stages"), "{}", r.stderr);
}

#[test]
fn set_values_are_checked_against_the_declared_type() {
    let ctx = Ctx::new();
    ctx.write("wf.toml", ONE);
    let r = ctx.swestar(&["plan", "wf.toml", "--set", "stages.a.params.max_tokens=abc"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("`stages.a.params.max_tokens` is an integer in the workflow (60), and `abc` is a string"),
        "{}",
        r.stderr
    );
    let r = ctx.run("wf.toml", &["--set", "stages.a.params.tag=40"]);
    assert_eq!(r.code, 0, "a number given to a string parameter is its text: {}", r.stderr);
}

#[test]
fn status_of_an_unknown_run_is_an_argument_error() {
    let ctx = Ctx::new();
    ctx.write("wf.toml", ONE);
    let r = ctx.swestar(&["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no store at"), "{}", r.stderr);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let r = ctx.swestar(&["status", "nosuch"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no run `nosuch` in store") && r.stderr.contains("the latest: "), "{}", r.stderr);
}

/// A store on a read-only mount (bubblewrap binds it so; root ignores
/// permission bits) is refused up front, naming the fix.
#[test]
fn a_read_only_store_is_refused_with_what_to_do() {
    let ctx = Ctx::new();
    ctx.write("wf.toml", ONE);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let store = ctx.store().display().to_string();
    let mut args = vec!["--bind", "/", "/", "--ro-bind", &store, &store, "--dev", "/dev", "--proc", "/proc"];
    args.extend([env!("CARGO_BIN_EXE_swestar"), "run", "wf.toml", "--store", &store]);
    let edited = ONE.replace("60", "61");
    ctx.write("wf.toml", &edited);
    let out = std::process::Command::new("bwrap").args(&args).current_dir(ctx.path("")).output().unwrap();
    let r: common::Run = out.into();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("store {store} is not writable")), "{}", r.stderr);
    assert!(r.stderr.contains("--store (or SWESTAR_STORE)"), "{}", r.stderr);
    // Reading it still works.
    args.truncate(10);
    args.extend([env!("CARGO_BIN_EXE_swestar"), "status", "--store", &store]);
    let out = std::process::Command::new("bwrap").args(&args).current_dir(ctx.path("")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// On a terminal that cannot draw (TERM=dumb, or no TERM) a failure is
/// told in plain lines: the FAILED line, the stderr tail and the log.
#[test]
fn a_dumb_terminal_gets_every_line() {
    let ctx = Ctx::new();
    ctx.write(
        "fail.toml",
        "[workflow]\nname = \"f\"\n[stages.boom]\nkind = \"command\"\nrun = \"echo the-reason >&2; exit 3\"\n",
    );
    for term in [Some("dumb"), None] {
        let line = format!("{} run fail.toml --store {}", env!("CARGO_BIN_EXE_swestar"), ctx.store().display());
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]).current_dir(ctx.path("")).stdin(Stdio::null());
        match term {
            Some(t) => cmd.env("TERM", t),
            None => cmd.env_remove("TERM"),
        };
        let r: common::Run = cmd.output().unwrap().into();
        assert_eq!(r.code, 1, "{term:?}: {}{}", r.stdout, r.stderr);
        // `script` puts the terminal's output on its stdout.
        for want in ["FAILED   boom", "| the-reason", "log: "] {
            assert!(r.stdout.contains(want), "{term:?}: no {want:?} in:\n{}", r.stdout);
        }
    }
}

#[test]
fn sigterm_stops_the_run_with_status_143() {
    let ctx = Ctx::new();
    ctx.write(
        "slow.toml",
        "[workflow]\nname = \"s\"\n[stages.slow]\nkind = \"command\"\nformat = \"jsonl\"\n\
         run = \"sleep 60 & echo $! > sleep.pid; wait\"\n",
    );
    let child = ctx.cmd(&["run", "slow.toml"]).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the stage to start", 30, || read_pid(&ctx.path("sleep.pid")).is_some());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let r: common::Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 143, "{}", r.stderr);
    assert!(r.stderr.contains("1 interrupted"), "{}", r.stderr);
}

#[test]
fn export_goes_to_stdout_csv_and_refuses_a_missing_directory() {
    let ctx = Ctx::new();
    ctx.write("wf.toml", ONE);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let r = ctx.swestar(&["export", "wf.toml", "a", "--to", "-"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "{\"n\":60}\n"), "{}", r.stderr);
    // A closed pipe ends the export quietly.
    let line = format!(
        "{} export wf.toml a --to - --format csv --store {} | head -1",
        env!("CARGO_BIN_EXE_swestar"),
        ctx.store().display()
    );
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", &line])
        .current_dir(ctx.path(""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n");
    let r = ctx.swestar(&["export", "wf.toml", "a", "--to", "out/a.csv"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--to out/a.csv: there is no directory out"), "{}", r.stderr);
}

/// A JSON Lines data file or a command's output that is bad on one line
/// names that line, not "line 1" of the one row serde saw.
#[test]
fn data_and_output_errors_name_their_line() {
    let ctx = Ctx::new();
    let mut rows: String = (0..100).map(|i| format!("{{\"x\": {i}}}\n")).collect();
    rows.push_str("{\"x\": oops}\n");
    ctx.write("nums.jsonl", &rows);
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "lines"
[data.nums]
path = "nums.jsonl"
[stages.copy]
kind = "command"
inputs = { nums = "data.nums" }
run = "cp {{ inputs.nums }} {{ output }}"
[stages.made]
kind = "command"
format = "jsonl"
run = "printf '{\"a\": 1}\\n{\"a\": 2,}\\n' > {{ output }}"
"#,
    );
    let r = ctx.swestar(&["run", "wf.toml", "--keep-going"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("nums.jsonl:101:7: not JSON: expected value"), "{}", r.stderr);
    assert!(r.stderr.contains("output.jsonl:2:9: not JSON: trailing comma"), "{}", r.stderr);
}
