//! The `command` kind: a shell command rendered with minijinja and run by
//! bash in the workflow's directory. It sees `{{ inputs.NAME }}` (a file
//! path per input), `{{ params.NAME }}` and `{{ output }}`. With
//! `format = "jsonl"` inputs arrive as JSON Lines and the JSON Lines the
//! command writes are stored as Parquet, so plain shell tools can take part.
//! A sharded stage (`resources.shards = N`) runs the command once per shard
//! with `{{ shard.index }}` and `{{ shard.count }}`; each writes its part.

mod settings;
pub use settings::CommandStage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indexmap::IndexMap;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::store::table;
use crate::store::TableFormat;
use swestar_vocab::supervise::{run_supervised, Ended};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub run: String,
    pub format: TableFormat,
    #[serde(default)]
    pub serve: Option<Serve>,
}

pub use swestar_vocab::serve::Serve;

/// Environment variables every command gets besides the declared ones:
/// what a shell needs to find programs and behave, nothing experiment-
/// specific.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "SHELL"];

/// Variables a scheduler sets for the allocation, passed through besides `SLURM_*`.
const SCHEDULER_ENV: &[&str] =
    &["CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SWESTAR_SERVE_URL"];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("quote", |v: minijinja::Value| shell_quote(&v.to_string()));
    env
}

pub use swestar_vocab::shell::shell_quote;

