//! The SLURM backend (in progress): job scripts and their rendering, and
//! job states from sacct/squeue.

pub mod poll;
pub mod render;
