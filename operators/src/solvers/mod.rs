//! Classical solvers: the baselines (CG, TV) and the low-frequency data-consistency
//! step applied after DPS ([`lowpass`]).

pub mod cg;
pub mod lowpass;
pub mod tv;
