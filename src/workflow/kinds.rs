//! Validation of the built-in kinds' own settings (everything but the
//! keys all stages share): the pieces several kinds have in common
//! (a model reference, a sandbox, prompt templates, durations) are checked
//! once here, each kind's table by its own function.

use indexmap::IndexMap;

use super::model::Model;
use super::{did_you_mean, isolation_name, relative_dep, wire, Cx};
use crate::agent::sandbox::{ContainerSpec, Isolation, SandboxSpec};
use crate::stages::rollout::{PromptSource, RolloutLimits, RolloutModel, RolloutSpec};
use crate::stages::workspace::Workspace;
use crate::workflow::model::Dep;

/// Where a stage's diagnostics go: the stage's key path, and the sink.
pub(super) struct Check<'a> {
    stage: &'a str,
    sink: &'a dyn Fn(Vec<String>, String, Option<String>),
}

impl<'a> Check<'a> {
    pub(super) fn new(stage: &'a str, sink: &'a dyn Fn(Vec<String>, String, Option<String>)) -> Check<'a> {
        Check { stage, sink }
    }

    fn at(&self, parts: &[&str]) -> Vec<String> {
        let mut v = vec!["stages".to_string(), self.stage.to_string()];
        v.extend(parts.iter().map(|s| s.to_string()));
        v
    }

    fn fail(&self, parts: &[&str], message: String, help: Option<&str>) {
        (self.sink)(self.at(parts), message, help.map(str::to_string));
    }

    /// A duration setting in seconds (at least 1), or `default`.
    fn duration(&self, parts: &[&str], value: &Option<String>, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) => d.as_secs().max(1),
                Err(_) => {
                    self.fail(parts, format!("`{v}` is not a duration"), Some("write e.g. \"30m\""));
                    default
                }
            },
        }
    }

    fn at_least_one(&self, field: &str, value: Option<u32>) {
        if value == Some(0) {
            self.fail(&[field], format!("`{field}` must be at least 1"), None);
        }
    }

    fn needs_inputs(&self, kind: &str, c: &wire::StageCommon, names: &[&str]) {
        for name in names {
            if !c.inputs.contains_key(*name) {
                self.fail(
                    &["inputs"],
                    format!("a {kind} stage needs an input named `{name}`"),
                    Some(&format!("write e.g. `inputs = {{ {name} = \"stages.NAME\" }}`")),
                );
            }
        }
    }

    fn template(&self, parts: &[&str], text: &str) {
        if let Err(e) = minijinja::Environment::new().template_from_str(text) {
            self.fail(parts, format!("template error: {e}"), None);
        }
    }
}

