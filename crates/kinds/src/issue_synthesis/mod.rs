//! The `issue_synthesis` kind: SWE-smith instances get problem statements
//! written by a model from what the bug does.
//!
//! For each instance: a sandbox at its buggy state, its FAIL_TO_PASS
//! tests run there (their output captured); an instance whose tests do
//! not all fail with the bug is dropped and reported in the stage's log.
//! Then the source of up to `max_tests` failing test functions is read,
//! the prompt rendered (templates/prompts/issue_synthesis/: a system
//! message, the demonstration issues, the instance with its bug patch,
//! test output and test sources) and the model asked once (temperature 0
//! unless the model sets one). The output is the instances table with
//! `problem_statement` filled, `synthesis_prompt_hash` (blake3 of the
//! rendered messages) and `synthesis_model`. Instances are processed
//! concurrently and recorded in order, so a killed shard resumes (see
//! [`crate::support::rowwise`]); a lost model endpoint fails the shard at that
//! instance.

mod settings;
pub use settings::IssueSynthesisStage;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rowwise::{self, LogOrder, Row, RowWork};
use super::testrun::{last_lines, run_test_cmd, TestSettings};
use super::workspace::{Hosts, Sources, Workspace};
use crate::agent::llm::{LlmClient, Message};
use crate::agent::prompts;
use crate::agent::sandbox::Sandbox;
use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::api::{PromptSource, StageModel};
use crate::store::rows;
use crate::swebench::{self as swb, grading, parsers};
use swestar_vocab::serve::Serve;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueSynthesisSpec {
    pub model: StageModel,
    pub workspace: Workspace,
    pub tests: TestSettings,
    pub system_prompt: PromptSource,
    pub demonstrations_prompt: PromptSource,
    pub instance_prompt: PromptSource,
    pub max_demonstrations: usize,
    /// Failing tests whose source goes into the prompt.
    pub max_tests: usize,
    /// Test output longer than this (characters) keeps its head and tail.
    pub max_output_chars: usize,
    pub parallel: u32,
    /// A server the job starts for the model; its URL replaces base_url.
    pub serve: Option<Serve>,
}

/// The default test command: the failing tests by id, with short
/// tracebacks (what a user would see).
pub const DEFAULT_TEST_CMD: &str = "python3 -m pytest -rA --tb=short -p no:cacheprovider {{ tests }}";

impl Kind for IssueSynthesisSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "issue_synthesis";
    type Wire = settings::IssueSynthesisStage;

    fn validate(wire: settings::IssueSynthesisStage, s: &mut Settings<'_>) -> IssueSynthesisSpec {
        settings::validate(wire, s)
    }

    fn serve(&self) -> Option<&Serve> {
        self.serve.as_ref()
    }

    const HEADLINE: &'static [&'static str] = &["rows_out"];

    fn stats(&self, shards: &[std::path::PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        Ok(crate::rowwise::row_stats(shards))
    }

    fn definition(&self) -> BTreeMap<String, Value> {
        let mut model = self.model.sampling_key();
        model["temperature"] = json!(self.model.config.temperature.unwrap_or(0.0));
        BTreeMap::from([
            ("model".into(), model),
            ("sandbox".into(), self.workspace.definition()),
            ("tests".into(), self.tests.definition()),
            ("system_prompt".into(), self.system_prompt.key(prompts::SYNTHESIS_SYSTEM)),
            ("demonstrations_prompt".into(), self.demonstrations_prompt.key(prompts::SYNTHESIS_DEMONSTRATIONS)),
            ("instance_prompt".into(), self.instance_prompt.key(prompts::SYNTHESIS_INSTANCE)),
            // The demonstrations are an input (hashed by content).
            ("max_demonstrations".into(), json!(self.max_demonstrations)),
            ("max_tests".into(), json!(self.max_tests)),
            ("max_output_chars".into(), json!(self.max_output_chars)),
            ("serve".into(), crate::api::serve_key(&self.serve)),
        ])
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        rowwise::drive(self, job, shard)
    }
}

