//! How SWE-bench runs each repository's tests: the test command per
//! repository and version, the environment exports some repositories need
//! before it, and the test directives taken from an instance's
//! `test_patch` (the files it touches, as the runner names them). Facts
//! from the harness's per-repository specifications (swebench 4.x
//! `harness/constants/python.py`, `test_spec/python.py`).

use std::sync::LazyLock;

use regex::Regex;

const PYTEST: &str = "pytest -rA";
const ASTROPY_OLD: &str = "pytest -rA -vv -o console_output_style=classic --tb=no";
const DJANGO: &str = "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1";
const DJANGO_1_9: &str = "./tests/runtests.py --verbosity 2";
const SEABORN: &str = "pytest --no-header -rA";
const SPHINX: &str = "tox --current-env -epy39 -v --";
const SYMPY: &str = "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose";

/// The test command of a SWE-bench repository at a version; `None` for a
/// repository SWE-bench does not know.
pub fn test_cmd(repo: &str, version: &str) -> Option<&'static str> {
    Some(match repo {
        "astropy/astropy" if ["0.1", "0.2", "0.3", "0.4", "1.1", "1.2", "1.3"].contains(&version) => ASTROPY_OLD,
        "astropy/astropy" => PYTEST,
        "django/django" if version == "1.9" => DJANGO_1_9,
        "django/django" => DJANGO,
        "mwaskom/seaborn" => SEABORN,
        "sphinx-doc/sphinx" => SPHINX,
        "sympy/sympy" => SYMPY,
        "matplotlib/matplotlib"
        | "marshmallow-code/marshmallow"
        | "pallets/flask"
        | "psf/requests"
        | "pvlib/pvlib-python"
        | "pydata/xarray"
        | "pydicom/pydicom"
        | "pylint-dev/astroid"
        | "pylint-dev/pylint"
        | "pytest-dev/pytest"
        | "pyvista/pyvista"
        | "scikit-learn/scikit-learn"
        | "sqlfluff/sqlfluff" => PYTEST,
        _ => return None,
    })
}

/// Lines the harness runs before the tests of a repository.
pub fn pre_test(repo: &str) -> &'static [&'static str] {
    match repo {
        "django/django" => &[
            "export LANG=en_US.UTF-8",
            "export LC_ALL=en_US.UTF-8",
            "export PYTHONIOENCODING=utf8",
            "export LANGUAGE=en_US:en",
        ],
        _ => &[],
    }
}

/// Files that are not tests even when a test patch touches them.
const NON_TEST_EXTS: [&str; 11] =
    [".json", ".png", "csv", ".txt", ".md", ".jpg", ".jpeg", ".pkl", ".yml", ".yaml", ".toml"];

static DIFF_FILE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"diff --git a/.* b/(.*)").expect("valid"));

/// The files a patch touches (its `b/` paths), in order.
pub fn patched_files(patch: &str) -> Vec<String> {
    DIFF_FILE.captures_iter(patch).map(|c| c[1].to_string()).collect()
}

/// What the test command is given: the test patch's files without data
/// files; for Django, as dotted module names under tests/.
pub fn test_directives(repo: &str, test_patch: &str) -> Vec<String> {
    let files = patched_files(test_patch).into_iter().filter(|d| !NON_TEST_EXTS.iter().any(|e| d.ends_with(e)));
    if repo == "django/django" {
        files
            .map(|d| {
                let d = d.strip_suffix(".py").unwrap_or(&d);
                d.strip_prefix("tests/").unwrap_or(d).replace('/', ".")
            })
            .collect()
    } else {
        files.collect()
    }
}

/// The unbiased estimate of Pass@k from `n` samples of which `c` are
/// correct: 1 − C(n−c, k) / C(n, k), computed as a product to stay exact
/// for large n.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if k == 0 || k > n {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    let mut miss = 1.0;
    for i in (n - c + 1)..=n {
        miss *= 1.0 - k as f64 / i as f64;
    }
    1.0 - miss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_by_repository_and_version() {
        assert_eq!(test_cmd("django/django", "4.0"), Some(DJANGO));
        assert_eq!(test_cmd("django/django", "1.9"), Some(DJANGO_1_9));
        assert_eq!(test_cmd("astropy/astropy", "1.3"), Some(ASTROPY_OLD));
        assert_eq!(test_cmd("astropy/astropy", "5.2"), Some(PYTEST));
        assert!(test_cmd("sympy/sympy", "1.12").unwrap().ends_with("bin/test -C --verbose"));
        assert_eq!(test_cmd("swestar/ledger", "0.1"), None);
    }

    #[test]
    fn directives_from_the_test_patch() {
        let patch = "diff --git a/tests/forms_tests/test_media.py b/tests/forms_tests/test_media.py\n--- a\n+++ b\n\
                     diff --git a/tests/data/fixture.json b/tests/data/fixture.json\n";
        assert_eq!(test_directives("django/django", patch), ["forms_tests.test_media"]);
        assert_eq!(test_directives("psf/requests", patch), ["tests/forms_tests/test_media.py"]);
    }

    #[test]
    fn pass_at_k_matches_hand_computed_values() {
        // n = 5, c = 2: pass@1 = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!((pass_at_k(5, 2, 1) - 0.4).abs() < 1e-12);
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        // pass@3 = 1 - C(3,3)/C(5,3) = 1 - 1/10; pass@4: n - c < k.
        assert!((pass_at_k(5, 2, 3) - 0.9).abs() < 1e-12);
        assert_eq!(pass_at_k(5, 2, 4), 1.0);
        assert_eq!(pass_at_k(5, 0, 3), 0.0);
        assert_eq!(pass_at_k(16, 16, 1), 1.0);
        // n = 16, c = 4: pass@1 = 0.25; pass@16 = 1.
        assert!((pass_at_k(16, 4, 1) - 0.25).abs() < 1e-12);
        assert_eq!(pass_at_k(16, 4, 16), 1.0);
        assert!(pass_at_k(3, 1, 4).is_nan());
    }
}
