//! The engine end to end: the real binary on real files, real bash, real
//! Parquet read back.

mod common;

use common::{process_alive, read_pid, wait_for, Ctx};

const OPS: &str = include_str!("fixtures/ops.py");

/// A diamond: nums → double, square → total.
fn diamond(ctx: &Ctx) {
    ctx.write("ops.py", OPS);
    ctx.write("nums.jsonl", "{\"x\": 1}\n{\"x\": 2}\n{\"x\": 3}\n");
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "diamond"

[data.nums]
path = "nums.jsonl"

[stages.double]
kind = "command"
format = "jsonl"
inputs = { nums = "data.nums" }
deps = ["ops.py"]
params = { factor = 2, note = "a" }
run = "python3 ops.py scale {{ inputs.nums }} {{ output }} {{ params.factor }}"

[stages.square]
kind = "command"
format = "jsonl"
inputs = { nums = "data.nums" }
deps = ["ops.py"]
run = "python3 ops.py square {{ inputs.nums }} {{ output }}"

[stages.total]
kind = "command"
format = "jsonl"
inputs = { doubled = "stages.double", squared = "stages.square" }
deps = ["ops.py"]
run = "python3 ops.py sum {{ inputs.doubled }} {{ inputs.squared }} {{ output }}"
"#,
    );
}

fn total_of(ctx: &Ctx, extra: &[&str]) -> f64 {
    let mut args = vec!["show", "wf.toml", "total", "--json"];
    args.extend_from_slice(extra);
    let r = ctx.swestar(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["head"][0]["total"].as_f64().expect("total")
}

#[test]
fn second_run_executes_nothing_and_says_so() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let first = ctx.run("wf.toml", &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.statuses().iter().all(|(_, s)| s == "committed"), "{}", first.stdout);
    assert_eq!(total_of(&ctx, &[]), 2.0 + 4.0 + 6.0 + 1.0 + 4.0 + 9.0);
    let second = ctx.run("wf.toml", &[]);
    assert_eq!(second.code, 0);
    assert!(second.statuses().iter().all(|(_, s)| s == "cached"), "{}", second.stdout);
    assert!(second.stderr.contains("nothing to do: all 3 stages cached"), "{}", second.stderr);
    assert_eq!(ctx.objects().len(), 3);
}

