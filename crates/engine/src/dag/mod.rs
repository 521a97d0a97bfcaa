//! The plan: the stages of every variant as one DAG (petgraph), in
//! dependency order, with stages that are identical across variants merged
//! into one node, and for each node `cached` or `run` with every reason.
//!
//! A node below one that will run gets its real key only after that
//! upstream commits (see `exec`): an upstream that reproduces identical
//! content leaves it cached (early cutoff). Until then the plan says
//! `upstream X reruns`, plus any change of its own.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::path::PathBuf;

use petgraph::graphmap::DiGraphMap;
use serde_json::Value;

use crate::cache::{self, CacheKey, Preimage, PREIMAGE_SCHEMA};
use crate::store::statcache::StatCache;
use crate::store::{Lookup, Manifest, Refs, Store};
use crate::workflow::{Ref, Stage, TableFormat, Workflow};

pub mod forecast;
mod reason;
pub use reason::{reasons, Reason};

/// What the plan decided for a node.
#[derive(Debug, Clone)]
pub enum Decision {
    Cached {
        key: CacheKey,
        manifest: Box<Manifest>,
    },
    /// `key` is `None` while an upstream still has to run.
    Run {
        key: Option<CacheKey>,
        reasons: Vec<Reason>,
    },
}

impl Decision {
    /// The artifact in the store, when the node is cached.
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Decision::Cached { manifest, .. } => Some(manifest),
            Decision::Run { .. } => None,
        }
    }
}

/// An upstream edge: which node, and under which input name (`None` for
/// an ordering-only `needs`).
#[derive(Debug, Clone)]
pub struct Edge {
    pub input: Option<String>,
    pub stage: String,
    pub node: usize,
}

/// A data source read by a node, hashed.
#[derive(Debug, Clone)]
pub struct DataInput {
    pub rel: String,
    pub path: PathBuf,
    pub format: TableFormat,
    pub hash: String,
}

/// One stage of one or more variants.
#[derive(Debug, Clone)]
pub struct Node {
    pub stage: String,
    /// Variant names this node belongs to (`""` without a sweep).
    pub variants: Vec<String>,
    pub spec: Stage,
    pub workdir: PathBuf,
    pub upstream: Vec<Edge>,
    pub data: BTreeMap<String, DataInput>,
    /// The preimage without upstream content hashes (filled by `preimage`).
    pub partial: Preimage,
    pub decision: Decision,
    /// Set by `select`; unselected nodes are not executed.
    pub selected: bool,
    /// Set by `force`: recomputed even when its artifact is in the store.
    pub forced: bool,
    /// False when it, or a stage it waits for, reads a file that is not
    /// there yet (`Stage::unmet`): such a node is planned, never run.
    pub runnable: bool,
}

impl Node {
    /// The full preimage once every upstream content hash is known.
    pub fn preimage(&self, upstream_hash: impl Fn(usize) -> Option<String>) -> Option<Preimage> {
        let mut p = self.partial.clone();
        for e in &self.upstream {
            let h = upstream_hash(e.node)?;
            match &e.input {
                Some(name) => p.inputs.insert(name.clone(), h),
                None => p.needs.insert(e.stage.clone(), h),
            };
        }
        Some(p)
    }

    pub fn key(&self) -> Option<&CacheKey> {
        match &self.decision {
            Decision::Cached { key, .. } => Some(key),
            Decision::Run { key, .. } => key.as_ref(),
        }
    }

