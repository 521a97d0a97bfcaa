//! Validating a workflow variant: names, references, paths and the
//! stages' graph here; each stage kind's own settings by the kind (through
//! [`Settings`]). Every problem is collected with its key and location;
//! nothing downstream re-validates.

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;

use super::load::StageWire;
use super::wire::WorkflowFile;
use super::*;
use crate::stages::api::{relative_dep, Settings};

impl Cx<'_> {
    pub(super) fn validate(
        &self,
        file: &WorkflowFile,
        stages: IndexMap<String, StageWire>,
        variant: Variant,
        origin: Option<&str>,
    ) -> Result<Workflow, WorkflowError> {
        let diags = std::cell::RefCell::new(Vec::new());
        let err = |path: Vec<String>, message: String, help: Option<String>| {
            let mut d = self.diag_at(&path, message, None);
            d.help = help;
            d.origin = origin.map(str::to_string);
            diags.borrow_mut().push(d);
        };
        let p = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        if !valid_name(&file.workflow.name, true) {
            err(
                p(&["workflow", "name"]),
                format!("`{}` is not a valid workflow name", file.workflow.name),
                Some("use letters, digits, `_`, `-` and `.`".into()),
            );
        }
        let mut data = IndexMap::new();
        for (name, d) in &file.data {
            if !valid_name(name, false) {
                err(p(&["data", name]), format!("`{name}` is not a valid data source name"), None);
            }
            let path = self.dir.join(&d.path);
            let format = d.format.or_else(|| format_of(&d.path));
            let Some(format) = format else {
                err(
                    p(&["data", name, "path"]),
                    format!("cannot tell the format of `{}`", d.path),
                    Some("name a .parquet or .jsonl file, or set `format`".into()),
                );
                continue;
            };
            // Not an error: a workflow is planned (and its scripts read)
            // before the data is staged; the stages reading it cannot run.
            let missing = (!path.is_file()).then(|| {
                let mut d =
                    self.diag_at(&p(&["data", name, "path"]), format!("data file `{}` does not exist", d.path), None);
                d.origin = origin.map(str::to_string);
                d.line()
            });
            data.insert(name.clone(), DataSource { name: name.clone(), rel: d.path.clone(), path, format, missing });
        }

        let mut models = IndexMap::new();
        for (name, m) in &file.models {
            let at = |field: &str| p(&["models", name, field]);
            if !valid_name(name, false) {
                err(p(&["models", name]), format!("`{name}` is not a valid model name"), None);
            }
            let mut config = crate::agent::llm::ModelConfig::new(m.base_url.clone(), m.model.clone());
            if !(m.base_url.starts_with("http://") || m.base_url.starts_with("https://")) {
                err(at("base_url"), format!("`{}` is not an http(s) URL", m.base_url), None);
            }
            config.temperature = m.temperature;
            config.top_p = m.top_p;
            config.max_tokens = m.max_tokens;
            config.seed = m.seed;
            config.stop = m.stop.clone();
            config.max_retries = m.max_retries;
            config.timeout = m.request_timeout.std();
            // A missing tokenizer is reported for the stages that use the
            // model (they cannot run yet), not as an error.
            let tokenizer = m.tokenizer.as_ref().map(|t| self.dir.join(t));
            let (window, reserve) = (m.context_window, m.reply_reserve);
            if reserve >= window {
                err(
                    at("reply_reserve"),
                    format!("the reply reserve ({reserve}) must be smaller than the window ({window})"),
                    None,
                );
            }
            let low_water = m.low_water;
            if !(0.0..1.0).contains(&low_water) || low_water == 0.0 {
                err(at("low_water"), format!("{low_water} must be between 0 and 1"), None);
            }
            let policy = match m.masking {
                wire::MaskingPolicy::Fit => crate::agent::condense::Policy::Fit,
                wire::MaskingPolicy::Block => crate::agent::condense::Policy::Block { low_water },
            };
            models.insert(
                name.clone(),
                Model {
                    name: name.clone(),
                    config,
                    api_key_env: m.api_key_env.clone(),
                    tokenizer_rel: m.tokenizer.clone(),
                    tokenizer,
                    budget: crate::agent::condense::Budget { window, reserve },
                    policy,
                },
            );
        }
        let owned_names: Vec<String> = stages.keys().cloned().collect();
        let stage_names: Vec<&str> = owned_names.iter().map(String::as_str).collect();
        let mut out = IndexMap::new();
        for (name, wire) in stages {
            if !valid_name(&name, false) {
                err(p(&["stages", &name]), format!("`{name}` is not a valid stage name"), None);
            }
            let StageWire { common, kind: kind_wire } = wire;
            let c = &common;
            let mut inputs = IndexMap::new();
            for (input, reference) in &c.inputs {
                let at = p(&["stages", &name, "inputs", input]);
                if !valid_ident(input) {
                    err(
                        at.clone(),
                        format!("`{input}` is not a valid input name"),
                        Some("use letters, digits and `_`".into()),
                    );
                }
                match parse_ref(reference) {
                    Some(Ref::Data(d)) if data.contains_key(&d) || file.data.contains_key(&d) => {
                        inputs.insert(input.clone(), Ref::Data(d));
                    }
                    Some(Ref::Data(d)) => {
                        let help = did_you_mean(&d, file.data.keys().map(String::as_str))
                            .map(|s| format!("did you mean `data.{s}`?"));
                        err(at, format!("no data source named `{d}`"), help);
                    }
                    Some(Ref::Stage(s)) if s == name => {
                        err(at, format!("stage `{name}` reads its own output: cycle {name} → {name}"), None);
                    }
                    Some(Ref::Stage(s)) if stage_names.contains(&s.as_str()) => {
                        inputs.insert(input.clone(), Ref::Stage(s));
                    }
                    Some(Ref::Stage(s)) => {
                        let help = did_you_mean(&s, stage_names.iter().copied())
                            .map(|x| format!("did you mean `stages.{x}`?"));
                        err(at, format!("no stage named `{s}`"), help);
                    }
                    None => err(
                        at,
                        format!("`{reference}` is not a reference"),
                        Some("write `data.NAME` or `stages.NAME`".into()),
                    ),
                }
            }
            let mut needs = Vec::new();
            for (i, n) in c.needs.iter().enumerate() {
                let bare = n.strip_prefix("stages.").unwrap_or(n);
                if bare == name {
                    err(p(&["stages", &name, "needs", &i.to_string()]), format!("stage `{name}` needs itself"), None);
                } else if stage_names.contains(&bare) {
                    needs.push(bare.to_string());
                } else {
                    let help = did_you_mean(bare, stage_names.iter().copied()).map(|x| format!("did you mean `{x}`?"));
                    err(p(&["stages", &name, "needs", &i.to_string()]), format!("no stage named `{bare}`"), help);
                }
            }
            let mut deps = Vec::new();
            for (i, d) in c.deps.iter().enumerate() {
                let at = p(&["stages", &name, "deps", &i.to_string()]);
                match relative_dep(&self.dir, d) {
                    Ok(dep) => deps.push(dep),
                    Err(m) => err(at, m, None),
                }
            }
            let mut template = None;
            if let Some(t) = &c.template {
                match relative_dep(&self.dir, t) {
                    Ok(dep) => {
                        deps.push(dep.clone());
                        template = Some(dep);
                    }
                    Err(m) => err(p(&["stages", &name, "template"]), m, None),
                }
            }
            for (i, e) in c.env.iter().enumerate() {
                if !valid_ident(e) {
                    err(
                        p(&["stages", &name, "env", &i.to_string()]),
                        format!("`{e}` is not a valid environment variable name"),
                        None,
                    );
                }
            }
            let mut params = BTreeMap::new();
            for (k, v) in &c.params {
                match toml_to_json(v) {
                    Ok(j) => {
                        params.insert(k.clone(), j);
                    }
                    Err(m) => err(p(&["stages", &name, "params", k]), m, None),
                }
            }
            let unmet = std::cell::RefCell::new(Vec::<String>::new());
            for r in inputs.values() {
                if let Ref::Data(d) = r {
                    if let Some(why) = data.get(d.as_str()).and_then(|s: &DataSource| s.missing.clone()) {
                        unmet.borrow_mut().push(why);
                    }
                }
            }
            let note = |path: Vec<String>, message: String| {
                let mut d = self.diag_at(&path, message, None);
                d.origin = origin.map(str::to_string);
                let line = d.line();
                if !unmet.borrow().contains(&line) {
                    unmet.borrow_mut().push(line);
                }
            };
            let kind = {
                let mut settings = Settings::new(&name, &self.dir, c, &models, &mut deps, &err, &note);
                kind_wire.validate(&mut settings)
            };
            out.insert(
                name.clone(),
                Stage {
                    name: name.clone(),
                    kind,
                    inputs,
                    needs,
                    deps,
                    params,
                    env: c.env.clone(),
                    resources: c.resources.clone(),
                    description: c.description.clone(),
                    template,
                    unmet: unmet.into_inner(),
                },
            );
        }
        if diags.borrow().is_empty() {
            if let Some(cycle) = find_cycle(&out) {
                let first = &cycle[0];
                let via = out[first.as_str()]
                    .inputs
                    .iter()
                    .find(|(_, r)| **r == Ref::Stage(cycle[1 % cycle.len()].clone()))
                    .map(|(i, _)| p(&["stages", first, "inputs", i]))
                    .unwrap_or_else(|| p(&["stages", first]));
                let mut names = cycle.clone();
                names.push(cycle[0].clone());
                err(via, format!("the stages form a cycle: {}", names.join(" → ")), None);
            }
        }
        let diags = diags.into_inner();
        if !diags.is_empty() {
            return Err(WorkflowError::Invalid(diags));
        }
        let store = file.workflow.store.as_ref().map(|s| self.dir.join(s));
        Ok(Workflow {
            name: file.workflow.name.clone(),
            path: self.source.path.clone(),
            dir: self.dir.clone(),
            store,
            jobs: file.executor.jobs,
            executor: file.executor.kind,
            slurm: file.executor.slurm.clone(),
            models,
            data,
            stages: out,
            variant,
        })
    }
}

