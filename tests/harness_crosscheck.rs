//! swestar's log parsers and grading against the official SWE-bench
//! harness (the `swebench` package from PyPI, in the venv .ci/run makes):
//! the same logs go through both — real pytest runs on examples/tasks, the
//! recorded Django and SymPy logs, and hand-made edge cases for every
//! parser — and the per-test statuses, whether the log was graded, the
//! F2P/P2P report and the resolution must be identical.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use swestar::agent::sandbox::{git, repo_from_tree, Sandbox, TaskState};
use swestar::swebench::grading::{grade, EvalType};
use swestar::swebench::parsers::Parser;
use swestar::swebench::{test_list, END_TEST_OUTPUT, START_TEST_OUTPUT};

fn harness_python() -> Option<String> {
    let p = std::env::var("SWESTAR_TEST_SWEBENCH_PYTHON").ok();
    if p.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI sets SWESTAR_TEST_SWEBENCH_PYTHON (see .ci/run)");
        eprintln!("skipped: no swebench venv (SWESTAR_TEST_SWEBENCH_PYTHON)");
    }
    p
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/logs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn wrap(body: &str, exit: i32) -> String {
    format!("+ git apply -v -\n{START_TEST_OUTPUT}\n{body}\n{END_TEST_OUTPUT}\n>>>>> Test Exit Code: {exit}\n")
}

fn case(parser: &str, log: String, f2p: &[String], p2p: &[String]) -> Value {
    json!({"parser": parser, "log": log, "FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p})
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Real pytest on examples/tasks at the instance's buggy state, with
/// `fix` run in the repository first: (log, exit status).
fn pytest_run(inst: &Value, fix: &str) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ledger");
    repo_from_tree(&Path::new(common::TASKS).join("repo"), &source).unwrap();
    let task = TaskState {
        instance_id: "x".into(),
        base_commit: inst["base_commit"].as_str().unwrap().into(),
        bug_patch: inst["patch"].as_str().unwrap().into(),
        image: String::new(),
    };
    let sb = Sandbox::local(&source, &task).unwrap();
    if !fix.is_empty() {
        assert!(Command::new("bash").arg("-c").arg(fix).current_dir(&sb.repo).status().unwrap().success());
    }
    let _ = git(&sb.repo, &["status"], None);
    let out = Command::new(common::python())
        .args(["-m", "pytest", "-rA", "--tb=no", "-p", "no:cacheprovider", "tests"])
        .current_dir(&sb.repo)
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}

fn cases() -> Vec<Value> {
    let mut out = Vec::new();
    let inst = common::task_instance("currency_code_case");
    let f2p = test_list(inst.get("FAIL_TO_PASS")).unwrap();
    let p2p = test_list(inst.get("PASS_TO_PASS")).unwrap();
    // Real pytest runs: the bug, the fix, a fix that breaks a P2P test.
    let fix = "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py";
    let regress = format!("{fix} && sed -i 's/def __add__(self, other: \"Money\") -> \"Money\":/&\\n        raise RuntimeError(\"no\")/' ledger/money.py");
    for script in ["", fix, regress.as_str()] {
        let (log, code) = pytest_run(&inst, script);
        out.push(case("parse_log_pytest", wrap(&log, code), &f2p, &p2p));
        out.push(case("parse_log_pytest_v2", wrap(&log, code), &f2p, &p2p));
        out.push(case("parse_log_pytest_options", wrap(&log, code), &f2p, &p2p));
    }
    out.push(case("parse_log_pytest", wrap(&fixture("pytest.log"), 1), &f2p, &p2p));
    // Recorded Django and SymPy runs, under several expectations.
    let t = |n: &str| format!("{n} (shop.tests.PriceTests.{n})");
    let django = fixture("django.log");
    let user = "test_create_user (shop.tests.UserTests.test_create_user)".to_string();
    for (f, p) in [
        (vec![t("test_total_adds_items"), t("test_noisy_output")], vec![user.clone(), t("test_checkout")]),
        (vec![t("test_discount_is_applied")], vec![user.clone()]),
        (vec![t("test_total_adds_items"), t("test_currency_symbol")], vec![]),
        (vec!["test_missing (shop.tests.PriceTests.test_missing)".to_string()], vec![user.clone()]),
    ] {
        out.push(case("parse_log_django", wrap(&django, 1), &f, &p));
    }
    let sympy = fixture("sympy.log");
    for (f, p) in [
        (strings(&["test_rational_addition"]), strings(&["test_symbol_name_case"])),
        (strings(&["test_division_by_zero_message"]), strings(&[])),
        (
            strings(&["sympy/core/tests/test_ledger_fixture.py:test_division_by_zero_message"]),
            strings(&["test_rational_addition"]),
        ),
    ] {
        out.push(case("parse_log_sympy", wrap(&sympy, 1), &f, &p));
    }
    // Hand-made edge cases.
    let a = strings(&["t.py::a"]);
    let b = strings(&["t.py::b"]);
    out.push(case("parse_log_pytest", format!(">>>>> Patch Apply Failed\n{}", wrap("PASSED t.py::a", 0)), &a, &b));
    out.push(case("parse_log_pytest", "PASSED t.py::a\n".into(), &a, &b));
    out.push(case("parse_log_pytest", wrap("collected 0 items", 4), &a, &b));
    out.push(case("parse_log_pytest", wrap("PASSED t.py::a\nPASSED t.py::b", 1), &a, &b));
    out.push(case(
        "parse_log_pytest",
        format!("PASSED t.py::a\nPASSED t.py::b\n{START_TEST_OUTPUT}\n{END_TEST_OUTPUT}\n"),
        &a,
        &b,
    ));
    out.push(case("parse_log_pytest", wrap("SKIPPED t.py::a\nSKIPPED t.py::b\nSKIPPED [2] t.py:3: no", 0), &a, &b));
    out.push(case("parse_log_pytest", wrap("XFAIL t.py::a - known\nPASSED t.py::b\nERROR t.py::c", 1), &a, &b));
    let trunc =
        "PASSED t.py::p[log(photon/s)]\nPASSED t.py::p[log(photon/m)]\nFAILED t.py::q[a-b] - x\nPASSED t.py::q[a-c]";
    out.push(case("parse_log_pytest", wrap(trunc, 1), &strings(&["t.py::p[log(photon"]), &strings(&["t.py::q[a"])));
    out.push(case(
        "parse_log_pytest_v2",
        wrap("\x1b[32mPASSED\x1b[0m t.py::a\nFAILED t.py::b - AssertionError: x - y\nt.py::c SKIPPED", 1),
        &a,
        &strings(&["t.py::b", "t.py::c"]),
    ));
    out.push(case(
        "parse_log_pytest_options",
        wrap("PASSED t.py::a[/tmp/x/y/data.txt]\nPASSED t.py::b[//host/z]\nFAILED t.py::c[1-2] - e", 1),
        &strings(&["t.py::a[/data.txt]"]),
        &strings(&["t.py::b[//host/z]", "t.py::c[1-2]"]),
    ));
    out.push(case(
        "parse_log_seaborn",
        wrap("t.py::a PASSED [ 50%]\nFAILED t.py::b\nPASSED t.py::c", 1),
        &a,
        &strings(&["t.py::b", "t.py::c"]),
    ));
    out.push(case(
        "parse_log_matplotlib",
        wrap("PASSED t.py::a[MouseButton.LEFT]\nFAILED t.py::b - x", 1),
        &strings(&["t.py::a[1]"]),
        &b,
    ));
    out
}

/// swestar's verdict on a case, in the harness script's shape.
fn ours(case: &Value) -> Value {
    let parser = Parser::from_name(case["parser"].as_str().unwrap()).unwrap();
    let list = |k: &str| -> Vec<String> {
        case[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let g = grade(
        parser,
        case["log"].as_str().unwrap(),
        &list("FAIL_TO_PASS"),
        &list("PASS_TO_PASS"),
        EvalType::PassAndFail,
    );
    let statuses: serde_json::Map<String, Value> = g.statuses.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut out = json!({"statuses": statuses, "evaluated": g.evaluated, "resolution": g.resolution.as_str()});
    if g.evaluated {
        out["report"] = serde_json::to_value(&g.report).unwrap();
    }
    out
}

/// Key order aside, the same JSON.
fn normal(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, v)| (k.clone(), normal(v))).collect::<BTreeMap<_, _>>().into_iter().collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        other => other.clone(),
    }
}

/// The harness's results for the cases (tests/fixtures/harness/grade.py;
/// `mode`: its steps, or `report` for the per-instance report).
fn harness(python: &str, mode: &[&str], cases: &[Value]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/harness/grade.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(Value::Array(cases.to_vec()).to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), cases.len());
    theirs
}