/// What every instance's synthesis in a shard shares.
pub struct Synthesis {
    spec: IssueSynthesisSpec,
    client: LlmClient,
    prompts: Prompts,
    hosts: Hosts,
}

impl RowWork for IssueSynthesisSpec {
    const NAME: &'static str = "issue_synthesis";
    const INPUT: &'static str = "instances";
    const NOUN: &'static str = "instances";
    const UNIT: &'static str = "instance";
    const ORDER: LogOrder = LogOrder::Ordered;
    type Shared = Synthesis;

    fn parallel(&self) -> u32 {
        self.parallel
    }

    fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    fn schema(&self, job: &Job) -> Result<SchemaRef, StageError> {
        let input = job.inputs.get(Self::INPUT).ok_or_else(|| StageError::Failed("no `instances` input".into()))?;
        Ok(output_schema(&super::test_filter::input_schema(&input.paths, input.format)?))
    }

    fn shared(&self, job: &Job, shard: &ShardRun) -> Result<Synthesis, StageError> {
        Ok(Synthesis {
            spec: self.clone(),
            prompts: self.load_prompts(job)?,
            client: self.client()?,
            hosts: Hosts::of(job, shard),
        })
    }

    async fn check(s: &Synthesis) -> Result<(), StageError> {
        s.spec.model.reach(&s.client).await
    }

    async fn work(s: Arc<Synthesis>, row: Value, _unit: u32) -> Result<Row, String> {
        let h = &s.hosts;
        s.spec.synthesize(row, &s.client, &s.prompts, &h.workdir, &h.sources, &h.env).await
    }

}

/// The rendered-once parts of the prompt.
struct Prompts {
    system: String,
    demonstrations: String,
    instance: (String, String),
}

impl IssueSynthesisSpec {
    fn client(&self) -> Result<LlmClient, StageError> {
        let mut config = self.model.runtime_config(self.serve.is_some())?;
        config.temperature = Some(config.temperature.unwrap_or(0.0));
        LlmClient::new(config).map_err(|e| StageError::Failed(e.to_string()))
    }

    /// The prompt parts every instance shares; the demonstrations are the
    /// `problem_statement` column of the optional `demonstrations` input.
    fn load_prompts(&self, job: &Job) -> Result<Prompts, StageError> {
        let load = |p: &PromptSource, builtin: (&'static str, &'static str)| -> Result<(String, String), StageError> {
            Ok((p.name.clone(), p.load(builtin)?))
        };
        let mut demos = Vec::new();
        if let Some(input) = job.inputs.get("demonstrations") {
            for batch in
                rows::Table::open(&input.paths, input.format)?.read_columns(0, u64::MAX, Some(&["problem_statement"]))
            {
                for row in batch? {
                    if demos.len() == self.max_demonstrations {
                        break;
                    }
                    match row.get("problem_statement").and_then(Value::as_str) {
                        Some(ps) if !ps.trim().is_empty() => demos.push(shorten(ps, 2000)),
                        _ => {
                            return Err(StageError::Failed(
                                "a `demonstrations` row without a `problem_statement`".into(),
                            ))
                        }
                    }
                }
            }
        }
        let render = |t: (String, String), ctx: &Value| {
            prompts::render_value((t.0.as_str(), t.1.as_str()), ctx).map_err(StageError::Template)
        };
        let system = render(load(&self.system_prompt, prompts::SYNTHESIS_SYSTEM)?, &json!({}))?;
        let demonstrations = render(
            load(&self.demonstrations_prompt, prompts::SYNTHESIS_DEMONSTRATIONS)?,
            &json!({ "demonstrations": demos }),
        )?;
        let instance = load(&self.instance_prompt, prompts::SYNTHESIS_INSTANCE)?;
        Ok(Prompts { system, demonstrations, instance })
    }

