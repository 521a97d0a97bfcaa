//! Job scripts, one builder for both backends: a stage's SLURM resources
//! (executor defaults overridden by the stage) and the minijinja template
//! that turns them into the script `sbatch` receives, and that the local
//! backend runs with bash for a stage that starts an inference server. Built-in templates ship inside the binary; a stage
//! may name its own. Options that change per submission (job name, array
//! spec, log paths, excluded nodes) go on sbatch's command line instead,
//! so that `swestar render` prints exactly what is submitted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};

use crate::cache::CacheKey;
use crate::workflow::{Resources, SlurmSection};
use swestar_vocab::serve::{Engine, Serve};
use swestar_vocab::shell::shell_quote;

/// The built-in templates: generic, and with an inference server.
pub const GENERIC: (&str, &str) =
    ("templates/slurm/generic.sh.j2", include_str!("../../../../templates/slurm/generic.sh.j2"));
pub const SERVE: (&str, &str) =
    ("templates/slurm/serve.sh.j2", include_str!("../../../../templates/slurm/serve.sh.j2"));

#[derive(Debug, thiserror::Error)]
#[error("{template}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RenderError {
    /// The template's path (built-in ones by their path in the repository).
    pub template: String,
    pub line: Option<usize>,
    pub message: String,
}

/// What a job script needs to know about one stage.
#[derive(Debug, Clone)]
pub struct ScriptInput<'a> {
    pub stage: &'a str,
    pub key: &'a CacheKey,
    pub shards: u32,
    pub workdir: &'a Path,
    pub stage_dir: &'a Path,
    pub job_file: &'a Path,
    /// The swestar binary on compute nodes.
    pub exe: &'a Path,
    pub resources: &'a Resources,
    pub defaults: &'a SlurmSection,
    /// The workflow's own template, if the stage names one.
    pub template: Option<&'a Path>,
    /// The inference server to start, if the stage has one.
    pub serve: Option<&'a Serve>,
    /// What the stage body launches across the allocation, if anything.
    pub allocation_launch: Option<&'a str>,
}

/// `#SBATCH` options from the executor's defaults and the stage's overrides.
pub fn sbatch_options(resources: &Resources, defaults: &SlurmSection) -> Vec<String> {
    let mut out = Vec::new();
    let mut opt = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push(format!("--{name}={v}"));
        }
    };
    opt("account", resources.account.clone().or_else(|| defaults.account.clone()));
    opt("partition", resources.partition.clone().or_else(|| defaults.partition.clone()));
    opt("qos", resources.qos.clone().or_else(|| defaults.qos.clone()));
    opt("time", resources.time.or(defaults.time).map(|t| slurm_time(t.std())));
    opt("nodes", resources.nodes.or(defaults.nodes).map(|n| n.to_string()));
    opt("gpus-per-node", resources.gpus.or(defaults.gpus_per_node).map(|n| n.to_string()));
    opt("cpus-per-task", resources.cpus.or(defaults.cpus_per_task).map(|n| n.to_string()));
    opt("mem", resources.mem.clone().or_else(|| defaults.mem.clone()));
    out.extend(defaults.sbatch.iter().cloned());
    out.extend(resources.sbatch.iter().cloned());
    out
}

