//! The agent scaffold (in progress): the LLM client (`llm`), the tool-call
//! protocol a teacher model speaks (`protocol`), observation masking
//! (`condense`), the persistent bash session commands run in (`session`),
//! the file editor with OpenHands' semantics (`editor`), and the scripted
//! OpenAI-compatible server that stands in for a teacher model in tests
//! (`scripted`). The tool set, the sandboxes and the episode loop build on
//! these.

pub mod condense;
pub mod editor;
pub mod episode;
pub mod llm;
pub mod prompts;
pub mod protocol;
pub mod sandbox;
pub mod scripted;
pub mod session;
pub mod tokens;
pub mod tools;
