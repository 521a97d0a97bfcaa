//! Why a stage runs: the differences between the preimage of its cached
//! artifact and its current one, as reasons a user reads (`plan`,
//! `run`, run records).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::Node;
use crate::cache::{self, Change, Difference, Preimage};

/// Why a stage runs. Rendered by the CLI; serialized with a `reason` tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// `--force` / `--force-all`.
    Forced,
    NoCachedArtifact,
    ArtifactMissing,
    ArtifactCorrupt {
        detail: String,
    },
    CacheFormatChanged {
        old: u32,
        new: u32,
    },
    KindChanged {
        old: String,
        new: String,
    },
    ImplVersionChanged {
        old: u32,
        new: u32,
    },
    CommandChanged,
    SettingChanged {
        name: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    ParamChanged {
        name: String,
        old: Value,
        new: Value,
    },
    ParamAdded {
        name: String,
        value: Value,
    },
    ParamRemoved {
        name: String,
        value: Value,
    },
    DataChanged {
        path: String,
    },
    FileChanged {
        path: String,
    },
    FileAdded {
        path: String,
    },
    FileRemoved {
        path: String,
    },
    UpstreamChanged {
        stage: String,
    },
    InputAdded {
        name: String,
    },
    InputRemoved {
        name: String,
    },
    EnvChanged {
        name: String,
    },
    PendingUpstream {
        stage: String,
    },
    /// A file it reads is not there yet (located: file:line:col, key).
    NotRunnable {
        what: String,
    },
    UpstreamNotRunnable {
        stage: String,
    },
}

impl Reason {
    /// Caused by something upstream rather than by this stage itself.
    pub fn is_cascade(&self) -> bool {
        matches!(
            self,
            Reason::PendingUpstream { .. } | Reason::UpstreamChanged { .. } | Reason::UpstreamNotRunnable { .. }
        )
    }

    /// The stage cannot run on this machine yet.
    pub fn blocks(&self) -> bool {
        matches!(self, Reason::NotRunnable { .. } | Reason::UpstreamNotRunnable { .. })
    }
}

/// A parameter value as a user would write it (`5e-5`, not `0.00005`).
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(|f| format!("{f:?}")).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced"),
            Reason::NoCachedArtifact => write!(f, "no cached artifact"),
            Reason::ArtifactMissing => write!(f, "cached artifact was removed from the store"),
            Reason::ArtifactCorrupt { detail } => {
                write!(f, "cached artifact is damaged ({detail})")
            }
            Reason::CacheFormatChanged { old, new } => {
                write!(f, "cache key format changed {old} → {new}")
            }
            Reason::KindChanged { old, new } => write!(f, "stage kind changed {old} → {new}"),
            Reason::ImplVersionChanged { old, new } => {
                write!(f, "stage implementation version changed {old} → {new}")
            }
            Reason::CommandChanged => write!(f, "command changed"),
            Reason::SettingChanged { name, old, new } => {
                let o = old.as_ref().map(show).unwrap_or_else(|| "(unset)".into());
                let n = new.as_ref().map(show).unwrap_or_else(|| "(unset)".into());
                write!(f, "setting {name} changed {o} → {n}")
            }
            Reason::ParamChanged { name, old, new } => {
                write!(f, "parameter {name} changed {} → {}", show(old), show(new))
            }
            Reason::ParamAdded { name, value } => {
                write!(f, "parameter {name} added ({})", show(value))
            }
            Reason::ParamRemoved { name, value } => {
                write!(f, "parameter {name} removed (was {})", show(value))
            }
            Reason::DataChanged { path } => write!(f, "data source {path} changed"),
            Reason::FileChanged { path } => write!(f, "file {path} changed"),
            Reason::FileAdded { path } => write!(f, "file {path} added"),
            Reason::FileRemoved { path } => write!(f, "file {path} removed"),
            Reason::UpstreamChanged { stage } => write!(f, "upstream {stage} produced new content"),
            Reason::InputAdded { name } => write!(f, "input {name} added"),
            Reason::InputRemoved { name } => write!(f, "input {name} removed"),
            Reason::EnvChanged { name } => write!(f, "environment variable {name} changed"),
            Reason::PendingUpstream { stage } => write!(f, "upstream {stage} reruns"),
            Reason::NotRunnable { what } => write!(f, "cannot run yet: {what}"),
            Reason::UpstreamNotRunnable { stage } => write!(f, "cannot run yet: upstream {stage} cannot run"),
        }
    }
}

