//! Seeded Gaussian noise for the sampler, drawn on the CPU with ChaCha so that a
//! seed gives the same noise on any device and in any thread. (The chain itself is
//! bit for bit the same only on the same kind of device: on CUDA, TF32
//! convolutions and atomic additions in the backward pass round differently.)

use std::collections::VecDeque;

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

    /// `count` tensors of i.i.d. N(0, 1) values of `shape`, `kind`, on `device`,
    /// drawn one tensor after the other (so `count` calls with 1 give the same
    /// values) and moved to `device` in one copy.
    ///
    /// # Panics
    /// When the values do not fit in memory: a panic, which `run` reports per
    /// series, where a plain allocation failure would abort the process.
    pub fn standard_normals(
        &mut self,
        count: usize,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Vec<Tensor> {
        let n = count * shape.iter().product::<i64>() as usize;
        let mut values: Vec<f32> = Vec::new();
        if values.try_reserve_exact(n).is_err() {
            panic!(
                "cannot allocate the sampler's noise, {n} values of shape {shape:?} ({}): \
                 fewer samples or slices per batch (--sample-batch, --batch-slices) would fit",
                crate::memory::Bytes(n as u128 * 4)
            );
        }
        values.extend((0..n).map(|_| -> f32 { StandardNormal.sample(&mut self.rng) }));
        let mut stacked = vec![count as i64];
        stacked.extend_from_slice(shape);
        Tensor::from_slice(&values)
            .reshape(stacked)
            .to_device(device)
            .to_kind(kind)
            .unbind(0)
    }
}

/// Most values drawn ahead at once (64 MiB of `f32`).
const MAX_AHEAD: i64 = 1 << 24;

/// Most tensors drawn ahead at once.
const MAX_TENSORS_AHEAD: usize = 50;

/// The noise tensors of one chain (x_N, then z of each step), drawn from a
/// [`NoiseSource`] in order but moved to the device several at a time: a copy
/// from host memory to a GPU waits for the work queued on it, so one copy per
/// step would stall the GPU at every step.
pub struct ChainNoise {
    source: NoiseSource,
    shape: Vec<i64>,
    kind: Kind,
    device: Device,
    /// Tensors still to be drawn.
    left: usize,
    drawn: VecDeque<Tensor>,
}

impl ChainNoise {
    /// The `count` tensors of `shape` of the chain seeded with `seed`.
    pub fn new(seed: u64, shape: &[i64], (kind, device): (Kind, Device), count: usize) -> Self {
        Self {
            source: NoiseSource::new(seed),
            shape: shape.to_vec(),
            kind,
            device,
            left: count,
            drawn: VecDeque::new(),
        }
    }

    /// The next tensor of the chain.
    ///
    /// # Panics
    /// After the chain's `count` tensors.
    pub fn next_tensor(&mut self) -> Tensor {
        if self.drawn.is_empty() {
            let per_tensor = self.shape.iter().product::<i64>().max(1);
            let ahead = usize::try_from(MAX_AHEAD / per_tensor).unwrap_or(1);
            let count = self.left.min(ahead.clamp(1, MAX_TENSORS_AHEAD));
            assert!(count > 0, "ChainNoise: more tensors than the chain has");
            self.left -= count;
            self.drawn = self
                .source
                .standard_normals(count, &self.shape, self.kind, self.device)
                .into();
        }
        self.drawn.pop_front().expect("drawn above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain's tensors are those of successive single draws, whatever the
    /// number drawn ahead.
    #[test]
    fn chain_noise_is_the_sequence_of_single_draws() {
        let shape = [2, 1, 3, 3];
        let mut single = NoiseSource::new(7);
        let mut chain = ChainNoise::new(7, &shape, (Kind::Float, Device::Cpu), 120);
        for k in 0..120 {
            let a = single.standard_normals(1, &shape, Kind::Float, Device::Cpu)[0].shallow_clone();
            assert!(a.equal(&chain.next_tensor()), "tensor {k}");
        }
    }
}