    pub fn label(&self) -> String {
        match self.variants.as_slice() {
            [one] if one.is_empty() => self.stage.clone(),
            [one] => format!("{} [{one}]", self.stage),
            many if many.iter().all(|v| v.is_empty()) => self.stage.clone(),
            many => format!("{} [{} variants]", self.stage, many.len()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub workflow: String,
    pub path: PathBuf,
    pub variants: Vec<String>,
    /// In dependency order.
    pub nodes: Vec<Node>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot hash {}: {source}", path.display())]
    Hash { path: PathBuf, source: std::io::Error },
    #[error("no stage named `{name}` in {workflow}{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownStage { name: String, workflow: String, suggestion: Option<String> },
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub run: usize,
    pub changed: usize,
    pub downstream: usize,
    pub cached: usize,
    /// Stages that read files not there yet (or wait for such stages).
    pub blocked: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} run", self.run)?;
        if self.run > 0 {
            write!(f, " ({} changed, {} downstream)", self.changed, self.downstream)?;
        }
        write!(f, ", {} cached", self.cached)?;
        if self.blocked > 0 {
            write!(f, ", {} cannot run yet", self.blocked)?;
        }
        Ok(())
    }
}

impl Plan {
    /// Plans every variant against the store (`None`: nothing is cached).
    pub fn build(variants: &[Workflow], store: Option<&Store>, stat: &mut StatCache) -> Result<Plan, PlanError> {
        let first = &variants[0];
        let refs = store.map(|s| s.refs(&first.name)).unwrap_or_default();
        let mut plan = Plan {
            workflow: first.name.clone(),
            path: first.path.clone(),
            variants: variants.iter().map(|v| v.variant.name.clone()).collect(),
            nodes: Vec::new(),
        };
        // Definition id (kind, settings, files, data and upstream identities) → node.
        let mut by_def: HashMap<String, usize> = HashMap::new();
        for wf in variants {
            let mut local: HashMap<&str, (usize, String)> = HashMap::new();
            for name in order(wf) {
                let stage = &wf.stages[name];
                let partial = partial_preimage(wf, stage, stat)?;
                let data = data_inputs(wf, stage, &partial);
                let mut upstream = Vec::new();
                let mut ids: BTreeMap<String, String> = BTreeMap::new();
                for (input, r) in &stage.inputs {
                    if let Ref::Stage(up) = r {
                        let (node, def) = &local[up.as_str()];
                        upstream.push(Edge { input: Some(input.clone()), stage: up.clone(), node: *node });
                        ids.insert(format!("input:{input}"), def.clone());
                    }
                }
                for up in &stage.needs {
                    let (node, def) = &local[up.as_str()];
                    upstream.push(Edge { input: None, stage: up.clone(), node: *node });
                    ids.insert(format!("needs:{up}"), def.clone());
                }
                let def = cache::hash_str(&format!(
                    "{}\0{}\0{}",
                    partial.canonical(),
                    serde_json::to_string(&ids).expect("strings"),
                    name
                ));
                if let Some(&idx) = by_def.get(&def) {
                    plan.nodes[idx].variants.push(wf.variant.name.clone());
                    local.insert(name, (idx, def));
                    continue;
                }
                let idx = plan.nodes.len();
                plan.nodes.push(Node {
                    stage: name.to_string(),
                    variants: vec![wf.variant.name.clone()],
                    spec: stage.clone(),
                    workdir: wf.dir.clone(),
                    upstream,
                    data,
                    partial,
                    decision: Decision::Run { key: None, reasons: Vec::new() },
                    selected: true,
                    forced: false,
                    runnable: stage.unmet.is_empty(),
                });
                by_def.insert(def.clone(), idx);
                local.insert(name, (idx, def));
            }
        }
        for idx in 0..plan.nodes.len() {
            let upstream_ok = plan.nodes[idx].upstream.iter().all(|e| plan.nodes[e.node].runnable);
            plan.nodes[idx].runnable &= upstream_ok;
            let decision = decide(&plan, idx, store, &refs);
            plan.nodes[idx].decision = decision;
        }
        Ok(plan)
    }

    /// Recomputes the named stages (every stage with `all`) even where
    /// their artifacts are cached; what is downstream of them waits for
    /// their new content (early cutoff keeps it cached if it is the same).
    pub fn force(&mut self, stages: &[String], all: bool, store: Option<&Store>) -> Result<(), PlanError> {
        if stages.is_empty() && !all {
            return Ok(());
        }
        self.check_names(stages)?;
        for n in &mut self.nodes {
            n.forced = all || stages.contains(&n.stage);
        }
        let refs = store.map(|s| s.refs(&self.workflow)).unwrap_or_default();
        for idx in 0..self.nodes.len() {
            let decision = decide(self, idx, store, &refs);
            self.nodes[idx].decision = decision;
        }
        Ok(())
    }

    fn check_names(&self, names: &[String]) -> Result<(), PlanError> {
        for name in names {
            if !self.nodes.iter().any(|n| &n.stage == name) {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.stage.as_str()).collect();
                return Err(PlanError::UnknownStage {
                    name: name.clone(),
                    workflow: self.path.display().to_string(),
                    suggestion: crate::workflow::did_you_mean(name, names).map(str::to_string),
                });
            }
        }
        Ok(())
    }

