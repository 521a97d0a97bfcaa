//! What a plan will cost, before it runs: for every node that would run,
//! wall time, node-hours and model tokens, from what earlier artifacts of
//! the same kind in the store recorded (seconds per input row and shard,
//! tokens per row), scaled to this node's input rows and resources.

use std::collections::HashMap;

use serde::Serialize;

use super::{Decision, Plan};
use crate::store::{Manifest, Store};

/// One node's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "forecast", rename_all = "snake_case")]
pub enum Estimate {
    /// Cached, or cannot run: nothing to forecast.
    Nothing,
    /// No earlier artifact of its kind recorded its rows.
    NoHistory,
    /// Its input's size is known only once an upstream stage ran.
    RowsUnknown { upstream: String },
    Cost {
        rows_in: u64,
        /// Shard-seconds per input row, as recorded.
        seconds_per_row: f64,
        wall_s: f64,
        node_hours: f64,
        /// Model tokens (prompt and completion), for agent stages.
        tokens: Option<f64>,
        /// Earlier artifacts the rates come from.
        from: usize,
    },
}

/// Per kind: shard-seconds and tokens per input row over earlier artifacts.
#[derive(Debug, Default, Clone, Copy)]
struct Rate {
    shard_seconds: f64,
    rows: f64,
    tokens: f64,
    token_rows: f64,
    artifacts: usize,
}

/// What an artifact took in: the rows its kind recorded going in, else
/// what came out.
fn rows_in(m: &Manifest) -> u64 {
    m.stats.get("rows_in").or_else(|| m.stats.get("trajectories_in")).and_then(|v| v.as_u64()).unwrap_or(m.rows)
}

pub fn forecast(plan: &Plan, store: Option<&Store>) -> Vec<Estimate> {
    let runs = |n: &super::Node| n.selected && n.runnable && matches!(n.decision, Decision::Run { .. });
    // The no-op plan reads no manifest beyond its own.
    if !plan.nodes.iter().any(runs) {
        return vec![Estimate::Nothing; plan.nodes.len()];
    }
    let mut rates: HashMap<String, Rate> = HashMap::new();
    for m in store.map(Store::manifests).unwrap_or_default() {
        let rows = rows_in(&m) as f64;
        if rows == 0.0 {
            continue;
        }
        let r = rates.entry(m.kind.clone()).or_default();
        r.shard_seconds += m.duration_s * m.parts.len().max(1) as f64;
        r.rows += rows;
        r.artifacts += 1;
        let tokens =
            ["prompt_tokens", "completion_tokens"].iter().filter_map(|k| m.stats.get(*k)?.as_u64()).sum::<u64>();
        if tokens > 0 {
            r.tokens += tokens as f64;
            r.token_rows += rows;
        }
    }
    let mut out: Vec<Estimate> = Vec::with_capacity(plan.nodes.len());
    // Rows each node puts out, where known: cached outputs, forecast inputs.
    let mut rows_out: Vec<Option<u64>> = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        let known_out = match &node.decision {
            Decision::Cached { manifest, .. } => Some(manifest.rows),
            _ => None,
        };
        if matches!(node.decision, Decision::Cached { .. }) || !node.runnable || !node.selected {
            out.push(Estimate::Nothing);
            rows_out.push(known_out);
            continue;
        }
        // The largest input is what the stage works through.
        let mut input: Option<u64> = None;
        let mut unknown: Option<String> = None;
        for d in node.data.values() {
            let n = crate::store::rows::Table::open(std::slice::from_ref(&d.path), d.format).map(|t| t.rows()).ok();
            input = input.max(n);
        }
        for e in node.upstream.iter().filter(|e| e.input.is_some()) {
            match rows_out[e.node] {
                Some(n) => input = input.max(Some(n)),
                None => unknown = Some(e.stage.clone()),
            }
        }
        let kind = node.spec.kind.name();
        let estimate = match (rates.get(kind), input, unknown) {
            (None, _, _) => Estimate::NoHistory,
            (Some(_), _, Some(upstream)) => Estimate::RowsUnknown { upstream },
            (Some(_), None, None) => Estimate::NoHistory,
            (Some(rate), Some(rows), None) => {
                let per_row = rate.shard_seconds / rate.rows;
                let shard_seconds = per_row * rows as f64;
                let shards = f64::from(node.spec.resources.shards.get());
                let at_once = node.spec.resources.max_parallel.map_or(shards, |m| f64::from(m.get()).min(shards));
                let nodes = f64::from(node.spec.resources.nodes.unwrap_or(1).max(1));
                Estimate::Cost {
                    rows_in: rows,
                    seconds_per_row: per_row,
                    wall_s: shard_seconds / shards * (shards / at_once),
                    node_hours: shard_seconds * nodes / 3600.0,
                    tokens: (rate.token_rows > 0.0).then(|| rate.tokens / rate.token_rows * rows as f64),
                    from: rate.artifacts,
                }
            }
        };
        // What a forecast stage puts out is not known; its dependants say so.
        rows_out.push(known_out);
        out.push(estimate);
    }
    out
}