impl Cx<'_> {
    /// A `model = "NAME"` reference. The tokenizer decides masking and
    /// token counts, so its content enters the key: as a dependency when it
    /// lives beside the workflow, else hashed here.
    pub(super) fn model_ref(
        &self,
        name: &str,
        models: &IndexMap<String, Model>,
        declared: &IndexMap<String, wire::ModelSection>,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> RolloutModel {
        let Some(m) = models.get(name) else {
            if !declared.contains_key(name) {
                let help = did_you_mean(name, declared.keys().map(String::as_str))
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| "declare it as [models.NAME]".into());
                ck.fail(&["model"], format!("no model named `{name}`"), Some(&help));
            }
            return RolloutModel {
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
        if let Some(t) = declared.get(name).and_then(|w| w.tokenizer.as_ref()) {
            match relative_dep(&self.dir, t) {
                Ok(dep) => deps.push(dep),
                Err(_) => {
                    tokenizer_hash = m
                        .tokenizer
                        .as_ref()
                        .and_then(|p| crate::store::statcache::hash_file(p).ok())
                        .map(|h| h.to_string())
                }
            }
        }
        RolloutModel {
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
    pub(super) fn workspace(
        &self,
        sandbox: Option<Isolation>,
        repo: &Option<String>,
        container: &Option<wire::ContainerSection>,
        ck: &Check<'_>,
    ) -> Workspace {
        let isolation = sandbox.unwrap_or_default();
        let spec = match isolation {
            Isolation::Podman | Isolation::Apptainer => {
                let cs = container.clone().unwrap_or_default();
                let program = if isolation == Isolation::Podman { "podman" } else { "apptainer" };
                let mut spec = ContainerSpec::new(cs.program.as_deref().unwrap_or(program));
                if let Some(w) = cs.workdir {
                    if !w.starts_with('/') {
                        ck.fail(&["container", "workdir"], format!("`{w}` is not an absolute path"), None);
                    }
                    spec.workdir = w;
                }
                spec.network = cs.network.unwrap_or(false);
                spec.args = cs.args;
                Some(spec)
            }
            _ => {
                if container.is_some() {
                    ck.fail(
                        &["container"],
                        format!("container settings do not apply to the `{}` sandbox", isolation_name(isolation)),
                        Some("set `sandbox = \"podman\"` or `\"apptainer\"`, or remove [container]"),
                    );
                }
                if repo.is_none() {
                    ck.fail(
                        &["repo"],
                        format!(
                            "the `{}` sandbox needs `repo`, the repository on this machine",
                            isolation_name(isolation)
                        ),
                        None,
                    );
                }
                None
            }
        };
        let image = container.as_ref().and_then(|c| c.image.clone()).unwrap_or_else(|| "{{ image_name }}".into());
        ck.template(&["container", "image"], &image);
        if let Some(t) = repo {
            ck.template(&["repo"], t);
            if !t.contains("{{") && !t.contains("{%") && !self.dir.join(t).exists() {
                ck.fail(&["repo"], format!("repository `{t}` does not exist"), None);
            }
        }
        Workspace { sandbox: SandboxSpec { isolation, container: spec }, image, repo: repo.clone() }
    }

    /// A prompt template file (a dependency) or the built-in one.
    pub(super) fn prompt(
        &self,
        parts: &[&str],
        value: &Option<String>,
        builtin: (&str, &str),
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> PromptSource {
        let Some(rel) = value else { return PromptSource { name: builtin.0.to_string(), path: None } };
        match relative_dep(&self.dir, rel) {
            Ok(dep) => {
                match std::fs::read_to_string(&dep.path) {
                    Ok(text) => {
                        if let Err(e) = minijinja::Environment::new().template_from_str(&text) {
                            ck.fail(parts, format!("{rel}: template error: {e}"), None);
                        }
                    }
                    Err(e) => ck.fail(parts, format!("cannot read `{rel}`: {e}"), None),
                }
                let source = PromptSource { name: dep.rel.clone(), path: Some(dep.path.clone()) };
                deps.push(dep);
                source
            }
            Err(m) => {
                ck.fail(parts, m, None);
                PromptSource { name: rel.clone(), path: None }
            }
        }
    }

    /// A rollout stage's own settings; the prompt templates and the
    /// model's tokenizer become dependencies (hashed by content).
    pub(super) fn rollout(
        &self,
        r: &wire::RolloutStage,
        c: &wire::StageCommon,
        models: &IndexMap<String, Model>,
        declared: &IndexMap<String, wire::ModelSection>,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> RolloutSpec {
        self.agent("rollout", r, c, models, declared, deps, ck)
    }

    /// The agent's settings, as rollout and swebench_eval have them.
    #[allow(clippy::too_many_arguments)]
    fn agent(
        &self,
        kind: &str,
        r: &wire::RolloutStage,
        c: &wire::StageCommon,
        models: &IndexMap<String, Model>,
        declared: &IndexMap<String, wire::ModelSection>,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> RolloutSpec {
        let model = self.model_ref(&r.model, models, declared, deps, ck);
        ck.needs_inputs(kind, c, &["instances"]);
        ck.at_least_one("attempts", r.attempts);
        ck.at_least_one("parallel", r.parallel);
        let workspace = self.workspace(r.sandbox, &r.repo, &r.container, ck);
        let defaults = crate::agent::episode::Limits::default();
        let l = &r.limits;
        let limits = RolloutLimits {
            max_steps: l.max_steps.unwrap_or(defaults.max_steps),
            wall_s: ck.duration(&["limits", "wall"], &l.wall, defaults.wall.as_secs()),
            max_total_tokens: l.max_total_tokens.unwrap_or(defaults.max_total_tokens),
            max_format_errors: l.max_format_errors.unwrap_or(defaults.max_format_errors),
            command_timeout_s: ck.duration(
                &["limits", "command_timeout"],
                &l.command_timeout,
                defaults.command_timeout.as_secs(),
            ),
        };
        let system_prompt =
            self.prompt(&["prompts", "system"], &r.prompts.system, crate::agent::prompts::SYSTEM, deps, ck);
        let instance_prompt =
            self.prompt(&["prompts", "instance"], &r.prompts.instance, crate::agent::prompts::INSTANCE, deps, ck);
        let serve = r.serve.as_ref().map(|sv| self.serve(sv, c, ck));
        RolloutSpec {
            model,
            serve,
            attempts: r.attempts.unwrap_or(1),
            parallel: r.parallel.unwrap_or(8),
            workspace,
            limits,
            system_prompt,
            instance_prompt,
            exclude: r.exclude.clone(),
        }
    }

    pub(super) fn test_filter(
        &self,
        t: &wire::TestFilterStage,
        c: &wire::StageCommon,
        ck: &Check<'_>,
    ) -> crate::stages::test_filter::TestFilterSpec {
        use crate::stages::testrun::{TestSettings, DEFAULT_TEST_CMD};
        ck.needs_inputs("test_filter", c, &["trajectories", "instances"]);
        ck.at_least_one("parallel", t.parallel);
        let workspace = self.workspace(t.sandbox, &t.repo, &t.container, ck);
        let test_cmd = t.test_cmd.clone().unwrap_or_else(|| DEFAULT_TEST_CMD.into());
        ck.template(&["test_cmd"], &test_cmd);
        crate::stages::test_filter::TestFilterSpec {
            workspace,
            tests: TestSettings { test_cmd, parser: t.parser, timeout_s: ck.duration(&["timeout"], &t.timeout, 1800) },
            keep: t.keep.unwrap_or_default(),
            parallel: t.parallel.unwrap_or(8),
        }
    }

    pub(super) fn segment(
        &self,
        sg: &wire::SegmentStage,
        c: &wire::StageCommon,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> crate::stages::segment::SegmentSpec {
        ck.needs_inputs("segment", c, &["trajectories"]);
        let window = sg.window.unwrap_or(32768);
        if window < 256 {
            ck.fail(&["window"], format!("a window of {window} tokens cannot hold a sample"), None);
        }
        for (field, v) in [("max_trajectories", sg.max_trajectories), ("max_per_instance", sg.max_per_instance)] {
            if v == Some(0) {
                ck.fail(&[field], format!("`{field}` must be at least 1"), None);
            }
        }
        let (tokenizer, tokenizer_hash) = self.tokenizer_file(&["tokenizer"], &sg.tokenizer, deps, ck);
        crate::stages::segment::SegmentSpec {
            window,
            tokenizer,
            tokenizer_hash,
            max_trajectories: sg.max_trajectories,
            max_per_instance: sg.max_per_instance,
            seed: sg.seed.unwrap_or(0),
        }
    }

    /// A tokenizer.json setting: its path, and its content hash when it is
    /// outside the workflow's directory (inside, it is a dependency).
    fn tokenizer_file(
        &self,
        parts: &[&str],
        value: &Option<String>,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> (Option<std::path::PathBuf>, Option<String>) {
        let Some(t) = value else { return (None, None) };
        let path = self.dir.join(t);
        if !path.is_file() {
            ck.fail(parts, format!("tokenizer file `{}` does not exist", path.display()), None);
            return (Some(path), None);
        }
        match relative_dep(&self.dir, t) {
            Ok(dep) => {
                deps.push(dep);
                (Some(path), None)
            }
            Err(_) => {
                let hash = crate::store::statcache::hash_file(&path).ok().map(|h| h.to_string());
                (Some(path), hash)
            }
        }
    }

    pub(super) fn issue_synthesis(
        &self,
        is: &wire::IssueSynthesisStage,
        c: &wire::StageCommon,
        models: &IndexMap<String, Model>,
        declared: &IndexMap<String, wire::ModelSection>,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> crate::stages::issue_synthesis::IssueSynthesisSpec {
        use crate::agent::prompts::{SYNTHESIS_DEMONSTRATIONS, SYNTHESIS_INSTANCE, SYNTHESIS_SYSTEM};
        use crate::stages::testrun::TestSettings;
        let model = self.model_ref(&is.model, models, declared, deps, ck);
        ck.needs_inputs("issue_synthesis", c, &["instances"]);
        ck.at_least_one("parallel", is.parallel);
        let workspace = self.workspace(is.sandbox, &is.repo, &is.container, ck);
        let test_cmd = is.test_cmd.clone().unwrap_or_else(|| crate::stages::issue_synthesis::DEFAULT_TEST_CMD.into());
        ck.template(&["test_cmd"], &test_cmd);
        let p = &is.prompts;
        let system_prompt = self.prompt(&["prompts", "system"], &p.system, SYNTHESIS_SYSTEM, deps, ck);
        let demonstrations_prompt =
            self.prompt(&["prompts", "demonstrations"], &p.demonstrations, SYNTHESIS_DEMONSTRATIONS, deps, ck);
        let instance_prompt = self.prompt(&["prompts", "instance"], &p.instance, SYNTHESIS_INSTANCE, deps, ck);
        crate::stages::issue_synthesis::IssueSynthesisSpec {
            model,
            workspace,
            tests: TestSettings { test_cmd, parser: is.parser, timeout_s: ck.duration(&["timeout"], &is.timeout, 600) },
            system_prompt,
            demonstrations_prompt,
            instance_prompt,
            max_demonstrations: is.max_demonstrations.unwrap_or(3),
            max_tests: is.max_tests.unwrap_or(3),
            max_output_chars: is.max_output_chars.unwrap_or(8000),
            parallel: is.parallel.unwrap_or(8),
            serve: is.serve.as_ref().map(|sv| self.serve(sv, c, ck)),
        }
    }

    pub(super) fn sft(
        &self,
        t: &wire::SftStage,
        c: &wire::StageCommon,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> crate::stages::sft::SftSpec {
        use crate::stages::sft::{qwen2_5_component, qwen2_5_shards, Launch, SftSpec};
        ck.needs_inputs("sft", c, &["samples"]);
        if c.resources.shards.is_some_and(|n| n > 1) {
            ck.fail(&["resources", "shards"], "an sft stage is one training run: it cannot be sharded".into(), None);
        }
        let m = &t.model;
        let (component, size_files) = match (&m.component, &m.size) {
            (Some(comp), _) => (comp.clone(), None),
            (None, Some(size)) => match qwen2_5_component(size) {
                Some(comp) => (comp, qwen2_5_shards(size)),
                None => {
                    ck.fail(
                        &["model", "size"],
                        format!("no Qwen2.5 model of size `{size}`"),
                        Some("sizes: 0.5B, 1.5B, 3B, 7B, 14B, 32B, 72B"),
                    );
                    (String::new(), None)
                }
            },
            (None, None) => {
                ck.fail(&["model"], "name the student: `size = \"32B\"` or `component = \"…\"`".into(), None);
                (String::new(), None)
            }
        };
        if m.component.is_none() && !m.args.is_empty() {
            ck.fail(&["model", "args"], "`args` go with `component`".into(), None);
        }
        let mut model_args = std::collections::BTreeMap::new();
        for (k, v) in &m.args {
            match super::toml_to_json(v) {
                Ok(j) => {
                    model_args.insert(k.clone(), j);
                }
                Err(e) => ck.fail(&["model", "args", k], e, None),
            }
        }
        let base_model = m
            .name
            .clone()
            .unwrap_or_else(|| component.rsplit('.').next().unwrap_or_default().trim_end_matches("_base").to_string());
        let checkpoint_files = match &t.checkpoint_files {
            Some(v) => super::toml_to_json(v).unwrap_or_else(|e| {
                ck.fail(&["checkpoint_files"], e, None);
                serde_json::Value::Null
            }),
            None => match size_files {
                Some(1) => serde_json::json!("model.safetensors"),
                Some(n) => serde_json::json!({"filename_format": "model-{}-of-{}.safetensors", "max_filenames": n}),
                None => {
                    ck.fail(&["checkpoint_files"], "name the checkpoint's files for a custom model".into(), None);
                    serde_json::Value::Null
                }
            },
        };
        let checkpointer = match t.checkpointer.as_deref() {
            None | Some("hf") => "torchtune.training.FullModelHFCheckpointer".to_string(),
            Some("torchtune") => "torchtune.training.FullModelTorchTuneCheckpointer".to_string(),
            Some(other) => other.to_string(),
        };
        let launch = t.launch.unwrap_or_default();
        let nnodes =
            t.nnodes.unwrap_or_else(|| if launch == Launch::Slurm { c.resources.nodes.unwrap_or(1) } else { 1 });
        let nproc_per_node = t.nproc_per_node.unwrap_or(if launch == Launch::Slurm { 4 } else { 1 });
        ck.at_least_one("nnodes", t.nnodes);
        ck.at_least_one("nproc_per_node", t.nproc_per_node);
        match launch {
            Launch::Local if nnodes > 1 => ck.fail(
                &["nnodes"],
                format!("`launch = \"local\"` runs on one node, not {nnodes}"),
                Some("use `launch = \"slurm\"` for several nodes"),
            ),
            Launch::Slurm if nnodes > 1 && c.resources.nodes.is_none() => ck.fail(
                &["resources", "nodes"],
                format!("a {nnodes}-node run needs its nodes from SLURM"),
                Some(&format!("set `resources = {{ nodes = {nnodes} }}`")),
            ),
            _ => {}
        }
        // `{{ size }}` in checkpoint_dir: one setting for a sweep over sizes.
        let checkpoint_dir = match minijinja::Environment::new()
            .render_str(&t.checkpoint_dir, minijinja::context! { size => m.size.clone().unwrap_or_default() })
        {
            Ok(dir) => dir,
            Err(e) => {
                ck.fail(&["checkpoint_dir"], format!("template error: {e}"), None);
                t.checkpoint_dir.clone()
            }
        };
        let (vocab, merges) = match &t.tokenizer {
            Some(tk) => (tk.vocab.clone(), tk.merges.clone()),
            None => (format!("{checkpoint_dir}/vocab.json"), format!("{checkpoint_dir}/merges.txt")),
        };
        let template = t.config_template.as_ref().and_then(|rel| match relative_dep(&self.dir, rel) {
            Ok(dep) => {
                match std::fs::read_to_string(&dep.path) {
                    Ok(text) => ck.template(&["config_template"], &text),
                    Err(e) => ck.fail(&["config_template"], format!("cannot read `{rel}`: {e}"), None),
                }
                let path = dep.path.clone();
                deps.push(dep);
                Some(path)
            }
            Err(e) => {
                ck.fail(&["config_template"], e, None);
                None
            }
        });
        let dtype = t.dtype.clone().unwrap_or_else(|| "bf16".into());
        if !["bf16", "fp32"].contains(&dtype.as_str()) {
            ck.fail(&["dtype"], format!("`{dtype}` is not bf16 or fp32"), None);
        }
        SftSpec {
            base_model,
            model_component: component,
            model_args,
            checkpoint_dir,
            checkpoint_files,
            checkpointer,
            model_type: t.model_type.clone().unwrap_or_else(|| "QWEN2".into()),
            vocab,
            merges,
            max_seq_len: t.max_seq_len.unwrap_or(32768),
            lr: t.lr.unwrap_or(5e-5),
            weight_decay: t.weight_decay.unwrap_or(0.0),
            warmup_steps: t.warmup_steps.unwrap_or(100),
            epochs: t.epochs.unwrap_or(3),
            max_steps_per_epoch: t.max_steps_per_epoch,
            batch_size: t.batch_size.unwrap_or(1),
            gradient_accumulation_steps: t.gradient_accumulation_steps.unwrap_or(8),
            clip_grad_norm: Some(t.clip_grad_norm.unwrap_or(1.0)),
            seed: t.seed.unwrap_or(0),
            dtype,
            device: t.device.clone().unwrap_or_else(|| "cuda".into()),
            activation_checkpointing: t.activation_checkpointing.unwrap_or(true),
            activation_offloading: t.activation_offloading.unwrap_or(true),
            fsdp_cpu_offload: t.fsdp_cpu_offload.unwrap_or(false),
            launch,
            nnodes,
            nproc_per_node,
            tune: t.tune.clone().unwrap_or_else(|| "tune".into()),
            rdzv_port: t.rdzv_port.unwrap_or(29500),
            template,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn swebench_eval(
        &self,
        e: &wire::EvalStage,
        c: &wire::StageCommon,
        models: &IndexMap<String, Model>,
        declared: &IndexMap<String, wire::ModelSection>,
        deps: &mut Vec<Dep>,
        ck: &Check<'_>,
    ) -> crate::stages::swebench_eval::EvalSpec {
        use crate::stages::swebench_eval::{EvalSpec, Protocol, DEFAULT_TEST_CMD};
        let as_rollout = wire::RolloutStage {
            model: e.model.clone(),
            attempts: None,
            parallel: e.parallel,
            sandbox: e.sandbox,
            repo: e.repo.clone(),
            container: e.container.clone(),
            limits: e.limits.clone(),
            prompts: e.prompts.clone(),
            exclude: e.exclude.clone(),
            serve: e.serve.clone(),
        };
        let agent = self.agent("swebench_eval", &as_rollout, c, models, declared, deps, ck);
        let protocol = match (e.attempts_until_submit, e.samples) {
            (Some(_), Some(_)) => {
                ck.fail(&["samples"], "`samples` and `attempts_until_submit` are two protocols: set one".into(), None);
                Protocol::UntilSubmit(3)
            }
            (None, Some(n)) => Protocol::Samples(n),
            (Some(n), None) => Protocol::UntilSubmit(n),
            (None, None) => Protocol::UntilSubmit(3),
        };
        ck.at_least_one("samples", e.samples);
        ck.at_least_one("attempts_until_submit", e.attempts_until_submit);
        let test_cmd = e.test_cmd.clone().unwrap_or_else(|| DEFAULT_TEST_CMD.into());
        ck.template(&["test_cmd"], &test_cmd);
        EvalSpec {
            agent,
            protocol,
            tests: crate::stages::testrun::TestSettings {
                test_cmd,
                parser: e.parser,
                timeout_s: ck.duration(&["timeout"], &e.timeout, 1800),
            },
        }
    }

    /// An inference server the stage's job starts (`[serve]`).
    pub(super) fn serve(
        &self,
        sv: &wire::ServeSection,
        c: &wire::StageCommon,
        ck: &Check<'_>,
    ) -> crate::stages::command::Serve {
        if let Some(stage) = sv.model.strip_prefix("stages.") {
            let named = c.inputs.values().any(|r| r == &sv.model);
            if !named {
                ck.fail(
                    &["serve", "model"],
                    format!("to serve what stages.{stage} trained, name it as an input"),
                    Some(&format!("add e.g. `model = \"stages.{stage}\"` to `inputs`")),
                );
            }
        }
        let startup_timeout_s = ck.duration(&["serve", "startup_timeout"], &sv.startup_timeout, 20 * 60);
        // A model given as a path next to the workflow is handed over absolute.
        let local = self.dir.join(&sv.model);
        let model_path = if !std::path::Path::new(&sv.model).is_absolute() && local.exists() {
            local.to_string_lossy().into_owned()
        } else {
            sv.model.clone()
        };
        crate::stages::command::Serve {
            engine: sv.engine,
            model: sv.model.clone(),
            model_path,
            args: sv.args.clone(),
            port: sv.port,
            startup_timeout_s,
            python: sv.python.clone().unwrap_or_else(|| "python3".into()),
        }
    }
}
