//! The agent scaffold (in progress): the tool-call protocol a teacher model
//! speaks (`protocol`), observation masking (`condense`) and the persistent
//! bash session commands run in (`session`). The LLM client, the tools, the
//! sandboxes and the episode loop build on these.

pub mod condense;
pub mod protocol;
pub mod session;
