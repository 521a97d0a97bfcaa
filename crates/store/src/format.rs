//! How a table is written on disk: Parquet (every artifact) or JSON Lines
//! (data sources, and what `command` stages may read and write).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    Parquet,
    Jsonl,
}
