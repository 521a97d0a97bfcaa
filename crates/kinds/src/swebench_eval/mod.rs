//! The `swebench_eval` kind: the agent on every instance of a SWE-bench
//! style table, graded as SWE-bench's harness grades.
//!
//! Two protocols. `attempts_until_submit = N` (OpenHands' protocol, the
//! headline numbers): an instance is attempted again, at most N times,
//! until an attempt submits a non-empty patch; the last attempt counts.
//! `samples = n`: n independent attempts, for Pass@k. Each attempt's patch
//! is tested in a fresh sandbox (the model patch applied as the harness
//! does, test files reset, the instance's test_patch applied, the
//! repository's test command at its version over the test patch's files,
//! the log parsed by the repository's parser) and graded FULL/PARTIAL/NO.
//!
//! The table has one row per attempt. The manifest's statistics summarise
//! the run: instances, the resolved rate under the protocol, and the
//! unbiased Pass@k for every k up to the samples per instance.
//! Instances are worked on concurrently and logged in order (see
//! [`crate::support::rowwise`]); an episode that loses the model fails the shard at
//! that instance and a rerun resumes there.

mod settings;
pub use settings::EvalStage;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rowwise::{self, LogOrder, Row, RowWork};
use super::workspace::Workspace;
use super::rollout::{Agent, RolloutSpec};
use super::testrun::{test_patch, TestSettings};
use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::store::rows;
use crate::swebench::specs::pass_at_k;
use swestar_vocab::serve::Serve;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Attempt again (at most this many times) until a non-empty patch is
    /// submitted.
    UntilSubmit(u32),
    /// This many independent attempts.
    Samples(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// Model, sandbox, limits and prompts of the agent.
    pub agent: RolloutSpec,
    pub protocol: Protocol,
    pub tests: TestSettings,
}

/// The default test command: the harness's, per repository.
pub const DEFAULT_TEST_CMD: &str = "{{ swebench_test_cmd }}";

/// The per-attempt table: a trajectory row plus how it was graded.
pub fn schema() -> Schema {
    let mut fields: Vec<Field> = super::rollout::schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("submitted", arrow_schema::DataType::Boolean, false));
    fields.push(Field::new("counted", arrow_schema::DataType::Boolean, false));
    fields.extend(super::test_filter::verdict_fields());
    Schema::new(fields)
}

impl Kind for EvalSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "swebench_eval";
    type Wire = settings::EvalStage;

    fn validate(wire: settings::EvalStage, s: &mut Settings<'_>) -> EvalSpec {
        settings::validate(wire, s)
    }

    fn serve(&self) -> Option<&Serve> {
        self.agent.serve.as_ref()
    }

    const HEADLINE: &'static [&'static str] = &["resolved_rate", "submitted_rate", "pass_at_k"];

    fn definition(&self) -> BTreeMap<String, Value> {
        let mut d = self.agent.definition();
        d.remove("attempts");
        d.insert("protocol".into(), serde_json::to_value(self.protocol).expect("plain"));
        d.insert("tests".into(), self.tests.definition());
        d
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        rowwise::drive(self, job, shard)
    }

    fn stats(&self, shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        let table = rows::Table::open(shards, crate::store::TableFormat::Parquet)?;
        let mut per: HashMap<String, InstanceOutcome> = HashMap::new();
        let columns = ["instance_id", "attempt", "resolved", "counted", "submitted"];
        for batch in table.read_columns(0, table.rows(), Some(&columns)) {
            for r in batch? {
                let e = per.entry(r["instance_id"].as_str().unwrap_or_default().to_string()).or_default();
                let resolved = r["resolved"].as_bool().unwrap_or(false);
                e.attempts += 1;
                e.resolved_attempts += u64::from(resolved);
                if r["attempt"].as_u64() == Some(0) {
                    e.first_resolved = resolved;
                }
                if r["counted"].as_bool().unwrap_or(false) {
                    e.counted_resolved = resolved;
                    e.counted_submitted = r["submitted"].as_bool().unwrap_or(false);
                }
            }
        }
        Ok(summary(self.protocol, per.values().copied()))
    }
}

/// What every instance's evaluation in a shard shares.
pub struct Evaluation {
    spec: EvalSpec,
    agent: Agent,
}

impl RowWork for EvalSpec {
    const NAME: &'static str = "swebench_eval";
    const INPUT: &'static str = "instances";
    const NOUN: &'static str = "instances";
    const UNIT: &'static str = "instance";
    const ORDER: LogOrder = LogOrder::Ordered;
    type Shared = Evaluation;

    fn parallel(&self) -> u32 {
        self.agent.parallel
    }

    fn workspace(&self) -> &Workspace {
        &self.agent.workspace
    }

    fn schema(&self, _job: &Job) -> Result<SchemaRef, StageError> {
        Ok(Arc::new(schema()))
    }

    fn shared(&self, job: &Job, shard: &ShardRun) -> Result<Evaluation, StageError> {
        Ok(Evaluation { spec: self.clone(), agent: Agent::new(&self.agent, job, shard)? })
    }

    async fn check(e: &Evaluation) -> Result<(), StageError> {
        e.agent.probe().await
    }

    async fn work(e: Arc<Evaluation>, row: Value, _unit: u32) -> Result<Row, String> {
        e.spec.instance(&e.agent, row).await.map(Row::Kept)
    }

    /// Each log line holds an instance's attempts, one output row each.
    fn output(&self, _input: Value, logged: Value) -> Result<Vec<Value>, String> {
        match logged {
            Value::Array(attempts) => Ok(attempts),
            _ => Err("a line is not a list of attempts".into()),
        }
    }

}

