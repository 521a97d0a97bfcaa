//! Grading a test log the way SWE-bench's harness does: the log between
//! the start/end markers is parsed; a run with a failure marker, without
//! markers, without any sign the suite ran, or whose exit status
//! contradicts its parsed results is not evaluated. Then every
//! FAIL_TO_PASS test must pass (PASSED or XFAIL) and every PASS_TO_PASS
//! test must pass or be skipped; a test missing from the log counts as
//! failing. Resolution is FULL (all of both), PARTIAL (some but not all
//! F2P, all P2P) or NO.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::parsers::{Parser, StatusMap, ERROR, FAILED, PASSED, SKIPPED, XFAIL};
use super::{APPLY_PATCH_FAIL, END_TEST_OUTPUT, RESET_FAILED, START_TEST_OUTPUT, TESTS_ERROR, TESTS_TIMEOUT};

/// Evidence in a log that a test runner executed something, for runs that
/// parse to no statuses at all (every count must be non-zero).
static SUITE_RAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?m)Executed [1-9]\d* of \d+",
        r"|TOTAL: [1-9]\d* (?:SUCCESS|FAILED)",
        r"|[1-9]\d* passing",
        r"|Tests:\s+[1-9]\d*",
        r"|Test Suites:\s+(?:\d+ \w+, )*[1-9]\d* total",
        r"|^# tests [1-9]\d*",
        r"|[1-9]\d* specs?, \d+ failures?",
        r"|': ok$",
    ))
    .expect("valid")
});

static EXIT_CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r">>>>> Test Exit Code:\s*(-?\d+)").expect("valid"));

/// The statuses a log holds, or `None` when it does not describe a test
/// run that can be graded.
pub fn evaluate_log(parser: Parser, content: &str) -> Option<StatusMap> {
    if [APPLY_PATCH_FAIL, RESET_FAILED, TESTS_ERROR, TESTS_TIMEOUT].iter().any(|m| content.contains(m)) {
        return None;
    }
    if !(content.contains(START_TEST_OUTPUT) && content.contains(END_TEST_OUTPUT)) {
        return None;
    }
    let after = content.split(START_TEST_OUTPUT).nth(1).unwrap_or_default();
    let sliced = after.split(END_TEST_OUTPUT).next().unwrap_or_default();
    let mut map = parser.parse(sliced);
    if map.is_empty() {
        // Some runners print results outside the markers.
        map = parser.parse(content);
    }
    if map.is_empty() && !SUITE_RAN.is_match(content) {
        return None;
    }
    // A patch can print its own "PASSED" lines: a failing exit status with
    // no failure in the log means the log is not the run's.
    let exit = EXIT_CODE.captures(content).and_then(|c| c[1].parse::<i64>().ok());
    if exit.is_some_and(|c| c != 0) && !map.is_empty() && !map.values().any(|s| s == FAILED || s == ERROR) {
        return None;
    }
    Some(map)
}

/// The status-map key for an expected test id. Ids that the dataset cut
/// off inside a parameter (more `[` than `]`) match by prefix when every
/// candidate agrees on passing or not.
fn resolve<'m>(case: &str, map: &'m StatusMap) -> Option<&'m str> {
    if let Some((k, _)) = map.get_key_value(case) {
        return Some(k);
    }
    if case.matches('[').count() > case.matches(']').count() {
        let matches: Vec<(&String, &String)> = map.iter().filter(|(k, _)| k.starts_with(case)).collect();
        let passing = |s: &str| s == PASSED || s == XFAIL;
        let first = matches.first()?;
        if matches.iter().all(|(_, s)| passing(s) == passing(first.1)) {
            return Some(first.0);
        }
    }
    None
}

/// The status of an expected test, matched as grading matches it.
pub fn status_of<'m>(case: &str, map: &'m StatusMap) -> Option<&'m str> {
    resolve(case, map).map(|k| map[k].as_str())
}

fn passed(case: &str, map: &StatusMap) -> bool {
    resolve(case, map).is_some_and(|k| map[k] == PASSED || map[k] == XFAIL)
}

fn maintained(case: &str, map: &StatusMap) -> bool {
    passed(case, map) || resolve(case, map).is_some_and(|k| map[k] == SKIPPED)
}

