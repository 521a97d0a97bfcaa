//! A test context: a temporary directory with its own store, workflow
//! files written into it, and the real `swestar` binary run against them.

#![allow(dead_code)]

pub mod demo;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Ctx {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
    /// The run record's status per stage name (first node of that name).
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.json()["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| (s["stage"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
            .collect()
    }
    pub fn status_of(&self, stage: &str) -> String {
        self.statuses()
            .into_iter()
            .find(|(s, _)| s == stage)
            .map(|(_, st)| st)
            .unwrap_or_else(|| panic!("no stage {stage} in {}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_swestar"));
        c.args(args)
            .arg("--store")
            .arg(self.store())
            .current_dir(self.dir.path())
            .env_remove("SWESTAR_STORE")
            .stdin(Stdio::null());
        c
    }

    pub fn swestar(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("run swestar").into()
    }

    /// `run WF --json` plus extra arguments.
    pub fn run(&self, wf: &str, extra: &[&str]) -> Run {
        let mut args = vec!["run", wf, "--json"];
        args.extend_from_slice(extra);
        self.swestar(&args)
    }

    pub fn plan_json(&self, wf: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["plan", wf, "--json"];
        args.extend_from_slice(extra);
        let r = self.swestar(&args);
        assert_eq!(r.code, 0, "plan failed: {}", r.stderr);
        r.json()
    }

    /// All committed object directories in the store.
    pub fn objects(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(self.store().join("objects")).into_iter().flatten().flatten() {
            for obj in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                out.push(obj.path());
            }
        }
        out.sort();
        out
    }
}

/// Waits until a condition holds, failing the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// True while a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()).unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The example tasks (a real project with bug-injected instances).
pub const TASKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks");

/// The test venv's Python (pytest, pyarrow, DuckDB, llama-cpp-python), as
/// .ci/run makes it and names it in SWESTAR_TEST_PYTHON. Never the
/// machine's own python3: on a fresh machine it has none of these.
pub fn python() -> String {
    match std::env::var("SWESTAR_TEST_PYTHON") {
        Ok(p) if Path::new(&p).is_file() => p,
        Ok(p) => panic!("SWESTAR_TEST_PYTHON={p} is not a file: make the test venv with `bash .ci/run`"),
        Err(_) => panic!(
            "SWESTAR_TEST_PYTHON is not set: these tests need the venv that .ci/run makes (pytest, pyarrow, \
             DuckDB, llama-cpp-python); run `bash .ci/run`, or point it at such a Python"
        ),
    }
}

/// PATH with the test venv first, so shells in local sandboxes find pytest.
pub fn path_with_pytest() -> String {
    let py = python();
    let bin = Path::new(&py).parent().map(Path::to_path_buf).unwrap_or_default();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// Every instance of the example tasks.
pub fn task_instances() -> Vec<serde_json::Value> {
    std::fs::read_to_string(format!("{TASKS}/instances.jsonl"))
        .expect("examples/tasks/instances.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

/// The example instance whose id ends with `suffix`.
pub fn task_instance(suffix: &str) -> serde_json::Value {
    task_instances()
        .into_iter()
        .find(|i| i["instance_id"].as_str().is_some_and(|id| id.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no example instance ending in {suffix}"))
}

impl Ctx {
    /// A stage's artifact exported (`swestar export`) to Parquet and read
    /// back as JSON rows.
    pub fn export_rows(&self, wf: &str, stage: &str, sets: &[&str]) -> Vec<serde_json::Value> {
        let out = self.path(&format!("{stage}.export.parquet"));
        let mut args = vec!["export", wf, stage, "--to", out.to_str().expect("utf-8 path")];
        args.extend_from_slice(sets);
        let r = self.swestar(&args);
        assert_eq!(r.code, 0, "export failed: {}", r.stderr);
        let (_, batches) = swestar::store::table::read_parquet(&[out.as_path()], None).expect("readable Parquet");
        swestar::store::table::batches_to_json_rows(&batches).expect("JSON rows")
    }
}

/// Headless Chromium (SWESTAR_TEST_CHROMIUM, which .ci/run sets to
/// Debian's `chromium`).
pub fn chromium() -> String {
    match std::env::var("SWESTAR_TEST_CHROMIUM") {
        Ok(p) if Path::new(&p).is_file() => p,
        _ => panic!("SWESTAR_TEST_CHROMIUM is not set to a chromium binary: `bash .ci/run` installs Debian's chromium and sets it"),
    }
}

/// Opens a local HTML file in headless Chromium with the network off and
/// returns the DOM after its scripts ran, and the console messages.
pub fn browse(file: &Path, profile: &Path) -> (String, Vec<String>) {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // No network: every host resolves to nothing, and no proxy answers.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let console =
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The `tune` of the torchtune venv .ci/run builds (SWESTAR_TEST_TUNE);
/// `None` (the test skips) outside CI when it is not there.
pub fn tune() -> Option<String> {
    let t = std::env::var("SWESTAR_TEST_TUNE").ok().filter(|t| Path::new(t).is_file());
    if t.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI sets SWESTAR_TEST_TUNE (see .ci/run)");
        eprintln!("skipped: no torchtune (SWESTAR_TEST_TUNE)");
    }
    t
}

/// The real Qwen tokenizer.json (SWESTAR_TEST_TOKENIZER), as for tune().
pub fn tokenizer() -> Option<String> {
    let t = std::env::var("SWESTAR_TEST_TOKENIZER").ok();
    if t.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI sets SWESTAR_TEST_TOKENIZER");
        eprintln!("skipped: SWESTAR_TEST_TOKENIZER is not set");
    }
    t
}

/// A tiny random Qwen2-architecture checkpoint with the real vocabulary
/// (tests/fixtures/sft/make_tiny_model.py), made with the torchtune venv.
pub fn tiny_model(tune: &str, tokenizer: &str, dir: &Path) {
    let python = Path::new(tune).with_file_name("python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sft/make_tiny_model.py");
    let out = Command::new(python).arg(script).arg(tokenizer).arg(dir).output().expect("python");
    assert!(out.status.success(), "make_tiny_model.py: {}", String::from_utf8_lossy(&out.stderr));
}

/// The model settings of an sft stage that trains the tiny model on CPU.
pub fn tiny_sft_settings(tune: &str) -> String {
    format!(
        r#"model = {{ component = "torchtune.models.qwen2.qwen2", name = "tiny-qwen2", args = {{ vocab_size = 151936, num_layers = 2, num_heads = 4, num_kv_heads = 2, embed_dim = 64, intermediate_dim = 128, max_seq_len = 512, tie_word_embeddings = true }} }}
checkpoint_dir = "tiny"
checkpoint_files = "model.pt"
checkpointer = "torchtune"
max_seq_len = 512
device = "cpu"
dtype = "fp32"
activation_checkpointing = false
activation_offloading = false
epochs = 1
batch_size = 2
gradient_accumulation_steps = 1
warmup_steps = 1
tune = "{tune}"
"#
    )
}
