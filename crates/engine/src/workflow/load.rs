//! Reading a workflow file: the TOML with its spans, a stage table split
//! into the common keys and the kind's own, the sweep's and `--set`'s
//! assignments, and one validated workflow per variant.

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::overrides::{self, Assignment, Origin};
use super::wire::{self, WorkflowFile};
use super::{did_you_mean, Cx, Loaded, Source, Variant, WorkflowError};
use crate::stages::api::WireSource;
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
    // `--set 'sweep."KEY"=[...]'` replaces (or adds) a sweep's values; any
    // other `--set` applies to every variant.
    let (narrowing, assignments): (Vec<Assignment>, Vec<Assignment>) =
        assignments.into_iter().partition(|a| a.path.first().is_some_and(|p| p == "sweep"));
    let sweep = cx.sweep(&file, &narrowing)?;
    for a in &assignments {
        if let Some(list) = sweep.iter().find(|list| list.first().is_some_and(|s| s.path == a.path)) {
            let Origin::Sweep(key) = &list[0].origin else { continue };
            return Err(WorkflowError::Argument(format!(
                "{}: `{key}` is swept, and this would give every variant the same value while their names say otherwise; narrow the sweep instead: --set 'sweep.\"{key}\"=[{}]'",
                a.origin,
                overrides::display_value(&a.value)
            )));
        }
    }

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
pub(super) struct StageWire {
    pub(super) common: wire::StageCommon,
    pub(super) kind: KindWire,
}

/// A stage table's own keys (all but `kind` and the common ones), as a
/// kind reads them: in groups, then the rest, each group denying unknown
/// keys. With the file's spans when there are any, so that an error
/// points at its key.
enum OwnKeys<'c, 'de> {
    Spanned {
        cx: &'c Cx<'c>,
        span: std::ops::Range<usize>,
        table: DeTable<'de>,
        origin: Option<&'c str>,
        kind: &'c str,
        taken: Vec<String>,
    },
    Plain {
        cx: &'c Cx<'c>,
        table: toml::Table,
        origin: Option<&'c str>,
        kind: &'c str,
        taken: Vec<String>,
    },
}

impl WireSource for OwnKeys<'_, '_> {
    type Error = WorkflowError;

    fn take<T: DeserializeOwned>(&mut self, keys: &[&str]) -> Result<T, WorkflowError> {
        match self {
            OwnKeys::Spanned { cx, span, table, origin, taken, .. } => {
                taken.extend(keys.iter().map(|k| k.to_string()));
                let mut part = DeTable::default();
                for key in keys {
                    if let Some((k, v)) = table.remove_entry(*key) {
                        part.insert(k, v);
                    }
                }
                T::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), part)))
                    .map_err(|e| cx.toml_error(&e, *origin))
            }
            OwnKeys::Plain { cx, table, origin, taken, .. } => {
                taken.extend(keys.iter().map(|k| k.to_string()));
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
            OwnKeys::Spanned { cx, span, table, origin, kind, taken } => {
                let rest = std::mem::take(table);
                T::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), rest)))
                    .map_err(|e| unknown_key_help(cx.toml_error(&e, *origin), kind, taken))
            }
            OwnKeys::Plain { cx, table, origin, kind, taken } => toml::Value::Table(std::mem::take(table))
                .try_into()
                .map_err(|e: toml::de::Error| WorkflowError::Invalid(vec![cx.plain(e.message(), *origin)]))
                .map_err(|e| unknown_key_help(e, kind, taken)),
        }
    }
}

/// serde names only the last group's fields when a stage has a key no
/// group took: the help names every key a stage of this kind takes, and
/// the close one when there is one (`parms` → `params`, a common key).
fn unknown_key_help(mut error: WorkflowError, kind: &str, taken: &[String]) -> WorkflowError {
    let WorkflowError::Invalid(diags) = &mut error else { return error };
    for d in diags.iter_mut() {
        let Some(rest) = d.message.strip_prefix("unknown field `") else { continue };
        let quoted: Vec<String> = rest.split('`').step_by(2).map(str::to_string).collect();
        let Some((unknown, expected)) = quoted.split_first() else { continue };
        let mut own: Vec<&str> = taken.iter().map(String::as_str).collect();
        for k in expected.iter().filter(|k| !k.is_empty()) {
            if !own.contains(&k.as_str()) {
                own.push(k);
            }
        }
        let every: Vec<&str> = std::iter::once("kind").chain(wire::COMMON_KEYS.iter().copied()).collect();
        d.message = format!("unknown field `{unknown}` for a `{kind}` stage");
        let lists = format!("a `{kind}` stage takes {}; every stage takes {}", own.join(", "), every.join(", "));
        d.help = Some(match did_you_mean(unknown, own.iter().chain(&every).copied()) {
            Some(close) => format!("did you mean `{close}`? ({lists})"),
            None => lists,
        });
    }
    error
}

impl Cx<'_> {
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
                (common, OwnKeys::Spanned { cx: self, span, table: own, origin, kind: &kind, taken: Vec::new() })
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
                (common, OwnKeys::Plain { cx: self, table: own, origin, kind: &kind, taken: Vec::new() })
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

    /// The sweep's lists of assignments, after `narrowing` (`--set
    /// sweep.KEY=[...]`) replaced or added lists.
    fn sweep(&self, file: &WorkflowFile, narrowing: &[Assignment]) -> Result<Vec<Vec<Assignment>>, WorkflowError> {
        let mut lists = file.sweep.clone();
        for a in narrowing {
            let [_, key] = a.path.as_slice() else {
                return Err(WorkflowError::Argument(format!(
                    "{}: write --set 'sweep.\"stages.NAME.KEY\"=[v1, v2]' to replace a sweep's values",
                    a.origin
                )));
            };
            lists.insert(key.clone(), a.value.clone());
        }
        let mut out = Vec::new();
        for (key, values) in &lists {
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
            // Two equal values would make two variants with one name.
            let shown: Vec<String> = values.iter().map(overrides::display_value).collect();
            if let Some(dup) = shown.iter().enumerate().find(|(i, v)| shown[..*i].contains(v)).map(|(_, v)| v) {
                return Err(self.invalid(
                    &at,
                    format!("the value {dup} is listed twice: each value makes one variant, named by it"),
                    None,
                    None,
                ));
            }
            out.push(
                values
                    .iter()
                    .map(|v| Assignment { path: path.clone(), value: v.clone(), origin: Origin::Sweep(key.clone()) })
                    .collect(),
            );
        }
        Ok(out)
    }
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
