//! A `command` stage's keys: the command, its table format, and an
//! optional inference server.

use schemars::JsonSchema;
use serde::Deserialize;

use super::CommandSpec;
use crate::api::wire::ServeSection;
use crate::api::Settings;
use crate::store::TableFormat;

/// A `command` stage: a shell command rendered with minijinja.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandStage {
    /// The command, run by bash in the workflow's directory. Sees
    /// `{{ inputs.NAME }}`, `{{ params.NAME }}` and `{{ output }}`.
    pub run: String,
    /// `parquet`: inputs are Parquet files and the command writes Parquet
    /// to `{{ output }}`. `jsonl`: inputs are handed over as JSON Lines and
    /// the command writes JSON Lines, which swestar stores as Parquet.
    #[serde(default = "parquet")]
    pub format: TableFormat,
    /// An inference server the job starts on its node before the command
    /// runs (and stops after); the command finds it at `{{ serve.base_url }}`.
    pub serve: Option<ServeSection>,
}

crate::whole_table!(CommandStage);

fn parquet() -> TableFormat {
    TableFormat::Parquet
}

pub(super) fn validate(w: CommandStage, s: &mut Settings<'_>) -> CommandSpec {
    let serve = w.serve.as_ref().map(|sv| s.serve(sv));
    if let Err(m) = super::check_template(&w.run, &s.common.inputs, &s.common.params, w.serve.is_some()) {
        s.fail(&["run"], m, None);
    }
    CommandSpec { run: w.run, format: w.format, serve }
}
