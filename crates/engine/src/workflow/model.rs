//! The validated model: what the rest of swestar trusts. Built only by
//! `workflow::load`, after every reference, path and name was checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::Value;

pub use super::wire::{Accounting, ExecutorKind, Resources, SlurmSection, TableFormat};

/// One variant of a workflow (the whole workflow when there is no sweep).
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    /// The workflow file, as given.
    pub path: PathBuf,
    /// Absolute directory of the workflow file: relative paths resolve here
    /// and commands run here.
    pub dir: PathBuf,
    /// `[workflow] store`, resolved against `dir`.
    pub store: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub executor: ExecutorKind,
    pub slurm: SlurmSection,
    /// Model endpoints by name, ready for the agent's client.
    pub models: IndexMap<String, Model>,
    pub data: IndexMap<String, DataSource>,
    /// In file order.
    pub stages: IndexMap<String, Stage>,
    pub variant: Variant,
}

pub use crate::stages::api::{Dep, Model};

/// The sweep settings that make this variant; empty name when no sweep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Variant {
    pub name: String,
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct DataSource {
    pub name: String,
    /// As written in the workflow (for messages).
    pub rel: String,
    pub path: PathBuf,
    pub format: TableFormat,
    /// Why it cannot be read yet (the file does not exist), located.
    pub missing: Option<String>,
}

/// A reference from a stage to what it reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    Data(String),
    Stage(String),
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Data(n) => write!(f, "data.{n}"),
            Ref::Stage(n) => write!(f, "stages.{n}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// Input name → what it reads, in file order.
    pub inputs: IndexMap<String, Ref>,
    /// Ordering-only upstream stages.
    pub needs: Vec<String>,
    pub deps: Vec<Dep>,
    /// User parameters, as JSON values (TOML floats, ints, strings, ...).
    pub params: BTreeMap<String, Value>,
    pub env: Vec<String>,
    pub resources: Resources,
    pub description: Option<String>,
    /// The workflow's own SLURM job template (also listed in `deps`).
    pub template: Option<Dep>,
    /// Files it reads that are not there yet (data, tokenizers, a
    /// repository), one located line each: it cannot run until they are.
    pub unmet: Vec<String>,
}

impl Stage {
    /// Every stage this one waits for: inputs first, then `needs`.
    pub fn upstream(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in self.inputs.values() {
            if let Ref::Stage(s) = r {
                if !out.contains(&s.as_str()) {
                    out.push(s);
                }
            }
        }
        for s in &self.needs {
            if !out.contains(&s.as_str()) {
                out.push(s);
            }
        }
        out
    }
}

pub use crate::stages::command::CommandSpec;
pub use crate::stages::StageKind;
