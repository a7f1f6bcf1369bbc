//! Posterior sampling with a diffusion prior: the DPS sampler ([`dps`]) and the
//! measurement likelihoods it is guided by ([`likelihood`]).

pub mod dps;
pub mod likelihood;
pub mod noise;

pub use dps::{DpsConfig, DpsSampler, Update};
pub use likelihood::{DataTerm, Likelihood};

use tch::{Kind, Tensor};

/// Mean and per-pixel standard deviation over `n` posterior samples per slice.
/// `samples`: `[B·n, …]` with the n samples of slice b at rows b·n … b·n + n − 1.
/// Returns two tensors `[B, …]`; the standard deviation is the population one
/// (divides by n), zero when n = 1.
pub fn posterior_stats(samples: &Tensor, n: i64) -> (Tensor, Tensor) {
    let mut shape = samples.size();
    let b = shape[0] / n;
    shape[0] = n;
    shape.insert(0, b);
    let s = samples.reshape(&shape);
    let mean = s.mean_dim(&[1i64][..], false, Kind::Float);
    let std = s.std_dim(&[1i64][..], false, false);
    (mean, std)
}