/// How one instance went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstanceOutcome {
    pub attempts: u64,
    pub resolved_attempts: u64,
    /// The first attempt resolved it (a single-attempt Pass@1).
    pub first_resolved: bool,
    /// The attempt that counts under the protocol resolved it / submitted.
    pub counted_resolved: bool,
    pub counted_submitted: bool,
}

/// The run's figures from its instances' outcomes: the resolved rate under
/// the protocol, Pass@1 of a single attempt, and under `samples = n` the
/// unbiased Pass@k for every k ≤ n.
pub fn summary(protocol: Protocol, per: impl Iterator<Item = InstanceOutcome>) -> BTreeMap<String, Value> {
    let per: Vec<InstanceOutcome> = per.collect();
    let mean = |f: &dyn Fn(&InstanceOutcome) -> f64| {
        if per.is_empty() {
            0.0
        } else {
            per.iter().map(f).sum::<f64>() / per.len() as f64
        }
    };
    let mut out = BTreeMap::new();
    out.insert("instances".into(), json!(per.len()));
    out.insert("attempts".into(), json!(per.iter().map(|p| p.attempts).sum::<u64>()));
    match protocol {
        Protocol::UntilSubmit(max) => {
            out.insert("protocol".into(), json!(format!("attempts_until_submit = {max}")));
            out.insert("resolved".into(), json!(per.iter().filter(|p| p.counted_resolved).count()));
            out.insert("resolved_rate".into(), json!(mean(&|p| f64::from(u8::from(p.counted_resolved)))));
            out.insert("submitted_rate".into(), json!(mean(&|p| f64::from(u8::from(p.counted_submitted)))));
            out.insert("pass_at_k".into(), json!({"pass@1": mean(&|p| f64::from(u8::from(p.first_resolved)))}));
        }
        Protocol::Samples(n) => {
            out.insert("protocol".into(), json!(format!("samples = {n}")));
            let mut pass = BTreeMap::new();
            for k in 1..=n as u64 {
                // Instances with fewer samples than k do not count for it.
                let usable: Vec<&InstanceOutcome> = per.iter().filter(|p| p.attempts >= k).collect();
                if usable.is_empty() {
                    continue;
                }
                let v = usable.iter().map(|p| pass_at_k(p.attempts, p.resolved_attempts, k)).sum::<f64>()
                    / usable.len() as f64;
                pass.insert(format!("pass@{k}"), json!(v));
            }
            out.insert("resolved_rate".into(), pass.get("pass@1").cloned().unwrap_or(json!(0.0)));
            out.insert("pass_at_k".into(), json!(pass));
        }
    }
    out
}

impl EvalSpec {
    /// Every attempt at one instance, graded, as a JSON array of rows.
    async fn instance(&self, agent: &Agent, row: Value) -> Result<String, String> {
        let id = row.get("instance_id").and_then(Value::as_str).unwrap_or_default().to_string();
        let (max, stop_on_submit) = match self.protocol {
            Protocol::UntilSubmit(n) => (n, true),
            Protocol::Samples(n) => (n, false),
        };
        let mut attempts = Vec::new();
        for attempt in 0..max {
            let t = agent.episode(&row).await.map_err(|e| format!("{id} attempt {attempt}: {e}"))?;
            let submitted = t.exit_reason == crate::agent::episode::ExitReason::Submitted && !t.patch.trim().is_empty();
            let run = test_patch(
                &self.agent.workspace,
                &self.tests,
                &row,
                &t.patch,
                &agent.workdir,
                &agent.sources,
                &agent.env,
            )
            .await
            .map_err(|e| format!("{id} attempt {attempt}: grading: {e}"))?;
            let mut out: Value =
                serde_json::from_str(&super::rollout::row_json(&t, attempt, &self.agent.model.config.model))
                    .expect("a row");
            if let (Some(o), Value::Object(v)) = (out.as_object_mut(), serde_json::to_value(&run).expect("plain")) {
                o.extend(v);
                o.insert("submitted".into(), json!(submitted));
                o.insert("counted".into(), json!(!stop_on_submit));
            }
            attempts.push(out);
            if stop_on_submit && submitted {
                break;
            }
        }
        if stop_on_submit {
            if let Some(last) = attempts.last_mut() {
                last["counted"] = json!(true);
            }
        }
        Ok(Value::Array(attempts).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_under_both_protocols() {
        let o = |attempts, resolved_attempts, first_resolved, counted_resolved, counted_submitted| InstanceOutcome {
            attempts,
            resolved_attempts,
            first_resolved,
            counted_resolved,
            counted_submitted,
        };
        // Until submit: 3 instances, the counted attempt resolved in 2, the
        // first attempt in 1.
        let s = summary(
            Protocol::UntilSubmit(3),
            [o(1, 1, true, true, true), o(3, 0, false, false, false), o(2, 1, false, true, true)].into_iter(),
        );
        assert_eq!(s["resolved"], 2);
        assert!((s["pass_at_k"]["pass@1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12, "first attempts only");
        assert!((s["resolved_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((s["submitted_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // Samples: n = 4; c = 1 and c = 4: pass@1 = (0.25 + 1) / 2,
        // pass@2 = (1 - C(3,2)/C(4,2) + 1) / 2 = (0.5 + 1) / 2.
        let s = summary(Protocol::Samples(4), [o(4, 1, false, false, false), o(4, 4, true, true, true)].into_iter());
        let p = &s["pass_at_k"];
        assert!((p["pass@1"].as_f64().unwrap() - 0.625).abs() < 1e-12);
        assert!((p["pass@2"].as_f64().unwrap() - 0.75).abs() < 1e-12);
        assert!((p["pass@4"].as_f64().unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(s["resolved_rate"], p["pass@1"]);
    }
}
