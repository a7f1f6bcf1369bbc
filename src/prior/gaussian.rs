//! The exact ε-model of a Gaussian prior `x_0 ~ N(μ, s² I)`: a reference with a
//! closed-form posterior, for checking samplers without a trained network.

use tch::Tensor;

use super::{EpsModel, Schedule};

/// `ε̂(x_t, t) = (x_t − sqrt(ᾱ_t) E[x_0 | x_t]) / sqrt(1 − ᾱ_t)` with
/// `E[x_0 | x_t] = μ + sqrt(ᾱ_t) s² / (ᾱ_t s² + 1 − ᾱ_t) · (x_t − sqrt(ᾱ_t) μ)`.
/// Every batch row must have the same timestep (that of row 0 is used).
pub struct GaussianPrior {
    /// Mean μ of every pixel.
    pub mu: f64,
    /// Variance s² of every pixel.
    pub s2: f64,
    /// The full schedule whose timesteps `t` index.
    pub schedule: Schedule,
}

impl EpsModel for GaussianPrior {
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let ab = self.schedule.alphas_cumprod[t.int64_value(&[0]) as usize];
        let gain = ab.sqrt() * self.s2 / (ab * self.s2 + 1.0 - ab);
        let x0 = (x - ab.sqrt() * self.mu) * gain + self.mu;
        (x - x0 * ab.sqrt()) / (1.0 - ab).sqrt()
    }
}
