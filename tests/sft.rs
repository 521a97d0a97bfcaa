//! The sft stage for real: samples made by segment from trajectories,
//! validated, written as a dataset torchtune reads, a config rendered, and
//! a tiny Qwen2-architecture model (real vocabulary, random weights)
//! trained on CPU with `tune run`; then what is refused before launch.

mod common;

use std::path::Path;
use std::process::Command;

use common::{tiny_model, tiny_sft_settings, tokenizer, tune, Ctx};
use serde_json::{json, Value};

fn trajectory(id: &str, rounds: usize) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": "You fix bugs."}),
        json!({"role": "user", "content": format!("Fix {id}.")}),
    ];
    for r in 0..rounds {
        messages.push(json!({"role": "assistant", "content": format!(
            "<function=execute_bash>\n<parameter=command>grep -n amount ledger/parse.py | head -{r}</parameter>\n</function>"
        )}));
        messages
            .push(json!({"role": "user", "content": format!("ledger/parse.py:{r}: amount = parse(text)\n").repeat(8)}));
    }
    json!({"instance_id": id, "attempt": 0, "messages": messages})
}

fn python_of(tune: &str) -> std::path::PathBuf {
    Path::new(tune).with_file_name("python")
}

#[test]
fn segment_samples_train_a_tiny_model_on_cpu() {
    let (Some(tune), Some(tok)) = (tune(), tokenizer()) else { return };
    let ctx = Ctx::new();
    tiny_model(&tune, &tok, &ctx.path("tiny"));
    let trajs: String = (0..6).map(|i| trajectory(&format!("inst{i}"), 2 + i * 3).to_string() + "\n").collect();
    ctx.write("trajectories.jsonl", &trajs);
    ctx.write(
        "wf.toml",
        &format!(
            r#"[workflow]
name = "sft"

[data.trajectories]
path = "trajectories.jsonl"

[stages.segment]
kind = "segment"
inputs = {{ trajectories = "data.trajectories" }}
window = 480
reply_reserve = 64
tokenizer = "{tok}"

[stages.sft]
kind = "sft"
inputs = {{ samples = "stages.segment" }}
launch = "local"
{}"#,
            tiny_sft_settings(&tune)
        ),
    );
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let rows = ctx.export_rows("wf.toml", "sft", &[]);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["trained"], true, "{row}");
    assert_eq!(row["base_model"], "tiny-qwen2");
    let samples = ctx.export_rows("wf.toml", "segment", &[]);
    assert!(samples.len() > 6, "long trajectories were cut: {}", samples.len());
    // The trainer sees what segment counted: torchtune's own Qwen2.5
    // tokenizer frames every sample in exactly `tokens - 1` tokens.
    assert_eq!(ctx.swestar(&["export", "wf.toml", "segment", "--to", "samples.jsonl"]).code, 0);
    let tiny = ctx.path("tiny");
    let agree = format!(
        r#"
import json
from torchtune.data import Message
from torchtune.models.qwen2_5 import qwen2_5_tokenizer
tok = qwen2_5_tokenizer(path="{vocab}", merges_file="{merges}")
n = 0
for line in open("{samples}"):
    s = json.loads(line)
    msgs = [Message(role=m["role"], content=m["content"], masked=not m["trainable"]) for m in s["messages"]]
    ids, mask = tok.tokenize_messages(msgs)
    assert len(ids) == s["tokens"] - 1, (len(ids), s["tokens"], s["instance_id"], s["segment"])
    assert ids[-1] == tok.eos_id
    n += 1
print(n)
"#,
        vocab = tiny.join("vocab.json").display(),
        merges = tiny.join("merges.txt").display(),
        samples = ctx.path("samples.jsonl").display()
    );
    let out = Command::new(python_of(&tune)).arg("-c").arg(&agree).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), samples.len().to_string());
    assert_eq!(row["rows"], samples.len() as u64);
    let losses: Vec<f64> = row["losses"].as_array().unwrap().iter().map(|l| l.as_f64().unwrap()).collect();
    assert_eq!(row["steps"], losses.len() as u64);
    assert_eq!(losses.len(), samples.len() / 2, "one step per full batch of 2 over one epoch");
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    assert_eq!(row["final_loss"].as_f64().unwrap(), *losses.last().unwrap());
    // The checkpoint and the files are in the committed artifact.
    let ckpt = Path::new(row["checkpoint_path"].as_str().unwrap());
    assert!(ckpt.starts_with(ctx.store().canonicalize().unwrap().join("objects")), "{}", ckpt.display());
    assert!(ckpt.join("model-00001-of-00001.bin").is_file(), "{}", ckpt.display());
    let dataset = row["dataset_path"].as_str().unwrap();
    let config = row["config_path"].as_str().unwrap();
    // The dataset as Hugging Face `datasets` loads it, and the config as
    // YAML, with the keys torchtune's recipes read.
    let check = format!(
        r#"
import datasets, yaml
d = datasets.load_dataset("json", data_files="{dataset}", split="train")
assert d.column_names == ["messages"], d.column_names
m = d[0]["messages"]
assert set(m[0]) == {{"role", "content", "train"}}, m[0]
assert any(x["role"] == "assistant" and x["train"] for x in m)
c = yaml.safe_load(open("{config}"))
for k in ["model", "tokenizer", "dataset", "checkpointer", "optimizer", "lr_scheduler", "loss", "epochs", "batch_size",
          "gradient_accumulation_steps", "dtype", "enable_activation_checkpointing", "enable_activation_offloading",
          "fsdp_cpu_offload", "metric_logger"]:
    assert k in c, k
assert c["optimizer"]["lr"] == 5e-05, c["optimizer"]
assert c["lr_scheduler"]["_component_"].endswith("get_cosine_schedule_with_warmup")
assert c["model"]["_component_"] == "torchtune.models.qwen2.qwen2" and c["model"]["num_layers"] == 2
print(len(d))
"#
    );
    let out = Command::new(python_of(&tune)).arg("-c").arg(&check).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), samples.len().to_string());
    // Cached on a rerun: the model is not trained again.
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.status_of("sft"), "cached");
}