/// SLURM's `[D-]HH:MM:SS`, rounded up to whole minutes as SLURM counts them.
pub fn slurm_time(d: Duration) -> String {
    let mins = d.as_secs().div_ceil(60).max(1);
    let (days, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    if days > 0 {
        format!("{days}-{h:02}:{m:02}:00")
    } else {
        format!("{h:02}:{m:02}:00")
    }
}

/// Renders the job script of a stage.
pub fn render(input: &ScriptInput<'_>) -> Result<String, RenderError> {
    let (name, source): (String, String) = match input.template {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| RenderError {
                template: path.display().to_string(),
                line: None,
                message: e.to_string(),
            })?,
        ),
        None if input.serve.is_some() => (SERVE.0.to_string(), SERVE.1.to_string()),
        None => (GENERIC.0.to_string(), GENERIC.1.to_string()),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("quote", |v: minijinja::Value| shell_quote(&v.to_string()));
    let err = |e: minijinja::Error| RenderError {
        template: name.clone(),
        line: e.line(),
        message: match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    let tmpl = env.template_from_named_str(&name, &source).map_err(err)?;
    let task = "${SLURM_ARRAY_TASK_ID:-0}";
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let exec = format!("{} exec --job {} --shard {task}/{}", q(input.exe), q(input.job_file), input.shards);
    let exit_file = format!("{}/exit-{task}", q(input.stage_dir));
    let mut setup = input.defaults.setup.clone();
    setup.extend(input.resources.setup.iter().cloned());
    let ctx = serde_json::json!({
        "stage": input.stage,
        "key": input.key.as_str(),
        "shards": input.shards,
        "workdir": input.workdir,
        "stage_dir": input.stage_dir,
        "job_file": input.job_file,
        "exe": input.exe,
        "sbatch": sbatch_options(input.resources, input.defaults),
        "setup": setup,
        "exec": exec,
        "allocation_launch": input.allocation_launch.map(|l| l.lines().collect::<Vec<_>>()),
        "exit_file": exit_file,
        "task": task,
        "serve": input.serve.map(|sv| {
            let (launch, health) = Serve::launch_command(sv);
            let engine = match sv.engine {
                Engine::Sglang => "sglang",
                Engine::Vllm => "vllm",
                Engine::LlamaCpp => "llama.cpp",
            };
            serde_json::json!({
                "engine": engine,
                "model": sv.model,
                "launch": launch,
                "health": health,
                "port": sv.port,
                "python": shell_quote(&sv.python),
                "startup_timeout_s": sv.startup_timeout_s,
            })
        }),
    });
    let mut text = tmpl.render(minijinja::Value::from(minijinja::value::Serde(&ctx))).map_err(err)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Where a shard's exit-code file is.
pub fn exit_file(stage_dir: &Path, shard: u32) -> PathBuf {
    stage_dir.join(format!("exit-{shard}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        resources: &'a Resources,
        defaults: &'a SlurmSection,
        key: &'a CacheKey,
        template: Option<&'a Path>,
    ) -> ScriptInput<'a> {
        ScriptInput {
            stage: "rollout",
            key,
            shards: 8,
            workdir: Path::new("/work/exp"),
            stage_dir: Path::new("/store/staging/abc"),
            job_file: Path::new("/store/staging/abc/job.json"),
            exe: Path::new("/opt/swestar"),
            resources,
            defaults,
            template,
            serve: None,
            allocation_launch: None,
        }
    }

    #[test]
    fn stage_resources_override_executor_defaults() {
        let defaults = SlurmSection {
            account: Some("proj".into()),
            partition: Some("gpu".into()),
            time: Some(Duration::from_secs(4 * 3600).into()),
            gpus_per_node: Some(4),
            sbatch: vec!["--exclusive".into()],
            setup: vec!["module load cuda".into()],
            ..Default::default()
        };
        let resources = Resources {
            partition: Some("debug".into()),
            time: Some(Duration::from_secs(90 * 60).into()),
            cpus: Some(16),
            mem: Some("64G".into()),
            sbatch: vec!["--constraint=a100".into()],
            setup: vec!["export X=1".into()],
            ..Default::default()
        };
        assert_eq!(
            sbatch_options(&resources, &defaults),
            [
                "--account=proj",
                "--partition=debug",
                "--time=01:30:00",
                "--gpus-per-node=4",
                "--cpus-per-task=16",
                "--mem=64G",
                "--exclusive",
                "--constraint=a100"
            ]
        );
        let key = CacheKey::parse(&"ab".repeat(32)).unwrap();
        let text = render(&input(&resources, &defaults, &key, None)).unwrap();
        let expected = format!(
            "#!/bin/bash
#SBATCH --account=proj
#SBATCH --partition=debug
#SBATCH --time=01:30:00
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
#SBATCH --exclusive
#SBATCH --constraint=a100
# swestar stage rollout, key {key}: shard ${{SLURM_ARRAY_TASK_ID:-0}} of 8
set -eo pipefail
# The exit-code file is the final word on how this shard ended.
exit_file=/store/staging/abc/exit-${{SLURM_ARRAY_TASK_ID:-0}}
trap 'echo $? > \"$exit_file.tmp\" && mv -f \"$exit_file.tmp\" \"$exit_file\"' EXIT
# Stopped (scancel, preemption, time limit): say so, never a false 0.
trap 'exit 143' TERM
trap 'exit 130' INT
module load cuda
export X=1
cd /work/exp
/opt/swestar exec --job /store/staging/abc/job.json --shard ${{SLURM_ARRAY_TASK_ID:-0}}/8
"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn serve_stages_get_the_server_lifecycle() {
        let serve = Serve {
            engine: Engine::LlamaCpp,
            model: "models/smol.gguf".into(),
            model_path: "/work/exp/models/smol.gguf".into(),
            args: vec!["--n_ctx".into(), "2048".into()],
            port: None,
            startup_timeout_s: 600,
            python: "/venv/bin/python".into(),
        };
        let (r, d) = (Resources::default(), SlurmSection::default());
        let key = CacheKey::parse(&"ab".repeat(32)).unwrap();
        let mut i = input(&r, &d, &key, None);
        i.serve = Some(&serve);
        let text = render(&i).unwrap();
        assert!(text.contains("# with a llama.cpp server for models/smol.gguf"), "{text}");
        assert!(text.contains(
            "setsid /venv/bin/python -m llama_cpp.server --model /work/exp/models/smol.gguf --host 127.0.0.1 --port \"$port\" --n_ctx 2048 > \"$server_log\" 2>&1 &"
        ), "{text}");
        assert!(text.contains("curl -sf -o /dev/null \"http://127.0.0.1:$port/v1/models\""), "{text}");
        assert!(text.contains("deadline=$((SECONDS + 600))"), "{text}");
        assert!(text.contains("port=$(/venv/bin/python -c"), "a free port is picked: {text}");
        assert!(text.contains("export SWESTAR_SERVE_URL=\"http://127.0.0.1:$port/v1\""), "{text}");
        let fixed = Serve { port: Some(30000), engine: Engine::Sglang, ..serve.clone() };
        i.serve = Some(&fixed);
        let text = render(&i).unwrap();
        assert!(text.contains("port=30000"), "{text}");
        assert!(text.contains("-m sglang.launch_server --model-path /work/exp/models/smol.gguf"), "{text}");
        assert!(text.contains(":$port/health\""), "{text}");
        let (launch, health) = Serve::launch_command(&Serve { engine: Engine::Vllm, ..serve });
        assert!(launch.contains("-m vllm.entrypoints.openai.api_server --model"), "{launch}");
        assert_eq!(health, "/health");
    }

    #[test]
    fn slurm_times_round_up_to_minutes() {
        assert_eq!(slurm_time(Duration::from_secs(30)), "00:01:00");
        assert_eq!(slurm_time(Duration::from_secs(90 * 60)), "01:30:00");
        assert_eq!(slurm_time(Duration::from_secs(26 * 3600 + 61)), "1-02:02:00");
    }

    #[test]
    fn template_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.sh.j2");
        std::fs::write(&path, "#!/bin/bash\n#SBATCH --x\n{{ exec }}\n{% for x in %}\n").unwrap();
        let (r, d) = (Resources::default(), SlurmSection::default());
        let key = CacheKey::parse(&"ab".repeat(32)).unwrap();
        let e = render(&input(&r, &d, &key, Some(&path))).unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.to_string().starts_with(&format!("{}:4: syntax error", path.display())), "{e}");
        std::fs::write(&path, "#!/bin/bash\n\n{{ nope }}\n").unwrap();
        let e = render(&input(&r, &d, &key, Some(&path))).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("undefined"), "{e}");
    }
}
