//! An `sft` stage's keys: the student, its checkpoint and tokenizer, the
//! torchtune recipe's hyperparameters, and how the trainer is launched.
//! The defaults are the reference run's full fine-tuning recipe.

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{qwen2_5_component, qwen2_5_shards, Launch, SftSpec};
use crate::api::{toml_to_json, Settings};

/// An `sft` stage: training samples → a torchtune full fine-tuning run.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftStage {
    /// The student: `{ size = "32B" }` (Qwen2.5 / Qwen2.5-Coder builders),
    /// or `{ component = "torchtune.models.…", args = { … } }`.
    pub model: SftModelSection,
    /// The base checkpoint's directory (relative to the workflow or
    /// absolute); may use `{{ size }}`, e.g. "/models/Qwen2.5-Coder-{{ size }}-Instruct".
    pub checkpoint_dir: String,
    /// A file name, a list, or `{ filename_format, max_filenames }`
    /// (unset: the Hub's safetensors shards for the size).
    #[schemars(with = "Option<serde_json::Value>")]
    pub checkpoint_files: Option<toml::Value>,
    /// `hf` (safetensors), `torchtune` (a .pt state dict), or a
    /// checkpointer component.
    #[serde(default = "hf")]
    pub checkpointer: String,
    /// torchtune's model type for the checkpointer.
    #[serde(default = "qwen2")]
    pub model_type: String,
    /// vocab.json and merges.txt (unset: in checkpoint_dir).
    pub tokenizer: Option<SftTokenizerSection>,
    /// Longest sample in tokens.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: u64,
    /// Peak learning rate of the cosine schedule.
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Linear warm-up steps.
    #[serde(default = "default_warmup_steps")]
    pub warmup_steps: u64,
    #[serde(default = "crate::api::count::<3>")]
    pub epochs: NonZeroU32,
    /// Unset: every batch of the epoch.
    pub max_steps_per_epoch: Option<u64>,
    /// Per device.
    #[serde(default = "crate::api::count::<1>")]
    pub batch_size: NonZeroU32,
    #[serde(default = "crate::api::count::<8>")]
    pub gradient_accumulation_steps: NonZeroU32,
    #[serde(default = "default_clip_grad_norm")]
    pub clip_grad_norm: f64,
    #[serde(default)]
    pub seed: u64,
    /// `bf16` or `fp32`.
    #[serde(default = "bf16")]
    pub dtype: String,
    /// `cuda` or `cpu`.
    #[serde(default = "cuda")]
    pub device: String,
    #[serde(default = "yes")]
    pub activation_checkpointing: bool,
    /// Needs CUDA.
    #[serde(default = "yes")]
    pub activation_offloading: bool,
    #[serde(default)]
    pub fsdp_cpu_offload: bool,
    /// `local`, `slurm` or `none` (prepare the dataset and config only).
    #[serde(default)]
    pub launch: Launch,
    /// Nodes of the run (unset: 1; with `slurm`, `resources.nodes`).
    pub nnodes: Option<NonZeroU32>,
    /// Processes (GPUs) per node (unset: 1; with `slurm`, 4).
    pub nproc_per_node: Option<NonZeroU32>,
    /// The `tune` executable; not in the cache key.
    #[serde(default = "tune")]
    pub tune: String,
    /// Rendezvous port on the first node.
    #[serde(default = "default_rdzv_port")]
    pub rdzv_port: u16,
    /// A torchtune config template instead of templates/torchtune/full_finetune.yaml.j2.
    pub config_template: Option<String>,
}

