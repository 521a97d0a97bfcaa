//! What several kinds share below their own folders: sandboxed
//! workspaces of repository tasks ([`workspace`]), running an instance's
//! tests and grading them ([`testrun`]), and the row driver of the
//! row-wise kinds ([`rowwise`]) with its progress logs ([`log`]).

pub mod log;
pub mod rowwise;
pub mod testrun;
pub mod workspace;
