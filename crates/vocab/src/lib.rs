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

/// A progress line on stderr, which for a stage body is its log. A line
/// that cannot be written (the log's disk is full) is dropped instead of
/// ending the process with a panic, as `eprintln!` would: the stage's own
/// outputs report their write errors, and its exit status says how it
/// ended.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _dropped_if_the_disk_is_full = writeln!(std::io::stderr(), $($arg)*);
    }};
}
