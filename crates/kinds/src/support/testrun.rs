//! Running an instance's tests against a patch, as SWE-bench's harness
//! does: a fresh sandbox at the instance's task state, the patch applied
//! (then the instance's `test_patch`, if any), the test command run with
//! its output between the harness's markers and its exit status after
//! them, and the log graded by [`crate::swebench::grading`]. Shared by
//! test_filter and swebench_eval.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::workspace::{render_field, Sources, Workspace};
use crate::agent::sandbox::Sandbox;
use crate::swebench::grading::{self, EvalType, Graded};
use crate::swebench::parsers::Parser;
use crate::swebench::{self as swb, END_TEST_OUTPUT, START_TEST_OUTPUT, TESTS_TIMEOUT, TEST_EXIT_CODE};

/// The default test command: pytest with the summary lines the pytest
/// parsers read, over the files that hold the instance's tests.
pub const DEFAULT_TEST_CMD: &str = "python3 -m pytest -rA --tb=no -p no:cacheprovider {{ test_files }}";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestSettings {
    /// A template over instance fields plus `tests` and `test_files`
    /// (shell-quoted, space-separated) and `swebench_test_cmd` (the
    /// harness's command for the instance).
    pub test_cmd: String,
    /// `None`: the instance's `log_parser` field, else by its `repo`.
    pub parser: Option<Parser>,
    pub timeout_s: u64,
}

impl TestSettings {
    pub fn definition(&self) -> Value {
        json!({"test_cmd": self.test_cmd, "parser": self.parser.map(Parser::name), "timeout_s": self.timeout_s})
    }

    pub fn parser_for(&self, inst: &Value) -> Parser {
        self.parser
            .or_else(|| inst.get("log_parser").and_then(Value::as_str).and_then(Parser::from_name))
            .unwrap_or_else(|| Parser::for_repo(inst.get("repo").and_then(Value::as_str).unwrap_or("")))
    }
}

/// One test of the instance and how it ended (`MISSING` when the log
/// does not mention it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestStatus {
    pub name: String,
    /// `FAIL_TO_PASS` or `PASS_TO_PASS`.
    pub group: String,
    pub status: String,
}

/// What testing one patch found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    /// The patch (and test patch) applied.
    pub applied: bool,
    /// The log could be graded.
    pub evaluated: bool,
    pub resolved: bool,
    /// RESOLVED_FULL / RESOLVED_PARTIAL / RESOLVED_NO.
    pub resolution: String,
    pub tests: Vec<TestStatus>,
    /// Why the tests were not run or not graded.
    pub test_error: Option<String>,
    pub test_wall_s: f64,
    /// The patch applied and the test command ran, but no test reported
    /// (the runner could not start): a fault of the environment.
    #[serde(skip)]
    pub suite_never_ran: bool,
}

impl TestRun {
    /// Why the tests never ran, when that is the environment's fault.
    pub fn never_ran(&self) -> Option<String> {
        self.suite_never_ran.then(|| self.test_error.clone().unwrap_or_else(|| "the tests did not run".into()))
    }
}

impl TestRun {
    fn not_run(why: String, started: Instant) -> TestRun {
        TestRun {
            applied: false,
            evaluated: false,
            resolved: false,
            resolution: grading::Resolution::No.as_str().into(),
            tests: Vec::new(),
            test_error: Some(why),
            test_wall_s: started.elapsed().as_secs_f64(),
            suite_never_ran: false,
        }
    }
}

