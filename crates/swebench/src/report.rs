//! The harness's per-instance report of one graded test log (what
//! `run_evaluation` writes as an instance's `report.json`), including its
//! advisory triage of logs that hold no test results: signatures of a
//! broken environment (a browser that cannot start, no memory, no network)
//! or of something either side could cause (a missing module, no tests).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Value};

use super::grading::{grade, EvalType};
use super::parsers::Parser;

/// Cannot plausibly come from a patch to the repository's source.
pub const TIER_ENVIRONMENT: &str = "environment";
/// Could be the environment or the patch.
pub const TIER_AMBIGUOUS: &str = "ambiguous";

/// (reason, tier, pattern), tried in order; the first that matches wins.
const SIGNATURES: [(&str, &str, &str); 8] = [
    ("browser_launch_failed", TIER_ENVIRONMENT, r"Failed to launch|Failed to connect to the bus"),
    ("display_unavailable", TIER_ENVIRONMENT, r"cannot open display|Missing X server|unable to open X display"),
    ("out_of_memory", TIER_ENVIRONMENT, r"Cannot allocate memory|OutOfMemoryError|^Killed$"),
    ("container_unavailable", TIER_ENVIRONMENT, r"Error response from daemon|Cannot connect to the Docker daemon"),
    ("network_unreachable", TIER_ENVIRONMENT, r"Could not resolve host|Temporary failure in name resolution"),
    ("missing_module", TIER_AMBIGUOUS, r"Cannot find module|MODULE_NOT_FOUND|ModuleNotFoundError"),
    ("no_tests_collected", TIER_AMBIGUOUS, r"no tests ran|collected 0 items"),
    ("tests_timed_out", TIER_AMBIGUOUS, r"Timeout error: \d+ seconds exceeded"),
];

static COMPILED: LazyLock<Vec<(&str, &str, Regex)>> = LazyLock::new(|| {
    SIGNATURES.iter().map(|(r, t, p)| (*r, *t, Regex::new(&format!("(?m){p}")).expect("valid"))).collect()
});

/// Why a log holds no results, when it carries a known signature:
/// (reason, tier).
pub fn infra_failure(log: &str) -> Option<(&'static str, &'static str)> {
    COMPILED.iter().find(|(_, _, re)| re.is_match(log)).map(|(reason, tier, _)| (*reason, *tier))
}

/// The report of one instance's test log, keyed by its id, exactly as the
/// harness writes it (tests' statuses included).
pub fn instance_report(
    instance_id: &str,
    parser: Parser,
    log: &str,
    f2p: &[String],
    p2p: &[String],
    eval_type: EvalType,
) -> Value {
    let graded = grade(parser, log, f2p, p2p, eval_type);
    let mut entry = json!({
        "patch_is_None": false,
        "patch_exists": true,
        "patch_successfully_applied": graded.evaluated,
        "resolved": graded.resolved(),
        "infra_failure": false,
    });
    if graded.evaluated {
        let none = json!({"success": [], "failure": []});
        entry["tests_status"] = json!({
            "FAIL_TO_PASS": graded.report.fail_to_pass,
            "PASS_TO_PASS": graded.report.pass_to_pass,
            "FAIL_TO_FAIL": none,
            "PASS_TO_FAIL": none,
        });
    } else if let Some((reason, tier)) = infra_failure(log) {
        entry["infra_failure"] = json!(tier == TIER_ENVIRONMENT);
        entry["infra_failure_reason"] = json!(reason);
    }
    json!({ instance_id: entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_signature_names_the_failure() {
        let cases = [
            ("Error: Failed to launch the browser process", Some(("browser_launch_failed", TIER_ENVIRONMENT))),
            ("x\nKilled\ny", Some(("out_of_memory", TIER_ENVIRONMENT))),
            ("Process Killed by user", None),
            ("ModuleNotFoundError: No module named 'x'\ncollected 0 items", Some(("missing_module", TIER_AMBIGUOUS))),
            ("Timeout error: 1800 seconds exceeded.", Some(("tests_timed_out", TIER_AMBIGUOUS))),
            ("all good", None),
        ];
        for (log, want) in cases {
            assert_eq!(infra_failure(log), want, "{log}");
        }
    }
}
