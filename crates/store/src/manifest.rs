//! `_manifest.json`: what an artifact is, how it was made, and the preimage
//! of its key (so `plan` can say field by field why a stage reruns).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::{CacheKey, Preimage};

/// Bumped when the manifest layout changes incompatibly.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub key: CacheKey,
    pub stage: String,
    pub kind: String,
    pub kind_version: u32,
    /// The resolved parameters (canonical JSON values).
    pub params: BTreeMap<String, Value>,
    /// Input name → content hash.
    pub inputs: BTreeMap<String, String>,
    /// blake3 over the part files' names and hashes: what downstream keys use.
    pub content_hash: String,
    pub rows: u64,
    pub bytes: u64,
    pub schema: Vec<Field>,
    pub parts: Vec<Part>,
    /// RFC 3339, UTC.
    pub created: String,
    pub duration_s: f64,
    /// Provenance only; never part of the key.
    pub workflow: String,
    pub variants: Vec<String>,
    pub run: String,
    pub preimage: Preimage,
    /// Figures the stage kind reports about its output (e.g. token counts
    /// of training samples); absent for most kinds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, Value>,
    /// The files of a directory artifact (under `files/`), beside its table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    /// What computing it cost; absent in manifests from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// What an artifact cost to compute: its shards' own measurements, and
/// the scheduler's accounting where it ran on a cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// Wall seconds of the shards' processes, summed (the last attempt of
    /// each shard).
    pub shard_s: f64,
    /// CPU seconds (user and system) of the shards' processes and the
    /// processes they waited for.
    pub cpu_s: f64,
    /// Node-seconds the scheduler accounted to the stage's jobs (elapsed
    /// times allocated nodes, every attempt), where it ran on a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_s: Option<f64>,
    /// CPU-seconds the scheduler allocated (elapsed times CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alloc_cpu_s: Option<f64>,
    /// Where `node_s` comes from (`sacct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounted_by: Option<String>,
}

impl Usage {
    /// Node-hours: the scheduler's where it accounted them, else the
    /// shards' wall time (each shard on one node).
    pub fn node_hours(&self) -> f64 {
        self.node_s.unwrap_or(self.shard_s) / 3600.0
    }

    /// One shard's measurement, as `swestar exec` writes it beside the
    /// shard (`shard-N.usage.json`).
    pub fn add_shard(&mut self, v: &Value) {
        self.shard_s += v["wall_s"].as_f64().unwrap_or(0.0);
        self.cpu_s += v["cpu_s"].as_f64().unwrap_or(0.0);
    }
}

/// One file of a directory artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Relative to the object directory, e.g. `files/checkpoint/model.safetensors`.
    pub path: String,
    pub bytes: u64,
}

/// One column of the Arrow schema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    /// Relative to the object directory (`parts/part-00000.parquet`).
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// The content hash of a set of parts: order-independent in the parts'
/// listing, dependent on names and bytes. Not on the folder they are in
/// (layout), so an artifact hashes the same in every store version.
pub fn content_hash(parts: &[Part]) -> String {
    let mut sorted: Vec<&Part> = parts.iter().collect();
    sorted.sort_by(|a, b| a.file.cmp(&b.file));
    let mut h = blake3::Hasher::new();
    for p in sorted {
        h.update(p.file.rsplit('/').next().unwrap_or(&p.file).as_bytes());
        h.update(&[0]);
        h.update(p.blake3.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex().to_string()
}

pub fn fields_of(schema: &arrow_schema::Schema) -> Vec<Field> {
    schema
        .fields()
        .iter()
        .map(|f| Field { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect()
}
