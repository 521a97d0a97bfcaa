//! Validating a kind's settings: [`Settings`] is what a kind's `validate`
//! sees (the stage's name and common keys, the workflow's directory and
//! models, where its problems and file dependencies go) and holds the
//! checks several kinds share: a model reference, a workspace, prompt
//! templates, tokenizers, tests, a served model.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use swestar_vocab::duration::{Duration, DurationText};
use swestar_vocab::serve::Serve;

use super::model::{Dep, Model, PromptSource, StageModel};
use super::wire::{ServeSection, StageCommon, TestDefaults, TestsSection, WorkspaceSection};
use crate::agent::sandbox::{ContainerSpec, Isolation, SandboxSpec};
use crate::support::testrun::TestSettings;
use crate::support::workspace::Workspace;

/// Where diagnostics go: a key path under `stages.NAME`, a message, a help.
pub type Sink<'a> = &'a dyn Fn(Vec<String>, String, Option<String>);

/// Where what is missing on this machine goes (a file the stage reads that
/// is not there yet): the full key path and a message. Such a stage is
/// valid, but cannot run until it appears.
pub type UnmetSink<'a> = &'a dyn Fn(Vec<String>, String);

/// What a kind's validation sees of the workflow, and where it reports.
pub struct Settings<'a> {
    /// The stage's name.
    pub stage: &'a str,
    /// Absolute directory of the workflow file.
    pub dir: &'a Path,
    /// The keys every stage has.
    pub common: &'a StageCommon,
    models: &'a IndexMap<String, Model>,
    deps: &'a mut Vec<Dep>,
    sink: Sink<'a>,
    unmet: UnmetSink<'a>,
}