    /// Restricts execution to the named stages and what they need.
    pub fn select(&mut self, only: &[String]) -> Result<(), PlanError> {
        if only.is_empty() {
            return Ok(());
        }
        self.check_names(only)?;
        let mut keep = vec![false; self.nodes.len()];
        for idx in (0..self.nodes.len()).rev() {
            if only.contains(&self.nodes[idx].stage) || keep[idx] {
                keep[idx] = true;
                for e in &self.nodes[idx].upstream {
                    keep[e.node] = true;
                }
            }
        }
        for (n, k) in self.nodes.iter_mut().zip(keep) {
            n.selected = k;
        }
        Ok(())
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for n in self.nodes.iter().filter(|n| n.selected) {
            match &n.decision {
                Decision::Cached { .. } => s.cached += 1,
                Decision::Run { .. } if !n.runnable => s.blocked += 1,
                Decision::Run { reasons, .. } => {
                    s.run += 1;
                    if reasons.iter().all(Reason::is_cascade) {
                        s.downstream += 1;
                    } else {
                        s.changed += 1;
                    }
                }
            }
        }
        s
    }

    /// The machine-readable plan (`plan --json`).
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.nodes
                .iter()
                .filter(|n| n.selected)
                .map(|n| {
                    let (action, reasons, key) = match &n.decision {
                        Decision::Cached { key, .. } => ("cached", Vec::new(), Some(key.to_string())),
                        Decision::Run { reasons, .. } if !n.runnable => ("cannot_run", reasons.clone(), None),
                        Decision::Run { key, reasons } => ("run", reasons.clone(), key.as_ref().map(|k| k.to_string())),
                    };
                    let variant = match n.variants.as_slice() {
                        [one] if !one.is_empty() => Value::String(one.clone()),
                        _ => Value::Null,
                    };
                    serde_json::json!({
                        "stage": n.stage,
                        "variant": variant,
                        "variants": n.variants.iter().filter(|v| !v.is_empty()).collect::<Vec<_>>(),
                        "action": action,
                        "reason": reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "),
                        "reasons": reasons,
                        "key": key,
                    })
                })
                .collect(),
        )
    }
}

/// A variant's stages in dependency order, ties broken by file order
/// (Kahn's algorithm over the petgraph graph).
fn order(wf: &Workflow) -> Vec<&str> {
    let mut g = DiGraphMap::<&str, ()>::new();
    for (name, s) in &wf.stages {
        g.add_node(name.as_str());
        for up in s.upstream() {
            g.add_edge(up, name.as_str(), ());
        }
    }
    let pos = |n: &str| wf.stages.get_index_of(n).unwrap_or(usize::MAX);
    let mut indegree: HashMap<&str, usize> =
        g.nodes().map(|n| (n, g.neighbors_directed(n, petgraph::Direction::Incoming).count())).collect();
    let mut ready: BinaryHeap<Reverse<(usize, &str)>> =
        indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| Reverse((pos(n), *n))).collect();
    let mut out = Vec::new();
    while let Some(Reverse((_, n))) = ready.pop() {
        out.push(n);
        for m in g.neighbors_directed(n, petgraph::Direction::Outgoing) {
            let d = indegree.get_mut(m).expect("node");
            *d -= 1;
            if *d == 0 {
                ready.push(Reverse((pos(m), m)));
            }
        }
    }
    out
}

fn partial_preimage(wf: &Workflow, stage: &Stage, stat: &mut StatCache) -> Result<Preimage, PlanError> {
    let hash = |stat: &mut StatCache, path: &PathBuf| {
        stat.hash(path).map_err(|source| PlanError::Hash { path: path.clone(), source })
    };
    let mut files = BTreeMap::new();
    for dep in &stage.deps {
        files.insert(dep.rel.clone(), hash(stat, &dep.path)?);
    }
    let mut inputs = BTreeMap::new();
    for (input, r) in &stage.inputs {
        if let Ref::Data(d) = r {
            let src = &wf.data[d.as_str()];
            // Not there yet: the node cannot run, and gets no key; this
            // stands in for its hash so that variants still merge.
            let h =
                if src.missing.is_some() { format!("missing:{}", src.path.display()) } else { hash(stat, &src.path)? };
            inputs.insert(input.clone(), h);
        }
    }
    let env =
        stage.env.iter().map(|name| (name.clone(), std::env::var(name).ok().map(|v| cache::hash_str(&v)))).collect();
    Ok(Preimage {
        schema: PREIMAGE_SCHEMA,
        kind: stage.kind.name().to_string(),
        impl_version: stage.kind.impl_version(),
        definition: stage.kind.definition(),
        params: stage.params.clone(),
        files,
        inputs,
        needs: BTreeMap::new(),
        env,
    })
}

