//! The pipeline joins the DICOM layer, the operators and the sampler: raw slices
//! become [`problem::Problem`]s, which are reconstructed with DPS and the
//! baselines ([`reconstruct`]) following a [`preset`], over whole folders
//! ([`batch`]); [`simulate`] and [`validate`] make and score test data, and
//! [`score`] scores any image series against a ground truth.

pub mod batch;
pub mod panics;
pub mod preset;
pub mod problem;
pub mod reconstruct;
pub mod score;
pub mod simulate;
pub mod validate;
