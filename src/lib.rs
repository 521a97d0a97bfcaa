//! swestar: agentic-distillation experiments as declarative, cached
//! pipelines. Data flows one way: TOML → [`workflow`] (validated model) →
//! [`dag`] (plan) → [`exec`] (execution) → [`store`] (artifacts), with
//! [`cache`] keys naming every artifact and [`stages`] holding one file
//! per stage kind. [`cli`] is the only place that prints. The lower layers
//! are crates of their own (see ARCHITECTURE.md); they are re-exported
//! here under their module names.

pub use swestar_agent as agent;
pub use swestar_store as store;
pub use swestar_store::cache;
pub mod cli;
pub mod dag;
pub mod exec;
pub use swestar_kinds as stages;
pub use swestar_swebench as swebench;
pub mod workflow;
