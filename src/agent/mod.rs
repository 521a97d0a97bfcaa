//! The agent scaffold (in progress): the tool-call protocol a teacher model
//! speaks (`protocol`), observation masking (`condense`), the persistent
//! bash session commands run in (`session`) and the file editor with
//! OpenHands' semantics (`editor`). The LLM client, the tool set, the
//! sandboxes and the episode loop build on these.

pub mod condense;
pub mod editor;
pub mod protocol;
pub mod session;
