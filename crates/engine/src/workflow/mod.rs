//! Workflow files: reading the TOML, applying `--set` and `[sweep]`,
//! checking every name, reference and path, and producing one validated
//! [`Workflow`] per variant. Every error names the file, line, column and
//! key; nothing downstream re-validates.

pub mod model;
pub mod overrides;
pub mod source;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub use model::*;
use overrides::{Assignment, Origin};
pub use source::{Location, Source};
use wire::WorkflowFile;

/// One problem in a workflow file or a `--set`, with where it is.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub location: Option<Location>,
    /// Dotted key the problem is about.
    pub key: Option<String>,
    pub message: String,
    pub help: Option<String>,
    /// The `--set` or sweep entry the problem comes from, if any.
    pub origin: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: ")?,
            None => write!(f, "{}: ", self.file.display())?,
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        if let Some(loc) = &self.location {
            write!(f, "\n{}", loc.snippet())?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read workflow file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    Argument(String),
}

fn render_all(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("error: {d}")).collect::<Vec<_>>().join("\n\n")
}

/// A loaded workflow file: its text and its variants.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub source: Source,
    pub variants: Vec<Workflow>,
}

pub use crate::stages::api::{did_you_mean, toml_to_json};
use crate::stages::api::{relative_dep, Settings, WireSource};
use crate::stages::{KindWire, KINDS};

/// Reads, overrides, expands and validates a workflow file.
pub fn load(path: &Path, sets: &[String]) -> Result<Loaded, WorkflowError> {
    let source = Source::read(path).map_err(|source| WorkflowError::Read { path: path.to_path_buf(), source })?;
    let assignments: Vec<Assignment> =
        sets.iter().map(|s| overrides::parse_set(s)).collect::<Result<_, _>>().map_err(WorkflowError::Argument)?;
    let dir =
        path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).map_err(|source| WorkflowError::Read { path: path.to_path_buf(), source })?;
    let cx = Cx { source: &source, dir };

    // Pass 1: the file as written, with exact spans for syntax, unknown keys
    // and wrong types.
    let root = DeTable::parse(&source.text).map_err(|e| cx.toml_error(&e, None))?;
    let file: WorkflowFile =
        WorkflowFile::deserialize(toml::de::Deserializer::from(root.clone())).map_err(|e| cx.toml_error(&e, None))?;
    let stages_spanned = match root.get_ref().get("stages").map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => Some(t),
        _ => None,
    };
    let mut base_stages = IndexMap::new();
    for (name, table) in &file.stages {
        let spanned = stages_spanned.and_then(|t| t.get(name.as_str())).and_then(|v| match v.get_ref() {
            DeValue::Table(t) => Some(Spanned::new(v.span(), t.clone())),
            _ => None,
        });
        let stage = cx.stage_from(name, table, spanned, None)?;
        base_stages.insert(name.clone(), stage);
    }
    let sweep = cx.sweep(&file)?;

    if sweep.is_empty() && assignments.is_empty() {
        let wf = cx.validate(&file, base_stages, Variant::default(), None)?;
        return Ok(Loaded { source, variants: vec![wf] });
    }

    // Pass 2: per variant, the sweep and `--set` assignments applied to the
    // table. The file itself is already known to be valid, so anything that
    // fails now is attributed to the assignments.
    let base: toml::Table = toml::from_str(&source.text).map_err(|e| cx.toml_error(&e, None))?;
    let mut variants = Vec::new();
    for combo in product(&sweep) {
        let mut table = base.clone();
        table.remove("sweep");
        let mut all: Vec<&Assignment> = combo.clone();
        all.extend(assignments.iter());
        for a in &all {
            overrides::apply(&mut table, a)
                .map_err(|message| WorkflowError::Invalid(vec![cx.diag_at(&a.path, message, Some(&a.origin))]))?;
        }
        let origins = all.iter().map(|a| a.origin.to_string()).collect::<Vec<_>>().join(", ");
        let file: WorkflowFile = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| WorkflowError::Invalid(vec![cx.plain(e.message(), Some(&origins))]))?;
        let mut stages = IndexMap::new();
        for (name, table) in &file.stages {
            stages.insert(name.clone(), cx.stage_from(name, table, None, Some(&origins))?);
        }
        let variant = variant_of(&combo);
        variants.push(cx.validate(&file, stages, variant, Some(&origins))?);
    }
    Ok(Loaded { source, variants })
}

/// A stage table after its common keys and its kind's own were deserialized.
struct StageWire {
    common: wire::StageCommon,
    kind: KindWire,
}