/// Tests `patch` on the instance `inst`. `Err` is an infrastructure
/// failure (the sandbox could not be made), not a verdict on the patch.
pub async fn test_patch(
    workspace: &Workspace,
    settings: &TestSettings,
    inst: &Value,
    patch: &str,
    workdir: &Path,
    sources: &Sources,
    env: &[(String, String)],
) -> Result<TestRun, String> {
    let started = Instant::now();
    let f2p = swb::test_list(inst.get("FAIL_TO_PASS")).map_err(|e| format!("FAIL_TO_PASS: {e}"))?;
    let p2p = swb::test_list(inst.get("PASS_TO_PASS")).map_err(|e| format!("PASS_TO_PASS: {e}"))?;
    if patch.trim().is_empty() {
        return Ok(TestRun::not_run("no patch".into(), started));
    }
    let sandbox = workspace.open(inst, workdir, sources).await?;
    let result = run_in(&sandbox, settings, inst, patch, &f2p, &p2p, env).await;
    // Removing a container takes a moment; not on the event loop.
    let _ = tokio::task::spawn_blocking(move || drop(sandbox)).await;
    let mut run = result?;
    run.test_wall_s = started.elapsed().as_secs_f64();
    Ok(run)
}

/// How the harness applies a model patch: each command in turn, the tree
/// reset between tries; a patch that turns out to be applied already (the
/// reverse applies cleanly) counts as applied.
const APPLY_CMDS: [&[&str]; 4] = [
    &["git", "apply", "--verbose", "-"],
    &["git", "apply", "--verbose", "--3way", "-"],
    &["git", "apply", "--verbose", "--reject", "-"],
    &["patch", "--batch", "--forward", "--fuzz=5", "-p1"],
];

