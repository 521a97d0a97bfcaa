//! swestar: agentic-distillation experiments as declarative, cached
//! pipelines. This crate is the command line ([`cli`]), the only place
//! that talks to people. The layers below are crates of their own (see
//! ARCHITECTURE.md), re-exported here under their module names: the
//! engine ([`workflow`] → [`dag`] → [`exec`]), the stage kinds
//! ([`stages`]), the agent scaffold ([`agent`]), SWE-bench grading
//! ([`swebench`]) and the store with its [`cache`] keys ([`store`]).

pub use swestar_agent as agent;
pub mod cli;
pub use swestar_engine::{dag, exec, workflow};
pub use swestar_kinds as stages;
pub use swestar_store as store;
pub use swestar_store::cache;
pub use swestar_swebench as swebench;
