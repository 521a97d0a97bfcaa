//! What several kinds share below their own folders: sandboxed
//! workspaces of repository tasks ([`workspace`]), running an instance's
//! tests and grading them ([`testrun`]), and the ordered row driver with
//! its resumable progress log ([`ordered`]).

pub mod ordered;
pub mod testrun;
pub mod workspace;
