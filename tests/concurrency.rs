//! Many runs on one store: other workflows and variants run at once, a key
//! in flight is computed once and reused by whoever else needs it, a dead
//! orchestrator's key is taken over, and gc works beside live runs.

mod common;

use std::process::{Child, Stdio};

use common::{process_alive, read_pid, wait_for, Ctx, Run};

/// A sweep whose variants share a slow `base` stage (it counts its runs in
/// `base.count`, outside the store) and differ in `tail`.
fn shared(ctx: &Ctx, values: &[u32], base_sleep: f64) {
    let values = values.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    ctx.write(
        "shared.toml",
        &format!(
            r#"[workflow]
name = "shared"

[stages.base]
kind = "command"
format = "jsonl"
run = """
echo $$ >> base.count
echo $$ > base.pid
sleep {base_sleep}
echo '{{"x": 1}}' > {{{{ output }}}}
"""

[stages.tail]
kind = "command"
format = "jsonl"
inputs = {{ base = "stages.base" }}
params = {{ n = 0 }}
run = "sed 's/1/{{{{ params.n }}}}/' {{{{ inputs.base }}}} > {{{{ output }}}}"

[sweep]
"stages.tail.params.n" = [{values}]
"#
        ),
    );
}

fn spawn(ctx: &Ctx, args: &[&str], envs: &[(&str, &str)]) -> Child {
    let mut c = ctx.cmd(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

fn base_runs(ctx: &Ctx) -> usize {
    std::fs::read_to_string(ctx.path("base.count")).unwrap_or_default().lines().count()
}

#[test]
fn two_variants_at_once_compute_their_shared_stage_once() {
    let ctx = Ctx::new();
    shared(&ctx, &[1, 2], 2.0);
    let first = spawn(&ctx, &["run", "shared.toml", "--variant", "n=1", "--json"], &[]);
    wait_for("the first run to start base", 30, || read_pid(&ctx.path("base.pid")).is_some());
    let second = spawn(&ctx, &["run", "shared.toml", "--variant", "n=2", "--json"], &[]);
    let (first, second) = (finish(first), finish(second));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(base_runs(&ctx), 1, "base ran more than once");
    let first_id = first.json()["id"].as_str().unwrap().to_string();
    // The second run said what it waited for, then reused the artifact.
    assert!(second.stderr.contains(&format!("waiting  base [n=2]  for run {first_id}, host ")), "{}", second.stderr);
    assert!(second.stderr.contains(&format!("(computed by run {first_id} meanwhile)")), "{}", second.stderr);
    assert_eq!(second.status_of("base"), "cached");
    assert_eq!(second.status_of("tail"), "committed");
    // Both variants' refs are there: neither run's write lost the other's.
    let refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ctx.store().join("refs/shared.json")).unwrap()).unwrap();
    let variants = refs["variants"].as_object().unwrap();
    assert!(variants.contains_key("n=1") && variants.contains_key("n=2"), "{refs}");
    let plan = ctx.plan_json("shared.toml", &[]);
    assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"), "{plan}");
    // Nothing of the locks is left.
    let left: Vec<_> = std::fs::read_dir(ctx.store().join("locks")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn another_workflow_runs_while_one_is_running() {
    let ctx = Ctx::new();
    shared(&ctx, &[1], 30.0);
    let long = spawn(&ctx, &["run", "shared.toml"], &[]);
    wait_for("the long run to start base", 30, || read_pid(&ctx.path("base.pid")).is_some());
    ctx.write(
        "other.toml",
        "[workflow]\nname = \"other\"\n[stages.one]\nkind = \"command\"\nformat = \"jsonl\"\nrun = \"echo '{\\\"y\\\": 2}' > {{ output }}\"\n",
    );
    let other = ctx.run("other.toml", &[]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert_eq!(other.status_of("one"), "committed");
    assert!(!other.stderr.contains("waiting"), "{}", other.stderr);
    let long_pid = long.id();
    unsafe { libc::kill(long_pid as i32, libc::SIGINT) };
    let long = finish(long);
    assert_eq!(long.code, 130, "{}", long.stderr);
}

/// A lock left by an orchestrator on another host that stopped beating is
/// taken over after the stale time; while it beat, the run waited.
#[test]
fn a_silent_lock_of_another_host_is_taken_over_after_the_stale_time() {
    let ctx = Ctx::new();
    shared(&ctx, &[1], 0.0);
    let plan = ctx.plan_json("shared.toml", &[]);
    let key =
        plan.as_array().unwrap().iter().find(|n| n["stage"] == "base").unwrap()["key"].as_str().unwrap().to_string();
    std::fs::create_dir_all(ctx.store().join("locks")).unwrap();
    let lock = ctx.store().join(format!("locks/key-{key}.lock"));
    std::fs::write(
        &lock,
        r#"{"holder":"run 20261201T000000Z-abcdef","host":"login-elsewhere","pid":1,"token":"t","since":"2026-12-01T00:00:00Z"}"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let r = ctx.cmd(&["run", "shared.toml", "--json"]).env("SWESTAR_LOCK_STALE", "1.5").output().unwrap();
    let r: Run = r.into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(started.elapsed().as_secs_f64() >= 1.5, "took the lock before the stale time");
    assert!(
        r.stderr.contains("waiting  base [n=1]  for run 20261201T000000Z-abcdef, host login-elsewhere"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("took its key over from run 20261201T000000Z-abcdef, host login-elsewhere"),
        "{}",
        r.stderr
    );
    assert_eq!(r.status_of("base"), "committed");
    assert!(!lock.exists());
}

/// gc beside a live run: the run's staging area and what it recorded stay,
/// what nobody uses goes, and the run still commits.
#[test]
fn gc_during_a_run_leaves_what_the_run_uses() {
    let ctx = Ctx::new();
    // An object nobody will reference any more.
    ctx.write("old.toml", "[workflow]\nname = \"old\"\n[stages.one]\nkind = \"command\"\nformat = \"jsonl\"\nrun = \"echo '{\\\"y\\\": 2}' > {{ output }}\"\n");
    assert_eq!(ctx.run("old.toml", &[]).code, 0);
    std::fs::remove_file(ctx.store().join("refs/old.json")).unwrap();
    for run in std::fs::read_dir(ctx.store().join("runs")).unwrap().flatten() {
        std::fs::remove_file(run.path()).unwrap();
    }
    shared(&ctx, &[1], 3.0);
    let live = spawn(&ctx, &["run", "shared.toml", "--json"], &[]);
    wait_for("the run to start base", 30, || read_pid(&ctx.path("base.pid")).is_some());
    let gc = ctx.swestar(&["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.contains("removed 1 objects"), "{}", gc.stdout);
    assert!(gc.stdout.contains("(in use: run "), "{}", gc.stdout);
    let live = finish(live);
    assert_eq!(live.code, 0, "{}", live.stderr);
    assert_eq!(live.status_of("tail"), "committed");
    assert_eq!(ctx.objects().len(), 2);
    // And a gc after it keeps both.
    let gc = ctx.swestar(&["gc", "--dry-run"]);
    assert!(gc.stdout.contains("would remove 0 objects"), "{}", gc.stdout);
}

/// A run that starts while gc holds the store waits for it and says so.
#[test]
fn a_run_waits_for_a_gc_in_progress() {
    let ctx = Ctx::new();
    shared(&ctx, &[1], 0.0);
    std::fs::create_dir_all(ctx.store().join("locks")).unwrap();
    let gc_lock = ctx.store().join("locks/gc.lock");
    let me = std::process::id();
    std::fs::write(
        &gc_lock,
        format!(r#"{{"holder":"gc","host":"{}","pid":{me},"token":"t","since":"2026-12-02T00:00:00Z"}}"#, hostname()),
    )
    .unwrap();
    let run = spawn(&ctx, &["run", "shared.toml"], &[]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(process_alive(run.id()), "the run did not wait for gc");
    assert!(!ctx.path("base.pid").exists(), "a stage started under gc");
    std::fs::remove_file(&gc_lock).unwrap();
    let run = finish(run);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("waiting  store  for gc, host "), "{}", run.stderr);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// Twenty orchestrators at once on one store: eighteen variants of a sweep
/// and two other workflows, all sharing `base`. The one computing `base`
/// is killed with SIGKILL and another takes its key over; a gc runs in the
/// middle. Every other run succeeds, `base` runs once more only for the
/// kill, every variant's refs and record are there, and gc afterwards
/// finds nothing to remove.
#[test]
fn twenty_runs_at_once_on_one_store() {
    let ctx = Ctx::new();
    let values: Vec<u32> = (1..=18).collect();
    shared(&ctx, &values, 2.0);
    let text = std::fs::read_to_string(ctx.path("shared.toml")).unwrap();
    let text = &text[..text.find("[sweep]").unwrap()];
    for (name, n) in [("other1", 101), ("other2", 102)] {
        ctx.write(
            &format!("{name}.toml"),
            &text.replace("name = \"shared\"", &format!("name = \"{name}\"")).replace("n = 0", &format!("n = {n}")),
        );
    }
    let plan = ctx.plan_json("other1.toml", &[]);
    let key =
        plan.as_array().unwrap().iter().find(|n| n["stage"] == "base").unwrap()["key"].as_str().unwrap().to_string();
    let stale = [("SWESTAR_LOCK_STALE", "3")];
    let mut commands: Vec<Vec<String>> =
        values.iter().map(|n| vec!["run".into(), "shared.toml".into(), "--variant".into(), format!("n={n}")]).collect();
    commands.push(vec!["run".into(), "other1.toml".into()]);
    commands.push(vec!["run".into(), "other2.toml".into()]);
    let start = |c: &Vec<String>| {
        let mut args: Vec<&str> = c.iter().map(String::as_str).collect();
        args.extend(["--json", "-j", "1"]);
        spawn(&ctx, &args, &stale)
    };
    let children: Vec<Child> = commands.iter().map(start).collect();

    // The orchestrator computing base: the owner of its key's lock.
    let lock = ctx.store().join(format!("locks/key-{key}.lock"));
    wait_for("base to start", 60, || read_pid(&ctx.path("base.pid")).is_some() && lock.exists());
    let owner: serde_json::Value = serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    let victim_pid = owner["pid"].as_u64().unwrap() as u32;
    let victim_run = owner["holder"].as_str().unwrap().strip_prefix("run ").unwrap().to_string();
    let victim = children.iter().position(|c| c.id() == victim_pid).expect("a child holds the lock");
    let gc = ctx.swestar(&["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    assert!(gc.stdout.contains(&format!("(in use: run {victim_run}")), "{}", gc.stdout);
    unsafe { libc::kill(victim_pid as i32, libc::SIGKILL) };

    let runs: Vec<Run> = children.into_iter().map(finish).collect();
    for (i, r) in runs.iter().enumerate() {
        if i != victim {
            assert_eq!(r.code, 0, "{:?}: {}", commands[i], r.stderr);
        }
    }
    assert_eq!(runs[victim].code, -1, "killed by a signal");
    let took_over: Vec<&Run> =
        runs.iter().filter(|r| r.stderr.contains(&format!("took its key over from run {victim_run}"))).collect();
    assert_eq!(took_over.len(), 1, "exactly one run took base over");
    assert_eq!(runs.iter().enumerate().filter(|(i, r)| *i != victim && r.status_of("base") == "committed").count(), 1);
    assert_eq!(base_runs(&ctx), 2, "base ran once, and once more after the kill");

    // The killed variant's run again: base is reused.
    let again: Run = start(&commands[victim]).wait_with_output().unwrap().into();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.status_of("base"), "cached");

    let refs = |wf: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(ctx.store().join(format!("refs/{wf}.json"))).unwrap()).unwrap()
    };
    assert_eq!(refs("shared")["variants"].as_object().unwrap().len(), 18);
    for wf in ["other1", "other2"] {
        assert_eq!(refs(wf)["variants"][""].as_object().unwrap().len(), 2, "{wf}");
    }
    let records = std::fs::read_dir(ctx.store().join("runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(records, 21);
    assert_eq!(ctx.objects().len(), 21);
    let gc = ctx.swestar(&["gc"]);
    assert!(gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    for wf in ["shared.toml", "other1.toml", "other2.toml"] {
        let plan = ctx.plan_json(wf, &[]);
        assert!(plan.as_array().unwrap().iter().all(|n| n["action"] == "cached"), "{wf}: {plan}");
    }
}
