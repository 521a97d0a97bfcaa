//! Every class of bad input: exit status 2, the file, line and column, and
//! the key.

mod common;

use common::Ctx;

const BASE: &str = r#"[workflow]
name = "w"

[data.nums]
path = "nums.jsonl"

[stages.double]
kind = "command"
format = "jsonl"
inputs = { nums = "data.nums" }
params = { factor = 2 }
run = "cp {{ inputs.nums }} {{ output }}"

[stages.total]
kind = "command"
format = "jsonl"
inputs = { doubled = "stages.double" }
run = "cp {{ inputs.doubled }} {{ output }}"
"#;

fn check(ctx_text: &str, args: &[&str], expect: &[&str]) {
    let ctx = Ctx::new();
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    ctx.write("wf.toml", ctx_text);
    let mut all = vec!["plan", "wf.toml"];
    all.extend_from_slice(args);
    let r = ctx.swestar(&all);
    assert_eq!(r.code, 2, "expected exit 2, got {}: {}", r.code, r.stderr);
    for e in expect {
        assert!(r.stderr.contains(e), "missing {e:?} in:\n{}", r.stderr);
    }
    // `run` reports the same and touches nothing.
    let mut all = vec!["run", "wf.toml"];
    all.extend_from_slice(args);
    let r = ctx.swestar(&all);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!ctx.store().join("objects").exists() || ctx.objects().is_empty());
}

#[test]
fn the_base_workflow_is_valid() {
    let ctx = Ctx::new();
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    ctx.write("wf.toml", BASE);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn unknown_key() {
    let text = BASE.replace("params = { factor = 2 }", "params = { factor = 2 }\nparallel = 4");
    check(
        &text,
        &[],
        &["wf.toml:12:1", "key `stages.double.parallel`", "unknown field `parallel`", "12 | parallel = 4"],
    );
}

#[test]
fn unknown_top_level_section() {
    let text = format!("{BASE}\n[exeuctor]\nkind = \"local\"\n");
    check(&text, &[], &["wf.toml:20:2", "unknown field `exeuctor`"]);
}

#[test]
fn wrong_type() {
    let text = BASE.replace("format = \"jsonl\"\ninputs = { nums", "format = 3\ninputs = { nums");
    check(&text, &[], &["wf.toml:9:10", "key `stages.double.format`", "wanted string"]);
}

#[test]
fn syntax_error() {
    let text = BASE.replace("name = \"w\"", "name = \"w");
    check(&text, &[], &["wf.toml:2:"]);
}

#[test]
fn reference_to_a_missing_stage() {
    let text = BASE.replace("\"stages.double\"", "\"stages.doubel\"");
    check(
        &text,
        &[],
        &[
            "wf.toml:17:22",
            "key `stages.total.inputs.doubled`",
            "no stage named `doubel`",
            "did you mean `stages.double`?",
            "^^^^^^^^^^^^^^^",
        ],
    );
}

#[test]
fn reference_to_missing_data() {
    let text = BASE.replace("\"data.nums\"", "\"data.numbers\"");
    check(&text, &[], &["wf.toml:10:19", "no data source named `numbers`"]);
}

#[test]
fn missing_data_file() {
    let text = BASE.replace("path = \"nums.jsonl\"", "path = \"gone.jsonl\"");
    check(&text, &[], &["wf.toml:5:8", "key `data.nums.path`", "does not exist"]);
}

#[test]
fn not_a_reference() {
    let text = BASE.replace("\"stages.double\"", "\"double\"");
    check(&text, &[], &["wf.toml:17:", "is not a reference", "data.NAME"]);
}

#[test]
fn cycles_are_named() {
    let text = BASE
        .replace("inputs = { nums = \"data.nums\" }", "inputs = { nums = \"data.nums\", back = \"stages.total\" }")
        .replace("cp {{ inputs.nums }}", "cp {{ inputs.nums }} {{ inputs.back }}");
    check(&text, &[], &["cycle: double → total → double", "wf.toml:10:"]);
    let selfref = BASE.replace("\"stages.double\"", "\"stages.total\"");
    check(&selfref, &[], &["reads its own output", "wf.toml:17:"]);
    let needs = BASE.replace("[stages.double]\n", "[stages.double]\nneeds = [\"total\"]\n");
    check(&needs, &[], &["cycle"]);
}

#[test]
fn unknown_kind() {
    let text = BASE.replace(
        "kind = \"command\"\nformat = \"jsonl\"\ninputs = { doubled",
        "kind = \"comand\"\nformat = \"jsonl\"\ninputs = { doubled",
    );
    check(&text, &[], &["wf.toml:15:8", "unknown stage kind `comand`", "did you mean `command`?"]);
}

#[test]
fn template_uses_an_unknown_input_or_param() {
    let text =
        BASE.replace("cp {{ inputs.nums }} {{ output }}", "cp {{ inputs.nums }} {{ params.factr }} {{ output }}");
    check(&text, &[], &["wf.toml:12:7", "key `stages.double.run`", "`{{ params.factr }}` is not a parameter"]);
}

#[test]
fn bad_set_paths() {
    check(
        BASE,
        &["--set", "stages.dubble.params.factor=3"],
        &["--set stages.dubble.params.factor=3", "no stage `dubble`", "did you mean `double`?"],
    );
    check(BASE, &["--set", "stages.double.params.fator=3"], &["no parameter", "`fator`"]);
    check(BASE, &["--set", "stages.double.bogus=3"], &["unknown field `bogus`", "--set stages.double.bogus=3"]);
    check(BASE, &["--set", "stages.double.format=7"], &["invalid type", "--set stages.double.format=7"]);
    check(BASE, &["--set", "nonsense"], &["expected KEY=VALUE"]);
}

#[test]
fn bad_sweep() {
    let text = format!("{BASE}\n[sweep]\n\"stages.double.params.nope\" = [1, 2]\n");
    check(&text, &[], &["wf.toml:21:", "no parameter", "`nope`", "[sweep]"]);
    let text = format!("{BASE}\n[sweep]\n\"stages.double.params.factor\" = []\n");
    check(&text, &[], &["wf.toml:21:", "non-empty list"]);
}

#[test]
fn several_problems_are_reported_together() {
    let text = BASE.replace("\"stages.double\"", "\"stages.x\"").replace("\"data.nums\"", "\"data.y\"");
    check(&text, &[], &["no stage named `x`", "no data source named `y`"]);
}

#[test]
fn missing_workflow_file() {
    let ctx = Ctx::new();
    let r = ctx.swestar(&["plan", "nope.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope.toml"), "{}", r.stderr);
}
