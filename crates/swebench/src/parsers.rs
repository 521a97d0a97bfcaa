//! Test-log parsers: a test runner's output → test id → status, one
//! parser per output style SWE-bench knows for Python repositories
//! (pytest and its variants, Django's runner, SymPy's, seaborn's,
//! matplotlib's). Each reproduces the official harness's parser line for
//! line, quirks included, because grading is only comparable when the
//! same log yields the same statuses. Statuses are kept as the log spells
//! them (`PASSED`, `FAILED`, `SKIPPED`, `ERROR`, `XFAIL`, …).

use std::sync::LazyLock;

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Test id → status, in the order tests were first seen.
pub type StatusMap = IndexMap<String, String>;

pub const PASSED: &str = "PASSED";
pub const FAILED: &str = "FAILED";
pub const SKIPPED: &str = "SKIPPED";
pub const ERROR: &str = "ERROR";
pub const XFAIL: &str = "XFAIL";
const STATUSES: [&str; 5] = [FAILED, PASSED, SKIPPED, ERROR, XFAIL];

/// A log format. Names are the harness's parser names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Parser {
    /// `pytest -rA`: `STATUS test_id` summary lines.
    Pytest,
    /// pytest with parametrised ids whose path-like parameters are cut to
    /// their last component.
    PytestOptions,
    /// Newer pytest output: colour codes and control characters removed,
    /// test ids may hold spaces, `test_id STATUS` lines accepted too.
    PytestV2,
    /// Django's `runtests.py`: `test (module.Class) ... ok`.
    Django,
    Seaborn,
    /// SymPy's `bin/test`: `test_name ok` / `F` / `E` and failure headers.
    Sympy,
    Matplotlib,
}

impl Parser {
    pub const ALL: [Parser; 7] = [
        Parser::Pytest,
        Parser::PytestOptions,
        Parser::PytestV2,
        Parser::Django,
        Parser::Seaborn,
        Parser::Sympy,
        Parser::Matplotlib,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Parser::Pytest => "pytest",
            Parser::PytestOptions => "pytest_options",
            Parser::PytestV2 => "pytest_v2",
            Parser::Django => "django",
            Parser::Seaborn => "seaborn",
            Parser::Sympy => "sympy",
            Parser::Matplotlib => "matplotlib",
        }
    }

    /// A parser by its name here or the harness's (`parse_log_pytest`,
    /// `parse_log_django`, and the per-repository aliases such as
    /// `parse_log_astropy`).
    pub fn from_name(name: &str) -> Option<Parser> {
        let bare = name.strip_prefix("parse_log_").unwrap_or(name);
        if let Some(p) = Parser::ALL.into_iter().find(|p| p.name() == bare) {
            return Some(p);
        }
        Some(match bare {
            "astroid" | "flask" | "marshmallow" | "pvlib" | "pyvista" | "sqlfluff" | "xarray" => Parser::Pytest,
            "pydicom" | "requests" | "pylint" => Parser::PytestOptions,
            "astropy" | "scikit" | "sphinx" => Parser::PytestV2,
            _ => return None,
        })
    }

    /// The parser SWE-bench uses for a repository (`owner/name`); pytest
    /// for any other (SWE-smith's repositories all run pytest).
    pub fn for_repo(repo: &str) -> Parser {
        match repo {
            "django/django" => Parser::Django,
            "matplotlib/matplotlib" => Parser::Matplotlib,
            "mwaskom/seaborn" => Parser::Seaborn,
            "sympy/sympy" => Parser::Sympy,
            "psf/requests" | "pydicom/pydicom" | "pylint-dev/pylint" => Parser::PytestOptions,
            "astropy/astropy" | "scikit-learn/scikit-learn" | "sphinx-doc/sphinx" => Parser::PytestV2,
            _ => Parser::Pytest,
        }
    }

    pub fn parse(self, log: &str) -> StatusMap {
        match self {
            Parser::Pytest => pytest(log, |name| name.to_string(), false),
            Parser::PytestOptions => pytest(log, normalize_option, false),
            Parser::Matplotlib => pytest(log, |name| name.to_string(), true),
            Parser::PytestV2 => pytest_v2(log),
            Parser::Django => django(log),
            Parser::Seaborn => seaborn(log),
            Parser::Sympy => sympy(log),
        }
    }
}