/// Checks a `run` template when the workflow is loaded: it must parse, and
/// every `inputs.X` / `params.X` it uses must exist.
pub fn check_template(
    run: &str,
    inputs: &IndexMap<String, String>,
    params: &toml::Table,
    serves: bool,
) -> Result<(), String> {
    let env = environment();
    let tmpl = env.template_from_str(run).map_err(|e| template_error("", &e))?;
    let mut problems = Vec::new();
    let mut used: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    used.sort();
    for var in used {
        let mut parts = var.splitn(2, '.');
        let (head, rest) = (parts.next().unwrap_or(""), parts.next());
        match (head, rest) {
            ("inputs", Some(name)) if !inputs.contains_key(name) => {
                problems.push(format!("`{{{{ inputs.{name} }}}}` is not an input of this stage"))
            }
            ("params", Some(name)) if !params.contains_key(name) => {
                problems.push(format!("`{{{{ params.{name} }}}}` is not a parameter of this stage"))
            }
            ("inputs" | "params" | "output" | "stage" | "shard", _) => {}
            ("serve", _) if serves => {}
            ("serve", _) => problems.push("the command uses `serve`, but the stage has no [serve] section".to_string()),
            (other, _) => problems.push(format!(
                "the command uses `{other}`, which is not defined (it can use inputs, params, output, stage, shard and serve)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn template_error(what: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(" (line {l} of the command)")).unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{what}template error{line}: {}{detail}", e.kind())
}

/// Renders the command for a job.
pub fn render(
    spec: &CommandSpec,
    stage: &str,
    shard: &ShardRun,
    inputs: &BTreeMap<String, String>,
    params: &BTreeMap<String, Value>,
    output: &str,
) -> Result<String, StageError> {
    let env = environment();
    let tmpl = env.template_from_str(&spec.run).map_err(|e| StageError::Template(template_error("", &e)))?;
    let ctx = serde_json::json!({
        "inputs": inputs,
        "params": params,
        "output": output,
        "stage": stage,
        "shard": { "index": shard.index, "count": shard.count },
        "serve": { "base_url": std::env::var("SWESTAR_SERVE_URL").unwrap_or_default() },
    });
    tmpl.render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
        .map_err(|e| StageError::Template(template_error("cannot render the command: ", &e)))
}

impl Kind for CommandSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "command";
    type Wire = settings::CommandStage;

    fn validate(wire: settings::CommandStage, s: &mut Settings<'_>) -> CommandSpec {
        settings::validate(wire, s)
    }

    fn serve(&self) -> Option<&Serve> {
        self.serve.as_ref()
    }

    fn definition(&self) -> BTreeMap<String, Value> {
        let format = match self.format {
            TableFormat::Parquet => "parquet",
            TableFormat::Jsonl => "jsonl",
        };
        let mut def: BTreeMap<String, Value> = [
            ("run".to_string(), Value::String(self.run.clone())),
            ("format".to_string(), Value::String(format.to_string())),
        ]
        .into();
        // The model and its arguments shape what the command gets back; where
        // the server listens and how long it may take to start do not.
        if let Some(s) = &self.serve {
            def.insert(
                "serve".to_string(),
                serde_json::json!({ "engine": s.engine, "model": s.model, "args": s.args }),
            );
        }
        def
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        let mut inputs = BTreeMap::new();
        for (name, input) in &job.inputs {
            let path = hand_over(name, &input.paths, input.format, self.format, &shard.tmp)?;
            inputs.insert(name.clone(), path.to_string_lossy().into_owned());
        }
        let part = shard.output.clone();
        let output = match self.format {
            TableFormat::Parquet => part.clone(),
            TableFormat::Jsonl => shard.tmp.join("output.jsonl"),
        };
        let script = render(self, &job.stage, shard, &inputs, &job.params, &output.to_string_lossy())?;
        run_bash(&script, job, shard, &output)?;
        if !output.is_file() {
            return Err(StageError::NoOutput(output));
        }
        match self.format {
            TableFormat::Parquet => {
                table::parquet_info(&part)?;
            }
            TableFormat::Jsonl => {
                table::jsonl_to_parquet(&output, &part)?;
            }
        }
        Ok(())
    }
}

/// The path an input is handed to the command as, converting between
/// Parquet and JSON Lines (or joining parts) only when needed.
fn hand_over(
    name: &str,
    paths: &[PathBuf],
    have: TableFormat,
    want: TableFormat,
    tmp: &Path,
) -> Result<PathBuf, StageError> {
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    match (have, want) {
        (TableFormat::Jsonl, TableFormat::Jsonl) if table::is_json_array(&paths[0])? => {
            // A JSON array of rows is handed over as JSON Lines.
            let dst = tmp.join(format!("input-{name}.jsonl"));
            std::fs::write(&dst, table::json_array_to_lines(&paths[0])?)
                .map_err(|source| StageError::Io { path: dst.clone(), source })?;
            Ok(dst)
        }
        (a, b) if a == b && paths.len() == 1 => Ok(paths[0].clone()),
        (TableFormat::Parquet, TableFormat::Parquet) => {
            let dst = tmp.join(format!("input-{name}.parquet"));
            table::concat_parquet(&refs, &dst)?;
            Ok(dst)
        }
        (TableFormat::Parquet, TableFormat::Jsonl) => {
            let dst = tmp.join(format!("input-{name}.jsonl"));
            table::parquet_to_jsonl(&refs, &dst)?;
            Ok(dst)
        }
        (TableFormat::Jsonl, _) => {
            // Data sources are single files; JSON Lines become Parquet here.
            let dst = tmp.join(format!("input-{name}.parquet"));
            table::jsonl_to_parquet(&paths[0], &dst)?;
            Ok(dst)
        }
    }
}

pub(super) fn run_bash(script: &str, job: &Job, shard: &ShardRun, output: &Path) -> Result<(), StageError> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!("set -eo pipefail\n{script}")).current_dir(&job.workdir).env_clear().stdin(Stdio::null());
    for var in BASE_ENV.iter().copied().chain(job.env.iter().map(String::as_str)) {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    // What the scheduler says about the allocation (job ids, node lists,
    // the GPUs it granted) belongs to where the stage runs, not to what it
    // computes: passed through, never part of the key.
    for (var, v) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("SLURM_") || SCHEDULER_ENV.contains(&name.as_ref()) {
            cmd.env(&var, v);
        }
    }
    cmd.env("TMPDIR", &shard.tmp)
        .env("SWESTAR_SHARD", shard.index.to_string())
        .env("SWESTAR_SHARDS", shard.count.to_string())
        .env("SWESTAR_STAGE", &job.stage)
        .env("SWESTAR_KEY", &job.key)
        .env("SWESTAR_OUTPUT", output);
    let limit = job.time_limit_s.map(Duration::from_secs);
    match run_supervised(&mut cmd, limit).map_err(StageError::Spawn)? {
        Ended::Exited(0) => Ok(()),
        Ended::Exited(code) => Err(StageError::Exit(code)),
        Ended::Signaled(sig) => Err(StageError::Signal(sig)),
        Ended::TimedOut => Err(StageError::Timeout(job.time_limit_s.unwrap_or(0))),
        Ended::Terminated => Err(StageError::Terminated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(names: &[&str]) -> IndexMap<String, String> {
        names.iter().map(|n| (n.to_string(), "data.x".to_string())).collect()
    }

    #[test]
    fn check_template_names_unknown_inputs_and_params() {
        let params: toml::Table = toml::from_str("factor = 2").unwrap();
        assert!(check_template("x {{ inputs.a }} {{ params.factor }} {{ output }}", &inputs(&["a"]), &params, false)
            .is_ok());
        let e = check_template("{{ inputs.b }} {{ params.fator }}", &inputs(&["a"]), &params, false).unwrap_err();
        assert!(e.contains("inputs.b") && e.contains("params.fator"), "{e}");
        let e = check_template("{{ oops }}", &inputs(&[]), &params, false).unwrap_err();
        assert!(e.contains("`oops`"), "{e}");
        let e = check_template("{% if %}", &inputs(&[]), &params, false).unwrap_err();
        assert!(e.contains("template error"), "{e}");
    }

    #[test]
    fn a_server_s_model_and_args_enter_the_key_its_port_and_timeout_do_not() {
        let serve = Serve {
            engine: swestar_vocab::serve::Engine::Vllm,
            model: "Qwen/Qwen2.5-Coder-32B-Instruct".into(),
            model_path: "Qwen/Qwen2.5-Coder-32B-Instruct".into(),
            args: vec!["--tensor-parallel-size".into(), "4".into()],
            port: Some(8000),
            startup_timeout_s: 600,
            python: "python3".into(),
        };
        let spec = |serve: Serve| CommandSpec { run: "x".into(), format: TableFormat::Parquet, serve: Some(serve) };
        let base = spec(serve.clone()).definition();
        let moved = spec(Serve { port: Some(9000), startup_timeout_s: 60, python: "/opt/py".into(), ..serve.clone() });
        assert_eq!(moved.definition(), base);
        let other = spec(Serve { model: "Qwen/Qwen2.5-Coder-7B-Instruct".into(), ..serve.clone() });
        assert_ne!(other.definition(), base);
        let args = spec(Serve { args: vec![], ..serve });
        assert_ne!(args.definition(), base);
    }

    #[test]
    fn render_fills_paths_and_params() {
        let spec = CommandSpec {
            run: "cp {{ inputs.a }} {{ output }} # {{ params.k }}".into(),
            format: TableFormat::Parquet,
            serve: None,
        };
        let shard = ShardRun {
            index: 0,
            count: 1,
            output: "/o.parquet".into(),
            tmp: "/t".into(),
            cancel: swestar_vocab::supervise::Cancel::process(),
        };
        let out = render(
            &spec,
            "s",
            &shard,
            &[("a".to_string(), "/x/a.parquet".to_string())].into(),
            &[("k".to_string(), serde_json::json!(5e-5))].into(),
            "/o.parquet",
        )
        .unwrap();
        assert_eq!(out, "cp /x/a.parquet /o.parquet # 0.00005");
    }
}
