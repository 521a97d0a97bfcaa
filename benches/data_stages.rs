//! The data stages at the reference run's scale: a generated table of
//! 250k trajectories with realistic message lengths (system prompt ~2 KB,
//! task ~1.5 KB, 25 rounds of a ~300 B tool call and a ~2.5 KB tool
//! result: ~70 KB of messages each), run through `swestar run` stage by
//! stage: test_filter (keep = "all"; the patches are empty, so this
//! measures the stage's streaming and bookkeeping, not test runs),
//! segment (32k window) and sft (launch = "none": validation and the
//! dataset). For each: wall time, rows/s and the peak RSS of the stage's
//! processes (wait4's rusage of `swestar run --only STAGE`, which includes
//! its `swestar exec`).
//!
//! `cargo bench --bench data_stages`; SWESTAR_BENCH_ROWS (default 250000),
//! SWESTAR_BENCH_SHARDS (default 1), SWESTAR_BENCH_TOKENIZER (a
//! tokenizer.json for segment; default: the 4-bytes-per-token estimate).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use swestar::store::rows::RowWriter;

/// A deterministic stream of code-like text.
struct Text(u64);

impl Text {
    fn word(&mut self) -> &'static str {
        const WORDS: &[&str] = &[
            "def",
            "return",
            "self",
            "amount",
            "currency",
            "parse",
            "ledger",
            "money.py",
            "import",
            "raise",
            "ValueError",
            "for",
            "in",
            "if",
            "else",
            "None",
            "True",
            "assert",
            "==",
            "tests/test_parse.py",
            "line",
            "12",
            "(",
            ")",
            ":",
            "minor",
            "units",
            "Decimal",
            "split",
            "strip",
            "category",
            "total",
        ];
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        WORDS[(self.0 >> 33) as usize % WORDS.len()]
    }

    fn chars(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n + 16);
        while s.len() < n {
            s.push_str(self.word());
            s.push(if self.0.is_multiple_of(11) { '\n' } else { ' ' });
        }
        s
    }
}

/// Three attempts per instance.
fn instance_id(i: u64) -> String {
    format!("owner__repo.{:08x}.bug_{}", i, i % 1000)
}

fn generate(path: &Path, rows: u64) -> u64 {
    let message = arrow_schema::Fields::from(vec![
        arrow_schema::Field::new("role", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("content", arrow_schema::DataType::Utf8, false),
    ]);
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("instance_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("attempt", arrow_schema::DataType::UInt32, false),
        arrow_schema::Field::new(
            "messages",
            arrow_schema::DataType::List(Arc::new(arrow_schema::Field::new(
                "item",
                arrow_schema::DataType::Struct(message),
                false,
            ))),
            false,
        ),
        arrow_schema::Field::new("patch", arrow_schema::DataType::Utf8, false),
    ]));
    let mut w = RowWriter::create(path, schema).unwrap();
    let mut text = Text(7);
    let system = text.chars(2000);
    let mut bytes = 0u64;
    for i in 0..rows {
        let mut messages =
            vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": text.chars(1500)})];
        let rounds = 15 + (i % 21) as usize; // 15..35, 25 on average
        for _ in 0..rounds {
            let call = format!(
                "I will look.\n<function=execute_bash>\n<parameter=command>{}</parameter>\n</function>",
                text.chars(220)
            );
            messages.push(json!({"role": "assistant", "content": call}));
            let len = 500 + (text.0 % 4000) as usize; // 2.5 KB on average
            messages.push(json!({"role": "user", "content": text.chars(len)}));
        }
        let row = json!({
            "instance_id": instance_id(i / 3),
            "attempt": i % 3,
            "messages": messages,
            "patch": "",
        });
        let line = row.to_string();
        bytes += line.len() as u64;
        w.push_json(line.as_bytes()).unwrap();
    }
    w.finish().unwrap();
    bytes
}

/// Runs a command and returns (wall seconds, peak RSS in MiB of it and its
/// waited-for descendants, exit status).
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the rusage
fn measured(cmd: &mut Command) -> (f64, f64, i32) {
    let start = Instant::now();
    let child = cmd.spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (start.elapsed().as_secs_f64(), usage.ru_maxrss as f64 / 1024.0, code)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let rows = env("SWESTAR_BENCH_ROWS", 250_000);
    let shards = env("SWESTAR_BENCH_SHARDS", 1);
    let tokenizer = std::env::var("SWESTAR_BENCH_TOKENIZER").ok();
    let dir = tempfile::tempdir_in(std::env::var("SWESTAR_BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let d = dir.path();
    let t = Instant::now();
    let bytes = generate(&d.join("trajectories.parquet"), rows);
    let on_disk = std::fs::metadata(d.join("trajectories.parquet")).unwrap().len();
    println!(
        "generated {rows} trajectories: {:.1} GB of JSON rows ({:.0} KB each), {:.2} GB of Parquet, in {:.0} s",
        bytes as f64 / 1e9,
        bytes as f64 / rows as f64 / 1e3,
        on_disk as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let tok = tokenizer.map(|t| format!("tokenizer = \"{t}\"\n")).unwrap_or_default();
    std::fs::write(
        d.join("wf.toml"),
        format!(
            r#"[workflow]
name = "scale"

[data.trajectories]
path = "trajectories.parquet"

[data.instances]
path = "instances.jsonl"

[stages.filter]
kind = "test_filter"
inputs = {{ trajectories = "data.trajectories", instances = "data.instances" }}
repo = "."
keep = "all"
parallel = 16
resources = {{ shards = {shards} }}

[stages.segment]
kind = "segment"
inputs = {{ trajectories = "stages.filter" }}
window = 32768
{tok}resources = {{ shards = {shards} }}

[stages.sft]
kind = "sft"
inputs = {{ samples = "stages.segment" }}
model = {{ size = "32B" }}
checkpoint_dir = "/models/Qwen2.5-Coder-32B-Instruct"
launch = "none"
"#
        ),
    )
    .unwrap();
    // test_filter looks instances up by id: every trajectory's instance.
    let ids: String = (0..rows.div_ceil(3))
        .map(|i| format!("{{\"instance_id\": \"{}\", \"FAIL_TO_PASS\": [], \"PASS_TO_PASS\": []}}\n", instance_id(i)))
        .collect();
    std::fs::write(d.join("instances.jsonl"), ids).unwrap();
    println!("stage        rows in   wall s    rows/s   peak RSS MiB");
    for stage in ["filter", "segment", "sft"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swestar"));
        cmd.args(["run", "wf.toml", "--only", stage, "--store"]).arg(d.join("store")).current_dir(d);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let (wall, rss, code) = measured(&mut cmd);
        assert_eq!(code, 0, "stage {stage} failed");
        let input_rows = match stage {
            "sft" => {
                let out = Command::new(env!("CARGO_BIN_EXE_swestar"))
                    .args(["show", "wf.toml", "segment", "--json", "--head", "0", "--store"])
                    .arg(d.join("store"))
                    .current_dir(d)
                    .output()
                    .unwrap();
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                v["rows"].as_u64().unwrap_or(0)
            }
            _ => rows,
        };
        println!("{stage:<10} {input_rows:>9} {wall:>8.1} {:>9.0} {rss:>14.0}", input_rows as f64 / wall);
    }
}
