//! SWE-bench's log parsers and grading on recorded output of the real
//! test runners (tests/fixtures/logs: Django's, SymPy's and pytest's).

use swestar::swebench::grading::{grade, EvalType, Resolution};
use swestar::swebench::parsers::Parser;
use swestar::swebench::{END_TEST_OUTPUT, START_TEST_OUTPUT};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/logs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A log as the harness's eval script leaves it.
fn harness_log(body: &str, exit: i32) -> String {
    format!("+ git apply -v -\n{START_TEST_OUTPUT}\n{body}\n{END_TEST_OUTPUT}\n>>>>> Test Exit Code: {exit}\n")
}

#[test]
fn django_runner_output() {
    let m = Parser::Django.parse(&fixture("django.log"));
    let t = |name: &str| format!("{name} (shop.tests.PriceTests.{name})");
    assert_eq!(m["test_create_user (shop.tests.UserTests.test_create_user)"], "PASSED");
    assert_eq!(m[&t("test_total_adds_items")], "PASSED");
    assert_eq!(m[&t("test_checkout")], "SKIPPED");
    assert_eq!(m[&t("test_currency_symbol")], "ERROR");
    assert_eq!(m[&t("test_discount_is_applied")], "FAILED");
    // Printed output between "..." and "ok" puts the verdict on its own line.
    assert_eq!(m[&t("test_noisy_output")], "PASSED");
    // The failure headers name the tests by their first word too.
    assert_eq!(m["test_currency_symbol"], "ERROR");
    assert_eq!(m["test_discount_is_applied"], "FAILED");
    assert_eq!(m.len(), 8, "{m:#?}");
    // Migration lines ("Applying x... OK") are not tests.
    assert!(!m.keys().any(|k| k.contains("Applying")), "{m:#?}");

    let f2p = v(&[&t("test_total_adds_items"), &t("test_noisy_output")]);
    let p2p = v(&["test_create_user (shop.tests.UserTests.test_create_user)", &t("test_checkout")]);
    let g = grade(Parser::Django, &harness_log(&fixture("django.log"), 1), &f2p, &p2p, EvalType::PassAndFail);
    assert!(g.evaluated && g.resolved(), "a skipped P2P test is maintained: {:?}", g.report);
    let f2p = v(&[&t("test_total_adds_items"), &t("test_discount_is_applied")]);
    let g = grade(Parser::Django, &harness_log(&fixture("django.log"), 1), &f2p, &p2p, EvalType::PassAndFail);
    assert_eq!(g.resolution, Resolution::Partial);
}

#[test]
fn sympy_runner_output() {
    let m = Parser::Sympy.parse(&fixture("sympy.log"));
    assert_eq!(m["test_rational_addition"], "PASSED");
    assert_eq!(m["test_simplify_fraction"], "FAILED");
    assert_eq!(m["test_symbol_name_case"], "FAILED");
    // The last test's verdict shares its line with the file's `[FAIL]`, so
    // the harness's line rule does not see it; its failure header does.
    assert!(!m.contains_key("test_division_by_zero_message"), "{m:#?}");
    // The failure headers, as `path.py:name` (the `::` ones too, the way
    // the harness's pattern reads them).
    assert_eq!(
        m.get("sympy/core/tests/test_ledger_fixture.py:test_division_by_zero_message").map(String::as_str),
        Some("FAILED"),
        "{m:#?}"
    );
    assert!(m.keys().any(|k| k.contains("test_simplify_fraction") && k.contains(".py:")), "{m:#?}");
    let g = grade(
        Parser::Sympy,
        &harness_log(&fixture("sympy.log"), 1),
        &v(&["test_rational_addition"]),
        &v(&["test_symbol_name_case"]),
        EvalType::PassAndFail,
    );
    assert!(g.evaluated && !g.resolved());
    assert_eq!(g.report.pass_to_pass.failure, ["test_symbol_name_case"]);
}

#[test]
fn pytest_output() {
    let log = fixture("pytest.log");
    let m = Parser::Pytest.parse(&log);
    assert_eq!(m.len(), 30, "{m:#?}");
    assert_eq!(m["tests/test_parse.py::test_currency_code_suffix"], "FAILED");
    assert_eq!(m.values().filter(|s| *s == "PASSED").count(), 29);
    // A parametrised id with a space is cut at the space, as the harness does.
    assert!(m.contains_key("tests/test_parse.py::test_garbage_is_rejected[12"), "{m:#?}");
    let inst: serde_json::Value =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/instances.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|i| i["instance_id"].as_str().unwrap().ends_with("currency_code_case"))
            .unwrap();
    let list = |k: &str| swestar::swebench::test_list(inst.get(k)).unwrap();
    // The bug's own log: F2P fails, every P2P passes.
    let g = grade(
        Parser::Pytest,
        &harness_log(&log, 1),
        &list("FAIL_TO_PASS"),
        &list("PASS_TO_PASS"),
        EvalType::PassAndFail,
    );
    assert!(g.evaluated);
    assert_eq!(g.resolution, Resolution::No);
    assert_eq!(g.report.fail_to_pass.failure, list("FAIL_TO_PASS"));
    assert_eq!(g.report.pass_to_pass.success.len(), list("PASS_TO_PASS").len());
}