#[test]
fn a_parameter_change_reruns_that_stage_and_its_dependents_only() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);

    let plan = ctx.plan_json("wf.toml", &["--set", "stages.double.params.factor=3"]);
    let actions: Vec<(&str, &str)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["stage"].as_str().unwrap(), n["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("double", "run"), ("square", "cached"), ("total", "run")]);
    assert_eq!(plan[0]["reason"], "parameter factor changed 2 → 3");
    assert_eq!(plan[2]["reason"], "upstream double reruns");
    assert!(plan[2]["key"].is_null(), "a key below a rerun is not known yet");
    assert_eq!(plan[1]["key"].as_str().unwrap().len(), 64);

    let r = ctx.run("wf.toml", &["--set", "stages.double.params.factor=3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("double"), "committed");
    assert_eq!(r.status_of("square"), "cached");
    assert_eq!(r.status_of("total"), "committed");
    assert_eq!(total_of(&ctx, &["--set", "stages.double.params.factor=3"]), 18.0 + 14.0);

    // The same change made in the file: hits the artifacts just made.
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap().replace("factor = 2", "factor = 3");
    ctx.write("wf.toml", &text);
    let r = ctx.run("wf.toml", &[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{}", r.stdout);

    // Going back to the old value hits the old artifacts: entries are never overwritten.
    let r = ctx.run("wf.toml", &["--set", "stages.double.params.factor=2"]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{}", r.stdout);
}

#[test]
fn identical_upstream_output_leaves_downstream_cached() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    // `note` is not used by the command: double reruns, writes the same bytes.
    let plan = ctx.plan_json("wf.toml", &["--set", "stages.double.params.note=b"]);
    assert_eq!(plan[0]["action"], "run");
    assert_eq!(plan[2]["action"], "run");
    let r = ctx.run("wf.toml", &["--set", "stages.double.params.note=b"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("double"), "committed");
    assert_eq!(r.status_of("total"), "cached");
    assert!(r.stderr.contains("upstream output unchanged"), "{}", r.stderr);
    assert!(r.stderr.contains("1 cut off early"), "{}", r.stderr);
}

/// `--force` recomputes a cached stage whose inputs the key cannot see (a
/// file the command reads without declaring it), replaces its artifact
/// under the same key, and lets early cutoff decide what follows.
#[test]
fn a_forced_stage_is_recomputed_and_replaced_and_downstream_follows_its_content() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let text = std::fs::read_to_string(ctx.path("wf.toml"))
        .unwrap()
        .replace("{{ output }} {{ params.factor }}", "{{ output }} $(cat factor.txt)");
    ctx.write("wf.toml", &text);
    ctx.write("factor.txt", "2\n");
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    assert_eq!(total_of(&ctx, &[]), 26.0);

    // The undeclared file changes: nothing in the key does.
    ctx.write("factor.txt", "3\n");
    let plan = ctx.plan_json("wf.toml", &[]);
    assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"), "{plan}");
    let plan = ctx.plan_json("wf.toml", &["--force", "double"]);
    let actions: Vec<(&str, &str)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["stage"].as_str().unwrap(), n["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("double", "run"), ("square", "cached"), ("total", "run")]);
    assert_eq!(plan[0]["reason"], "forced");
    let double_key = plan[0]["key"].as_str().unwrap().to_string();

    let r = ctx.run("wf.toml", &["--force", "double"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("double"), "committed");
    assert_eq!(r.status_of("square"), "cached");
    assert_eq!(r.status_of("total"), "committed");
    assert_eq!(total_of(&ctx, &[]), 3.0 + 6.0 + 9.0 + 14.0);
    // Replaced under its key, not added: double, square, and two totals.
    assert_eq!(ctx.objects().len(), 4);
    assert_eq!(ctx.plan_json("wf.toml", &[])[0]["key"], double_key.as_str());

    // Forcing a stage whose output comes out the same leaves what follows cached.
    let r = ctx.run("wf.toml", &["--force", "square"]);
    assert_eq!(r.status_of("square"), "committed");
    assert_eq!(r.status_of("total"), "cached");
    let r = ctx.swestar(&["plan", "wf.toml", "--force", "sqaure"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean `square`?"), "{}", r.stderr);
}

/// A store on a 2 MiB tmpfs that a stage fills: no panic, the run fails
/// saying the disk is full and where, its record is finalised as failed,
/// and no temporary file is left. The tmpfs is mounted in a private mount
/// namespace (`unshare`), so it needs no cleanup and no root.
#[test]
fn a_stage_that_fills_the_stores_disk_fails_cleanly() {
    let ctx = Ctx::new();
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "full"

[stages.big]
kind = "command"
format = "jsonl"
run = "python3 -c 'import json; [print(json.dumps({\"x\": \"a\" * 1000})) for _ in range(3000)]' > {{ output }}"
"#,
    );
    ctx.write(
        "check.sh",
        r#"mount -t tmpfs -o size=2m tmpfs "$STORE" || exit 90
"$SWESTAR" run wf.toml --store "$STORE" > out.txt 2> err.txt; echo $? > rc.txt
find "$STORE" -name '*.tmp' > tmpfiles.txt
cat "$STORE"/runs/*.json > record.txt
find "$STORE/staging" -name 'tmp-*' > scratch.txt
"#,
    );
    std::fs::create_dir_all(ctx.path("store")).unwrap();
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "bash", "check.sh"])
        .current_dir(ctx.path(""))
        .env("STORE", ctx.path("store"))
        .env("SWESTAR", env!("CARGO_BIN_EXE_swestar"))
        .status()
        .expect("unshare (util-linux) runs");
    assert!(status.success(), "the tmpfs could not be mounted in a private namespace: {status}");
    let read = |f: &str| std::fs::read_to_string(ctx.path(f)).unwrap();
    let err = read("err.txt");
    assert_eq!(read("rc.txt").trim(), "1", "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("FAILED   big") && err.contains("no space left on device"), "{err}");
    assert!(read("tmpfiles.txt").trim().is_empty(), "temporary files left: {}", read("tmpfiles.txt"));
    assert!(read("scratch.txt").trim().is_empty(), "scratch space left: {}", read("scratch.txt"));
    let record: serde_json::Value = serde_json::from_str(&read("record.txt")).unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["stages"][0]["status"], "failed");
    assert!(record["finished"].is_string());
}

/// The job script of a stage whose key is not known yet (its upstream has
/// not run) is shown whole, a marker where the key goes.
#[test]
fn render_shows_a_stage_below_one_not_yet_run_with_its_key_marked() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let r = ctx.swestar(&["render", "wf.toml", "total"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("staging/KEY-PENDING/job.json"), "{}", r.stdout);
    assert!(r.stdout.contains("swestar stage total, key KEY-PENDING"), "{}", r.stdout);
    assert!(r.stderr.contains("the key of `total` is known once double, square ran"), "{}", r.stderr);
    // Once they ran, the real key.
    assert_eq!(ctx.run("wf.toml", &["--only", "double", "--only", "square"]).code, 0);
    let r = ctx.swestar(&["render", "wf.toml", "total"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("KEY-PENDING") && r.stderr.is_empty(), "{}{}", r.stdout, r.stderr);
}

#[test]
fn data_sources_are_hashed_by_content() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    // Rewritten with the same content (new mtime): still cached.
    std::thread::sleep(std::time::Duration::from_millis(20));
    ctx.write("nums.jsonl", "{\"x\": 1}\n{\"x\": 2}\n{\"x\": 3}\n");
    let plan = ctx.plan_json("wf.toml", &[]);
    assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"), "{plan}");
    // New content: both readers rerun, with the data source named.
    ctx.write("nums.jsonl", "{\"x\": 1}\n{\"x\": 5}\n");
    let plan = ctx.plan_json("wf.toml", &[]);
    assert_eq!(plan[0]["reason"], "data source nums.jsonl changed");
    assert_eq!(plan[1]["reason"], "data source nums.jsonl changed");
    assert_eq!(plan[2]["reason"], "upstream double reruns; upstream square reruns");
}

#[test]
fn editing_a_dep_or_the_command_reruns_and_says_why() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    ctx.write("ops.py", &format!("{OPS}\n# edited\n"));
    let plan = ctx.plan_json("wf.toml", &[]);
    assert_eq!(plan[0]["reason"], "file ops.py changed");
    ctx.write("ops.py", OPS);
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap().replace("ops.py square", "ops.py  square");
    ctx.write("wf.toml", &text);
    let plan = ctx.plan_json("wf.toml", &[]);
    assert_eq!(plan[0]["action"], "cached");
    assert_eq!(plan[1]["reason"], "command changed");
}

#[test]
fn resource_settings_do_not_change_keys() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let text = std::fs::read_to_string(ctx.path("wf.toml"))
        .unwrap()
        .replace("[stages.square]\n", "[stages.square]\nresources = { time = \"2h\", cpus = 8, mem = \"4G\" }\n");
    ctx.write("wf.toml", &text);
    let plan = ctx.plan_json("wf.toml", &[]);
    assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"), "{plan}");
}

#[test]
fn sweep_variants_share_upstream_artifacts() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap();
    ctx.write("wf.toml", &format!("{text}\n[sweep]\n\"stages.double.params.factor\" = [2, 3]\n"));
    let plan = ctx.plan_json("wf.toml", &[]);
    let nodes = plan.as_array().unwrap();
    // square is shared: it appears once, for both variants.
    let squares: Vec<_> = nodes.iter().filter(|n| n["stage"] == "square").collect();
    assert_eq!(squares.len(), 1, "{plan}");
    assert_eq!(squares[0]["variants"], serde_json::json!(["factor=2", "factor=3"]));
    assert_eq!(nodes.iter().filter(|n| n["stage"] == "double").count(), 2);
    assert_eq!(nodes.len(), 5);
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ctx.objects().len(), 5);
    assert_eq!(total_of(&ctx, &["--variant", "factor=3"]), 32.0);
    // The un-swept workflow is one of the variants: fully cached.
    ctx.write("wf.toml", &text);
    let r = ctx.run("wf.toml", &[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{}", r.stdout);
}

/// `render` and `export` take `--variant` more than once: one script per
/// distinct node, one file per variant.
#[test]
fn render_and_export_take_several_variants() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap();
    ctx.write("wf.toml", &format!("{text}\n[sweep]\n\"stages.double.params.factor\" = [2, 3, 4]\n"));
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let r = ctx.swestar(&["render", "wf.toml", "total", "--variant", "factor=2", "--variant", "factor=4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let headers: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("# --- swestar render")).collect();
    assert_eq!(
        headers,
        [
            "# --- swestar render: stage total, variants factor=2",
            "# --- swestar render: stage total, variants factor=4"
        ]
    );
    assert_eq!(r.stdout.matches("#!/bin/bash").count(), 2);
    // A shared stage is one node: one script, no header.
    let r = ctx.swestar(&["render", "wf.toml", "square", "--variant", "factor=2", "--variant", "factor=3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("#!/bin/bash").count(), 1);

    let r = ctx.swestar(&[
        "export",
        "wf.toml",
        "total",
        "--to",
        "t.jsonl",
        "--variant",
        "factor=3",
        "--variant",
        "factor=4",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let total = |f: &str| -> f64 {
        let line = std::fs::read_to_string(ctx.path(f)).unwrap();
        serde_json::from_str::<serde_json::Value>(line.lines().next().unwrap()).unwrap()["total"].as_f64().unwrap()
    };
    assert_eq!(total("t.factor=3.jsonl"), 32.0);
    assert_eq!(total("t.factor=4.jsonl"), 38.0);
    assert!(!ctx.path("t.jsonl").exists());
    let r = ctx.swestar(&["export", "wf.toml", "total", "--to", "one.jsonl", "--variant", "factor=2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(total("one.jsonl"), 26.0);
    let r = ctx.swestar(&["export", "wf.toml", "total", "--to", "t.jsonl"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--variant (repeatable)"), "{}", r.stderr);
    let r = ctx.swestar(&["export", "wf.toml", "total", "--to", "t.jsonl", "--variant", "factr=2"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean `factor=2`"), "{}", r.stderr);
}

/// A sweep is narrowed with `--variant` or by replacing its values with
/// `--set 'sweep."KEY"=[...]'`; a `--set` of the swept key itself, which
/// would give every variant one value under names that say otherwise, is
/// an error, and so is a value listed twice.
#[test]
fn a_sweep_is_narrowed_by_variant_or_by_its_values_never_overridden() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap();
    ctx.write("wf.toml", &format!("{text}\n[sweep]\n\"stages.double.params.factor\" = [2, 3]\n"));
    let variants_of = |plan: &serde_json::Value, stage: &str| -> Vec<serde_json::Value> {
        plan.as_array().unwrap().iter().filter(|n| n["stage"] == stage).map(|n| n["variants"].clone()).collect()
    };

    let plan = ctx.plan_json("wf.toml", &["--variant", "factor=3"]);
    assert_eq!(plan.as_array().unwrap().len(), 3, "{plan}");
    assert_eq!(variants_of(&plan, "double"), [serde_json::json!(["factor=3"])]);

    let plan = ctx.plan_json("wf.toml", &["--set", "sweep.\"stages.double.params.factor\"=[4]"]);
    assert_eq!(plan.as_array().unwrap().len(), 3, "{plan}");
    assert_eq!(variants_of(&plan, "double"), [serde_json::json!(["factor=4"])]);
    let r = ctx.run("wf.toml", &["--set", "sweep.\"stages.double.params.factor\"=[4]"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(total_of(&ctx, &["--set", "sweep.\"stages.double.params.factor\"=[4]"]), 24.0 + 14.0);

    let r = ctx.swestar(&["plan", "wf.toml", "--set", "stages.double.params.factor=7"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`stages.double.params.factor` is swept") && r.stderr.contains("sweep."), "{}", r.stderr);
    let r = ctx.swestar(&["plan", "wf.toml", "--variant", "factor=9"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no variant `factor=9`") && r.stderr.contains("factor=2, factor=3"), "{}", r.stderr);

    ctx.write("wf.toml", &format!("{text}\n[sweep]\n\"stages.double.params.factor\" = [40, \"40\"]\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("listed twice") && r.stderr.contains("sweep.stages.double.params.factor"),
        "{}",
        r.stderr
    );
}

/// `plan` says which store it read, and for a node some variants share,
/// which ones.
#[test]
fn plan_names_its_store_and_the_variants_that_share_a_node() {
    let ctx = Ctx::new();
    ctx.write("ops.py", OPS);
    ctx.write("nums.jsonl", "{\"x\": 1}\n");
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "shared"

[data.nums]
path = "nums.jsonl"

[stages.double]
kind = "command"
format = "jsonl"
inputs = { nums = "data.nums" }
params = { factor = 2 }
run = "python3 ops.py scale {{ inputs.nums }} {{ output }} {{ params.factor }}"

[stages.square]
kind = "command"
format = "jsonl"
inputs = { nums = "data.nums" }
params = { note = "a" }
run = "python3 ops.py square {{ inputs.nums }} {{ output }}"

[sweep]
"stages.double.params.factor" = [2, 3]
"stages.square.params.note" = ["a", "b"]
"#,
    );
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(not created yet: nothing is cached)"), "{}", r.stdout);
    assert!(r.stdout.contains("shared by factor=2,note=a | factor=3,note=a"), "{}", r.stdout);
    assert!(r.stdout.contains("shared by factor=2,note=a | factor=2,note=b"), "{}", r.stdout);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert!(r.stdout.contains(&format!("store {}", ctx.store().display())), "{}", r.stdout);
}

#[test]
fn two_workflows_with_the_same_stage_share_one_artifact() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap().replace("name = \"diamond\"", "name = \"other\"");
    ctx.write("other.toml", &text);
    let r = ctx.run("other.toml", &[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{}", r.stdout);
    assert_eq!(ctx.objects().len(), 3);
}

#[test]
fn only_runs_the_named_stage_and_what_it_needs() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let r = ctx.run("wf.toml", &["--only", "double"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("double"), "committed");
    assert_eq!(r.status_of("square"), "not_selected");
    assert_eq!(r.status_of("total"), "not_selected");
    let r = ctx.run("wf.toml", &["--only", "dubble"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean `double`"), "{}", r.stderr);
}

#[test]
fn a_failing_command_exits_1_shows_stderr_and_keeps_the_log() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let text = std::fs::read_to_string(ctx.path("wf.toml")).unwrap().replace(
        "python3 ops.py square {{ inputs.nums }} {{ output }}",
        "echo 'something broke: disk on fire' >&2; exit 3",
    );
    ctx.write("wf.toml", &text);
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("something broke: disk on fire"), "{}", r.stderr);
    assert!(r.stderr.contains("command exited with status 3"), "{}", r.stderr);
    assert_eq!(r.status_of("square"), "failed");
    assert_eq!(r.status_of("total"), "skipped");
    let record = r.json();
    let log = record["stages"][1]["log"].as_str().unwrap();
    assert!(log.starts_with(ctx.store().canonicalize().unwrap().to_str().unwrap()), "{log}");
    assert!(std::fs::read_to_string(log).unwrap().contains("disk on fire"));
    // The failed stage left nothing under its key; status shows the failure.
    let key = record["stages"][1]["key"].as_str().unwrap();
    assert!(!ctx.store().join("objects").join(&key[..2]).join(key).exists());
    let s = ctx.swestar(&["status"]);
    assert!(s.stdout.contains("failed") && s.stdout.contains("square"), "{}", s.stdout);
}

#[test]
fn a_command_that_writes_no_output_fails_clearly() {
    let ctx = Ctx::new();
    ctx.write("wf.toml", "[workflow]\nname = \"w\"\n[stages.a]\nkind = \"command\"\nrun = \"true\"\n");
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("wrote no output"), "{}", r.stderr);
}

#[test]
fn a_time_limit_kills_the_command() {
    let ctx = Ctx::new();
    ctx.write(
        "wf.toml",
        "[workflow]\nname = \"w\"\n[stages.a]\nkind = \"command\"\nresources = { time = \"1s\" }\nrun = \"sleep 20; echo '{}' > {{ output }}\"\n",
    );
    let started = std::time::Instant::now();
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("time limit"), "{}", r.stderr);
    assert!(started.elapsed().as_secs() < 15);
}

#[test]
fn declared_env_enters_the_key_and_undeclared_env_does_not_reach_the_stage() {
    let ctx = Ctx::new();
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "w"
[stages.a]
kind = "command"
format = "jsonl"
env = ["MY_SETTING"]
run = "echo \"{\\\"v\\\": \\\"$MY_SETTING\\\", \\\"secret\\\": \\\"${OTHER_SECRET:-unset}\\\"}\" > {{ output }}"
"#,
    );
    let r = ctx.cmd(&["run", "wf.toml", "--json"]).env("MY_SETTING", "one").env("OTHER_SECRET", "x").output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let show = ctx.cmd(&["show", "wf.toml", "a", "--json"]).env("MY_SETTING", "one").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["head"][0]["v"], "one");
    assert_eq!(v["head"][0]["secret"], "unset");
    let plan = ctx.cmd(&["plan", "wf.toml", "--json"]).env("MY_SETTING", "two").output().unwrap();
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(p[0]["reason"], "environment variable MY_SETTING changed");
    assert!(!String::from_utf8_lossy(&plan.stdout).contains("two"), "values never appear");
}

#[test]
fn a_damaged_object_is_reported_and_redone() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let r = ctx.run("wf.toml", &[]);
    let key = r.json()["stages"][1]["key"].as_str().unwrap().to_string();
    let part = ctx.store().join("objects").join(&key[..2]).join(&key).join("parts/part-00000.parquet");
    std::fs::write(&part, "garbage").unwrap();
    let plan = ctx.plan_json("wf.toml", &[]);
    assert!(plan[1]["reason"].as_str().unwrap().starts_with("cached artifact is damaged"), "{plan}");
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.status_of("square"), "committed", "{}", r.stderr);
    assert_eq!(r.status_of("total"), "cached");
    assert!(ctx.store().join("quarantine").read_dir().unwrap().count() >= 1);
}

#[test]
fn artifacts_are_zstd_parquet_readable_by_pyarrow_and_duckdb_and_exportable() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.json()["stages"][2]["key"].as_str().unwrap().to_string();
    let obj = ctx.store().join("objects").join(&key[..2]).join(&key);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(obj.join("_manifest.json")).unwrap()).unwrap();
    for field in [
        "key",
        "stage",
        "kind",
        "kind_version",
        "params",
        "inputs",
        "content_hash",
        "rows",
        "bytes",
        "schema",
        "created",
        "duration_s",
        "preimage",
    ] {
        assert!(!manifest[field].is_null(), "manifest lacks {field}: {manifest}");
    }
    assert_eq!(manifest["rows"], 1);
    assert_eq!(manifest["schema"][0]["name"], "total");
    let python = common::python();
    let script = "import sys, pyarrow.parquet as pq\nf = pq.ParquetFile(sys.argv[1])\nassert f.metadata.row_group(0).column(0).compression == 'ZSTD', f.metadata.row_group(0).column(0).compression\nt = f.read()\nprint(t.num_rows, t.column('total')[0].as_py())\n";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(obj.join("parts/part-00000.parquet"))
        .output()
        .expect("python3 with pyarrow (see .ci/run)");
    assert!(out.status.success(), "pyarrow could not read the artifact: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 26.0");
    let out = std::process::Command::new(&python)
        .args(["-c", "import sys, duckdb; print(duckdb.connect().execute(f\"select total from read_parquet('{sys.argv[1]}')\").fetchone()[0])"])
        .arg(obj.join("parts/part-00000.parquet"))
        .output()
        .expect("python3 with duckdb (see .ci/run)");
    assert!(out.status.success(), "DuckDB could not read the artifact: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "26.0");

    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "double.jsonl"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_eq!(std::fs::read_to_string(ctx.path("double.jsonl")).unwrap(), "{\"x\":2.0}\n{\"x\":4.0}\n{\"x\":6.0}\n");
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "double.parquet"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let out = std::process::Command::new(&python)
        .args(["-c", "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)"])
        .arg(ctx.path("double.parquet"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let out = std::process::Command::new(&python)
        .args(["-c", "import sys, duckdb; print(duckdb.connect().execute(f\"select sum(x) from read_parquet('{sys.argv[1]}')\").fetchone()[0])"])
        .arg(ctx.path("double.parquet"))
        .output()
        .unwrap();
    assert!(out.status.success(), "DuckDB could not read the export: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12.0");
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "double.csv"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_eq!(std::fs::read_to_string(ctx.path("double.csv")).unwrap(), "x\n2.0\n4.0\n6.0\n");
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "-"]);
    assert_eq!((e.code, e.stdout.as_str()), (0, "{\"x\":2.0}\n{\"x\":4.0}\n{\"x\":6.0}\n"), "{}", e.stderr);
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "-", "--format", "csv"]);
    assert_eq!((e.code, e.stdout.as_str()), (0, "x\n2.0\n4.0\n6.0\n"), "{}", e.stderr);
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "-", "--format", "parquet"]);
    assert_eq!(e.code, 2, "{}", e.stderr);
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "double.txt"]);
    assert!(e.code == 2 && e.stderr.contains("--format"), "{}", e.stderr);
    let e = ctx.swestar(&["export", "wf.toml", "double", "--to", "nosuchdir/t.jsonl"]);
    assert_eq!(e.code, 2, "{}", e.stderr);
    assert!(e.stderr.contains("--to nosuchdir/t.jsonl: there is no directory nosuchdir"), "{}", e.stderr);
    assert!(!e.stderr.contains("partial"), "{}", e.stderr);
}

/// An object directory is one table to the usual readers: its manifest is
/// under a name they skip.
#[test]
fn an_object_directory_reads_as_a_dataset_in_pyarrow_duckdb_and_polars() {
    let ctx = Ctx::new();
    diamond(&ctx);
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json = r.json();
    let double = json["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "double").unwrap();
    let key = double["key"].as_str().unwrap().to_string();
    let obj = ctx.store().join("objects").join(&key[..2]).join(&key);
    // The object directory (manifest skipped) and its parts folder alone.
    let script = r#"
import sys, pyarrow.dataset as ds, pyarrow.parquet as pq, duckdb, polars as pl
d = sys.argv[1]
a = ds.dataset(d, format="parquet").to_table()
b = pq.read_table(d)
c = duckdb.connect().execute(f"select sum(x) from read_parquet('{d}/**/*.parquet')").fetchone()[0]
p = pl.read_parquet(d + "/parts")
q = pq.read_table(d + "/parts")
print(a.num_rows, sum(a.column("x").to_pylist()), b.num_rows, c, p.height, p["x"].sum(), q.num_rows)
"#;
    let out = std::process::Command::new(common::python()).args(["-c", script]).arg(&obj).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3 12.0 3 12.0 3 12.0 3");
    // `show` names the folder to hand a reader.
    let shown = ctx.swestar(&["show", "wf.toml", "double", "--json"]);
    assert_eq!(shown.json()["dataset"].as_str().map(std::path::PathBuf::from), Some(obj.join("parts")));
}

#[test]
fn show_prints_schema_rows_and_head() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let r = ctx.swestar(&["show", "wf.toml", "double", "--head", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("3 rows"), "{}", r.stdout);
    assert!(r.stdout.contains("x: Float64"), "{}", r.stdout);
    assert!(r.stdout.contains("first 2 rows"), "{}", r.stdout);
    let r = ctx.swestar(&["show", "wf.toml", "double", "--set", "stages.double.params.factor=9"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no artifact for the current settings"), "{}", r.stderr);
}

/// Temporary files of atomic writes that a full disk or a kill cut short
/// are leftovers gc removes; the records and refs beside them stay.
#[test]
fn gc_removes_the_temporary_files_of_cut_short_writes() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    let store = ctx.store();
    // Older than the lock stale time: no live writer is writing them.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (path, text) in
        [("runs/.20261202T000000Z-abcdef.json.login1.4242.tmp", ""), ("refs/.diamond.json.login1.4242.tmp", "{")]
    {
        std::fs::write(store.join(path), text).unwrap();
        std::fs::File::options().write(true).open(store.join(path)).unwrap().set_modified(old).unwrap();
    }
    // A young one may be a write in progress on another host: kept.
    std::fs::write(store.join("refs/.diamond.json.login2.77.tmp"), "{").unwrap();
    let r = ctx.swestar(&["gc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("2 leftovers"), "{}", r.stdout);
    for sub in ["runs", "refs"] {
        let names: Vec<String> = std::fs::read_dir(store.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp") || n.contains("login2")), "{sub}: {names:?}");
        assert!(names.iter().any(|n| n.ends_with(".json")), "{sub}: {names:?}");
    }
    let plan = ctx.plan_json("wf.toml", &[]);
    assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"));
}

#[test]
fn gc_removes_only_unreferenced_objects() {
    let ctx = Ctx::new();
    diamond(&ctx);
    assert_eq!(ctx.run("wf.toml", &[]).code, 0);
    assert_eq!(ctx.run("wf.toml", &["--set", "stages.double.params.factor=3"]).code, 0);
    assert_eq!(ctx.objects().len(), 5);
    // Every object is named by a run record: nothing to remove.
    let r = ctx.swestar(&["gc"]);
    assert!(r.stdout.contains("removed 0 objects"), "{}", r.stdout);
    let r = ctx.swestar(&["gc", "--keep-runs", "1", "--dry-run"]);
    assert!(r.stdout.contains("would remove 2 objects"), "{}", r.stdout);
    assert_eq!(ctx.objects().len(), 5);
    let r = ctx.swestar(&["gc", "--keep-runs", "1"]);
    assert!(r.stdout.contains("removed 2 objects"), "{}", r.stdout);
    assert_eq!(ctx.objects().len(), 3);
    let plan = ctx.plan_json("wf.toml", &["--set", "stages.double.params.factor=3"]);
    assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"));
}

#[test]
fn schema_file_is_current() {
    let ctx = Ctx::new();
    let r = ctx.swestar(&["schema"]);
    assert_eq!(r.code, 0);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/workflow.schema.json")).unwrap();
    assert!(
        r.stdout == committed,
        "schemas/workflow.schema.json is stale: run `cargo run -- schema > schemas/workflow.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let command = &schema["$defs"]["StageSchema"]["oneOf"][0];
    assert_eq!(command["properties"]["kind"]["const"], "command");
    assert!(command["properties"]["run"].is_object());
    assert_eq!(command["additionalProperties"], false);
}

/// Every setting with a default carries it in the schema, and `swestar
/// kinds KIND` shows it: the defaults are written once, in code.
#[test]
fn a_kinds_settings_show_their_defaults() {
    let ctx = Ctx::new();
    let r = ctx.swestar(&["schema"]);
    let schema: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let text = r.stdout.replace(' ', "");
    assert!(!text.contains("\"default\":null"), "a setting's default is null in the schema");
    let segment = schema["$defs"]["StageSchema"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["properties"]["kind"]["const"] == "segment")
        .unwrap();
    assert_eq!(segment["properties"]["window"]["default"], 32768);

    let r = ctx.swestar(&["kinds", "rollout"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = |name: &str| r.stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or("").to_string();
    assert!(line("parallel").ends_with("= 8"), "{}", r.stdout);
    assert!(line("limits.wall").ends_with("= \"1h\""), "{}", r.stdout);
    assert!(line("container.workdir").ends_with("= \"/testbed\""), "{}", r.stdout);
    assert!(line("repo").contains("optional"), "{}", r.stdout);

    let r = ctx.swestar(&["kinds"]);
    assert_eq!(r.stdout.lines().take_while(|l| !l.is_empty()).count(), 7, "{}", r.stdout);
    let r = ctx.swestar(&["kinds", "rolout"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean `rollout`?"), "{}", r.stderr);
}

#[test]
fn the_shipped_workflows_load_and_plan() {
    let ctx = Ctx::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let r = ctx.swestar(&["plan", path.to_str().unwrap()]);
            seen += 1;
            // The cluster's workflows name datasets and models that are
            // not here: their stages cannot run, but the plan is made
            // (tests/workflows.rs plans them pointed at the example tasks).
            assert_eq!(r.code, 0, "{}: {}", path.display(), r.stderr);
            if !r.stdout.contains("0 cannot run yet") && r.stdout.contains("cannot run yet") {
                assert!(r.stdout.contains("does not exist"), "{}: {}", path.display(), r.stdout);
            }
        }
    }
    assert!(seen >= 1);
}

fn slow_workflow(ctx: &Ctx) {
    ctx.write(
        "slow.toml",
        r#"[workflow]
name = "slow"
[stages.fast]
kind = "command"
format = "jsonl"
run = "echo '{\"a\": 1}' > {{ output }}"
[stages.slow]
kind = "command"
format = "jsonl"
inputs = { x = "stages.fast" }
run = "trap 'echo cleaned > cleaned.txt; exit 1' TERM; sleep 60 & echo $! > sleep.pid; echo $$ > bash.pid; wait; cp {{ inputs.x }} {{ output }}"
"#,
    );
}

#[test]
fn kill_9_mid_stage_leaves_no_artifact_no_process_and_the_rerun_redoes_only_that_stage() {
    let ctx = Ctx::new();
    slow_workflow(&ctx);
    let mut child = ctx.cmd(&["run", "slow.toml"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_for("the slow stage to start", 30, || read_pid(&ctx.path("sleep.pid")).is_some());
    let (sleep_pid, bash_pid) = (read_pid(&ctx.path("sleep.pid")).unwrap(), {
        wait_for("bash pid", 10, || read_pid(&ctx.path("bash.pid")).is_some());
        read_pid(&ctx.path("bash.pid")).unwrap()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_for("the stage's processes to die with the orchestrator", 10, || {
        !process_alive(sleep_pid) && !process_alive(bash_pid)
    });
    assert_eq!(ctx.objects().len(), 1, "only `fast` was committed");
    let s = ctx.swestar(&["status"]);
    assert!(s.stdout.contains("killed"), "{}", s.stdout);
    std::fs::remove_file(ctx.path("sleep.pid")).unwrap();
    let text = std::fs::read_to_string(ctx.path("slow.toml")).unwrap().replace("sleep 60", "sleep 0");
    ctx.write("slow.toml", &text);
    let r = ctx.run("slow.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status_of("fast"), "cached");
    assert_eq!(r.status_of("slow"), "committed");
}

#[test]
fn ctrl_c_stops_running_stages_and_says_what_finished() {
    let ctx = Ctx::new();
    slow_workflow(&ctx);
    let child = ctx
        .cmd(&["run", "slow.toml", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the slow stage to start", 30, || read_pid(&ctx.path("sleep.pid")).is_some());
    let sleep_pid = read_pid(&ctx.path("sleep.pid")).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let r: common::Run = out.into();
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stderr.contains("stopping running stages"), "{}", r.stderr);
    assert!(r.stderr.contains("1 committed"), "{}", r.stderr);
    assert!(r.stderr.contains("1 interrupted"), "{}", r.stderr);
    assert_eq!(r.status_of("fast"), "committed");
    assert_eq!(r.status_of("slow"), "interrupted");
    wait_for("the stage's processes to stop", 10, || !process_alive(sleep_pid));
    assert_eq!(ctx.objects().len(), 1);
}

fn sharded(ctx: &Ctx) {
    ctx.write(
        "shards.toml",
        r#"[workflow]
name = "sharded"
[stages.split]
kind = "command"
format = "jsonl"
resources = { shards = 3, max_parallel = 1 }
run = """
echo {{ shard.index }} >> runs.log
if [ {{ shard.index }} = 2 ] && [ -e block ]; then sleep 60; fi
echo '{"shard": {{ shard.index }}, "of": {{ shard.count }}}' > {{ output }}
"""
[stages.count]
kind = "command"
format = "jsonl"
inputs = { parts = "stages.split" }
run = "wc -l < {{ inputs.parts }} | sed 's/.*/{\"rows\": &}/' > {{ output }}"
"#,
    );
}

#[test]
fn a_sharded_stage_commits_one_part_per_shard() {
    let ctx = Ctx::new();
    sharded(&ctx);
    let r = ctx.run("shards.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.json()["stages"][0]["key"].as_str().unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ctx.store().join("objects").join(&key[..2]).join(&key).join("_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["parts"].as_array().unwrap().len(), 3);
    assert_eq!(manifest["rows"], 3);
    let show = ctx.swestar(&["show", "shards.toml", "count", "--json"]);
    assert_eq!(show.json()["head"][0]["rows"], 3, "the downstream stage sees all parts as one input");
    // The shard count is a resource setting: changing it keeps the key.
    let plan = ctx.plan_json("shards.toml", &["--set", "stages.split.resources.shards=5"]);
    assert_eq!(plan[0]["action"], "cached");
}

#[test]
fn finished_shards_survive_a_crash_and_are_not_redone() {
    let ctx = Ctx::new();
    sharded(&ctx);
    ctx.write("block", "");
    let mut child = ctx.cmd(&["run", "shards.toml"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let runs = || std::fs::read_to_string(ctx.path("runs.log")).unwrap_or_default();
    wait_for("shard 2 to start", 30, || runs().lines().any(|l| l == "2"));
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(ctx.path("block")).unwrap();
    let r = ctx.run("shards.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("2 already done"), "{}", r.stderr);
    let mut lines: Vec<String> = runs().lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["0", "1", "2", "2"], "only the unfinished shard ran again");
    assert_eq!(r.status_of("split"), "committed");
}