impl<'a> Settings<'a> {
    pub fn new(
        stage: &'a str,
        dir: &'a Path,
        common: &'a StageCommon,
        models: &'a IndexMap<String, Model>,
        deps: &'a mut Vec<Dep>,
        sink: Sink<'a>,
        unmet: UnmetSink<'a>,
    ) -> Settings<'a> {
        Settings { stage, dir, common, models, deps, sink, unmet }
    }

    /// Reports a file at `stages.NAME.<parts>` that is not there yet: the
    /// stage cannot run until it is, but the workflow is valid.
    pub fn missing(&self, parts: &[&str], message: String) {
        let mut at = vec!["stages".to_string(), self.stage.to_string()];
        at.extend(parts.iter().map(|s| s.to_string()));
        (self.unmet)(at, message);
    }

    /// Reports a problem at `stages.NAME.<parts>`.
    pub fn fail(&self, parts: &[&str], message: String, help: Option<&str>) {
        let mut at = vec!["stages".to_string(), self.stage.to_string()];
        at.extend(parts.iter().map(|s| s.to_string()));
        (self.sink)(at, message, help.map(str::to_string));
    }

    /// A file whose content enters the key.
    pub fn depend(&mut self, dep: Dep) {
        self.deps.push(dep);
    }

    pub fn needs_inputs(&self, kind: &str, names: &[&str]) {
        for name in names {
            if !self.common.inputs.contains_key(*name) {
                self.fail(
                    &["inputs"],
                    format!("a {kind} stage needs an input named `{name}`"),
                    Some(&format!("write e.g. `inputs = {{ {name} = \"stages.NAME\" }}`")),
                );
            }
        }
    }

    /// A duration setting, reported here when it did not parse.
    pub fn duration(&self, parts: &[&str], value: &DurationText) -> Duration {
        value.parsed().unwrap_or_else(|text| {
            self.fail(parts, format!("`{text}` is not a duration"), Some("write e.g. \"30m\" or \"2h 30m\""));
            Duration::from_secs(1)
        })
    }

    /// A minijinja template must at least parse.
    pub fn template(&self, parts: &[&str], text: &str) {
        if let Err(e) = minijinja::Environment::new().template_from_str(text) {
            self.fail(parts, format!("template error: {e}"), None);
        }
    }

    /// A file beside the workflow, named relative to it.
    pub fn relative_dep(&self, rel: &str) -> Result<Dep, String> {
        relative_dep(self.dir, rel)
    }

    /// A `model = "NAME"` reference. The tokenizer decides masking and
    /// token counts, so its content enters the key: as a dependency when it
    /// lives beside the workflow, else hashed here.
    pub fn model_ref(&mut self, name: &str) -> StageModel {
        let Some(m) = self.models.get(name) else {
            let help = did_you_mean(name, self.models.keys().map(String::as_str))
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| "declare it as [models.NAME]".into());
            self.fail(&["model"], format!("no model named `{name}`"), Some(&help));
            return StageModel {
                tokenizer_hash: None,
                name: name.to_string(),
                config: crate::agent::llm::ModelConfig::new("", ""),
                api_key_env: None,
                tokenizer: None,
                budget: crate::agent::condense::Budget { window: 1, reserve: 0 },
                policy: Default::default(),
            };
        };
        let mut tokenizer_hash = None;
        if let Some(path) = m.tokenizer.as_ref().filter(|p| !p.is_file()) {
            let at = vec!["models".to_string(), m.name.clone(), "tokenizer".to_string()];
            (self.unmet)(at, format!("tokenizer file `{}` does not exist", path.display()));
        } else if let Some(t) = &m.tokenizer_rel {
            match relative_dep(self.dir, t) {
                Ok(dep) => self.deps.push(dep),
                Err(_) => {
                    tokenizer_hash = m
                        .tokenizer
                        .as_ref()
                        .and_then(|p| crate::store::statcache::hash_file(p).ok())
                        .map(|h| h.to_string())
                }
            }
        }
        StageModel {
            tokenizer_hash,
            name: m.name.clone(),
            config: m.config.clone(),
            api_key_env: m.api_key_env.clone(),
            tokenizer: m.tokenizer.clone(),
            budget: m.budget,
            policy: m.policy,
        }
    }

    /// `sandbox`, `repo` and `[container]`: where the stage's sandboxes
    /// come from.
    pub fn workspace(&self, w: &WorkspaceSection) -> Workspace {
        let isolation = w.sandbox;
        let spec = match isolation {
            Isolation::Podman | Isolation::Apptainer => {
                let program = if isolation == Isolation::Podman { "podman" } else { "apptainer" };
                let mut spec = ContainerSpec::new(program);
                if let Some(cs) = &w.container {
                    if let Some(p) = &cs.program {
                        spec.program = p.clone();
                    }
                    if !cs.workdir.starts_with('/') {
                        self.fail(&["container", "workdir"], format!("`{}` is not an absolute path", cs.workdir), None);
                    }
                    spec.workdir = cs.workdir.clone();
                    spec.network = cs.network;
                    spec.args = cs.args.clone();
                }
                Some(spec)
            }
            _ => {
                if w.container.is_some() {
                    self.fail(
                        &["container"],
                        format!("container settings do not apply to the `{}` sandbox", isolation.name()),
                        Some("set `sandbox = \"podman\"` or `\"apptainer\"`, or remove [container]"),
                    );
                }
                if w.repo.is_none() {
                    self.fail(
                        &["repo"],
                        format!("the `{}` sandbox needs `repo`, the repository on this machine", isolation.name()),
                        None,
                    );
                }
                None
            }
        };
        let image = w.container.as_ref().map(|c| c.image.clone()).unwrap_or_else(super::wire::default_image);
        self.template(&["container", "image"], &image);
        if let Some(t) = &w.repo {
            self.template(&["repo"], t);
            if !t.contains("{{") && !t.contains("{%") && !self.dir.join(t).exists() {
                self.missing(&["repo"], format!("repository `{t}` does not exist"));
            }
        }
        Workspace { sandbox: SandboxSpec { isolation, container: spec }, image, repo: w.repo.clone() }
    }

    /// `test_cmd`, `parser` and `timeout`.
    pub fn tests<D: TestDefaults>(&self, t: &TestsSection<D>) -> TestSettings {
        self.template(&["test_cmd"], &t.test_cmd);
        TestSettings {
            test_cmd: t.test_cmd.clone(),
            parser: t.parser,
            timeout_s: self.duration(&["timeout"], &t.timeout).secs(),
        }
    }

    /// A prompt template file (a dependency) or the built-in one.
    pub fn prompt(&mut self, parts: &[&str], value: &Option<String>, builtin: (&str, &str)) -> PromptSource {
        let Some(rel) = value else { return PromptSource { name: builtin.0.to_string(), path: None } };
        match relative_dep(self.dir, rel) {
            Ok(dep) => {
                match std::fs::read_to_string(&dep.path) {
                    Ok(text) => {
                        if let Err(e) = minijinja::Environment::new().template_from_str(&text) {
                            self.fail(parts, format!("{rel}: template error: {e}"), None);
                        }
                    }
                    Err(e) => self.fail(parts, format!("cannot read `{rel}`: {e}"), None),
                }
                let source = PromptSource { name: dep.rel.clone(), path: Some(dep.path.clone()) };
                self.deps.push(dep);
                source
            }
            Err(m) => {
                self.fail(parts, m, None);
                PromptSource { name: rel.clone(), path: None }
            }
        }
    }

    /// A tokenizer.json setting: its path, and its content hash when it is
    /// outside the workflow's directory (inside, it is a dependency).
    pub fn tokenizer_file(&mut self, parts: &[&str], value: &Option<String>) -> (Option<PathBuf>, Option<String>) {
        let Some(t) = value else { return (None, None) };
        let path = self.dir.join(t);
        if !path.is_file() {
            self.missing(parts, format!("tokenizer file `{}` does not exist", path.display()));
            return (Some(path), None);
        }
        match relative_dep(self.dir, t) {
            Ok(dep) => {
                self.deps.push(dep);
                (Some(path), None)
            }
            Err(_) => {
                let hash = crate::store::statcache::hash_file(&path).ok().map(|h| h.to_string());
                (Some(path), hash)
            }
        }
    }

    /// An inference server the stage's job starts (`[serve]`).
    pub fn serve(&self, sv: &ServeSection) -> Serve {
        if let Some(stage) = sv.model.strip_prefix("stages.") {
            let named = self.common.inputs.values().any(|r| r == &sv.model);
            if !named {
                self.fail(
                    &["serve", "model"],
                    format!("to serve what stages.{stage} trained, name it as an input"),
                    Some(&format!("add e.g. `model = \"stages.{stage}\"` to `inputs`")),
                );
            }
        }
        // A model given as a path next to the workflow is handed over absolute.
        let local = self.dir.join(&sv.model);
        let model_path = if !Path::new(&sv.model).is_absolute() && local.exists() {
            local.to_string_lossy().into_owned()
        } else {
            sv.model.clone()
        };
        Serve {
            engine: sv.engine,
            model: sv.model.clone(),
            model_path,
            args: sv.args.clone(),
            port: sv.port,
            startup_timeout_s: self.duration(&["serve", "startup_timeout"], &sv.startup_timeout).secs(),
            python: sv.python.clone(),
        }
    }
}