    /// One instance's problem statement (`None`: dropped, reported).
    async fn synthesize(
        &self,
        row: Value,
        client: &LlmClient,
        prompts: &Prompts,
        workdir: &std::path::Path,
        sources: &Sources,
        env: &[(String, String)],
    ) -> Result<Row, String> {
        let id = row.get("instance_id").and_then(Value::as_str).unwrap_or_default().to_string();
        let f2p = swb::test_list(row.get("FAIL_TO_PASS")).map_err(|e| format!("{id}: FAIL_TO_PASS: {e}"))?;
        if f2p.is_empty() {
            swestar_vocab::progress!("issue_synthesis: dropped {id}: it has no FAIL_TO_PASS tests");
            return Ok(Row::dropped("no FAIL_TO_PASS tests"));
        }
        let sandbox = self.workspace.open(&row, workdir, sources).await.map_err(|e| format!("{id}: {e}"))?;
        let evidence = self.evidence(&sandbox, &row, &f2p, env).await;
        let _ = tokio::task::spawn_blocking(move || drop(sandbox)).await;
        let (test_output, test_sources) = match evidence.map_err(|e| format!("{id}: {e}"))? {
            Ok(found) => found,
            Err(why) => {
                swestar_vocab::progress!("issue_synthesis: dropped {id}: {why}");
                return Ok(why.into_row());
            }
        };
        let mut ctx = row.clone();
        if let Some(o) = ctx.as_object_mut() {
            o.entry("repo").or_insert(json!(""));
            o.entry("patch").or_insert(json!(""));
            o.insert("test_output".into(), json!(test_output));
            o.insert("test_sources".into(), json!(test_sources));
        }
        let name = prompts.instance.0.as_str();
        let instance =
            prompts::render_value((name, prompts.instance.1.as_str()), &ctx).map_err(|e| format!("{id}: {e}"))?;
        let messages = vec![
            Message::new("system", prompts.system.clone()),
            Message::new("user", prompts.demonstrations.clone()),
            Message::new("user", instance),
        ];
        let hash = blake3::hash(serde_json::to_string(&messages).expect("plain data").as_bytes()).to_hex().to_string();
        let reply = client.chat(&messages, &[]).await.map_err(|e| format!("{id}: the model: {e}"))?;
        let statement = reply.content.trim().to_string();
        if statement.is_empty() {
            return Err(format!("{id}: the model returned an empty problem statement"));
        }
        let added = json!({
            "problem_statement": statement,
            "synthesis_prompt_hash": hash,
            "synthesis_model": self.model.config.model,
        });
        Ok(Row::Kept(added.to_string()))
    }

    /// The failing tests' output and sources, or (inner `Err`) why the
    /// instance is not usable; the outer `Err` is an infrastructure failure.
    async fn evidence(
        &self,
        sandbox: &Sandbox,
        row: &Value,
        f2p: &[String],
        env: &[(String, String)],
    ) -> Result<Result<(String, Vec<String>), Unusable>, String> {
        let out = run_test_cmd(sandbox, &self.tests, row, f2p, env).await?;
        if out.timed_out {
            return Ok(Err(Unusable::Merit(format!(
                "its FAIL_TO_PASS tests timed out after {}s",
                self.tests.timeout_s
            ))));
        }
        let parser = self.tests.parser_for(row);
        let Some(statuses) = grading::evaluate_log(parser, &out.log) else {
            // No test reported at all: the runner never got to them.
            return Ok(Err(Unusable::Environment(format!(
                "its FAIL_TO_PASS tests did not run ({} parser): {}",
                parser.name(),
                last_lines(&out.log, 3)
            ))));
        };
        let passing: Vec<&String> = f2p
            .iter()
            .filter(|t| matches!(grading::status_of(t, &statuses), Some(parsers::PASSED | parsers::XFAIL)))
            .collect();
        if !passing.is_empty() {
            return Ok(Err(Unusable::Merit(format!(
                "{} of its FAIL_TO_PASS tests pass with the bug applied (first: {})",
                passing.len(),
                passing[0]
            ))));
        }
        let body = out
            .log
            .split(swb::START_TEST_OUTPUT)
            .nth(1)
            .and_then(|rest| rest.split(swb::END_TEST_OUTPUT).next())
            .unwrap_or(&out.log)
            .trim();
        let mut sources = Vec::new();
        for test in f2p.iter().take(self.max_tests) {
            if let Some(src) = test_source(sandbox, test) {
                if !sources.contains(&src) {
                    sources.push(src);
                }
            }
        }
        Ok(Ok((shorten(body, self.max_output_chars), sources)))
    }
}

