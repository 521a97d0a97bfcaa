//! The `sft` kind: training samples → a torchtune full fine-tuning run.
//!
//! The samples are validated first (every sample has a trainable
//! assistant turn, only system/user/assistant roles in a valid order, and
//! fits `max_seq_len`): torchtune trains on bad samples silently with NaN
//! losses, so a bad sample is an error naming where it came from. Then the
//! stage writes, under the artifact's `files/`: the dataset as OpenAI-style
//! chats with a `train` flag per message (`dataset.jsonl`, read by
//! `swestar_sft.py`, which trains only on flagged assistant turns), the
//! torchtune config rendered from templates/torchtune/ (`config.yaml`), and
//! once trained the checkpoint (`checkpoint/`) and logs (`logs/`,
//! `train.out`). `launch` decides how it trains: `none` (prepare only),
//! `local` (`tune run` here) or `slurm` (`srun` one torchtune agent per
//! node of the job's allocation, rendezvous on the first node). The table
//! has one row: base model, data rows and tokens, steps, the loss of every
//! step, the final loss and where the files are.

mod settings;
pub use settings::SftStage;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::store::rows::{self, RowWriter};
use swestar_vocab::shell::shell_quote;

/// How the trainer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Launch {
    /// Write the dataset and config only.
    None,
    /// `tune run` on this machine.
    #[default]
    Local,
    /// `srun` across the SLURM job's nodes.
    Slurm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftSpec {
    /// How the run names its base model (e.g. `qwen2_5_32b`).
    pub base_model: String,
    /// The torchtune model builder and its arguments.
    pub model_component: String,
    pub model_args: BTreeMap<String, Value>,
    /// The base checkpoint, as the workflow names it.
    pub checkpoint_dir: String,
    /// A file name, a list of them, or `{filename_format, max_filenames}`.
    pub checkpoint_files: Value,
    pub checkpointer: String,
    pub model_type: String,
    pub vocab: String,
    pub merges: String,
    pub max_seq_len: u64,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: u64,
    pub epochs: u32,
    pub max_steps_per_epoch: Option<u64>,
    pub batch_size: u32,
    pub gradient_accumulation_steps: u32,
    pub clip_grad_norm: Option<f64>,
    pub seed: u64,
    pub dtype: String,
    pub device: String,
    pub activation_checkpointing: bool,
    pub activation_offloading: bool,
    pub fsdp_cpu_offload: bool,
    pub launch: Launch,
    pub nnodes: u32,
    pub nproc_per_node: u32,
    /// The `tune` command (e.g. a virtual environment's), not in the key.
    pub tune: String,
    pub rdzv_port: u16,
    /// The config template: the built-in one, or a file (a dependency).
    pub template: Option<PathBuf>,
}

pub const TEMPLATE: (&str, &str) = (
    "templates/torchtune/full_finetune.yaml.j2",
    include_str!("../../../../templates/torchtune/full_finetune.yaml.j2"),
);
const DATASET_MODULE: &str = include_str!("../../../../templates/torchtune/swestar_sft.py");

/// The built-in model builder of a Qwen2.5 size (Qwen2.5-Coder shares the
/// architecture).
pub fn qwen2_5_component(size: &str) -> Option<String> {
    let s = size.to_ascii_lowercase();
    ["0.5b", "1.5b", "3b", "7b", "14b", "32b", "72b"]
        .contains(&s.as_str())
        .then(|| format!("torchtune.models.qwen2_5.qwen2_5_{}_base", s.replace('.', "_")))
}

/// Safetensors shards of the Qwen2.5(-Coder) checkpoints on the Hub.
pub fn qwen2_5_shards(size: &str) -> Option<u32> {
    Some(match size.to_ascii_lowercase().as_str() {
        "0.5b" | "1.5b" => 1,
        "3b" => 2,
        "7b" => 4,
        "14b" => 8,
        "32b" => 17,
        "72b" => 37,
        _ => return None,
    })
}