crate::whole_table!(SftStage);

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftModelSection {
    /// 0.5B, 1.5B, 3B, 7B, 14B, 32B or 72B.
    pub size: Option<String>,
    /// A torchtune model builder instead of the size's.
    pub component: Option<String>,
    /// Arguments of `component`.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub args: toml::Table,
    /// How the output names the base model (unset: from size or component).
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftTokenizerSection {
    pub vocab: String,
    pub merges: String,
}

fn hf() -> String {
    "hf".into()
}
fn qwen2() -> String {
    "QWEN2".into()
}
fn default_max_seq_len() -> u64 {
    crate::agent::condense::DEFAULT_WINDOW as u64
}
fn default_lr() -> f64 {
    5e-5
}
fn default_warmup_steps() -> u64 {
    100
}
fn default_clip_grad_norm() -> f64 {
    1.0
}
fn bf16() -> String {
    "bf16".into()
}
fn cuda() -> String {
    "cuda".into()
}
fn yes() -> bool {
    true
}
fn tune() -> String {
    "tune".into()
}
fn default_rdzv_port() -> u16 {
    29500
}

pub(super) fn validate(t: SftStage, s: &mut Settings<'_>) -> SftSpec {
    s.needs_inputs("sft", &["samples"]);
    let resources = &s.common.resources;
    if resources.shards.get() > 1 {
        s.fail(&["resources", "shards"], "an sft stage is one training run: it cannot be sharded".into(), None);
    }
    let nodes = resources.nodes;
    let m = &t.model;
    let (component, size_files) = match (&m.component, &m.size) {
        (Some(comp), _) => (comp.clone(), None),
        (None, Some(size)) => match qwen2_5_component(size) {
            Some(comp) => (comp, qwen2_5_shards(size)),
            None => {
                s.fail(
                    &["model", "size"],
                    format!("no Qwen2.5 model of size `{size}`"),
                    Some("sizes: 0.5B, 1.5B, 3B, 7B, 14B, 32B, 72B"),
                );
                (String::new(), None)
            }
        },
        (None, None) => {
            s.fail(&["model"], "name the student: `size = \"32B\"` or `component = \"…\"`".into(), None);
            (String::new(), None)
        }
    };
    if m.component.is_none() && !m.args.is_empty() {
        s.fail(&["model", "args"], "`args` go with `component`".into(), None);
    }
    let mut model_args = std::collections::BTreeMap::new();
    for (k, v) in &m.args {
        match toml_to_json(v) {
            Ok(j) => {
                model_args.insert(k.clone(), j);
            }
            Err(e) => s.fail(&["model", "args", k], e, None),
        }
    }
    let base_model = m
        .name
        .clone()
        .unwrap_or_else(|| component.rsplit('.').next().unwrap_or_default().trim_end_matches("_base").to_string());
    let checkpoint_files = match &t.checkpoint_files {
        Some(v) => toml_to_json(v).unwrap_or_else(|e| {
            s.fail(&["checkpoint_files"], e, None);
            serde_json::Value::Null
        }),
        None => match size_files {
            Some(1) => serde_json::json!("model.safetensors"),
            Some(n) => serde_json::json!({"filename_format": "model-{}-of-{}.safetensors", "max_filenames": n}),
            None => {
                s.fail(&["checkpoint_files"], "name the checkpoint's files for a custom model".into(), None);
                serde_json::Value::Null
            }
        },
    };
    let checkpointer = match t.checkpointer.as_str() {
        "hf" => "torchtune.training.FullModelHFCheckpointer".to_string(),
        "torchtune" => "torchtune.training.FullModelTorchTuneCheckpointer".to_string(),
        other => other.to_string(),
    };
    let launch = t.launch;
    let nnodes = t.nnodes.map(NonZeroU32::get).unwrap_or(if launch == Launch::Slurm { nodes.unwrap_or(1) } else { 1 });
    let nproc_per_node = t.nproc_per_node.map(NonZeroU32::get).unwrap_or(if launch == Launch::Slurm { 4 } else { 1 });
    match launch {
        Launch::Local if nnodes > 1 => s.fail(
            &["nnodes"],
            format!("`launch = \"local\"` runs on one node, not {nnodes}"),
            Some("use `launch = \"slurm\"` for several nodes"),
        ),
        Launch::Slurm if nnodes > 1 && nodes.is_none() => s.fail(
            &["resources", "nodes"],
            format!("a {nnodes}-node run needs its nodes from SLURM"),
            Some(&format!("set `resources = {{ nodes = {nnodes} }}`")),
        ),
        _ => {}
    }
    // `{{ size }}` in checkpoint_dir: one setting for a sweep over sizes.
    let checkpoint_dir = match minijinja::Environment::new()
        .render_str(&t.checkpoint_dir, minijinja::context! { size => m.size.clone().unwrap_or_default() })
    {
        Ok(dir) => dir,
        Err(e) => {
            s.fail(&["checkpoint_dir"], format!("template error: {e}"), None);
            t.checkpoint_dir.clone()
        }
    };
    let (vocab, merges) = match &t.tokenizer {
        Some(tk) => (tk.vocab.clone(), tk.merges.clone()),
        None => (format!("{checkpoint_dir}/vocab.json"), format!("{checkpoint_dir}/merges.txt")),
    };
    let template = t.config_template.as_ref().and_then(|rel| match s.relative_dep(rel) {
        Ok(dep) => {
            match std::fs::read_to_string(&dep.path) {
                Ok(text) => s.template(&["config_template"], &text),
                Err(e) => s.fail(&["config_template"], format!("cannot read `{rel}`: {e}"), None),
            }
            let path = dep.path.clone();
            s.depend(dep);
            Some(path)
        }
        Err(e) => {
            s.fail(&["config_template"], e, None);
            None
        }
    });
    if !["bf16", "fp32"].contains(&t.dtype.as_str()) {
        s.fail(&["dtype"], format!("`{}` is not bf16 or fp32", t.dtype), None);
    }
    SftSpec {
        base_model,
        model_component: component,
        model_args,
        checkpoint_dir,
        checkpoint_files,
        checkpointer,
        model_type: t.model_type,
        vocab,
        merges,
        max_seq_len: t.max_seq_len,
        lr: t.lr,
        weight_decay: t.weight_decay,
        warmup_steps: t.warmup_steps,
        epochs: t.epochs.get(),
        max_steps_per_epoch: t.max_steps_per_epoch,
        batch_size: t.batch_size.get(),
        gradient_accumulation_steps: t.gradient_accumulation_steps.get(),
        clip_grad_norm: Some(t.clip_grad_norm),
        seed: t.seed,
        dtype: t.dtype,
        device: t.device,
        activation_checkpointing: t.activation_checkpointing,
        activation_offloading: t.activation_offloading,
        fsdp_cpu_offload: t.fsdp_cpu_offload,
        launch,
        nnodes,
        nproc_per_node,
        tune: t.tune,
        rdzv_port: t.rdzv_port,
        template,
    }
}