#[test]
fn statuses_and_resolutions_match_the_official_harness() {
    let Some(python) = harness_python() else { return };
    let cases = cases();
    let theirs = harness(&python, &[], &cases);
    let mut resolved = 0;
    for (i, (c, t)) in cases.iter().zip(&theirs).enumerate() {
        let o = ours(c);
        assert_eq!(
            normal(&o),
            normal(t),
            "case {i} ({}): swestar and the harness disagree\nlog:\n{}",
            c["parser"],
            c["log"].as_str().unwrap().chars().take(2000).collect::<String>()
        );
        resolved += usize::from(t["resolution"] == "RESOLVED_FULL");
    }
    // The comparison is not vacuous: both outcomes occur.
    assert!(resolved > 0 && resolved < cases.len(), "{resolved} of {} resolved", cases.len());
}

/// `swestar grade` prints what the harness's `get_eval_report` writes for
/// the same log and instance, on every cross-check case and on logs with
/// no results that its triage classifies.
#[test]
fn grade_prints_the_harness_report() {
    let Some(python) = harness_python() else { return };
    let mut cases = cases();
    let (a, b) = (strings(&["t.py::a"]), strings(&["t.py::b"]));
    for log in ["ModuleNotFoundError: No module named 'x'\n", "setup\nKilled\n", "nothing at all\n"] {
        cases.push(case("parse_log_pytest", log.to_string(), &a, &b));
    }
    let theirs = harness(&python, &["report"], &cases);
    let dir = tempfile::tempdir().unwrap();
    let mut flagged = 0;
    for (i, (c, t)) in cases.iter().zip(&theirs).enumerate() {
        let log = dir.path().join(format!("{i}.log"));
        std::fs::write(&log, c["log"].as_str().unwrap()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_swestar"))
            .arg("grade")
            .arg(&log)
            .args(["--instance", "case", "--log-parser", c["parser"].as_str().unwrap()])
            .args(["--fail-to-pass", &c["FAIL_TO_PASS"].to_string(), "--pass-to-pass", &c["PASS_TO_PASS"].to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "case {i}: {}", String::from_utf8_lossy(&out.stderr));
        let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(normal(&ours), normal(t), "case {i} ({}): swestar grade and the harness disagree", c["parser"]);
        flagged += usize::from(t["case"].get("infra_failure_reason").is_some());
    }
    assert!(flagged >= 2, "the triage cases are in the comparison");
}