/// Why an instance cannot get a problem statement.
enum Unusable {
    /// A fact about the instance (its tests pass with the bug, time out).
    Merit(String),
    /// Not about the instance: its tests never ran.
    Environment(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Merit(why) | Unusable::Environment(why) => f.write_str(why),
        }
    }
}

impl Unusable {
    fn into_row(self) -> Row {
        match self {
            Unusable::Merit(why) => Row::dropped(why),
            Unusable::Environment(why) => Row::environment(why),
        }
    }
}

/// The output schema: the instances' columns with `problem_statement`
/// (replaced if present) and the synthesis columns.
fn output_schema(input: &Schema) -> SchemaRef {
    let added = [
        Field::new("problem_statement", DataType::Utf8, false),
        Field::new("synthesis_prompt_hash", DataType::Utf8, false),
        Field::new("synthesis_model", DataType::Utf8, false),
    ];
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .filter(|f| !added.iter().any(|a| a.name() == f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(added);
    Arc::new(Schema::new(fields))
}

/// Text longer than `max` characters keeps its head and tail.
fn shorten(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max / 2).collect();
    let tail: String = text.chars().skip(n - max / 2).collect();
    format!("{head}\n\n(...)\n\n{tail}")
}

/// The source of a pytest test function (`path::[Class::]name[params]`),
/// read from the sandbox's repository: the `def` line and every line
/// indented deeper (decorators above it included).
fn test_source(sandbox: &Sandbox, test: &str) -> Option<String> {
    let mut parts = test.split("::");
    let file = parts.next()?;
    let name = parts.last()?.split('[').next()?.to_string();
    let text = tokio::task::block_in_place(|| sandbox.git(&["show", &format!("HEAD:{file}")], None)).ok()?;
    python_function(&text, &name)
}

fn python_function(text: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let start = lines.iter().position(|l| {
        let t = l.trim_start();
        t.strip_prefix("def ")
            .or_else(|| t.strip_prefix("async def "))
            .is_some_and(|rest| rest.strip_prefix(name).is_some_and(|after| after.trim_start().starts_with('(')))
    })?;
    let base = indent(lines[start]);
    let mut first = start;
    while first > 0 && lines[first - 1].trim_start().starts_with('@') && indent(lines[first - 1]) == base {
        first -= 1;
    }
    let mut end = start + 1;
    while end < lines.len() && (lines[end].trim().is_empty() || indent(lines[end]) > base) {
        end += 1;
    }
    while end > start + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    Some(lines[first..end].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_function_is_cut_out_with_its_decorators() {
        let src = "import pytest\n\n@pytest.mark.parametrize('x', [1])\ndef test_a(x):\n    assert x\n\n    assert 1\n\ndef test_ab():\n    pass\n\nclass T:\n    def test_m(self):\n        y = 1\n    def other(self): pass\n";
        assert_eq!(
            python_function(src, "test_a").unwrap(),
            "@pytest.mark.parametrize('x', [1])\ndef test_a(x):\n    assert x\n\n    assert 1"
        );
        assert_eq!(python_function(src, "test_ab").unwrap(), "def test_ab():\n    pass");
        assert_eq!(python_function(src, "test_m").unwrap(), "    def test_m(self):\n        y = 1");
        assert!(python_function(src, "test_zz").is_none());
    }

    #[test]
    fn long_output_keeps_head_and_tail() {
        let s = shorten(&"a".repeat(50).to_string().replace("aaaaa", "abcde"), 10);
        assert!(s.starts_with("abcde") && s.ends_with("abcde") && s.contains("(...)"), "{s}");
        assert_eq!(shorten("short", 10), "short");
    }
}
