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

/// A file that is not there yet is not an error: the plan says which
/// stages cannot run and why, at the file's line; `run` runs the others,
/// refuses those (exit 1), and runs them once the file is there.
#[test]
fn missing_files_block_only_the_stages_that_read_them() {
    let ctx = Ctx::new();
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    let text = format!(
        "{BASE}{}",
        r#"
[data.later]
path = "later.jsonl"

[stages.copy_later]
kind = "command"
format = "jsonl"
inputs = { later = "data.later" }
run = "cp {{ inputs.later }} {{ output }}"

[stages.after]
kind = "command"
format = "jsonl"
inputs = { x = "stages.copy_later", y = "stages.total" }
run = "cat {{ inputs.x }} > {{ output }}"
"#
    );
    ctx.write("wf.toml", &text);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "cannot   copy_later  wf.toml:21:8: key `data.later.path`: data file `later.jsonl` does not exist"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("cannot   after       upstream copy_later cannot run"), "{}", r.stdout);
    assert!(r.stdout.contains("4 stages: 2 run (2 changed, 0 downstream), 0 cached, 2 cannot run yet"), "{}", r.stdout);
    let plan: serde_json::Value = serde_json::from_str(&ctx.swestar(&["plan", "wf.toml", "--json"]).stdout).unwrap();
    let actions: Vec<&str> = plan.as_array().unwrap().iter().map(|n| n["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["run", "run", "cannot_run", "cannot_run"]);

    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status_of("double"), "committed");
    assert_eq!(r.status_of("total"), "committed");
    assert_eq!(r.status_of("copy_later"), "skipped");
    assert_eq!(r.status_of("after"), "skipped");
    assert!(r.stderr.contains("data file `later.jsonl` does not exist"), "{}", r.stderr);

    ctx.write("later.jsonl", "{\"x\": 5}\n");
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("total"), "cached");
    assert_eq!(r.status_of("after"), "committed");
}

/// A tokenizer or a repository not there yet: the stage cannot run.
#[test]
fn missing_tokenizers_and_repositories_block_their_stages() {
    let ctx = Ctx::new();
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    ctx.write(
        "wf.toml",
        &(format!("{BASE}{MODELS}").replace("context_window = 32768", "tokenizer = \"tok.json\"")
            + r#"
[stages.roll]
kind = "rollout"
model = "teacher"
inputs = { instances = "data.nums" }
repo = "not-cloned-yet"
"#),
    );
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for needle in [
        "wf.toml:25:13: key `models.teacher.tokenizer`: tokenizer file",
        "key `stages.roll.repo`: repository `not-cloned-yet` does not exist",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
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
    check(BASE, &["--set", "stages.double.format=7"], &["unknown variant `7`", "--set stages.double.format=7"]);
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

const MODELS: &str = r#"
[models.teacher]
base_url = "http://127.0.0.1:30000/v1"
model = "Qwen/Qwen2.5-Coder-32B-Instruct"
temperature = 0.0
request_timeout = "10m"
context_window = 32768
masking = "block"
low_water = 0.7
"#;

#[test]
fn model_endpoints_are_checked_and_settable() {
    let ctx = Ctx::new();
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    ctx.write("wf.toml", &format!("{BASE}{MODELS}"));
    let r = ctx.swestar(&["plan", "wf.toml", "--set", "models.teacher.base_url=http://10.0.0.7:8000/v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ctx.swestar(&["plan", "wf.toml", "--set", "models.techer.base_url=http://h/v1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no model `techer`") && r.stderr.contains("did you mean `teacher`"), "{}", r.stderr);
}

#[test]
fn bad_model_settings() {
    check(
        &format!("{BASE}{MODELS}").replace("masking = \"block\"", "masking = \"blocks\""),
        &[],
        &["wf.toml:26:11", "key `models.teacher.masking`"],
    );
    check(
        &format!("{BASE}{MODELS}").replace("low_water = 0.7", "low_water = 1.5"),
        &[],
        &["wf.toml:27:13", "must be between 0 and 1"],
    );
    check(
        &format!("{BASE}{MODELS}").replace("request_timeout = \"10m\"", "request_timeout = \"soon\""),
        &[],
        &["wf.toml:24:19", "not a duration"],
    );
    check(
        &format!("{BASE}{MODELS}").replace("temperature = 0.0", "temprature = 0.0"),
        &[],
        &["wf.toml:23:1", "unknown field `temprature`"],
    );
    check(
        &format!("{BASE}{MODELS}").replace("http://127.0.0.1:30000/v1", "localhost:30000"),
        &[],
        &["wf.toml:21:12", "not an http(s) URL"],
    );
}
