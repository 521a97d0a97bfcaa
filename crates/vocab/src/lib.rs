//! swestar's neutral vocabulary: the words every layer shares that are not
//! about data (those live in `swestar-store`). It depends on no other
//! swestar crate, so anything may use it and it can reach back to nothing.
//!
//! - [`shell`]: quoting values into one bash word.
//! - [`duration`]: time spans as workflows write them, parsed once.
//! - [`serve`]: inference server engines and the command that starts one.
//! - [`supervise`]: running a stage's processes so that they die with it,
//!   and the cancellation handle a stage watches.

pub mod duration;
pub mod serve;
pub mod shell;
pub mod supervise;
