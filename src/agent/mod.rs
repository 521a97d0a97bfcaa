//! The agent scaffold (in progress): the tool-call protocol a teacher model
//! speaks (`protocol`) and observation masking (`condense`). The LLM client,
//! the tools, the sandboxes and the episode loop build on these.

pub mod condense;
pub mod protocol;
