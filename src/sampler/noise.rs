//! Seeded Gaussian noise for the sampler, drawn on the CPU with ChaCha so that a
//! seed gives the same chain on any device and in any thread.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Device, Kind, Tensor};

/// A reproducible source of standard normal tensors.
pub struct NoiseSource {
    rng: ChaCha8Rng,
}

impl NoiseSource {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A tensor of i.i.d. N(0, 1) values of `shape`, `kind`, on `device`.
    pub fn standard_normal(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        let n: i64 = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        Tensor::from_slice(&values)
            .reshape(shape)
            .to_device(device)
            .to_kind(kind)
    }
}