/// Turns preimage differences into reasons a user reads.
pub fn reasons(node: &Node, old: &Preimage, new: &Preimage, ignore: &[&str]) -> Vec<Reason> {
    let upstream_of =
        |input: &str| node.upstream.iter().find(|e| e.input.as_deref() == Some(input)).map(|e| e.stage.clone());
    cache::diff(old, new, ignore)
        .into_iter()
        .map(|d| match d {
            Difference::Schema { old, new } => Reason::CacheFormatChanged { old, new },
            Difference::Kind { old, new } => Reason::KindChanged { old, new },
            Difference::ImplVersion { old, new } => Reason::ImplVersionChanged { old, new },
            Difference::Definition { name, .. } if name == "run" => Reason::CommandChanged,
            Difference::Definition { name, change } => {
                let (old, new) = match change {
                    Change::Added(n) => (None, Some(n)),
                    Change::Removed(o) => (Some(o), None),
                    Change::Changed(o, n) => (Some(o), Some(n)),
                };
                Reason::SettingChanged { name, old, new }
            }
            Difference::Param { name, change } => match change {
                Change::Added(value) => Reason::ParamAdded { name, value },
                Change::Removed(value) => Reason::ParamRemoved { name, value },
                Change::Changed(old, new) => Reason::ParamChanged { name, old, new },
            },
            Difference::File { path, change } => match change {
                Change::Added(_) => Reason::FileAdded { path },
                Change::Removed(_) => Reason::FileRemoved { path },
                Change::Changed(..) => Reason::FileChanged { path },
            },
            Difference::Input { name, change } => match change {
                Change::Added(_) => Reason::InputAdded { name },
                Change::Removed(_) => Reason::InputRemoved { name },
                Change::Changed(..) => match (node.data.get(&name), upstream_of(&name)) {
                    (Some(d), _) => Reason::DataChanged { path: d.rel.clone() },
                    (None, Some(stage)) => Reason::UpstreamChanged { stage },
                    (None, None) => Reason::InputAdded { name },
                },
            },
            Difference::Need { stage, change } => match change {
                Change::Changed(..) => Reason::UpstreamChanged { stage },
                Change::Added(_) => Reason::InputAdded { name: format!("needs {stage}") },
                Change::Removed(_) => Reason::InputRemoved { name: format!("needs {stage}") },
            },
            Difference::Env { name } => Reason::EnvChanged { name },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_render_as_the_cli_promises() {
        let r = Reason::ParamChanged { name: "lr".into(), old: serde_json::json!(5e-5), new: serde_json::json!(1e-5) };
        assert_eq!(r.to_string(), "parameter lr changed 5e-5 → 1e-5");
        assert_eq!(
            Reason::UpstreamChanged { stage: "segment".into() }.to_string(),
            "upstream segment produced new content"
        );
        assert_eq!(
            Reason::DataChanged { path: "data/x.parquet".into() }.to_string(),
            "data source data/x.parquet changed"
        );
        assert_eq!(Reason::NoCachedArtifact.to_string(), "no cached artifact");
        assert_eq!(Reason::CommandChanged.to_string(), "command changed");
        assert_eq!(
            Reason::ImplVersionChanged { old: 1, new: 2 }.to_string(),
            "stage implementation version changed 1 → 2"
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["reason"], "param_changed");
    }
}