/// Python's `str.split()`: runs of whitespace as Python counts it (which
/// includes the ASCII separators 0x1c–0x1f).
fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)).filter(|w| !w.is_empty()).collect()
}

/// Python's `str.strip()`.
fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn starts_with_status(line: &str) -> bool {
    STATUSES.iter().any(|s| line.starts_with(s))
}

static SKIP_SUMMARY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\[\d+\]$").expect("valid"));

/// `SKIPPED [3] path:line: reason` is pytest's skip summary; `[3]` is not
/// a test.
fn is_skip_summary(status: &str, name: &str) -> bool {
    status == SKIPPED && SKIP_SUMMARY.is_match(name)
}

fn pytest(log: &str, name_of: impl Fn(&str) -> String, mouse_buttons: bool) -> StatusMap {
    let mut map = StatusMap::new();
    for raw in log.split('\n') {
        let mut line = raw.to_string();
        if mouse_buttons {
            line = line.replace("MouseButton.LEFT", "1").replace("MouseButton.RIGHT", "3");
        }
        if !starts_with_status(&line) {
            continue;
        }
        if line.starts_with(FAILED) {
            line = line.replace(" - ", " ");
        }
        let w = words(&line);
        if w.len() <= 1 || is_skip_summary(w[0], w[1]) {
            continue;
        }
        map.insert(name_of(w[1]), w[0].to_string());
    }
    map
}

static OPTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(.*?)\[(.*)\]").expect("valid"));

/// `test_x[/tmp/a/b.txt]` → `test_x[/b.txt]`: absolute paths in
/// parameters differ between machines, their last component does not.
fn normalize_option(name: &str) -> String {
    match OPTION.captures(name) {
        None => name.to_string(),
        Some(c) => {
            let main = &c[1];
            let mut option = c[2].to_string();
            if option.starts_with('/') && !option.starts_with("//") && !option.contains('*') {
                option = format!("/{}", option.rsplit('/').next().unwrap_or_default());
            }
            format!("{main}[{option}]")
        }
    }
}