fn valid_name(s: &str, allow_dot: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'))
}

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_ref(s: &str) -> Option<Ref> {
    if let Some(d) = s.strip_prefix("data.") {
        return Some(Ref::Data(d.to_string()));
    }
    s.strip_prefix("stages.").map(|st| Ref::Stage(st.to_string()))
}

fn format_of(path: &str) -> Option<TableFormat> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".parquet") {
        Some(TableFormat::Parquet)
    } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") || lower.ends_with(".json") {
        // `.json`: JSON Lines or one array of rows (SWE-bench's exports).
        Some(TableFormat::Jsonl)
    } else {
        None
    }
}

/// The first cycle among stage references, as stage names in order.
fn find_cycle(stages: &IndexMap<String, Stage>) -> Option<Vec<String>> {
    use petgraph::graphmap::DiGraphMap;
    let mut g = DiGraphMap::<&str, ()>::new();
    for (name, s) in stages {
        g.add_node(name);
        for up in s.upstream() {
            g.add_edge(name.as_str(), up, ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&g) {
        if scc.len() > 1 {
            // Walk the component in edge order so the message reads as a path.
            let members: std::collections::HashSet<&str> = scc.iter().copied().collect();
            let start = *scc.iter().min_by_key(|n| stages.get_index_of(**n)).unwrap_or(&scc[0]);
            let mut path = vec![start.to_string()];
            let mut at = start;
            let mut seen: HashMap<&str, ()> = HashMap::new();
            seen.insert(start, ());
            while let Some(next) = stages[at]
                .upstream()
                .into_iter()
                .find(|u| members.contains(u) && (!seen.contains_key(u) || *u == start))
            {
                if next == start {
                    break;
                }
                seen.insert(next, ());
                path.push(next.to_string());
                at = next;
            }
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_refs() {
        assert!(valid_name("seg-1_a", false));
        assert!(!valid_name("a.b", false));
        assert!(valid_name("a.b", true));
        assert!(!valid_ident("a-b"));
        assert_eq!(parse_ref("data.x"), Some(Ref::Data("x".into())));
        assert_eq!(parse_ref("stages.y"), Some(Ref::Stage("y".into())));
        assert_eq!(parse_ref("y"), None);
    }
}
