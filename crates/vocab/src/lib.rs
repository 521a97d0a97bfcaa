//! swestar's neutral vocabulary: the words every layer shares that are not
//! about data (those live in `swestar-store`). It depends on no other
//! swestar crate, so anything may use it and it can reach back to nothing.
//!
//! - [`shell`]: quoting values into one bash word.

pub mod shell;