/// A file named relative to the workflow's directory, which must exist.
pub fn relative_dep(dir: &Path, d: &str) -> Result<Dep, String> {
    let rel = Path::new(d);
    if rel.is_absolute() {
        return Err(format!("`{d}` must be relative to the workflow's directory"));
    }
    let path = dir.join(rel);
    if !path.is_file() {
        return Err(format!("file `{d}` does not exist"));
    }
    let rel = rel
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    Ok(Dep { rel, path })
}

/// The closest name within edit distance 2 (or a third of its length).
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

// Small enough that a crate for it would cost more in compile time than it saves.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// TOML values as JSON, the form parameters take in cache keys and templates.
pub fn toml_to_json(v: &toml::Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{f} is not a finite number"))?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter().map(|(k, v)| Ok((k.clone(), toml_to_json(v)?))).collect::<Result<_, String>>()?,
        ),
    })
}

/// A non-zero count as a serde default: `#[serde(default = "crate::api::count::<8>")]`.
pub fn count<const N: u32>() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(N).unwrap_or(std::num::NonZeroU32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_names_only() {
        assert_eq!(did_you_mean("doubel", ["double", "total"]), Some("double"));
        assert_eq!(did_you_mean("xyz", ["double", "total"]), None);
    }

    #[test]
    fn json_conversion_rejects_non_finite_floats() {
        assert!(toml_to_json(&toml::Value::Float(f64::NAN)).is_err());
        assert_eq!(toml_to_json(&toml::Value::Float(5e-5)).unwrap(), serde_json::json!(5e-5));
    }
}