#[test]
fn bad_samples_are_refused_before_anything_launches() {
    let ctx = Ctx::new();
    let good = json!({"instance_id": "a", "attempt": 0, "segment": 0, "tokens": 50, "messages": [
        {"role": "system", "content": "s", "trainable": false},
        {"role": "user", "content": "u", "trainable": false},
        {"role": "assistant", "content": "a", "trainable": true}]});
    let no_assistant = json!({"instance_id": "inst-without-answer", "attempt": 1, "segment": 0, "tokens": 20, "messages": [
        {"role": "system", "content": "s", "trainable": false},
        {"role": "user", "content": "u", "trainable": false}]});
    let tool_role = json!({"instance_id": "inst-tool", "attempt": 0, "segment": 2, "tokens": 20, "messages": [
        {"role": "user", "content": "u", "trainable": false},
        {"role": "tool", "content": "t", "trainable": false},
        {"role": "assistant", "content": "a", "trainable": true}]});
    let too_long = json!({"instance_id": "inst-long", "attempt": 0, "segment": 0, "tokens": 9000, "messages": [
        {"role": "user", "content": "u", "trainable": false},
        {"role": "assistant", "content": "a", "trainable": true}]});
    let text: String = [good, no_assistant, tool_role, too_long].iter().map(|v| v.to_string() + "\n").collect();
    ctx.write("samples.jsonl", &text);
    ctx.write(
        "wf.toml",
        r#"[workflow]
name = "bad"

[data.samples]
path = "samples.jsonl"

[stages.sft]
kind = "sft"
inputs = { samples = "data.samples" }
model = { size = "7B" }
checkpoint_dir = "/nonexistent/Qwen2.5-Coder-7B-Instruct"
max_seq_len = 8192
launch = "local"
tune = "/nonexistent/tune"
"#,
    );
    let r = ctx.run("wf.toml", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let log = std::fs::read_to_string(r.json()["stages"][0]["log"].as_str().unwrap()).unwrap();
    for needle in [
        "3 of 4 samples cannot be trained on; nothing was launched",
        "instance inst-without-answer, attempt 1, segment 0): no trainable assistant turn",
        "instance inst-tool, attempt 0, segment 2): message 1 has the unknown role `tool`",
        "8999 tokens as torchtune frames it (9000 counted by segment) exceed max_seq_len 8192",
    ] {
        assert!(log.contains(needle), "{needle}\n{log}");
    }
    assert!(!log.contains("launching"), "nothing launched: {log}");
    assert!(ctx.objects().is_empty());
}

#[test]
fn sft_settings_are_validated_and_render_shows_the_multi_node_launch() {
    let ctx = Ctx::new();
    ctx.write("s.jsonl", "{}\n");
    let wf = |extra: &str| {
        format!(
            r#"[workflow]
name = "v"

[executor]
kind = "slurm"

[data.s]
path = "s.jsonl"

[stages.sft]
kind = "sft"
inputs = {{ samples = "data.s" }}
checkpoint_dir = "/models/Qwen2.5-Coder-32B-Instruct"
{extra}"#
        )
    };
    ctx.write("wf.toml", &wf("model = { size = \"33B\" }\nlaunch = \"local\"\nnnodes = 4\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("stages.sft.model.size") && r.stderr.contains("33B"), "{}", r.stderr);
    assert!(r.stderr.contains("stages.sft.nnodes") && r.stderr.contains("one node"), "{}", r.stderr);
    ctx.write("wf.toml", &wf("model = { size = \"32B\" }\nlaunch = \"slurm\"\nnnodes = 4\n"));
    let r = ctx.swestar(&["plan", "wf.toml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("stages.sft.resources.nodes"), "{}", r.stderr);

    ctx.write(
        "wf.toml",
        &wf("model = { size = \"32B\" }\nlaunch = \"slurm\"\nnnodes = 4\nnproc_per_node = 4\nresources = { nodes = 4, gpus = 4 }\n"),
    );
    let r = ctx.swestar(&["render", "wf.toml", "sft"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = r.stdout;
    for needle in [
        "#SBATCH --nodes=4",
        "srun --kill-on-bad-exit=1 --ntasks=4",
        "tune run --nnodes 4 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint \"$head:29500\"",
        "full_finetune_distributed --config",
        "scontrol show hostnames",
    ] {
        assert!(script.contains(needle), "{needle}\n{script}");
    }
}