fn apply_model_patch(sandbox: &Sandbox, patch: &str) -> Result<(), String> {
    let mut patch = patch.to_string();
    if !patch.ends_with('\n') {
        patch.push('\n');
    }
    // Short blocking calls; block_in_place keeps the runtime's other tasks
    // going meanwhile.
    tokio::task::block_in_place(|| {
        let mut last = String::new();
        for (i, cmd) in APPLY_CMDS.iter().enumerate() {
            if i > 0 {
                let _ = sandbox.exec(&["sh", "-c", "git checkout -- . ; git clean -fdq"], None);
            }
            match sandbox.exec(cmd, Some(&patch)) {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        if sandbox.exec(&["git", "apply", "--check", "--reverse", "-"], Some(&patch)).is_ok() {
            return Ok(());
        }
        Err(last)
    })
}

/// Puts the files a test patch touches back as the task state has them
/// (undoing the model's edits to them), then applies the test patch.
fn apply_test_patch(sandbox: &Sandbox, test_patch: &str) -> Result<(), String> {
    tokio::task::block_in_place(|| {
        for file in swb::specs::patched_files(test_patch) {
            // A file the test patch creates is not in the task state.
            let _ = sandbox.git(&["checkout", "HEAD", "--", &file], None);
        }
        sandbox.git(&["apply", "-v", "-"], Some(test_patch)).map(|_| ()).map_err(|e| e.to_string())
    })
}

async fn run_in(
    sandbox: &Sandbox,
    settings: &TestSettings,
    inst: &Value,
    patch: &str,
    f2p: &[String],
    p2p: &[String],
    env: &[(String, String)],
) -> Result<TestRun, String> {
    let started = Instant::now();
    if let Err(e) = apply_model_patch(sandbox, patch) {
        return Ok(TestRun::not_run(format!("patch does not apply: {}", last_lines(&e, 5)), started));
    }
    let test_patch = inst.get("test_patch").and_then(Value::as_str).unwrap_or("");
    if !test_patch.trim().is_empty() {
        if let Err(e) = apply_test_patch(sandbox, test_patch) {
            let mut r =
                TestRun::not_run(format!("the instance's test_patch does not apply: {}", last_lines(&e, 5)), started);
            r.applied = true;
            return Ok(r);
        }
    }
    let tests: Vec<String> = f2p.iter().chain(p2p).cloned().collect();
    let out = run_test_cmd(sandbox, settings, inst, &tests, env).await?;
    let (log, mut test_error) = (out.log, None);
    if out.timed_out {
        test_error = Some(format!("the tests timed out after {}s", settings.timeout_s));
    }
    let parser = settings.parser_for(inst);
    let g: Graded = grading::grade(parser, &log, f2p, p2p, EvalType::PassAndFail);
    if !g.evaluated && test_error.is_none() {
        test_error =
            Some(format!("the test log could not be graded ({} parser): {}", parser.name(), last_lines(&log, 5)));
    }
    let status = |name: &String| grading::status_of(name, &g.statuses).unwrap_or("MISSING").to_string();
    let tests = f2p
        .iter()
        .map(|n| TestStatus { name: n.clone(), group: "FAIL_TO_PASS".into(), status: status(n) })
        .chain(p2p.iter().map(|n| TestStatus { name: n.clone(), group: "PASS_TO_PASS".into(), status: status(n) }))
        .collect();
    Ok(TestRun {
        applied: true,
        evaluated: g.evaluated,
        resolved: g.resolved(),
        resolution: g.resolution.as_str().into(),
        suite_never_ran: !g.evaluated && !out.timed_out,
        tests,
        test_error,
        test_wall_s: started.elapsed().as_secs_f64(),
    })
}

/// The command SWE-bench's harness runs for an instance: the repository's
/// test command at its version over the test patch's directives (after the
/// exports some repositories need); for a repository SWE-bench does not
/// know, the default pytest command over the files of the given tests.
pub fn swebench_test_cmd(inst: &Value, tests: &[String]) -> String {
    let field = |k: &str| inst.get(k).and_then(Value::as_str).unwrap_or("");
    let repo = field("repo");
    let quote =
        |items: Vec<String>| items.iter().map(|f| swestar_vocab::shell::shell_quote(f)).collect::<Vec<_>>().join(" ");
    match swb::specs::test_cmd(repo, field("version")) {
        Some(cmd) => {
            let mut lines: Vec<String> = swb::specs::pre_test(repo).iter().map(|l| l.to_string()).collect();
            let directives = swb::specs::test_directives(repo, field("test_patch"));
            lines.push(format!("{cmd} {}", quote(directives)).trim_end().to_string());
            lines.join("\n")
        }
        None => DEFAULT_TEST_CMD.replace("{{ test_files }}", &quote(swb::test_files(tests))),
    }
}

/// The output of one run of the test command, in the harness's layout.
pub struct TestLog {
    pub log: String,
    pub timed_out: bool,
}

/// Runs the test command in the sandbox over the given test ids (the
/// template sees them as `tests`, and their files as `test_files`, both
/// shell-quoted and space-separated), its output between the harness's
/// markers, its exit status after them; a timeout appends the harness's
/// timeout marker.
pub async fn run_test_cmd(
    sandbox: &Sandbox,
    settings: &TestSettings,
    inst: &Value,
    tests: &[String],
    env: &[(String, String)],
) -> Result<TestLog, String> {
    let quote =
        |items: Vec<String>| items.iter().map(|f| swestar_vocab::shell::shell_quote(f)).collect::<Vec<_>>().join(" ");
    let mut fields = inst.clone();
    if let Some(o) = fields.as_object_mut() {
        o.insert("test_files".into(), Value::String(quote(swb::test_files(tests))));
        o.insert("tests".into(), Value::String(quote(tests.to_vec())));
        o.insert("swebench_test_cmd".into(), Value::String(swebench_test_cmd(inst, tests)));
    }
    let cmd = render_field("test_cmd", &settings.test_cmd, &fields)?;
    let mut shell = sandbox.shell(env).await.map_err(|e| format!("sandbox shell: {e}"))?;
    // A test log is read whole: the parsers need every line.
    shell.output_limit = 64 << 20;
    let script = format!(
        "echo '{START_TEST_OUTPUT}'\n{cmd}\nswestar_test_status=$?\necho '{END_TEST_OUTPUT}'\necho \"{TEST_EXIT_CODE}: $swestar_test_status\""
    );
    let out = shell.run(&script, Duration::from_secs(settings.timeout_s)).await;
    shell.close().await;
    let out = out.map_err(|e| format!("sandbox shell: {e}"))?;
    let mut log = out.output;
    if out.timed_out {
        log.push_str(&format!("\n{TESTS_TIMEOUT}\n"));
    }
    Ok(TestLog { log, timed_out: out.timed_out })
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