/// The output table's schema.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("base_model", DataType::Utf8, false),
        Field::new("launch", DataType::Utf8, false),
        Field::new("trained", DataType::Boolean, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("trainable_tokens", DataType::UInt64, false),
        Field::new("nnodes", DataType::UInt32, false),
        Field::new("nproc_per_node", DataType::UInt32, false),
        Field::new("steps", DataType::UInt64, false),
        Field::new("losses", DataType::List(Arc::new(Field::new("item", DataType::Float64, false))), false),
        Field::new("final_loss", DataType::Float64, true),
        Field::new("checkpoint_path", DataType::Utf8, true),
        Field::new("config_path", DataType::Utf8, false),
        Field::new("dataset_path", DataType::Utf8, false),
        Field::new("log_path", DataType::Utf8, true),
    ])
}

impl Kind for SftSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "sft";
    type Wire = settings::SftStage;

    fn validate(wire: settings::SftStage, s: &mut Settings<'_>) -> SftSpec {
        settings::validate(wire, s)
    }

    fn allocation_launch(&self, stage_dir: &std::path::Path) -> Option<String> {
        match self.launch {
            Launch::Slurm => self.launch_script(&stage_dir.join(crate::store::FILES_DIR)),
            _ => None,
        }
    }

    const HEADLINE: &'static [&'static str] = &["final_loss", "steps", "rows"];

    fn stats(&self, shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        let table = crate::store::rows::Table::open(shards, crate::store::TableFormat::Parquet)?;
        let mut out = BTreeMap::new();
        let columns = ["final_loss", "steps", "rows", "tokens", "trainable_tokens", "trained"];
        for batch in table.read_columns(0, table.rows(), Some(&columns)) {
            for r in batch? {
                for c in columns {
                    out.insert(c.to_string(), r[c].clone());
                }
            }
        }
        Ok(out)
    }

    fn definition(&self) -> BTreeMap<String, Value> {
        let mut v = serde_json::to_value(self).expect("plain data");
        let o = v.as_object_mut().expect("a struct");
        // Where tune lives and the rendezvous port do not change training;
        // a template file is a dependency (hashed by content).
        for k in ["tune", "rdzv_port", "template"] {
            o.remove(k);
        }
        if self.template.is_none() {
            o.insert("template".into(), json!(blake3::hash(TEMPLATE.1.as_bytes()).to_hex().to_string()));
        }
        o.insert("dataset_module".into(), json!(blake3::hash(DATASET_MODULE.as_bytes()).to_hex().to_string()));
        o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        let input = job.inputs.get("samples").ok_or_else(|| StageError::Failed("no `samples` input".into()))?;
        let files = job.files_dir();
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StageError::Io { path: p, source }
        };
        // A fresh attempt: nothing of an earlier, failed one is kept.
        if files.exists() {
            std::fs::remove_dir_all(&files).map_err(io(&files))?;
        }
        std::fs::create_dir_all(&files).map_err(io(&files))?;
        let dataset = files.join("dataset.jsonl");
        let summary = self.write_dataset(&input.paths, input.format, &dataset)?;
        std::fs::write(files.join("swestar_sft.py"), DATASET_MODULE).map_err(io(&files))?;
        let config = files.join("config.yaml");
        std::fs::write(&config, self.render_config(job, &files, summary.rows)?).map_err(io(&config))?;
        let committed = job.committed_files_dir();
        let mut row = json!({
            "base_model": self.base_model,
            "launch": serde_json::to_value(self.launch).expect("plain"),
            "trained": false,
            "rows": summary.rows,
            "tokens": summary.tokens,
            "trainable_tokens": summary.trainable_tokens,
            "nnodes": self.nnodes,
            "nproc_per_node": self.nproc_per_node,
            "steps": 0,
            "losses": [],
            "config_path": committed.join("config.yaml"),
            "dataset_path": committed.join("dataset.jsonl"),
        });
        if let Some(script) = self.launch_script(&files) {
            swestar_vocab::progress!("sft: launching: {}", script.lines().last().unwrap_or_default());
            super::command::run_bash(&script, job, shard, &shard.output).map_err(|e| {
                StageError::Failed(format!("training failed ({e}); see {}", files.join("train.out").display()))
            })?;
            let log = files.join("logs").join("train_log.txt");
            let text = std::fs::read_to_string(&log).map_err(io(&log))?;
            let losses = parse_losses(&text);
            if losses.is_empty() {
                return Err(StageError::Failed(format!("training logged no steps ({})", log.display())));
            }
            if let Some((step, loss)) = losses.iter().enumerate().find(|(_, l)| !l.is_finite()) {
                return Err(StageError::Failed(format!(
                    "training produced a non-finite loss ({loss}) at step {}; see {}",
                    step + 1,
                    log.display()
                )));
            }
            let epoch = last_epoch(&files.join("checkpoint")).ok_or_else(|| {
                StageError::Failed(format!("training saved no checkpoint under {}", files.join("checkpoint").display()))
            })?;
            let o = row.as_object_mut().expect("an object");
            o.insert("trained".into(), json!(true));
            o.insert("steps".into(), json!(losses.len()));
            o.insert("final_loss".into(), json!(losses.last()));
            o.insert("losses".into(), json!(losses));
            o.insert("checkpoint_path".into(), json!(committed.join("checkpoint").join(epoch)));
            o.insert("log_path".into(), json!(committed.join("logs").join("train_log.txt")));
        }
        let mut w = RowWriter::create(&shard.output, Arc::new(schema()))?;
        w.push(&row)?;
        w.finish()?;
        Ok(())
    }
}

