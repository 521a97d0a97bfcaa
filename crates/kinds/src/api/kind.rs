//! What a stage kind is: the [`Kind`] trait each kind's folder implements
//! (its name and version, its wire settings, their validation into the
//! kind's spec, the spec's part of the cache key, and its execution), and
//! how a stage table's own keys reach its wire type ([`FromStage`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use swestar_vocab::serve::Serve;

use super::settings::Settings;
use super::wire::StageCommon;
use super::{Job, ShardRun, StageError};

/// One stage kind. The registration list in `lib.rs` names every kind
/// once; the kind enum, the schema and the dispatch are generated from it.
pub trait Kind: Sized + Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned {
    /// The name a workflow writes: `kind = "rollout"`.
    const NAME: &'static str;
    /// Bumped whenever this kind's output for the same input changes; part
    /// of every cache key of this kind.
    const VERSION: u32;
    /// The kind's own keys of a stage table, as written.
    type Wire: FromStage + JsonSchema;

    /// Checks the settings (problems go to `s`) and resolves them into
    /// the spec the stage runs with. Called once per variant.
    fn validate(wire: Self::Wire, s: &mut Settings<'_>) -> Self;

    /// The kind's own settings that shape output (they enter the key).
    fn definition(&self) -> BTreeMap<String, Value>;

    /// Runs one shard of the stage body, writing one Parquet file to
    /// `shard.output` (scratch space in `shard.tmp`).
    fn execute(&self, job: &Job, shard: &ShardRun) -> Result<(), StageError>;

    /// Figures about the finished output (its shard files) for the
    /// artifact's manifest; none by default.
    fn stats(&self, _shards: &[PathBuf]) -> Result<BTreeMap<String, Value>, StageError> {
        Ok(BTreeMap::new())
    }

    /// Which of its stats are the stage's headline figures (`swestar
    /// compare`); an object's entries become a figure each.
    const HEADLINE: &'static [&'static str] = &[];

    /// What the run's `done` line adds about the output, from its stats
    /// (what went in, what came out and what was left out, and why).
    fn summary(&self, _stats: &BTreeMap<String, Value>) -> Option<String> {
        None
    }

    /// The inference server the stage's job starts, if any.
    fn serve(&self) -> Option<&Serve> {
        None
    }

    /// What the stage body launches across its SLURM allocation, for the
    /// job script (the trainer of a multi-node sft stage).
    fn allocation_launch(&self, _stage_dir: &Path) -> Option<String> {
        None
    }
}

/// Where a stage table's own keys come from. The workflow reader
/// implements it over the TOML (keeping spans, so an error points at its
/// key); a kind takes shared groups of keys apart and the rest whole.
pub trait WireSource {
    type Error;
    /// The keys among `keys`, deserialized as one table.
    fn take<T: DeserializeOwned>(&mut self, keys: &[&str]) -> Result<T, Self::Error>;
    /// Every key not taken yet.
    fn rest<T: DeserializeOwned>(&mut self) -> Result<T, Self::Error>;
}

/// A kind's wire type, read from a stage table's own keys.
pub trait FromStage: Sized {
    fn from_stage<S: WireSource>(source: &mut S) -> Result<Self, S::Error>;
}

/// Wire types that take the table as it is.
#[macro_export]
macro_rules! whole_table {
    ($($t:ty),*) => {$(
        impl $crate::api::FromStage for $t {
            fn from_stage<S: $crate::api::WireSource>(source: &mut S) -> Result<Self, S::Error> {
                source.rest()
            }
        }
    )*};
}

/// Schema-only view of one kind's stage table: the common keys and the
/// kind's own, side by side.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StageTable<T: JsonSchema> {
    #[serde(flatten)]
    common: StageCommon,
    #[serde(flatten)]
    fields: T,
}
