//! SWE-bench's evaluation semantics, shared by `test_filter` and
//! `swebench_eval`: test lists of an instance, the log parser each
//! repository's test runner needs ([`parsers`]), and grading a test log
//! into per-test statuses and a resolution ([`grading`]) and the
//! per-instance report ([`report`]), all as the official harness (the
//! `swebench` package, 5.0.x) does them.

pub mod grading;
pub mod parsers;
pub mod report;
pub mod specs;

use serde_json::Value;

/// Printed around the test command's output in a test log.
pub const START_TEST_OUTPUT: &str = ">>>>> Start Test Output";
pub const END_TEST_OUTPUT: &str = ">>>>> End Test Output";
/// Followed by `: N`, the test command's exit status.
pub const TEST_EXIT_CODE: &str = ">>>>> Test Exit Code";
/// Markers of a run whose tests did not run (any one of them in a log
/// means the tests were not evaluated).
pub const APPLY_PATCH_FAIL: &str = ">>>>> Patch Apply Failed";
pub const RESET_FAILED: &str = ">>>>> Reset Failed";
pub const TESTS_ERROR: &str = ">>>>> Tests Errored";
pub const TESTS_TIMEOUT: &str = ">>>>> Tests Timed Out";

/// A `FAIL_TO_PASS` / `PASS_TO_PASS` field: a list of strings, or (as in
/// the SWE-bench datasets) a JSON string holding one. Missing or null is
/// an empty list.
pub fn test_list(field: Option<&Value>) -> Result<Vec<String>, String> {
    let strings = |items: &[Value]| -> Result<Vec<String>, String> {
        items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("not a string: {v}"))).collect()
    };
    match field {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => strings(items),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => strings(&items),
            _ => Err(format!("a string that is not a JSON list: {}", abbreviate(text))),
        },
        Some(other) => Err(format!("expected a list of test names, found {}", abbreviate(&other.to_string()))),
    }
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(60).collect::<String>())
    }
}

/// The test files named by test ids (`tests/test_x.py::test_y[p]` →
/// `tests/test_x.py`), in first-seen order: what to hand the test runner.
pub fn test_files<'a>(tests: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tests {
        let file = t.split("::").next().unwrap_or(t).to_string();
        if !file.is_empty() && !out.contains(&file) {
            out.push(file);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_lists_come_as_lists_or_json_strings() {
        assert_eq!(test_list(Some(&json!(["a", "b"]))).unwrap(), ["a", "b"]);
        assert_eq!(test_list(Some(&json!("[\"a\"]"))).unwrap(), ["a"]);
        assert!(test_list(None).unwrap().is_empty());
        assert!(test_list(Some(&json!("a, b"))).unwrap_err().contains("not a JSON list"));
        assert!(test_list(Some(&json!([1]))).is_err());
    }

    #[test]
    fn test_files_are_the_ids_before_the_double_colon() {
        let ids = ["t/a.py::x".to_string(), "t/a.py::y[1]".into(), "t/b.py::z".into()];
        assert_eq!(test_files(&ids), ["t/a.py", "t/b.py"]);
    }
}