/// What the dataset holds.
struct Summary {
    rows: u64,
    tokens: u64,
    trainable_tokens: u64,
}

/// Losses per step from torchtune's DiskLogger file
/// (`Step 3 | loss:1.23 lr:… `).
pub fn parse_losses(text: &str) -> Vec<f64> {
    let mut out: Vec<(u64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Step ") else { continue };
        let Some((step, fields)) = rest.split_once(" | ") else { continue };
        let Ok(step) = step.trim().parse::<u64>() else { continue };
        let loss = fields.split_whitespace().find_map(|f| f.strip_prefix("loss:")).and_then(|v| v.parse::<f64>().ok());
        if let Some(loss) = loss {
            // A resumed run may log a step again: the later value stands.
            out.retain(|(s, _)| *s != step);
            out.push((step, loss));
        }
    }
    out.sort_by_key(|(s, _)| *s);
    out.into_iter().map(|(_, l)| l).collect()
}

/// `epoch_N` with the largest N under a checkpointer's output directory.
fn last_epoch(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("epoch_").and_then(|n| n.parse::<u32>().ok()).map(|n| (n, name))
        })
        .max()
        .map(|(_, name)| name)
}

impl SftSpec {
    /// Validates every sample and writes the training dataset.
    fn write_dataset(
        &self,
        paths: &[PathBuf],
        format: crate::store::TableFormat,
        dataset: &Path,
    ) -> Result<Summary, StageError> {
        let io = |source| StageError::Io { path: dataset.to_path_buf(), source };
        let table = rows::Table::open(paths, format)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(dataset).map_err(io)?);
        let mut s = Summary { rows: 0, tokens: 0, trainable_tokens: 0 };
        let mut problems: Vec<String> = Vec::new();
        let mut bad = 0u64;
        for batch in table.read(0, table.rows()) {
            for row in batch? {
                let index = s.rows + bad;
                match self.check(&row) {
                    Ok((line, tokens, trainable)) => {
                        out.write_all(line.as_bytes()).and_then(|_| out.write_all(b"\n")).map_err(io)?;
                        s.rows += 1;
                        s.tokens += tokens;
                        s.trainable_tokens += trainable;
                    }
                    Err(why) => {
                        bad += 1;
                        if problems.len() < 5 {
                            problems.push(format!("sample {index} ({}): {why}", source_of(&row)));
                        }
                    }
                }
            }
        }
        out.flush().map_err(io)?;
        if bad > 0 {
            return Err(StageError::Failed(format!(
                "{bad} of {} samples cannot be trained on; nothing was launched:\n  {}",
                s.rows + bad,
                problems.join("\n  ")
            )));
        }
        if s.rows == 0 {
            return Err(StageError::Failed("there are no samples to train on".into()));
        }
        Ok(s)
    }

    /// One sample as a dataset line, with its token counts, or why it
    /// cannot be trained on.
    fn check(&self, row: &Value) -> Result<(String, u64, u64), String> {
        let messages = row.get("messages").and_then(Value::as_array).ok_or("no `messages` list")?;
        let mut out = Vec::with_capacity(messages.len());
        let mut last = "";
        let mut trainable = false;
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).ok_or(format!("message {i} has no role"))?;
            let content = m.get("content").and_then(Value::as_str).ok_or(format!("message {i} has no content"))?;
            let train = m.get("trainable").and_then(Value::as_bool).unwrap_or(role == "assistant");
            match role {
                "system" if i > 0 => return Err(format!("message {i} is a system message after the first")),
                "system" => {}
                "user" if last == "user" => return Err(format!("messages {} and {i} are both user messages", i - 1)),
                "user" => {}
                "assistant" if last != "user" => {
                    return Err(format!("assistant message {i} does not follow a user message"))
                }
                "assistant" => trainable |= train,
                other => return Err(format!("message {i} has the unknown role `{other}`")),
            }
            if content.trim().is_empty() {
                return Err(format!("message {i} ({role}) is empty"));
            }
            last = role;
            out.push(json!({"role": role, "content": content, "train": role == "assistant" && train}));
        }
        if !trainable {
            return Err("no trainable assistant turn".into());
        }
        let tokens =
            row.get("tokens").and_then(Value::as_u64).ok_or("no `tokens` count (samples come from a segment stage)")?;
        // torchtune's length of the sample: segment's count (every message
        // framed) less the last message's `<|im_end|>\n`, plus the EOS
        // token (see `TokenCounter::message`). Longer would be cut.
        let trained = tokens.saturating_sub(1);
        if trained > self.max_seq_len {
            return Err(format!(
                "{trained} tokens as torchtune frames it ({tokens} counted by segment) exceed max_seq_len {}",
                self.max_seq_len
            ));
        }
        let trainable_tokens = row.get("trainable_tokens").and_then(Value::as_u64).unwrap_or(0);
        Ok((json!({ "messages": out }).to_string(), tokens, trainable_tokens))
    }

    fn render_config(&self, job: &Job, files: &Path, rows: u64) -> Result<String, StageError> {
        let source = match &self.template {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| StageError::Io { path: p.clone(), source })?,
            ),
            None => (TEMPLATE.0.to_string(), TEMPLATE.1.to_string()),
        };
        let resolve = |p: &str| {
            let path = Path::new(p);
            if path.is_absolute() { path.to_path_buf() } else { job.workdir.join(path) }.display().to_string()
        };
        let yaml = |v: &Value| match v {
            Value::Null => "null".to_string(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            other => other.to_string(),
        };
        let ctx = json!({
            "stage": job.stage,
            "base_model": self.base_model,
            "rows": rows,
            "output_dir": files.join("output"),
            "vocab": resolve(&self.vocab),
            "merges": resolve(&self.merges),
            "max_seq_len": self.max_seq_len,
            "dataset": files.join("dataset.jsonl"),
            "seed": self.seed,
            "model_component": self.model_component,
            "model_args": self.model_args.iter().map(|(k, v)| (k.clone(), yaml(v))).collect::<BTreeMap<_, _>>(),
            "checkpointer": self.checkpointer,
            "checkpoint_dir": resolve(&self.checkpoint_dir),
            "checkpoint_files": self.checkpoint_files,
            "checkpoint_out": files.join("checkpoint"),
            "model_type": self.model_type,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "max_steps_per_epoch": yaml(&json!(self.max_steps_per_epoch)),
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "fused": yaml(&json!(self.device == "cuda")),
            "warmup_steps": self.warmup_steps,
            "clip_grad_norm": yaml(&json!(self.clip_grad_norm)),
            "device": self.device,
            "dtype": self.dtype,
            "fsdp_cpu_offload": yaml(&json!(self.fsdp_cpu_offload)),
            "activation_checkpointing": yaml(&json!(self.activation_checkpointing)),
            "activation_offloading": yaml(&json!(self.activation_offloading)),
            "log_dir": files.join("logs"),
        });
        crate::agent::prompts::render_value((source.0.as_str(), source.1.as_str()), &ctx).map_err(StageError::Template)
    }

    /// The shell lines that train, or `None` for `launch = "none"`. The
    /// same text `swestar render` shows for the stage.
    pub fn launch_script(&self, files: &Path) -> Option<String> {
        let q = |p: &Path| shell_quote(&p.to_string_lossy());
        let tune = &self.tune;
        let config = q(&files.join("config.yaml"));
        let out = q(&files.join("train.out"));
        let env = format!("cd {} && export PYTHONPATH={}${{PYTHONPATH:+:$PYTHONPATH}}", q(files), q(files));
        match self.launch {
            Launch::None => None,
            Launch::Local if self.nproc_per_node > 1 => Some(format!(
                "{env}\n{tune} run --nnodes 1 --nproc_per_node {} full_finetune_distributed --config {config} > {out} 2>&1",
                self.nproc_per_node
            )),
            Launch::Local => Some(format!("{env}\n{tune} run full_finetune_single_device --config {config} > {out} 2>&1")),
            Launch::Slurm => Some(format!(
                "{env}\n\
                 : \"${{SLURM_JOB_ID:?launch = slurm runs inside a SLURM job (use the slurm executor)}}\"\n\
                 head=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n\
                 per_node=$(( ({n} + ${{SLURM_JOB_NUM_NODES:-1}} - 1) / ${{SLURM_JOB_NUM_NODES:-1}} ))\n\
                 srun --kill-on-bad-exit=1 --ntasks={n} --ntasks-per-node=\"$per_node\" \
                 {tune} run --nnodes {n} --nproc_per_node {g} --rdzv_backend c10d --rdzv_endpoint \"$head:{port}\" \
                 --rdzv_id \"$SLURM_JOB_ID\" full_finetune_distributed --config {config} > {out} 2>&1",
                n = self.nnodes,
                g = self.nproc_per_node,
                port = self.rdzv_port,
            )),
        }
    }
}

/// `instance attempt segment` of a sample, for error messages.
fn source_of(row: &Value) -> String {
    let id = row.get("instance_id").and_then(Value::as_str).unwrap_or("?");
    let attempt = row.get("attempt").map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let segment = row.get("segment").map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    format!("instance {id}, attempt {attempt}, segment {segment}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_come_from_the_disk_log() {
        let log = "Step 1 | loss:2.5 lr:5e-05 tokens_per_second_per_gpu:10.0 \nStep 2 | loss:nan lr:1e-05 \nnoise\nStep 3 | lr:0.0 loss:1.25 \n";
        let l = parse_losses(log);
        assert_eq!(l.len(), 3);
        assert_eq!((l[0], l[2]), (2.5, 1.25));
        assert!(l[1].is_nan());
    }

    #[test]
    fn model_builders_by_size() {
        assert_eq!(qwen2_5_component("32B").unwrap(), "torchtune.models.qwen2_5.qwen2_5_32b_base");
        assert_eq!(qwen2_5_component("0.5B").unwrap(), "torchtune.models.qwen2_5.qwen2_5_0_5b_base");
        assert!(qwen2_5_component("33B").is_none());
        assert_eq!(qwen2_5_shards("14B"), Some(8));
    }
}
