//! Engine benchmark: a 6-stage workflow whose artifacts total about 1 GB.
//! Times a cold run, a no-op `plan` and `run` (the cache's hot path, with
//! the stat cache warm), a `plan` with a cold stat cache (rehashing every
//! data file), and raw hashing throughput; then `plan` and `run` of sweeps of
//! 100 and 1000 variants (201 and 2001 nodes: the cost per stage must not
//! grow with the sweep), and the cost of the store's locks per computed stage
//! (its key's lock, the pass through gc's lock, and a refs update under their
//! lock).
//! Prints the figures and writes them to target/bench-engine.json.
//!
//! `cargo bench --bench engine` (SWESTAR_BENCH_MB sets the size per stage).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_array::{BinaryArray, Int64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const STAGES: usize = 6;

/// Incompressible bytes from xorshift64*: no RNG crate needed for noise.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_data(path: &Path, seed: u64, megabytes: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("blob", DataType::Binary, false),
    ]));
    let file = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder().build();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let row_bytes = 64 * 1024;
    let rows = megabytes * 1024 * 1024 / row_bytes;
    for chunk in 0..rows.div_ceil(256) {
        let n = 256.min(rows - chunk * 256);
        let blobs: Vec<Vec<u8>> =
            (0..n).map(|i| noise(seed * 1_000_003 + (chunk * 256 + i) as u64, row_bytes)).collect();
        let ids = Int64Array::from_iter_values((0..n).map(|i| (chunk * 256 + i) as i64));
        let blob = BinaryArray::from_iter_values(blobs.iter());
        w.write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(blob)]).unwrap()).unwrap();
    }
    w.close().unwrap();
}

