//! The `test_filter` kind: every trajectory's patch tested in a fresh
//! sandbox at its instance's task state and graded with SWE-bench's
//! semantics; `keep = "resolved"` (default) passes on only the
//! trajectories that resolve their instance, `keep = "all"` passes on all
//! of them with their verdicts.
//!
//! Inputs: `trajectories` (a rollout's table, or any table with
//! `instance_id` and `patch`), streamed row group by row group in the
//! shard's row range, and `instances` (looked up by `instance_id`). The
//! output is the trajectories' columns plus `applied`, `evaluated`,
//! `resolved`, `resolution`, `tests` (name, group, status per expected
//! test), `test_error` and `test_wall_s`. Rows are logged in order as they
//! are graded (see [`crate::support::rowwise`]), so a killed shard resumes where
//! it stopped.

mod settings;
pub use settings::TestFilterStage;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rowwise::{self, LogOrder, Row, RowWork};
use super::testrun::{test_patch, TestSettings};
use super::workspace::{Hosts, Sources, Workspace};
use crate::api::{Job, Kind, Settings, ShardRun, StageError};
use crate::store::rows;
use crate::store::TableFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Only trajectories whose patch resolves the instance.
    #[default]
    Resolved,
    /// Every trajectory, with its verdict.
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestFilterSpec {
    pub workspace: Workspace,
    pub tests: TestSettings,
    pub keep: Keep,
    pub parallel: u32,
}

/// The columns test_filter adds.
pub fn verdict_fields() -> Vec<Field> {
    let test = Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("group", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
    ]);
    vec![
        Field::new("applied", DataType::Boolean, false),
        Field::new("evaluated", DataType::Boolean, false),
        Field::new("resolved", DataType::Boolean, false),
        Field::new("resolution", DataType::Utf8, false),
        Field::new("tests", DataType::List(Arc::new(Field::new("item", DataType::Struct(test), false))), false),
        Field::new("test_error", DataType::Utf8, true),
        Field::new("test_wall_s", DataType::Float64, false),
    ]
}

/// The input's schema with the verdict columns (replacing any of the
/// same names, so filtering a filtered table works).
pub fn output_schema(input: &Schema) -> SchemaRef {
    let added = verdict_fields();
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .filter(|f| !added.iter().any(|a| a.name() == f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(added);
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of a table input: Parquet's own, or inferred from the
/// first rows of JSON Lines.
pub fn input_schema(paths: &[std::path::PathBuf], format: TableFormat) -> Result<Schema, StageError> {
    let Some(first) = paths.first() else { return Ok(Schema::empty()) };
    match format {
        TableFormat::Parquet => Ok(crate::store::table::parquet_info(first)?.1.as_ref().clone()),
        TableFormat::Jsonl => {
            let f = std::fs::File::open(first).map_err(|source| StageError::Io { path: first.clone(), source })?;
            let (schema, _) = arrow_json::reader::infer_json_schema(std::io::BufReader::new(f), Some(1000))
                .map_err(|e| StageError::Failed(format!("{}: {e}", first.display())))?;
            Ok(schema)
        }
    }
}

/// Instances by id.
pub fn instances_by_id(job: &Job) -> Result<HashMap<String, Value>, StageError> {
    let input = job.inputs.get("instances").ok_or_else(|| StageError::Failed("no `instances` input".into()))?;
    let mut out = HashMap::new();
    for row in rows::read_all(&input.paths, input.format)? {
        if let Some(id) = row.get("instance_id").and_then(Value::as_str) {
            out.insert(id.to_string(), row);
        }
    }
    Ok(out)
}

impl Kind for TestFilterSpec {
    const VERSION: u32 = 1;
    const NAME: &'static str = "test_filter";
    type Wire = settings::TestFilterStage;

    fn validate(wire: settings::TestFilterStage, s: &mut Settings<'_>) -> TestFilterSpec {
        settings::validate(wire, s)
    }

    const HEADLINE: &'static [&'static str] = &["kept_fraction", "rows_out"];

    fn stats(&self, shards: &[std::path::PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        Ok(crate::rowwise::row_stats(shards))
    }

    fn definition(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("sandbox".into(), self.workspace.definition()),
            ("tests".into(), self.tests.definition()),
            ("keep".into(), json!(self.keep)),
        ])
    }

    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError> {
        rowwise::drive(self, job, shard)
    }
}

/// What every trajectory's grading in a shard shares.
pub struct Grading {
    spec: TestFilterSpec,
    instances: HashMap<String, Value>,
    hosts: Hosts,
}

impl RowWork for TestFilterSpec {
    const NAME: &'static str = "test_filter";
    const INPUT: &'static str = "trajectories";
    const NOUN: &'static str = "trajectories";
    const UNIT: &'static str = "test run";
    const ORDER: LogOrder = LogOrder::Ordered;
    type Shared = Grading;

    fn parallel(&self) -> u32 {
        self.parallel
    }

    fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    fn schema(&self, job: &Job) -> Result<SchemaRef, StageError> {
        let input = job.inputs.get(Self::INPUT).ok_or_else(|| StageError::Failed("no `trajectories` input".into()))?;
        Ok(output_schema(&input_schema(&input.paths, input.format)?))
    }

    fn shared(&self, job: &Job, shard: &ShardRun) -> Result<Grading, StageError> {
        Ok(Grading {
            spec: self.clone(),
            instances: instances_by_id(job)?,
            hosts: Hosts::of(job, shard),
        })
    }

    async fn work(g: Arc<Grading>, row: Value, _unit: u32) -> Result<Row, String> {
        let h = &g.hosts;
        g.spec.grade(row, &g.instances, &h.workdir, &h.sources, &h.env).await
    }

}

impl TestFilterSpec {
    async fn grade(
        &self,
        row: Value,
        instances: &HashMap<String, Value>,
        workdir: &std::path::Path,
        sources: &Sources,
        env: &[(String, String)],
    ) -> Result<Row, String> {
        let id = row.get("instance_id").and_then(Value::as_str).unwrap_or_default().to_string();
        let inst =
            instances.get(&id).ok_or_else(|| format!("trajectory of `{id}`: no such instance in `instances`"))?;
        let patch = row.get("patch").and_then(Value::as_str).unwrap_or_default().to_string();
        let run = test_patch(&self.workspace, &self.tests, inst, &patch, workdir, sources, env)
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        if let Some(why) = run.never_ran() {
            return Ok(Row::environment(why));
        }
        if self.keep == Keep::Resolved && !run.resolved {
            return Ok(Row::dropped("not resolved"));
        }
        Ok(Row::Kept(serde_json::to_string(&run).expect("plain data")))
    }
}
