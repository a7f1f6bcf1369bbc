//! Blur kernels for [`crate::blur::Blur`], kept apart from the operator: a Gaussian
//! kernel and a seeded random motion-blur kernel.
//!
//! Every generator returns an `f32` tensor `[kh, kw]` on the CPU whose entries are
//! nonnegative and sum to 1; index `[i, j]` is row `i` (top to bottom), column `j`.
//! Odd sizes put the kernel centre on the pixel `[kh / 2, kw / 2]`. Randomness comes
//! from a ChaCha8 generator seeded with a `u64`, so a seed gives the same kernel on
//! every machine and device.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Triangular};
use std::f64::consts::PI;
use tch::Tensor;

/// Isotropic Gaussian kernel `[size, size]`, `exp(−r² / (2σ²))` sampled at pixel
/// centres at distance `r` (in pixels) from the centre pixel, normalised to sum 1.
///
/// # Panics
/// If `size` is even or not positive, or `sigma` is not positive and finite.
pub fn gaussian_kernel(size: i64, sigma: f64) -> Tensor {
    assert!(
        size > 0 && size % 2 == 1,
        "gaussian_kernel: size must be odd and positive, got {size}"
    );
    assert!(
        sigma > 0.0 && sigma.is_finite(),
        "gaussian_kernel: sigma must be positive and finite, got {sigma}"
    );
    let n = size as usize;
    let c = (n / 2) as f64;
    let profile: Vec<f64> = (0..n)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let mut values = Vec::with_capacity(n * n);
    for a in &profile {
        for b in &profile {
            values.push(a * b);
        }
    }
    to_normalised_tensor(&values, n)
}

