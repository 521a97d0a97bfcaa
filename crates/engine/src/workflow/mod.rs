//! Workflow files: reading the TOML, applying `--set` and `[sweep]`,
//! checking every name, reference and path, and producing one validated
//! [`Workflow`] per variant. Every error names the file, line, column and
//! key; nothing downstream re-validates.

mod load;
pub mod model;
pub mod overrides;
pub mod source;
mod validate;
pub mod wire;

use std::fmt;
use std::path::PathBuf;

pub use model::*;
use overrides::Origin;
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

impl Diagnostic {
    /// One line: where, which key, what (no snippet).
    pub fn line(&self) -> String {
        let at = match &self.location {
            Some(loc) => loc.to_string(),
            None => self.file.display().to_string(),
        };
        match &self.key {
            Some(key) => format!("{at}: key `{key}`: {}", self.message),
            None => format!("{at}: {}", self.message),
        }
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
pub use load::load;

/// What reading and validating one workflow file share: its text (for
/// locations) and its directory (for paths).
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

    fn invalid(&self, path: &[String], message: String, help: Option<String>, origin: Option<&str>) -> WorkflowError {
        let mut d = self.diag_at(path, message, None);
        d.help = help;
        d.origin = origin.map(str::to_string);
        WorkflowError::Invalid(vec![d])
    }
}

/// The JSON Schema of the workflow format, generated from the wire types
/// (checked in as schemas/workflow.schema.json).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(WorkflowFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema is plain JSON");
    text.push('\n');
    text
}
