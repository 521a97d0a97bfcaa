//! swestar's engine. Data flows one way: TOML → [`workflow`] (the
//! validated model) → [`dag`] (the plan: order, cache keys, what is
//! cached) → [`exec`] (local processes or SLURM jobs, each running a stage
//! kind's body through `swestar exec`) → the store's artifacts.
//!
//! The engine never prints and never reads stdin: [`exec`] reports
//! [`exec::Event`]s, and decisions that need a person are callbacks the
//! CLI hands in.

pub mod dag;
pub mod exec;
pub mod workflow;

use swestar_agent as agent;
use swestar_kinds as stages;
use swestar_store as store;
use swestar_store::cache;