fn swestar(dir: &Path, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_swestar")).args(args).current_dir(dir).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "swestar {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that cheap.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mb: usize = std::env::var("SWESTAR_BENCH_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(171);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut toml = String::from("[workflow]\nname = \"bench\"\n\n");
    for i in 0..STAGES {
        write_data(&d.join(format!("data{i}.parquet")), i as u64 + 1, mb);
        toml.push_str(&format!("[data.d{i}]\npath = \"data{i}.parquet\"\n\n"));
    }
    for i in 0..STAGES {
        toml.push_str(&format!(
            "[stages.s{i}]\nkind = \"command\"\ninputs = {{ src = \"data.d{i}\" }}\n{}run = \"cp {{{{ inputs.src }}}} {{{{ output }}}}\"\n\n",
            if i > 0 { format!("needs = [\"s{}\"]\n", i - 1) } else { String::new() }
        ));
    }
    std::fs::write(d.join("wf.toml"), toml).unwrap();

    let cold_run = swestar(d, &["run", "wf.toml", "-j", "2"]);
    let total_bytes: u64 = std::fs::read_dir(d.join(".swestar/objects"))
        .unwrap()
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
        .flat_map(|o| std::fs::read_dir(o.path()).unwrap().flatten())
        .map(|f| f.metadata().unwrap().len())
        .sum();
    let plans: Vec<f64> = (0..15).map(|_| swestar(d, &["plan", "wf.toml"])).collect();
    let runs: Vec<f64> = (0..10).map(|_| swestar(d, &["run", "wf.toml"])).collect();
    let cold_plans: Vec<f64> = (0..3)
        .map(|_| {
            std::fs::remove_file(d.join(".swestar/statcache.json")).unwrap();
            swestar(d, &["plan", "wf.toml"])
        })
        .collect();
    let data0 = d.join("data0.parquet");
    let size = std::fs::metadata(&data0).unwrap().len() as f64;
    let hashes: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            swestar::store::statcache::hash_file(&data0).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let throughput = size / median(hashes) / 1e9;

    let (plan100, run100, noop100) = sweep(d, 100);
    let (plan1000, run1000, noop1000) = sweep(d, 1000);
    let locks = lock_overhead(d);

    let report = serde_json::json!({
        "sweep_100_plan_ms": plan100,
        "sweep_100_noop_plan_ms": noop100,
        "sweep_100_run_ms_per_stage": run100,
        "sweep_1000_plan_ms": plan1000,
        "sweep_1000_noop_plan_ms": noop1000,
        "sweep_1000_run_ms_per_stage": run1000,
        "lock_cycle_us_median": locks.0,
        "refs_update_us_median": locks.1,
        // A computed stage takes its key's lock and, with the other stages
        // ready at the same time, passes through gc's; refs are merged at
        // most once a second.
        "lock_overhead_per_stage_us": locks.0 * 2.0,
        "stages": STAGES,
        "artifact_bytes": total_bytes,
        "cold_run_s": cold_run,
        "noop_plan_ms_median": median(plans.clone()) * 1e3,
        "noop_plan_ms_min": plans.iter().cloned().fold(f64::MAX, f64::min) * 1e3,
        "noop_run_ms_median": median(runs) * 1e3,
        "plan_cold_statcache_ms_median": median(cold_plans) * 1e3,
        "hash_gb_per_s": throughput,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::write(target.join("bench-engine.json"), serde_json::to_vec_pretty(&report).unwrap());
}

/// A sweep of `n` values over two `command` stages below a shared one
/// (2n + 1 nodes): the median ms of `plan` on an empty store, then the ms
/// per stage of the run that computes it all, and of a no-op `plan`.
fn sweep(d: &Path, n: usize) -> (f64, f64, f64) {
    let dir = d.join(format!("sweep{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let toml = format!(
        r#"[workflow]
name = "sweep"
[stages.base]
kind = "command"
format = "jsonl"
run = "echo '{{\"a\": 1}}' > {{{{ output }}}}"
[stages.mid]
kind = "command"
format = "jsonl"
inputs = {{ base = "stages.base" }}
params = {{ b = 0 }}
run = "sed 's/1/{{{{ params.b }}}}/' {{{{ inputs.base }}}} > {{{{ output }}}}"
[stages.last]
kind = "command"
format = "jsonl"
inputs = {{ mid = "stages.mid" }}
run = "cp {{{{ inputs.mid }}}} {{{{ output }}}}"
[sweep]
"stages.mid.params.b" = [{}]
"#,
        values.join(", ")
    );
    std::fs::write(dir.join("sweep.toml"), toml).unwrap();
    let plans: Vec<f64> = (0..7).map(|_| swestar(&dir, &["plan", "sweep.toml"])).collect();
    let run = swestar(&dir, &["run", "sweep.toml"]);
    let noop: Vec<f64> = (0..7).map(|_| swestar(&dir, &["plan", "sweep.toml"])).collect();
    (median(plans) * 1e3, run * 1e3 / (2 * n + 1) as f64, median(noop) * 1e3)
}

/// One lock taken and released (a key's lock, or the pass through gc's),
/// and one refs update under its lock, in microseconds (medians).
fn lock_overhead(d: &Path) -> (f64, f64) {
    use swestar::store::{Attempt, LockTimes, Locks, Store};
    let store = Store::open(&d.join("locks-store")).unwrap();
    let locks = Locks::new(&store.root, "run bench", LockTimes::from_env()).unwrap();
    let cycles: Vec<f64> = (0..2000)
        .map(|i| {
            let t = Instant::now();
            let Attempt::Acquired(g) = locks.try_lock(&format!("key-{i}")).unwrap() else { panic!("held") };
            drop(g);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    let refs: Vec<f64> = (0..500)
        .map(|i| {
            let t = Instant::now();
            store
                .update_refs(&locks, "bench", |r| {
                    r.variants
                        .entry(format!("v{}", i % 50))
                        .or_default()
                        .insert("s".into(), swestar::cache::CacheKey::parse(&format!("{i:064x}")).unwrap());
                })
                .unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    (median(cycles), median(refs))
}
