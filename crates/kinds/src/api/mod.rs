//! The kind API: everything a stage kind builds on, and nothing about any
//! one kind. A kind's folder imports from here; the engine talks to kinds
//! only through [`crate::StageKind`] and what is re-exported here.

mod job;
mod kind;
mod model;
mod settings;
pub mod wire;

pub use job::{runtime, shard_file, Job, JobInput, ShardRun, StageError};
pub use kind::{FromStage, Kind, StageTable, WireSource};
pub use model::{serve_key, Dep, Model, PromptSource, StageModel};
pub use settings::{count, did_you_mean, relative_dep, toml_to_json, Settings, Sink, UnmetSink};