/// A stage table's own keys (all but `kind` and the common ones), as a
/// kind reads them: in groups, then the rest, each group denying unknown
/// keys. With the file's spans when there are any, so that an error
/// points at its key.
enum OwnKeys<'c, 'de> {
    Spanned { cx: &'c Cx<'c>, span: std::ops::Range<usize>, table: DeTable<'de>, origin: Option<&'c str> },
    Plain { cx: &'c Cx<'c>, table: toml::Table, origin: Option<&'c str> },
}

impl WireSource for OwnKeys<'_, '_> {
    type Error = WorkflowError;

    fn take<T: DeserializeOwned>(&mut self, keys: &[&str]) -> Result<T, WorkflowError> {
        match self {
            OwnKeys::Spanned { cx, span, table, origin } => {
                let mut part = DeTable::default();
                for key in keys {
                    if let Some((k, v)) = table.remove_entry(*key) {
                        part.insert(k, v);
                    }
                }
                T::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), part)))
                    .map_err(|e| cx.toml_error(&e, *origin))
            }
            OwnKeys::Plain { cx, table, origin } => {
                let mut part = toml::Table::new();
                for key in keys {
                    if let Some(v) = table.remove(*key) {
                        part.insert(key.to_string(), v);
                    }
                }
                toml::Value::Table(part)
                    .try_into()
                    .map_err(|e: toml::de::Error| WorkflowError::Invalid(vec![cx.plain(e.message(), *origin)]))
            }
        }
    }

    fn rest<T: DeserializeOwned>(&mut self) -> Result<T, WorkflowError> {
        match self {
            OwnKeys::Spanned { cx, span, table, origin } => {
                let rest = std::mem::take(table);
                T::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), rest)))
                    .map_err(|e| cx.toml_error(&e, *origin))
            }
            OwnKeys::Plain { cx, table, origin } => toml::Value::Table(std::mem::take(table))
                .try_into()
                .map_err(|e: toml::de::Error| WorkflowError::Invalid(vec![cx.plain(e.message(), *origin)])),
        }
    }
}

struct Cx<'a> {
    source: &'a Source,
    dir: PathBuf,
}