static COLOUR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[(\d+)m").expect("valid"));

fn pytest_v2(log: &str) -> StatusMap {
    let mut map = StatusMap::new();
    for raw in log.split('\n') {
        let uncoloured = COLOUR.replace_all(raw, "");
        let mut line: String = uncoloured.chars().filter(|c| !('\u{1}'..='\u{1f}').contains(c)).collect();
        if starts_with_status(&line) {
            if line.starts_with(FAILED) {
                // The assertion message after " - " is not part of the id.
                line = line.split(" - ").next().unwrap_or_default().to_string();
            }
            let w = words(&line);
            if w.len() >= 2 && !is_skip_summary(w[0], w[1]) {
                map.insert(w[1..].join(" "), w[0].to_string());
            }
        } else if STATUSES.iter().any(|s| line.ends_with(s)) {
            // Older pytest: `test_id STATUS`.
            let w = words(&line);
            if w.len() >= 2 {
                map.insert(w[..w.len() - 1].join(" "), w[w.len() - 1].to_string());
            }
        }
    }
    map
}

static DJANGO_INTERRUPTED: LazyLock<[Regex; 3]> = LazyLock::new(|| {
    [
        r"(?m)^(.*?)\s\.\.\.\sTesting against Django installed in ((?s:.*?)) silenced\)\.\nok$",
        r"(?m)^(.*?)\s\.\.\.\sInternal Server Error: /(.*)/\nok$",
        r"(?m)^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$",
    ]
    .map(|p| Regex::new(p).expect("valid"))
});

fn django(log: &str) -> StatusMap {
    let mut map = StatusMap::new();
    let mut prev_test: Option<String> = None;
    for raw in log.split('\n') {
        let mut line = strip(raw);
        // A test whose output spans lines; the runner prints this one
        // over several.
        if line.contains("--version is equivalent to version") {
            map.insert("--version is equivalent to version".into(), PASSED.into());
        }
        if line.contains(" ... ") {
            prev_test = Some(line.split(" ... ").next().unwrap_or_default().to_string());
        }
        for suffix in [" ... ok", " ... OK", " ...  OK"] {
            if line.ends_with(suffix) {
                // django__django-7188 prints a migration line before the
                // test on the same line.
                if line.starts_with("Applying sites.0002_alter_domain_unique...test_no_migrations") {
                    line = strip(line.split_once("...").map_or(line, |(_, rest)| rest));
                }
                let test = line.rsplit_once(suffix).map_or(line, |(head, _)| head);
                map.insert(test.to_string(), PASSED.into());
                break;
            }
        }
        if let Some((test, _)) = line.split_once(" ... skipped") {
            map.insert(test.to_string(), SKIPPED.into());
        }
        if line.ends_with(" ... FAIL") {
            map.insert(line.split(" ... FAIL").next().unwrap_or_default().to_string(), FAILED.into());
        }
        if line.starts_with("FAIL:") {
            if let Some(test) = words(line).get(1) {
                map.insert(strip(test).to_string(), FAILED.into());
            }
        }
        if line.ends_with(" ... ERROR") {
            map.insert(line.split(" ... ERROR").next().unwrap_or_default().to_string(), ERROR.into());
        }
        if line.starts_with("ERROR:") {
            if let Some(test) = words(line).get(1) {
                map.insert(strip(test).to_string(), ERROR.into());
            }
        }
        // Output printed between "..." and "ok" puts the verdict on a
        // line of its own.
        if line.trim_start().starts_with("ok") {
            if let Some(test) = &prev_test {
                map.insert(test.clone(), PASSED.into());
            }
        }
    }
    // Long multi-line prints that interrupt a test's line near the end.
    for re in DJANGO_INTERRUPTED.iter() {
        for c in re.captures_iter(log) {
            map.insert(c[1].to_string(), PASSED.into());
        }
    }
    map
}

fn seaborn(log: &str) -> StatusMap {
    let mut map = StatusMap::new();
    for line in log.split('\n') {
        let w = words(line);
        if w.len() < 2 {
            continue;
        }
        if line.starts_with(FAILED) {
            map.insert(w[1].to_string(), FAILED.into());
        } else if line.contains(" PASSED ") {
            if w[1] == PASSED {
                map.insert(w[0].to_string(), PASSED.into());
            }
        } else if line.starts_with(PASSED) {
            map.insert(w[1].to_string(), PASSED.into());
        }
    }
    map
}

static SYMPY_FAILURE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(_*) (.*)\.py:(.*) (_*)").expect("valid"));

fn sympy(log: &str) -> StatusMap {
    let mut map = StatusMap::new();
    // Failure headers: `____ sympy/core/tests/test_x.py:test_y ____`.
    for c in SYMPY_FAILURE.captures_iter(log) {
        map.insert(format!("{}.py:{}", &c[2], &c[3]), FAILED.into());
    }
    for raw in log.split('\n') {
        let line = strip(raw);
        if !line.starts_with("test_") {
            continue;
        }
        let first = || words(line)[0].to_string();
        if line.ends_with(" E") {
            map.insert(first(), ERROR.into());
        }
        if line.ends_with(" F") {
            map.insert(first(), FAILED.into());
        }
        if line.ends_with(" ok") {
            map.insert(first(), PASSED.into());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(m: &StatusMap) -> Vec<(&str, &str)> {
        m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn pytest_summary_lines() {
        let log = "\
tests/test_a.py::test_one PASSED                                      [ 50%]
PASSED tests/test_a.py::test_one
FAILED tests/test_a.py::test_two - assert 1 == 2
SKIPPED [1] tests/test_a.py:9: no network
ERROR tests/test_b.py::test_three - fixture 'db' not found
XFAIL tests/test_a.py::test_four - known bug
PASSED
";
        let m = Parser::Pytest.parse(log);
        assert_eq!(
            pairs(&m),
            [
                ("tests/test_a.py::test_one", "PASSED"),
                ("tests/test_a.py::test_two", "FAILED"),
                ("tests/test_b.py::test_three", "ERROR"),
                ("tests/test_a.py::test_four", "XFAIL"),
            ]
        );
    }

    #[test]
    fn pytest_options_cuts_path_parameters() {
        let log = "PASSED t.py::test_open[/tmp/xyz/data/file.txt]\nPASSED t.py::test_url[//host/a]\nPASSED t.py::test_p[a-b]\n";
        let m = Parser::PytestOptions.parse(log);
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["t.py::test_open[/file.txt]", "t.py::test_url[//host/a]", "t.py::test_p[a-b]"]);
    }

    #[test]
    fn pytest_v2_strips_colours_and_keeps_spaces_in_ids() {
        let log = "\x1b[32mPASSED\x1b[0m astropy/t.py::test_a[x y]\nFAILED astropy/t.py::test_b - AssertionError: x - y\nastropy/t.py::test_c SKIPPED\n";
        let m = Parser::PytestV2.parse(log);
        assert_eq!(
            pairs(&m),
            [
                ("astropy/t.py::test_a[x y]", "PASSED"),
                ("astropy/t.py::test_b", "FAILED"),
                ("astropy/t.py::test_c", "SKIPPED")
            ]
        );
    }

    #[test]
    fn django_runner_lines() {
        let log = "\
test_add (utils_tests.test_text.TestUtilsText) ... ok
test_wrap (utils_tests.test_text.TestUtilsText) ... FAIL
test_slow (utils_tests.test_text.TestUtilsText) ... skipped 'slow'
test_db (utils_tests.test_text.TestDb) ... ERROR
test_noisy (utils_tests.test_text.TestNoisy) ... some output
ok
======================================================================
FAIL: test_wrap (utils_tests.test_text.TestUtilsText)
";
        let m = Parser::Django.parse(log);
        assert_eq!(m["test_add (utils_tests.test_text.TestUtilsText)"], "PASSED");
        assert_eq!(m["test_wrap (utils_tests.test_text.TestUtilsText)"], "FAILED");
        assert_eq!(m["test_slow (utils_tests.test_text.TestUtilsText)"], "SKIPPED");
        assert_eq!(m["test_db (utils_tests.test_text.TestDb)"], "ERROR");
        assert_eq!(m["test_noisy (utils_tests.test_text.TestNoisy)"], "PASSED");
        // The `FAIL:` header names the test by its first word only.
        assert_eq!(m["test_wrap"], "FAILED");
    }

    #[test]
    fn sympy_runner_lines() {
        let log = "\
sympy/core/tests/test_basic.py[3] 
test_equality ok
test_matches_basic F
test_has E
________________________________________________________________________________
______________ sympy/core/tests/test_basic.py:test_matches_basic _______________
";
        let m = Parser::Sympy.parse(log);
        assert_eq!(m["sympy/core/tests/test_basic.py:test_matches_basic"], "FAILED");
        assert_eq!(m["test_equality"], "PASSED");
        assert_eq!(m["test_matches_basic"], "FAILED");
        assert_eq!(m["test_has"], "ERROR");
    }

    #[test]
    fn names_and_repositories() {
        assert_eq!(Parser::from_name("parse_log_astropy"), Some(Parser::PytestV2));
        assert_eq!(Parser::from_name("parse_log_django"), Some(Parser::Django));
        assert_eq!(Parser::from_name("pytest_options"), Some(Parser::PytestOptions));
        assert_eq!(Parser::from_name("parse_log_jest"), None);
        assert_eq!(Parser::for_repo("sympy/sympy"), Parser::Sympy);
        assert_eq!(Parser::for_repo("swestar/ledger"), Parser::Pytest);
    }
}
