//! Posterior sampling with a diffusion prior: the DPS sampler ([`dps`]) and the
//! measurement likelihoods it is guided by ([`likelihood`]).

pub mod dps;
pub mod likelihood;
pub mod noise;

pub use dps::{ClampGradient, DpsConfig, DpsSampler, Update};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posterior_stats_groups_samples_by_slice() {
        // Two slices, three samples each: slice 0 = {1, 2, 3}, slice 1 = {10, 10, 10}.
        let s = Tensor::from_slice(&[1f32, 2., 3., 10., 10., 10.]).view([6, 1, 1, 1]);
        let (mean, std) = posterior_stats(&s, 3);
        assert_eq!(mean.size(), [2, 1, 1, 1]);
        assert!((mean.double_value(&[0, 0, 0, 0]) - 2.0).abs() < 1e-6);
        assert!((mean.double_value(&[1, 0, 0, 0]) - 10.0).abs() < 1e-6);
        assert!((std.double_value(&[0, 0, 0, 0]) - (2f64 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(std.double_value(&[1, 0, 0, 0]), 0.0);
        let (_, one) = posterior_stats(&s, 1);
        assert_eq!(one.abs().max().double_value(&[]), 0.0);
    }
}