fn data_inputs(wf: &Workflow, stage: &Stage, partial: &Preimage) -> BTreeMap<String, DataInput> {
    stage
        .inputs
        .iter()
        .filter_map(|(input, r)| match r {
            Ref::Data(d) => {
                let src = &wf.data[d.as_str()];
                Some((
                    input.clone(),
                    DataInput {
                        rel: src.rel.clone(),
                        path: src.path.clone(),
                        format: src.format,
                        hash: partial.inputs[input].clone(),
                    },
                ))
            }
            Ref::Stage(_) => None,
        })
        .collect()
}

fn decide(plan: &Plan, idx: usize, store: Option<&Store>, refs: &Refs) -> Decision {
    let node = &plan.nodes[idx];
    let upstream_hash = |i: usize| match &plan.nodes[i].decision {
        Decision::Cached { manifest, .. } => Some(manifest.content_hash.clone()),
        Decision::Run { .. } => None,
    };
    // The last committed preimage is read only to explain a rerun: a cached
    // node (the no-op hot path) never needs it.
    let previous = || previous_preimage(node, store, refs);
    if !node.spec.unmet.is_empty() {
        let reasons = node.spec.unmet.iter().map(|what| Reason::NotRunnable { what: what.clone() }).collect();
        return Decision::Run { key: None, reasons };
    }
    match node.preimage(upstream_hash) {
        Some(pre) if node.forced => Decision::Run { key: Some(pre.key()), reasons: vec![Reason::Forced] },
        Some(pre) => {
            let key = pre.key();
            if let Some(store) = store {
                match store.lookup(&key) {
                    Lookup::Present(manifest) => return Decision::Cached { key, manifest },
                    Lookup::Corrupt(detail) => {
                        return Decision::Run { key: Some(key), reasons: vec![Reason::ArtifactCorrupt { detail }] };
                    }
                    Lookup::Missing => {}
                }
            }
            let reasons = match &previous() {
                Some(old) => {
                    let r = reasons(node, old, &pre, &[]);
                    if r.is_empty() {
                        vec![Reason::ArtifactMissing]
                    } else {
                        r
                    }
                }
                None => vec![Reason::NoCachedArtifact],
            };
            Decision::Run { key: Some(key), reasons }
        }
        None if !node.runnable => {
            let mut reasons = Vec::new();
            for e in node.upstream.iter().filter(|e| !plan.nodes[e.node].runnable) {
                let r = Reason::UpstreamNotRunnable { stage: e.stage.clone() };
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
            Decision::Run { key: None, reasons }
        }
        None => {
            let pending: Vec<&Edge> = node.upstream.iter().filter(|e| upstream_hash(e.node).is_none()).collect();
            let ignore: Vec<&str> = pending.iter().map(|e| e.input.as_deref().unwrap_or(e.stage.as_str())).collect();
            let mut reasons = match &previous() {
                Some(old) => {
                    // Compare with the pending hashes copied from the old preimage.
                    let mut new = node.partial.clone();
                    for e in &node.upstream {
                        let h = upstream_hash(e.node)
                            .or_else(|| match &e.input {
                                Some(n) => old.inputs.get(n).cloned(),
                                None => old.needs.get(&e.stage).cloned(),
                            })
                            .unwrap_or_default();
                        match &e.input {
                            Some(n) => new.inputs.insert(n.clone(), h),
                            None => new.needs.insert(e.stage.clone(), h),
                        };
                    }
                    reasons(node, old, &new, &ignore)
                }
                None => vec![Reason::NoCachedArtifact],
            };
            if node.forced {
                reasons.insert(0, Reason::Forced);
            }
            // A stage that never ran needs no further explanation.
            if reasons != [Reason::NoCachedArtifact] {
                for e in pending {
                    let r = Reason::PendingUpstream { stage: e.stage.clone() };
                    if !reasons.contains(&r) {
                        reasons.push(r);
                    }
                }
            }
            Decision::Run { key: None, reasons }
        }
    }
}

/// The preimage of the last artifact committed for this stage in any of
/// the node's variants, read from its manifest.
fn previous_preimage(node: &Node, store: Option<&Store>, refs: &Refs) -> Option<Preimage> {
    let store = store?;
    node.variants.iter().find_map(|v| {
        let key = refs.variants.get(v)?.get(&node.stage)?;
        match store.lookup(key) {
            Lookup::Present(m) => Some(m.preimage),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_separates_roots_from_cascade() {
        let s = Summary { run: 3, changed: 1, downstream: 2, cached: 4, blocked: 0 };
        assert_eq!(s.to_string(), "3 run (1 changed, 2 downstream), 4 cached");
        let s = Summary { run: 0, changed: 0, downstream: 0, cached: 1, blocked: 2 };
        assert_eq!(s.to_string(), "0 run, 1 cached, 2 cannot run yet");
    }
}
