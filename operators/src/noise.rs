//! Seeded measurement-noise models: additive Gaussian (real or complex), Poisson
//! at a count level, and CT transmission counts with the post-log transform and the
//! PWLS weights.
//!
//! Every sample is drawn on the CPU from a ChaCha8 generator seeded with a `u64`
//! (in double precision), then cast to the input's kind and moved to its device: a
//! seed gives the same noise on every machine and device. The results carry no
//! autograd history, except [`expected_counts`], which stays differentiable (e.g.
//! for a Poisson likelihood on transmission data).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use tch::{Device, Kind, Tensor};

/// Counts below this floor are replaced by it in [`post_log`], so that a ray with
/// zero detected photons gets the finite line integral `ln(I0 / 0.5)` instead of
/// `+∞` (half a count, a common choice between dropping the ray and clamping to 1).
pub const ZERO_COUNT_FLOOR: f64 = 0.5;

/// The seed of stream `k` of a process seeded `seed` (one per training step,
/// one per sample batch): `seed XOR k · 0x9E3779B97F4A7C15`, the odd integer
/// nearest 2⁶⁴/φ, so that consecutive streams get far-apart seeds; stream 0 is
/// `seed` itself.
pub fn stream_seed(seed: u64, k: u64) -> u64 {
    seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// `x + σ·n`, `n` standard normal, same shape, kind and device as `x`.
/// For complex `x` each real component gets its own `σ·n`, so the complex noise
/// has `E|n_c|² = 2σ²`.
///
/// # Panics
/// If `sigma` is negative or not finite, or `x` is not a floating-point tensor.
pub fn add_gaussian(x: &Tensor, sigma: f64, seed: u64) -> Tensor {
    assert!(
        sigma >= 0.0 && sigma.is_finite(),
        "add_gaussian: sigma must be finite and ≥ 0, got {sigma}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (real_kind, components) = match x.kind() {
        Kind::ComplexFloat => (Kind::Float, 2),
        Kind::ComplexDouble => (Kind::Double, 2),
        Kind::ComplexHalf => (Kind::Half, 2),
        k @ (Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) => (k, 1),
        k => panic!("add_gaussian: expected a floating-point tensor, got {k:?}"),
    };
    let n = x.numel() * components;
    let values: Vec<f64> = (0..n)
        .map(|_| sigma * Distribution::<f64>::sample(&StandardNormal, &mut rng))
        .collect();
    let noise = Tensor::from_slice(&values).to_kind(real_kind);
    let noise = if components == 2 {
        let mut shape = x.size();
        shape.push(2);
        noise.reshape(shape).view_as_complex()
    } else {
        noise.reshape(x.size())
    };
    x.detach() + noise.to_device(x.device())
}

/// Independent Poisson samples with the (nonnegative) means `rate`, as counts in
/// `rate`'s kind and device. Negative, `−∞` or NaN means give 0 counts.
///
/// # Panics
/// If `rate` is complex, or a mean is `+∞`.
pub fn poisson_counts(rate: &Tensor, seed: u64) -> Tensor {
    assert!(
        !rate.is_complex(),
        "poisson_counts: the rates must be real, got {:?}",
        rate.kind()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let counts: Vec<f64> = to_vec(rate)
        .into_iter()
        .map(|lambda| {
            assert!(lambda != f64::INFINITY, "poisson_counts: infinite rate");
            if lambda > 0.0 {
                Poisson::new(lambda)
                    .expect("positive finite rate")
                    .sample(&mut rng)
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_slice(&counts)
        .reshape(rate.size())
        .to_kind(rate.kind())
        .to_device(rate.device())
}

/// Poisson noise at count level `level` (photons per unit intensity), returned in
/// the units of `x`: `y = Poisson(level · max(x, 0)) / level`, so `E[y] = x` and
/// `Var[y] = x / level` for `x ≥ 0`. A higher level means less noise; multiply the
/// result by `level` for the raw counts.
///
/// # Panics
/// If `level` is not positive and finite, or `x` is complex.
pub fn add_poisson(x: &Tensor, level: f64, seed: u64) -> Tensor {
    assert!(
        level > 0.0 && level.is_finite(),
        "add_poisson: level must be positive and finite, got {level}"
    );
    poisson_counts(&(x.detach().clamp_min(0.0) * level), seed) / level
}

/// Expected detector counts of a transmission scan, `I0 · exp(−p)`, for line
/// integrals `p` (attenuation × length, dimensionless) and `i0` incident photons
/// per ray. Same shape, kind and device as `p`; differentiable.
pub fn expected_counts(p: &Tensor, i0: f64) -> Tensor {
    p.neg().exp() * i0
}

/// Noisy CT transmission counts `Poisson(I0 · exp(−p))` for line integrals `p`
/// (e.g. a sinogram `[B, C, views, detectors]`), `i0` incident photons per ray.
/// Same shape, kind and device as `p`.
///
/// # Panics
/// If `i0` is not positive and finite.
pub fn transmission_counts(p: &Tensor, i0: f64, seed: u64) -> Tensor {
    assert!(
        i0 > 0.0 && i0.is_finite(),
        "transmission_counts: i0 must be positive and finite, got {i0}"
    );
    poisson_counts(&expected_counts(&p.detach(), i0), seed)
}

/// Post-log line integrals `p̂ = −ln(max(counts, ZERO_COUNT_FLOOR) / I0)` (see
/// [`ZERO_COUNT_FLOOR`]). Noiseless counts `I0·exp(−p)` give back `p` wherever
/// `p ≤ ln(I0 / ZERO_COUNT_FLOOR)`. Same shape, kind and device as `counts`.
///
/// # Panics
/// If `i0` is not positive and finite.
pub fn post_log(counts: &Tensor, i0: f64) -> Tensor {
    assert!(
        i0 > 0.0 && i0.is_finite(),
        "post_log: i0 must be positive and finite, got {i0}"
    );
    (counts.detach().clamp_min(ZERO_COUNT_FLOOR) / i0)
        .log()
        .neg()
}

/// PWLS statistical weights for post-log CT data: `w = counts`, the inverse of the
/// variance `Var[p̂] ≈ 1 / counts` of [`post_log`] (delta method). Rays with zero
/// counts get weight 0, i.e. are ignored. Scaling all weights by a constant scales
/// the data term, so a TV weight tuned for unit weights must be multiplied by the
/// same constant (e.g. by `I0` when the counts are near `I0`).
pub fn pwls_weights(counts: &Tensor) -> Tensor {
    counts.detach().clamp_min(0.0)
}

/// All values of a real tensor, in row-major order, as `f64` (copied to the CPU).
fn to_vec(t: &Tensor) -> Vec<f64> {
    let flat = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Double)
        .reshape([-1]);
    Vec::<f64>::try_from(&flat).expect("a 1-D double tensor converts to Vec<f64>")
}
