//! The SLURM executor against a real single-node cluster on 127.0.0.1
//! (slurmctld + slurmd + slurmdbd with MariaDB, started by
//! tests/slurm/cluster.sh; .ci/run installs Debian's packages). One test
//! function runs the scenarios in order because they share the cluster,
//! and the last one restarts it with accounting switched off.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{wait_for, Ctx, Run};

struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Cluster {
    fn start(dir: &Path, accounting: bool) -> Cluster {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slurm/cluster.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg("start").arg(dir);
        if !accounting {
            cmd.arg("--no-accounting");
        }
        let out = cmd.output().expect("bash");
        assert!(
            out.status.success(),
            "the test cluster did not start (is slurm-wlm installed? see .ci/run): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = stdout.lines().find_map(|l| l.strip_prefix("export SLURM_CONF=")).expect("SLURM_CONF").to_string();
        Cluster { dir: dir.to_path_buf(), conf }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slurm/cluster.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(&self.dir).status();
    }
}

/// Wrappers that log each call of a SLURM command, then run the real one.
fn wrappers(dir: &Path) -> PathBuf {
    let bin = dir.join("wrap");
    std::fs::create_dir_all(&bin).unwrap();
    for cmd in ["sbatch", "sacct", "squeue", "scancel"] {
        let real = which(cmd);
        let path = bin.join(cmd);
        std::fs::write(
            &path,
            format!("#!/bin/bash\necho \"$*\" >> {}/{cmd}.calls\nexec {} \"$@\"\n", bin.display(), real.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn which(cmd: &str) -> PathBuf {
    let out = Command::new("bash").arg("-c").arg(format!("command -v {cmd}")).output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn calls(bin: &Path, cmd: &str) -> Vec<String> {
    std::fs::read_to_string(bin.join(format!("{cmd}.calls"))).unwrap_or_default().lines().map(str::to_string).collect()
}

fn slurm_run(ctx: &Ctx, cluster: &Cluster, bin: &Path, wf: &str, extra: &[&str]) -> Run {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut args = vec!["run", wf, "--json"];
    args.extend_from_slice(extra);
    ctx.cmd(&args).env("SLURM_CONF", &cluster.conf).env("PATH", path).output().unwrap().into()
}

const HEAD: &str = r#"[workflow]
name = "sl"
[executor]
kind = "slurm"
[executor.slurm]
poll_initial = "500ms"
poll_max = "2s"
time = "10m"
"#;

fn arrays_commit_and_render_matches_what_was_submitted(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write(
        "wf.toml",
        &format!(
            r#"{HEAD}
[stages.split]
kind = "command"
format = "jsonl"
resources = {{ shards = 3, max_parallel = 2 }}
run = "sleep 1.2; echo '{{\"shard\": {{{{ shard.index }}}}, \"job\": '$SLURM_ARRAY_JOB_ID'}}' > {{{{ output }}}}"
[stages.count]
kind = "command"
format = "jsonl"
inputs = {{ parts = "stages.split" }}
run = "wc -l < {{{{ inputs.parts }}}} | sed 's/.*/{{\"rows\": &}}/' > {{{{ output }}}}"
"#
        ),
    );
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let record = r.json();
    assert_eq!(record["executor"], "slurm");
    let split = &record["stages"][0];
    assert_eq!(split["status"], "committed");
    assert_eq!(split["jobs"]["job_ids"].as_array().unwrap().len(), 1, "one array job for all shards");
    assert_eq!(split["jobs"]["done"], 3);
    // One sbatch per stage; the 3 shards are one array throttled to 2.
    let sbatch = calls(&bin, "sbatch");
    assert_eq!(sbatch.len(), 2, "{sbatch:?}");
    assert!(sbatch[0].contains("--array=0-2%2"), "{}", sbatch[0]);
    assert!(sbatch.iter().all(|c| c.contains(&format!("--job-name={}", record["id"].as_str().unwrap()))));
    // One job-state query per poll, plus the one that checks accounting,
    // plus one per committed stage for its jobs' usage.
    let polls = record["polls"].as_u64().unwrap();
    assert_eq!(calls(&bin, "sacct").len() as u64, polls + 1 + 2);
    // SLURM's accounting of the array: three tasks of a second or more,
    // one node each.
    let key = split["key"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ctx.store().join("objects").join(&key[..2]).join(key).join("_manifest.json")).unwrap(),
    )
    .unwrap();
    let usage = &manifest["usage"];
    assert_eq!(usage["accounted_by"], "sacct", "{usage}");
    assert!(usage["node_s"].as_f64().unwrap() >= 3.0, "{usage}");
    assert!(usage["alloc_cpu_s"].as_f64().unwrap() >= usage["node_s"].as_f64().unwrap(), "{usage}");
    assert!(usage["shard_s"].as_f64().unwrap() >= 3.0, "each shard's own time: {usage}");
    assert!(calls(&bin, "squeue").is_empty());
    // All shards ran as array tasks of the same job and were committed as parts.
    let show = ctx.swestar(&["show", "wf.toml", "split", "--json"]);
    let head = show.json()["head"].as_array().unwrap().clone();
    assert_eq!(head.len(), 3);
    assert_eq!(head[0]["job"], split["jobs"]["job_ids"][0]);
    let count = ctx.swestar(&["show", "wf.toml", "count", "--json"]);
    assert_eq!(count.json()["head"][0]["rows"], 3);
    // `render` prints exactly what was submitted.
    let submitted = ctx
        .store()
        .canonicalize()
        .unwrap()
        .join("logs")
        .join(record["id"].as_str().unwrap())
        .join(format!("split.{}.sbatch", &key[..12]));
    let rendered = ctx.swestar(&["render", "wf.toml", "split"]);
    assert_eq!(rendered.code, 0, "{}", rendered.stderr);
    assert_eq!(rendered.stdout, std::fs::read_to_string(submitted).unwrap());
    // A second run is cached and submits nothing.
    let again = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{}", again.stdout);
    assert_eq!(calls(&bin, "sbatch").len(), 2);
}

fn a_failing_shard_is_a_user_error_with_its_log(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write(
        "wf.toml",
        &format!(
            r#"{HEAD}
[stages.split]
kind = "command"
format = "jsonl"
resources = {{ shards = 2 }}
run = """
if [ {{{{ shard.index }}}} = 1 ]; then echo "shard one cannot parse its input" >&2; exit 3; fi
echo '{{"ok": 1}}' > {{{{ output }}}}
"""
"#
        ),
    );
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("shard 1/2"), "{}", r.stderr);
    assert!(r.stderr.contains("shard one cannot parse its input"), "{}", r.stderr);
    assert!(r.stderr.contains("split."), "log path shown: {}", r.stderr);
    assert_eq!(r.status_of("split"), "failed");
    assert_eq!(calls(&bin, "sbatch").len(), 1, "a user error is not retried");
    assert!(ctx.objects().is_empty());
}

fn a_preempted_task_is_resubmitted_alone(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write("block", "");
    ctx.write(
        "wf.toml",
        &format!(
            r#"{HEAD}
[stages.split]
kind = "command"
format = "jsonl"
resources = {{ shards = 2 }}
run = """
echo {{{{ shard.index }}}} >> runs.log
if [ {{{{ shard.index }}}} = 1 ]; then while [ -e block ]; do sleep 0.2; done; fi
echo '{{"shard": {{{{ shard.index }}}}}}' > {{{{ output }}}}
"""
"#
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let child = ctx
        .cmd(&["run", "wf.toml", "--json"])
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let runs = || std::fs::read_to_string(ctx.path("runs.log")).unwrap_or_default();
    wait_for("both shards to start", 60, || runs().lines().count() >= 2);
    wait_for("shard 0's exit file", 30, || {
        std::fs::read_dir(ctx.store().join("staging"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join("exit-0").exists())
    });
    // A job in the higher-priority partition takes the node: SLURM preempts shard 1.
    let urgent = Command::new("sbatch")
        .args(["--parsable", "-p", "urgent", "--exclusive", "--job-name=urgent", "--wrap", "sleep 1"])
        .env("SLURM_CONF", &cluster.conf)
        // Its slurm-N.out goes to the test's directory, not the repository.
        .current_dir(ctx.path(""))
        .output()
        .unwrap();
    assert!(urgent.status.success(), "{}", String::from_utf8_lossy(&urgent.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while calls(&bin, "sbatch").len() < 2 {
        if std::time::Instant::now() > deadline {
            let mut child = child;
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let sacct = Command::new("sacct")
                .args(["-X", "-P", "-n", "--starttime", "now-1hour", "-o", "JobID,State,ExitCode,NodeList,JobName"])
                .env("SLURM_CONF", &cluster.conf)
                .output()
                .unwrap();
            panic!(
                "no resubmission after preemption\nsacct:\n{}\nrun:\n{}",
                String::from_utf8_lossy(&sacct.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::remove_file(ctx.path("block")).unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Run = out.into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sbatch = calls(&bin, "sbatch");
    assert_eq!(sbatch.len(), 2, "{sbatch:?}");
    assert!(sbatch[1].contains("--array=1"), "only the lost task is resubmitted: {}", sbatch[1]);
    assert!(!sbatch[1].contains("--exclude"), "preemption does not blame the node: {}", sbatch[1]);
    assert!(r.stderr.contains("lost to PREEMPTED: resubmitting (retry 1 of 2)"), "{}", r.stderr);
    let jobs = &r.json()["stages"][0]["jobs"];
    assert_eq!(jobs["retried"], 1);
    assert_eq!(jobs["job_ids"].as_array().unwrap().len(), 2);
    let mut lines: Vec<String> = runs().lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["0", "1", "1"], "shard 0 ran once");
}

fn a_template_error_names_the_file_and_line(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write("job.sh.j2", "#!/bin/bash\n{{ exec }}\n{% if %}\n");
    ctx.write(
        "wf.toml",
        &format!("{HEAD}\n[stages.a]\nkind = \"command\"\ntemplate = \"job.sh.j2\"\nrun = \"true\"\n"),
    );
    let r = ctx.swestar(&["render", "wf.toml", "a"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("job.sh.j2:3: syntax error"), "{}", r.stderr);
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("job.sh.j2:3: syntax error"), "{}", r.stderr);
    assert!(calls(&bin, "sbatch").is_empty());
}

fn without_accounting_squeue_is_polled_instead(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write(
        "wf.toml",
        &format!(
            r#"{HEAD}
[stages.split]
kind = "command"
format = "jsonl"
resources = {{ shards = 2 }}
run = "sleep 1; echo '{{\"shard\": {{{{ shard.index }}}}}}' > {{{{ output }}}}"
"#
        ),
    );
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let polls = r.json()["polls"].as_u64().unwrap();
    assert_eq!(calls(&bin, "squeue").len() as u64, polls);
    assert_eq!(calls(&bin, "sacct").len(), 1, "only the probe that found accounting off");
    assert_eq!(r.status_of("split"), "committed");
}

const BLOCKING: &str = r#"
[stages.split]
kind = "command"
format = "jsonl"
resources = { shards = 2 }
run = """
echo {{ shard.index }} >> runs.log
if [ {{ shard.index }} = 1 ]; then while [ -e block ]; do sleep 0.2; done; fi
echo '{"shard": {{ shard.index }}}' > {{ output }}
"""
"#;

fn spawn_run(ctx: &Ctx, cluster: &Cluster, bin: &Path, extra: &[&str]) -> std::process::Child {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut args = vec!["run", "wf.toml", "--json"];
    args.extend_from_slice(extra);
    ctx.cmd(&args)
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn shard_one_running(ctx: &Ctx, cluster: &Cluster) -> bool {
    let q = Command::new("squeue")
        .args(["-h", "-r", "-t", "R", "-o", "%i"])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    let runs = std::fs::read_to_string(ctx.path("runs.log")).unwrap_or_default();
    runs.lines().any(|l| l == "1") && String::from_utf8_lossy(&q.stdout).lines().any(|l| l.trim().ends_with("_1"))
}

fn a_restarted_orchestrator_adopts_running_jobs(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write("block", "");
    ctx.write("wf.toml", &format!("{HEAD}{BLOCKING}"));
    let mut first = spawn_run(&ctx, cluster, &bin, &[]);
    wait_for("shard 1 to run", 60, || shard_one_running(&ctx, cluster));
    first.kill().unwrap(); // SIGKILL: the orchestrator dies, its jobs do not
    first.wait().unwrap();
    assert!(shard_one_running(&ctx, cluster), "the job outlives the orchestrator");
    let second = spawn_run(&ctx, cluster, &bin, &[]);
    wait_for("the second run to poll", 30, || calls(&bin, "sacct").len() >= 3);
    std::fs::remove_file(ctx.path("block")).unwrap();
    let r: Run = second.wait_with_output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(calls(&bin, "sbatch").len(), 1, "nothing was submitted twice: {:?}", calls(&bin, "sbatch"));
    let jobs = &r.json()["stages"][0]["jobs"];
    // Shard 1 for sure; shard 0 too if it had not finished when the second run began.
    assert!(jobs["adopted"].as_u64().unwrap() >= 1, "{jobs}");
    assert!(r.stderr.contains("shard jobs that an earlier run had submitted"), "{}", r.stderr);
    assert_eq!(r.status_of("split"), "committed");
    let mut lines: Vec<String> =
        std::fs::read_to_string(ctx.path("runs.log")).unwrap().lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["0", "1"], "each shard ran once");
}

fn ctrl_c_cancels_or_keeps_the_runs_jobs(cluster: &Cluster) {
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write("block", "");
    ctx.write("wf.toml", &format!("{HEAD}{BLOCKING}"));
    let child = spawn_run(&ctx, cluster, &bin, &["--on-interrupt", "cancel"]);
    wait_for("shard 1 to run", 60, || shard_one_running(&ctx, cluster));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert_eq!(calls(&bin, "scancel").len(), 1);
    assert!(calls(&bin, "scancel")[0].contains(&format!("--name={}", r.json()["id"].as_str().unwrap())));
    wait_for("the job to be cancelled", 30, || !shard_one_running(&ctx, cluster));

    let child = spawn_run(&ctx, cluster, &bin, &["--on-interrupt", "keep"]);
    wait_for("shard 1 to run again", 60, || shard_one_running(&ctx, cluster));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stderr.contains("next `swestar run` adopts them"), "{}", r.stderr);
    assert_eq!(calls(&bin, "scancel").len(), 1, "kept jobs are not cancelled");
    assert!(shard_one_running(&ctx, cluster));
    let submitted = calls(&bin, "sbatch").len();
    std::fs::remove_file(ctx.path("block")).unwrap();
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(calls(&bin, "sbatch").len(), submitted, "the kept job was adopted, not resubmitted");
}

fn a_job_serves_a_real_model_and_stops_it(cluster: &Cluster) {
    let (python, model) = common::serve::model();
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    ctx.write("wf.toml", &common::serve::serve_workflow(HEAD, &python, &model, false));
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = &ctx.swestar(&["show", "wf.toml", "ask", "--json"]).json()["head"][0];
    assert!(row["completion_tokens"].as_u64().unwrap() > 0, "{row}");
    assert!(common::serve::no_server_left(), "the job stopped its server");
    ctx.write("wf.toml", &common::serve::serve_workflow(HEAD, &python, &model, true));
    let r = slurm_run(&ctx, cluster, &bin, "wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("the body gave up"), "{}", r.stderr);
    assert!(common::serve::no_server_left(), "the job stopped its server after the body failed");
    assert_eq!(calls(&bin, "sbatch").len(), 2, "a failing body is not retried");
}

/// The sft stage's multi-node launch for real: the job runs `srun` with two
/// torchtune agents (two "nodes" on the one test node), which meet through
/// a c10d rendezvous and train the tiny model with the distributed recipe
/// on CPU (gloo). tests/fixtures/sft/cpu_shim stubs the recipe's CUDA-only
/// helpers on every rank (PYTHONPATH, a declared env variable).
fn sft_trains_through_srun_with_two_agents(cluster: &Cluster) {
    let (Some(tune), Some(tok)) = (common::tune(), common::tokenizer()) else { return };
    let ctx = Ctx::new();
    let bin = wrappers(ctx.dir.path());
    common::tiny_model(&tune, &tok, &ctx.path("tiny"));
    let samples: String = (0..8)
        .map(|i| {
            serde_json::json!({"instance_id": format!("i{i}"), "attempt": 0, "segment": 0, "tokens": 60, "messages": [
                {"role": "system", "content": "You fix bugs.", "trainable": false},
                {"role": "user", "content": format!("Fix bug {i}."), "trainable": false},
                {"role": "assistant", "content": "<function=submit>\n</function>", "trainable": true}]})
            .to_string()
                + "\n"
        })
        .collect();
    ctx.write("samples.jsonl", &samples);
    ctx.write(
        "wf.toml",
        &format!(
            r#"{HEAD}
[data.samples]
path = "samples.jsonl"

[stages.sft]
kind = "sft"
inputs = {{ samples = "data.samples" }}
launch = "slurm"
nnodes = 2
nproc_per_node = 1
env = ["PYTHONPATH"]
resources = {{ nodes = 1, sbatch = ["--ntasks=2"] }}
{}"#,
            common::tiny_sft_settings(&tune)
        ),
    );
    // A copy: Python writes its bytecode cache beside the modules.
    let shim = ctx.path("cpu_shim");
    std::fs::create_dir_all(&shim).unwrap();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sft/cpu_shim")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, shim.join(f.file_name().unwrap())).unwrap();
        }
    }
    let shim = shim.to_str().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let r: Run = ctx
        .cmd(&["run", "wf.toml", "--json"])
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", path)
        .env("PYTHONPATH", shim)
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The declared PYTHONPATH is part of the key: export with it set.
    let out = ctx.path("sft.parquet");
    let e: Run = ctx
        .cmd(&["export", "wf.toml", "sft", "--to", out.to_str().unwrap()])
        .env("PYTHONPATH", shim)
        .output()
        .unwrap()
        .into();
    assert_eq!(e.code, 0, "{}", e.stderr);
    let (_, batches) = swestar::store::table::read_parquet(&[out.as_path()], None).unwrap();
    let rows = swestar::store::table::batches_to_json_rows(&batches).unwrap();
    let row = &rows[0];
    assert_eq!(row["trained"], true, "{row}");
    assert_eq!((row["nnodes"].as_u64(), row["nproc_per_node"].as_u64()), (Some(2), Some(1)));
    // 8 samples, batches of 2 on each of 2 ranks: 2 steps (one rank
    // alone would take 4).
    assert_eq!(row["steps"], 2, "{row}");
    assert!(row["losses"].as_array().unwrap().iter().all(|l| l.as_f64().unwrap().is_finite()));
    assert!(Path::new(row["checkpoint_path"].as_str().unwrap()).join("model-00001-of-00001.bin").is_file());
    let out = Path::new(row["config_path"].as_str().unwrap()).with_file_name("train.out");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.matches("Running with torchrun").count(), 2, "two agents through srun: {text}");
    // The job script asks for the nodes and tasks and shows the launch.
    let r: Run = ctx.cmd(&["render", "wf.toml", "sft"]).env("PYTHONPATH", shim).output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = r.stdout;
    for needle in ["#SBATCH --nodes=1", "#SBATCH --ntasks=2", "#   srun --kill-on-bad-exit=1 --ntasks=2"] {
        assert!(script.contains(needle), "{needle}\n{script}");
    }
}

#[test]
fn slurm_executor_on_a_real_cluster() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cluster = Cluster::start(&dir.path().join("acct"), true);
        arrays_commit_and_render_matches_what_was_submitted(&cluster);
        a_failing_shard_is_a_user_error_with_its_log(&cluster);
        a_template_error_names_the_file_and_line(&cluster);
        a_preempted_task_is_resubmitted_alone(&cluster);
        a_restarted_orchestrator_adopts_running_jobs(&cluster);
        ctrl_c_cancels_or_keeps_the_runs_jobs(&cluster);
        a_job_serves_a_real_model_and_stops_it(&cluster);
        sft_trains_through_srun_with_two_agents(&cluster);
    }
    let cluster = Cluster::start(&dir.path().join("noacct"), false);
    without_accounting_squeue_is_polled_instead(&cluster);
}