fn failed(case: &str, map: &StatusMap) -> bool {
    match resolve(case, map) {
        None => true,
        Some(k) => map[k] == FAILED || map[k] == ERROR || map[k] == SKIPPED,
    }
}

/// How tests are judged: both ways (Python repositories), or only by
/// recorded failures (runners whose logs list failures only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalType {
    #[default]
    PassAndFail,
    FailOnly,
}

/// Tests that succeeded and failed, per group. A test whose status is
/// neither (e.g. an unknown word) is in neither list, as in the harness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub success: Vec<String>,
    pub failure: Vec<String>,
}

impl Outcome {
    /// The fraction that succeeded; 1 for an empty group.
    pub fn rate(&self) -> f64 {
        let total = self.success.len() + self.failure.len();
        if total == 0 {
            1.0
        } else {
            self.success.len() as f64 / total as f64
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestsReport {
    #[serde(rename = "FAIL_TO_PASS")]
    pub fail_to_pass: Outcome,
    #[serde(rename = "PASS_TO_PASS")]
    pub pass_to_pass: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    #[serde(rename = "RESOLVED_FULL")]
    Full,
    #[serde(rename = "RESOLVED_PARTIAL")]
    Partial,
    #[serde(rename = "RESOLVED_NO")]
    No,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Full => "RESOLVED_FULL",
            Resolution::Partial => "RESOLVED_PARTIAL",
            Resolution::No => "RESOLVED_NO",
        }
    }
}

pub fn tests_report(map: &StatusMap, f2p: &[String], p2p: &[String], eval_type: EvalType) -> TestsReport {
    let mut report = TestsReport::default();
    for (cases, out, is_p2p) in [(f2p, &mut report.fail_to_pass, false), (p2p, &mut report.pass_to_pass, true)] {
        for case in cases {
            let (ok, bad) = match eval_type {
                EvalType::FailOnly => {
                    let bad = map.get(case).is_some_and(|s| s == FAILED);
                    (!bad, bad)
                }
                EvalType::PassAndFail => {
                    let ok = if is_p2p { maintained(case, map) } else { passed(case, map) };
                    (ok, !ok && failed(case, map))
                }
            };
            if ok {
                out.success.push(case.clone());
            } else if bad {
                out.failure.push(case.clone());
            }
        }
    }
    report
}

pub fn resolution(report: &TestsReport) -> Resolution {
    let (f2p, p2p) = (report.fail_to_pass.rate(), report.pass_to_pass.rate());
    if f2p == 1.0 && p2p == 1.0 {
        Resolution::Full
    } else if f2p > 0.0 && f2p < 1.0 && p2p == 1.0 {
        Resolution::Partial
    } else {
        Resolution::No
    }
}

/// A graded test run: whether the log could be evaluated, the statuses,
/// the report and the resolution (`No` when not evaluated).
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    pub evaluated: bool,
    pub statuses: StatusMap,
    pub report: TestsReport,
    pub resolution: Resolution,
}

impl Graded {
    pub fn resolved(&self) -> bool {
        self.resolution == Resolution::Full
    }
}