/// Seeded random motion-blur kernel `[size, size]`, normalised to sum 1, after the
/// `motionblur` library (github.com/LeviBorodenko/motionblur) that the DPS paper
/// uses with `size = 61`, `intensity = 0.5`.
///
/// Method (all lengths in pixels of a `2·size` supersampled canvas, diagonal
/// `D = 2·size·√2`):
/// 1. Path length `Lmax = 0.75·D·(U(0,1) + U(0, intensity²))`; step lengths
///    `Beta(1, 30)·(1 − intensity + ε)·D` are drawn until their sum reaches `Lmax`
///    (steps longer than `Lmax` are redrawn).
/// 2. Angles: `θmax = U(0, intensity·π)`, jitter probability `Beta(2, 20)`; the first
///    angle is `U(−θmax, θmax)`, each next one `Triangular(0, intensity·θmax, θmax + ε)`
///    with the sign of the previous angle, flipped with the jitter probability.
/// 3. The trajectory is the cumulative sum of the steps `ℓ·e^{iθ}`, its vertex mean is
///    moved to the canvas centre and it is rotated by `U(0, π)`.
/// 4. The polyline is drawn with a brush of width `max(1, ⌊D/150⌋)` pixels (parts
///    leaving the canvas are clipped), blurred by a Gaussian of σ = `max(1, ⌊D/100⌋)`,
///    averaged over 2×2 blocks down to `size × size` (the library resizes with
///    Lanczos) and normalised to sum 1.
///
/// In the rare case that the whole trajectory leaves the canvas, a new trajectory is
/// drawn from the same generator, so the result still depends only on the seed.
///
/// Intensities close to 1 make the steps tiny and their number large (the library
/// never terminates at 1), hence `intensity < 1`.
///
/// # Panics
/// If `size` is not positive or `intensity` is outside `[0, 1)`.
pub fn motion_blur_kernel(size: i64, intensity: f64, seed: u64) -> Tensor {
    assert!(
        size > 0,
        "motion_blur_kernel: size must be positive, got {size}"
    );
    assert!(
        (0.0..1.0).contains(&intensity),
        "motion_blur_kernel: intensity must be in [0, 1), got {intensity}"
    );
    let n = size as usize;
    let big = 2 * n;
    let diagonal = (2.0f64).sqrt() * big as f64;
    let width = (diagonal / 150.0).floor().max(1.0);
    let sigma = (diagonal / 100.0).floor().max(1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    loop {
        let path = trajectory(&mut rng, intensity, big, diagonal);
        let canvas = draw_polyline(&path, big, width);
        if canvas.iter().any(|&v| v > 0.0) {
            let blurred = gaussian_blur(&canvas, big, sigma);
            return to_normalised_tensor(&downsample2(&blurred, n), n);
        }
    }
}

/// Vertices `(column, row)` of a random camera trajectory on a `big × big` canvas.
fn trajectory(rng: &mut ChaCha8Rng, intensity: f64, big: usize, diagonal: f64) -> Vec<(f64, f64)> {
    const EPS: f64 = 1e-7;
    let max_len = 0.75 * diagonal * (rng.gen::<f64>() + rng.gen::<f64>() * intensity * intensity);
    let step_dist = Beta::new(1.0, 30.0).expect("valid Beta(1, 30)");
    let mut steps = Vec::new();
    let mut total = 0.0;
    while total < max_len {
        let step = step_dist.sample(rng) * (1.0 - intensity + EPS) * diagonal;
        if step < max_len {
            steps.push(step);
            total += step;
        }
    }

    let max_angle = rng.gen::<f64>() * intensity * PI;
    let jitter = Beta::new(2.0, 20.0).expect("valid Beta(2, 20)").sample(rng);
    let turn = Triangular::new(0.0, max_angle + EPS, intensity * max_angle)
        .expect("mode lies between 0 and max_angle + eps");
    let mut angles = Vec::with_capacity(steps.len());
    angles.push((2.0 * rng.gen::<f64>() - 1.0) * max_angle);
    while angles.len() < steps.len() {
        let magnitude = turn.sample(rng);
        let previous_sign = sign(*angles.last().expect("angles is not empty"));
        let sign = if rng.gen::<f64>() < jitter {
            -previous_sign
        } else {
            previous_sign
        };
        angles.push(sign * magnitude);
    }

    let mut position = (0.0, 0.0);
    let mut path: Vec<(f64, f64)> = steps
        .iter()
        .zip(&angles)
        .map(|(&step, &angle)| {
            position.0 += step * angle.cos();
            position.1 += step * angle.sin();
            position
        })
        .collect();
    let count = path.len() as f64;
    let mean_x = path.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = path.iter().map(|p| p.1).sum::<f64>() / count;
    let (s, c) = (rng.gen::<f64>() * PI).sin_cos();
    let centre = (big as f64 - 1.0) / 2.0;
    for p in &mut path {
        let (x, y) = (p.0 - mean_x, p.1 - mean_y);
        *p = (centre + x * c - y * s, centre + x * s + y * c);
    }
    path
}

/// `numpy.sign`: −1, 0 or +1.
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Paints a polyline with a square brush of side `width` on a `big × big` canvas
/// (pixel centres at integer coordinates), sampling each segment every ¼ pixel.
fn draw_polyline(path: &[(f64, f64)], big: usize, width: f64) -> Vec<f64> {
    let mut canvas = vec![0.0; big * big];
    let half = width / 2.0;
    let mut paint = |x: f64, y: f64| {
        let (c0, c1) = ((x - half).ceil().max(0.0), (x + half).floor());
        let (r0, r1) = ((y - half).ceil().max(0.0), (y + half).floor());
        let mut r = r0;
        while r <= r1 && r < big as f64 {
            let mut c = c0;
            while c <= c1 && c < big as f64 {
                canvas[r as usize * big + c as usize] = 1.0;
                c += 1.0;
            }
            r += 1.0;
        }
    };
    paint(path[0].0, path[0].1);
    for w in path.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let samples = (4.0 * len).ceil().max(1.0) as usize;
        for k in 1..=samples {
            let t = k as f64 / samples as f64;
            paint(a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        }
    }
    canvas
}

/// Separable Gaussian blur (σ in pixels, truncated at 3σ, zero boundary) of a
/// square `n × n` image.
fn gaussian_blur(image: &[f64], n: usize, sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil() as isize;
    let taps: Vec<f64> = (-radius..=radius)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let blur_1d = |src: &[f64], along_rows: bool| {
        let mut dst = vec![0.0; n * n];
        for r in 0..n {
            for c in 0..n {
                let mut acc = 0.0;
                for (t, d) in taps.iter().zip(-radius..=radius) {
                    let (rr, cc) = if along_rows {
                        (r as isize + d, c as isize)
                    } else {
                        (r as isize, c as isize + d)
                    };
                    if (0..n as isize).contains(&rr) && (0..n as isize).contains(&cc) {
                        acc += t * src[rr as usize * n + cc as usize];
                    }
                }
                dst[r * n + c] = acc;
            }
        }
        dst
    };
    blur_1d(&blur_1d(image, true), false)
}

/// Averages 2×2 blocks of a `2n × 2n` image down to `n × n`.
fn downsample2(image: &[f64], n: usize) -> Vec<f64> {
    let big = 2 * n;
    let mut out = vec![0.0; n * n];
    for r in 0..n {
        for c in 0..n {
            let at = |dr: usize, dc: usize| image[(2 * r + dr) * big + 2 * c + dc];
            out[r * n + c] = 0.25 * (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1));
        }
    }
    out
}

/// `[n, n]` f32 CPU tensor of `values / Σ values`.
fn to_normalised_tensor(values: &[f64], n: usize) -> Tensor {
    let total: f64 = values.iter().sum();
    let normalised: Vec<f32> = values.iter().map(|v| (v / total) as f32).collect();
    Tensor::from_slice(&normalised).reshape([n as i64, n as i64])
}