impl Cx<'_> {
    fn toml_error(&self, e: &toml::de::Error, origin: Option<&str>) -> WorkflowError {
        let location = e.span().map(|s| self.source.locate(s));
        let key = e.span().map(|s| self.source.path_at(s.start)).filter(|p| !p.is_empty()).map(|p| p.join("."));
        WorkflowError::Invalid(vec![Diagnostic {
            file: self.source.path.clone(),
            location,
            key,
            message: e.message().trim().to_string(),
            help: None,
            origin: origin.map(str::to_string),
        }])
    }

    fn plain(&self, message: &str, origin: Option<&str>) -> Diagnostic {
        Diagnostic {
            file: self.source.path.clone(),
            location: None,
            key: None,
            message: message.trim().to_string(),
            help: None,
            origin: origin.map(str::to_string),
        }
    }

    /// A diagnostic about a key path, located in the file where it exists.
    fn diag_at(&self, path: &[String], message: String, origin: Option<&Origin>) -> Diagnostic {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let location = match origin {
            Some(Origin::Set(_)) => None,
            Some(Origin::Sweep(key)) => self.source.locate_path(&["sweep", key]),
            None => self.source.locate_path(&parts),
        };
        Diagnostic {
            file: self.source.path.clone(),
            location,
            key: Some(path.join(".")),
            message,
            help: None,
            origin: origin.map(|o| o.to_string()),
        }
    }

    fn stage_from(
        &self,
        name: &str,
        table: &toml::Table,
        spanned: Option<Spanned<DeTable<'_>>>,
        origin: Option<&str>,
    ) -> Result<StageWire, WorkflowError> {
        let key = |field: &str| vec!["stages".to_string(), name.to_string(), field.to_string()];
        let kind = match table.get("kind") {
            Some(toml::Value::String(k)) => k.clone(),
            Some(other) => {
                return Err(self.invalid(
                    &key("kind"),
                    format!("expected a string, found a {}", other.type_str()),
                    None,
                    origin,
                ))
            }
            None => {
                let mut d = self.diag_at(&key("kind")[..2], "missing key `kind`".into(), None);
                d.help = Some(format!("add `kind = \"command\"` (kinds: {})", KINDS.join(", ")));
                d.origin = origin.map(str::to_string);
                return Err(WorkflowError::Invalid(vec![d]));
            }
        };
        // The keys every stage has and the kind's own are deserialized
        // apart, each struct denying unknown keys, spans kept.
        let common_key = |k: &str| wire::COMMON_KEYS.contains(&k);
        let (common, mut own) = match spanned {
            Some(st) => {
                let span = st.span();
                let (mut shared, mut own) = (DeTable::default(), DeTable::default());
                for (k, v) in st.into_inner() {
                    if k.get_ref() == "kind" {
                        continue;
                    }
                    if common_key(k.get_ref()) {
                        shared.insert(k, v);
                    } else {
                        own.insert(k, v);
                    }
                }
                let common =
                    wire::StageCommon::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), shared)))
                        .map_err(|e| self.toml_error(&e, origin))?;
                (common, OwnKeys::Spanned { cx: self, span, table: own, origin })
            }
            None => {
                let (mut shared, mut own) = (toml::Table::new(), toml::Table::new());
                for (k, v) in table {
                    if k == "kind" {
                        continue;
                    }
                    if common_key(k) {
                        shared.insert(k.clone(), v.clone());
                    } else {
                        own.insert(k.clone(), v.clone());
                    }
                }
                let common: wire::StageCommon = toml::Value::Table(shared)
                    .try_into()
                    .map_err(|e: toml::de::Error| WorkflowError::Invalid(vec![self.plain(e.message(), origin)]))?;
                (common, OwnKeys::Plain { cx: self, table: own, origin })
            }
        };
        match KindWire::parse(&kind, &mut own) {
            Some(parsed) => Ok(StageWire { common, kind: parsed? }),
            None => {
                let help = did_you_mean(&kind, KINDS.iter().copied())
                    .map(|k| format!("did you mean `{k}`?"))
                    .unwrap_or_else(|| format!("kinds: {}", KINDS.join(", ")));
                Err(self.invalid(&key("kind"), format!("unknown stage kind `{kind}`"), Some(help), origin))
            }
        }
    }

    fn invalid(&self, path: &[String], message: String, help: Option<String>, origin: Option<&str>) -> WorkflowError {
        let mut d = self.diag_at(path, message, None);
        d.help = help;
        d.origin = origin.map(str::to_string);
        WorkflowError::Invalid(vec![d])
    }

    fn sweep(&self, file: &WorkflowFile) -> Result<Vec<Vec<Assignment>>, WorkflowError> {
        let mut out = Vec::new();
        for (key, values) in &file.sweep {
            let at = vec!["sweep".to_string(), key.clone()];
            let path = overrides::parse_path(key).map_err(|m| self.invalid(&at, m, None, None))?;
            if path.first().is_some_and(|p| p == "workflow" || p == "sweep") {
                return Err(self.invalid(
                    &at,
                    "the [workflow] and [sweep] sections cannot be swept".into(),
                    None,
                    None,
                ));
            }
            let values = match values {
                toml::Value::Array(v) if !v.is_empty() => v,
                _ => {
                    return Err(self.invalid(&at, "a sweep value must be a non-empty list".into(), None, None));
                }
            };
            out.push(
                values
                    .iter()
                    .map(|v| Assignment { path: path.clone(), value: v.clone(), origin: Origin::Sweep(key.clone()) })
                    .collect(),
            );
        }
        Ok(out)
    }

    fn validate(
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
            if !path.is_file() {
                err(p(&["data", name, "path"]), format!("data file `{}` does not exist", d.path), None);
            }
            data.insert(name.clone(), DataSource { name: name.clone(), rel: d.path.clone(), path, format });
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
            let tokenizer = m.tokenizer.as_ref().map(|t| self.dir.join(t));
            if let Some(t) = &tokenizer {
                if !t.is_file() {
                    err(at("tokenizer"), format!("tokenizer file `{}` does not exist", t.display()), None);
                }
            }
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
            let kind = {
                let mut settings = Settings::new(&name, &self.dir, c, &models, &mut deps, &err);
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

fn product(lists: &[Vec<Assignment>]) -> Vec<Vec<&Assignment>> {
    let mut out: Vec<Vec<&Assignment>> = vec![Vec::new()];
    for list in lists {
        let mut next = Vec::new();
        for prefix in &out {
            for a in list {
                let mut v = prefix.clone();
                v.push(a);
                next.push(v);
            }
        }
        out = next;
    }
    out
}

/// Names a variant by its settings: `factor=2,lr=1e-5`, using the last
/// path segment where that is unambiguous.
fn variant_of(combo: &[&Assignment]) -> Variant {
    let lasts: Vec<&str> = combo.iter().map(|a| a.path.last().map(String::as_str).unwrap_or("")).collect();
    let settings: Vec<(String, String)> = combo
        .iter()
        .zip(&lasts)
        .map(|(a, last)| {
            let unique = lasts.iter().filter(|l| *l == last).count() == 1;
            let key = if unique { last.to_string() } else { a.path.join(".") };
            (key, overrides::display_value(&a.value))
        })
        .collect();
    let name = settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    Variant { name, settings }
}

/// The JSON Schema of the workflow format, generated from the wire types
/// (checked in as schemas/workflow.schema.json).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(WorkflowFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema is plain JSON");
    text.push('\n');
    text
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