/// Grades one test log against an instance's expected tests.
pub fn grade(parser: Parser, log: &str, f2p: &[String], p2p: &[String], eval_type: EvalType) -> Graded {
    match evaluate_log(parser, log) {
        None => Graded {
            evaluated: false,
            statuses: StatusMap::new(),
            report: TestsReport::default(),
            resolution: Resolution::No,
        },
        Some(statuses) => {
            let report = tests_report(&statuses, f2p, p2p, eval_type);
            let resolution = resolution(&report);
            Graded { evaluated: true, statuses, report, resolution }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(body: &str, exit: i32) -> String {
        format!("+ git apply\n{START_TEST_OUTPUT}\n{body}\n{END_TEST_OUTPUT}\n>>>>> Test Exit Code: {exit}\n")
    }
    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }
    fn grade_pytest(body: &str, exit: i32, f2p: &[&str], p2p: &[&str]) -> Graded {
        grade(Parser::Pytest, &log(body, exit), &v(f2p), &v(p2p), EvalType::PassAndFail)
    }

    #[test]
    fn all_pass_is_resolved() {
        let g =
            grade_pytest("PASSED t.py::a\nPASSED t.py::b\nPASSED t.py::c", 0, &["t.py::a"], &["t.py::b", "t.py::c"]);
        assert!(g.evaluated && g.resolved());
    }

    #[test]
    fn one_p2p_failing_is_not() {
        let g = grade_pytest(
            "PASSED t.py::a\nFAILED t.py::b - boom\nPASSED t.py::c",
            1,
            &["t.py::a"],
            &["t.py::b", "t.py::c"],
        );
        assert_eq!(g.resolution, Resolution::No);
        assert_eq!(g.report.pass_to_pass.failure, ["t.py::b"]);
    }

    #[test]
    fn a_missing_f2p_test_counts_as_failing() {
        let g = grade_pytest("PASSED t.py::a\nPASSED t.py::c", 0, &["t.py::a", "t.py::gone"], &["t.py::c"]);
        assert_eq!(g.resolution, Resolution::Partial);
        assert_eq!(g.report.fail_to_pass.failure, ["t.py::gone"]);
        let g = grade_pytest("PASSED t.py::c", 0, &["t.py::gone"], &["t.py::c"]);
        assert_eq!(g.resolution, Resolution::No);
    }

    #[test]
    fn skipped_is_maintained_for_p2p_but_not_a_fix_for_f2p() {
        let g = grade_pytest("SKIPPED t.py::a\nSKIPPED t.py::b", 0, &["t.py::a"], &["t.py::b"]);
        assert_eq!(g.report.fail_to_pass.failure, ["t.py::a"]);
        assert_eq!(g.report.pass_to_pass.success, ["t.py::b"]);
        assert!(!g.resolved());
        let g = grade_pytest("XFAIL t.py::a - known\nPASSED t.py::b", 0, &["t.py::a"], &["t.py::b"]);
        assert!(g.resolved(), "XFAIL counts as passing");
    }

    #[test]
    fn logs_that_cannot_be_graded() {
        let f2p = v(&["t.py::a"]);
        let bad = format!("{APPLY_PATCH_FAIL}\n{}", log("PASSED t.py::a", 0));
        assert!(!grade(Parser::Pytest, &bad, &f2p, &[], EvalType::PassAndFail).evaluated);
        assert!(!grade(Parser::Pytest, "PASSED t.py::a\n", &f2p, &[], EvalType::PassAndFail).evaluated, "no markers");
        let nothing = log("collected 0 items", 4);
        assert!(!grade(Parser::Pytest, &nothing, &f2p, &[], EvalType::PassAndFail).evaluated, "nothing ran");
        // PASSED lines with a failing exit status and no failure: forged.
        let forged = log("PASSED t.py::a", 1);
        assert!(!grade(Parser::Pytest, &forged, &f2p, &[], EvalType::PassAndFail).evaluated);
        // Results printed outside the markers are still found.
        let outside = format!("PASSED t.py::a\n{START_TEST_OUTPUT}\n{END_TEST_OUTPUT}\n");
        assert!(grade(Parser::Pytest, &outside, &f2p, &[], EvalType::PassAndFail).resolved());
    }

    #[test]
    fn truncated_parametrised_ids_match_by_prefix_when_unambiguous() {
        let body = "PASSED t.py::p[log(photon/s)]\nPASSED t.py::p[log(photon/m)]\nFAILED t.py::q[a-b] - x\nPASSED t.py::q[a-c]";
        let g = grade_pytest(body, 1, &["t.py::p[log(photon"], &[]);
        assert!(g.resolved());
        let g = grade_pytest(body, 1, &["t.py::q[a"], &[]);
        assert_eq!(g.report.fail_to_pass.failure, ["t.py::q[a"], "ambiguous: treated as missing");
    }

    #[test]
    fn fail_only_counts_only_recorded_failures() {
        let map = StatusMap::from([("a".to_string(), FAILED.to_string())]);
        let r = tests_report(&map, &v(&["a", "b"]), &v(&["c"]), EvalType::FailOnly);
        assert_eq!(r.fail_to_pass.success, ["b"]);
        assert_eq!(r.fail_to_pass.failure, ["a"]);
        assert_eq!(resolution(&r), Resolution::Partial);
    }
}
