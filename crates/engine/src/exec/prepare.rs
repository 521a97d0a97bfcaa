//! Preparing a node's work: its job file (what `swestar exec` runs, with
//! its inputs resolved to artifacts), the launch of its shards, and the
//! server it starts with its model resolved. One preparation for a run and
//! for `swestar render`.

use std::path::PathBuf;

use super::Launch;
use crate::cache::CacheKey;
use crate::dag::Node;
use crate::stages::{Job, JobInput};
use crate::store::Store;
use crate::workflow::TableFormat;

/// Shards a node is split into.
pub fn shard_count(node: &Node) -> u32 {
    node.spec.resources.shards.get()
}

/// The server a node's job starts, its model resolved: `model =
/// "stages.X"` serves the checkpoint that stage X trained (the
/// `checkpoint_path` of its table, an input of this stage).
pub fn served_model(node: &Node, job: &Job) -> Result<Option<crate::stages::command::Serve>, String> {
    let Some(serve) = node.spec.kind.serve() else { return Ok(None) };
    let Some(stage) = serve.model.strip_prefix("stages.") else { return Ok(Some(serve.clone())) };
    let input = node
        .spec
        .inputs
        .iter()
        .find(|(_, r)| **r == crate::workflow::Ref::Stage(stage.to_string()))
        .map(|(name, _)| name)
        .ok_or_else(|| format!("the served model is stages.{stage}, which is not one of the stage's inputs"))?;
    let paths = job.inputs.get(input).map(|i| i.paths.clone()).unwrap_or_default();
    let rows = crate::store::rows::read_all(&paths, TableFormat::Parquet).map_err(|e| e.to_string())?;
    let path = rows
        .iter()
        .find_map(|r| r.get("checkpoint_path").and_then(serde_json::Value::as_str))
        .ok_or_else(|| format!("stages.{stage} has no `checkpoint_path` to serve (was it trained?)"))?;
    let mut resolved = serve.clone();
    resolved.model_path = path.to_string();
    Ok(Some(resolved))
}

/// A node's job and its launch, prepared the one way both a run and
/// `swestar render` use.
pub struct Prepared {
    pub job: Job,
    pub launch: Launch,
}

/// Prepares a node's job (its inputs from `upstream`'s artifacts) and the
/// launch of `shards` of it.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    index: usize,
    node: &Node,
    key: &CacheKey,
    store: &Store,
    upstream: &dyn Fn(usize) -> Option<Vec<PathBuf>>,
    shards: Vec<u32>,
    log_dir: PathBuf,
    log_stem: String,
) -> Prepared {
    let job = build_job(node, upstream, store, key);
    let job_file = store.staging_dir(key).join("job.json");
    let launch = Launch::for_node(index, node, key, job_file, shards, log_dir, log_stem);
    Prepared { job, launch }
}

impl Prepared {
    /// Points the launch's server at the checkpoint an upstream stage
    /// trained, when the stage serves one (see [`served_model`]).
    pub fn resolve_serve(&mut self, node: &Node) -> Result<(), String> {
        if let Some(serve) = served_model(node, &self.job)? {
            self.launch.serve = Some(serve);
        }
        Ok(())
    }
}

/// The job file of a node: what `swestar exec` runs.
pub fn build_job(node: &Node, upstream: &dyn Fn(usize) -> Option<Vec<PathBuf>>, store: &Store, key: &CacheKey) -> Job {
    let mut inputs = indexmap::IndexMap::new();
    for name in node.spec.inputs.keys() {
        if let Some(d) = node.data.get(name) {
            inputs.insert(name.clone(), JobInput { paths: vec![d.path.clone()], format: d.format });
        } else if let Some(e) = node.upstream.iter().find(|e| e.input.as_deref() == Some(name.as_str())) {
            if let Some(paths) = upstream(e.node) {
                inputs.insert(name.clone(), JobInput { paths, format: TableFormat::Parquet });
            }
        }
    }
    let time_limit_s = node.spec.resources.time.map(|d| d.secs());
    Job {
        stage: node.stage.clone(),
        key: key.to_string(),
        kind: node.spec.kind.clone(),
        workdir: node.workdir.clone(),
        inputs,
        params: node.spec.params.clone(),
        env: node.spec.env.clone(),
        stage_dir: store.staging_dir(key),
        artifact_dir: store.object_dir(key),
        shards: shard_count(node),
        time_limit_s,
    }
}
