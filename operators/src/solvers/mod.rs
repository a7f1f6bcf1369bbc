//! Classical solvers used as baselines.

pub mod cg;
pub mod tv;
