//! Seeded k-space sampling masks for MRI.
//!
//! Every generator returns a CPU `f32` tensor `[H, W]` of zeros and ones, indexed like
//! the output of [`crate::fft::fft2c`]: rows are ky (phase encodes), columns kx
//! (readout), and the zero frequency sits at `(H/2, W/2)` (integer division, see
//! [`crate::fft::center`]).
//!
//! Definitions shared by all masks:
//! - **Acceleration** `R` is the number of k-space points divided by the number
//!   acquired, `R = H·W / Σ mask` (see [`acceleration`]); the calibration region
//!   counts as acquired. For the 1-D masks it equals `H / (acquired rows)`.
//! - **Centre fraction** `f` gives the fully sampled calibration (ACS) region:
//!   `round(f·n)` consecutive indices along an axis of length `n`, placed by
//!   [`center_block`] around the zero frequency (for an even count, one more index on
//!   the negative-frequency side, as in fastMRI).
//! - The same `(spec, shape, seed)` always gives the same mask (ChaCha8 from the
//!   seed); different seeds give different masks.
//!
//! 1-D masks acquire whole rows (Cartesian phase-encode lines with a fully sampled
//! readout); the 2-D Poisson-disc mask undersamples both axes, as in the ky–kz plane
//! of a 3-D acquisition.

use std::ops::Range;
use std::str::FromStr;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::fft::center;

/// Why a mask could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    #[error("the mask shape must be non-empty, got {0}×{1}")]
    EmptyShape(usize, usize),
    #[error("the acceleration must be a finite number ≥ 1, got {0}")]
    Acceleration(f64),
    #[error("the centre fraction must be in [0, 1], got {0}")]
    CenterFraction(f64),
    #[error(
        "{acs} calibration lines exceed the budget of {budget} lines \
         (H = {height}, R = {acceleration}); lower the centre fraction or the acceleration"
    )]
    CalibrationTooLarge {
        acs: usize,
        budget: usize,
        height: usize,
        acceleration: f64,
    },
    #[error(
        "Poisson-disc sampling reaches acceleration {achieved:.3} at best, \
         not the requested {target} (accelerations below ~2 are out of reach)"
    )]
    Unreachable { target: f64, achieved: f64 },
}

/// The sampling pattern of a [`MaskSpec`], named in presets and on the command line
/// `random-lines`, `equispaced-lines` or `poisson-disc` (or `random`, `equispaced`,
/// `poisson` for short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskPattern {
    RandomLines,
    EquispacedLines,
    PoissonDisc,
}

impl MaskPattern {
    /// The pattern's name, as [`FromStr`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::RandomLines => "random-lines",
            Self::EquispacedLines => "equispaced-lines",
            Self::PoissonDisc => "poisson-disc",
        }
    }
}

impl FromStr for MaskPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "random-lines" | "random" => Ok(Self::RandomLines),
            "equispaced-lines" | "equispaced" => Ok(Self::EquispacedLines),
            "poisson-disc" | "poisson" => Ok(Self::PoissonDisc),
            _ => Err(format!(
                "unknown mask {s:?}: expected random-lines, equispaced-lines or poisson-disc"
            )),
        }
    }
}

/// A sampling-mask recipe, independent of the image size and the seed (e.g. read from
/// a TOML preset). `acceleration` and `center_fraction` follow the module-level
/// definitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskSpec {
    /// Random phase-encode lines plus a fully sampled centre, see [`random_lines`].
    RandomLines {
        acceleration: f64,
        center_fraction: f64,
    },
    /// Equispaced phase-encode lines plus a fully sampled centre, see
    /// [`equispaced_lines`].
    EquispacedLines {
        acceleration: f64,
        center_fraction: f64,
    },
    /// 2-D variable-density Poisson-disc sampling with a fully sampled centre block,
    /// see [`poisson_disc`].
    PoissonDisc {
        acceleration: f64,
        center_fraction: f64,
    },
}

impl MaskSpec {
    /// The recipe of `pattern` at `acceleration` with `center_fraction`.
    pub fn new(pattern: MaskPattern, acceleration: f64, center_fraction: f64) -> Self {
        match pattern {
            MaskPattern::RandomLines => Self::RandomLines {
                acceleration,
                center_fraction,
            },
            MaskPattern::EquispacedLines => Self::EquispacedLines {
                acceleration,
                center_fraction,
            },
            MaskPattern::PoissonDisc => Self::PoissonDisc {
                acceleration,
                center_fraction,
            },
        }
    }

    /// Builds the mask for an `height × width` k-space: CPU `f32` `[height, width]`.
    pub fn generate(&self, height: usize, width: usize, seed: u64) -> Result<Tensor, MaskError> {
        match *self {
            Self::RandomLines {
                acceleration,
                center_fraction,
            } => random_lines(height, width, acceleration, center_fraction, seed),
            Self::EquispacedLines {
                acceleration,
                center_fraction,
            } => equispaced_lines(height, width, acceleration, center_fraction, seed),
            Self::PoissonDisc {
                acceleration,
                center_fraction,
            } => poisson_disc(height, width, acceleration, center_fraction, seed),
        }
    }

    /// The nominal acceleration `R` of the recipe.
    pub fn acceleration(&self) -> f64 {
        match *self {
            Self::RandomLines { acceleration, .. }
            | Self::EquispacedLines { acceleration, .. }
            | Self::PoissonDisc { acceleration, .. } => acceleration,
        }
    }

    /// The fraction of k-space sampled fully at the centre.
    pub fn center_fraction(&self) -> f64 {
        match *self {
            Self::RandomLines {
                center_fraction, ..
            }
            | Self::EquispacedLines {
                center_fraction, ..
            }
            | Self::PoissonDisc {
                center_fraction, ..
            } => center_fraction,
        }
    }

    /// The recipe's pattern ([`MaskSpec::new`] inverted with the two getters).
    pub fn pattern(&self) -> MaskPattern {
        match self {
            Self::RandomLines { .. } => MaskPattern::RandomLines,
            Self::EquispacedLines { .. } => MaskPattern::EquispacedLines,
            Self::PoissonDisc { .. } => MaskPattern::PoissonDisc,
        }
    }
}

/// The `count` consecutive indices centred on the zero frequency of an axis of length
/// `n`: `n/2 − count/2 .. n/2 − count/2 + count` (integer division). Requires
/// `count ≤ n`.
pub fn center_block(n: usize, count: usize) -> Range<usize> {
    assert!(
        count <= n,
        "centre block of {count} indices on an axis of {n}"
    );
    let start = center(n) - count / 2;
    start..start + count
}

/// Number of calibration indices for a centre fraction: `round(fraction · n)`.
pub fn center_count(n: usize, fraction: f64) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}

/// Measured acceleration of a mask of any shape: `numel / (number of non-zeros)`
/// (infinite for an empty mask).
pub fn acceleration(mask: &Tensor) -> f64 {
    let acquired = mask.ne(0.0).sum(Kind::Double).double_value(&[]);
    mask.numel() as f64 / acquired
}

/// 1-D random undersampling of rows: the `round(f·H)` centre rows, plus rows drawn
/// uniformly without replacement from the others until `round(H/R)` rows (at least
/// one) are acquired in total. The acceleration is therefore `R` up to the rounding
/// of `H/R`. Fails when the centre alone exceeds that budget.
pub fn random_lines(
    height: usize,
    width: usize,
    acceleration: f64,
    center_fraction: f64,
    seed: u64,
) -> Result<Tensor, MaskError> {
    let (acs, budget) = line_budget(height, width, acceleration, center_fraction)?;
    let mut rows = vec![false; height];
    rows[acs.clone()].fill(true);
    let others: Vec<usize> = (0..height).filter(|r| !acs.contains(r)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in sample(&mut rng, others.len(), budget - acs.len()) {
        rows[others[i]] = true;
    }
    Ok(rows_to_mask(&rows, width))
}

/// 1-D equispaced undersampling of rows, as fastMRI's `EquispacedMaskFractionFunc`:
/// the `n = round(f·H)` centre rows, plus the rows `round(o + k·s)`, `k = 0, 1, …`,
/// with spacing `s = R·(H − n) / (H − R·n)` (so that about `H/R − n` of them fall
/// outside the centre) and a random offset `o ∈ [0, round(s))` drawn from the seed.
/// The acceleration is `R` up to rounding (a few percent for `H ≥ 64`). Fails when
/// the centre alone exceeds the budget `round(H/R)`.
pub fn equispaced_lines(
    height: usize,
    width: usize,
    acceleration: f64,
    center_fraction: f64,
    seed: u64,
) -> Result<Tensor, MaskError> {
    let (acs, _) = line_budget(height, width, acceleration, center_fraction)?;
    let mut rows = vec![false; height];
    rows[acs.clone()].fill(true);
    let (h, n) = (height as f64, acs.len() as f64);
    let free = h - acceleration * n;
    if free > 0.0 {
        let spacing = acceleration * (h - n) / free;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let offset = rng.gen_range(0..(spacing.round() as usize).max(1)) as f64;
        let mut pos = offset;
        while pos.round() < h {
            rows[pos.round() as usize] = true;
            pos += spacing;
        }
    }
    Ok(rows_to_mask(&rows, width))
}

/// 2-D variable-density Poisson-disc sampling with a fully sampled centre block of
/// `round(f·H) × round(f·W)` (placed by [`center_block`] on both axes).
///
/// Points are drawn by Bridson's algorithm on the pixel grid (30 candidates per
/// active point, at distances between one and two local radii). The minimum distance
/// between points grows linearly with the normalised distance `r ∈ [0, √2]` from the
/// centre block: the radius is `max(1, (1 + slope·r) · n_axis / max(H, W))` pixels
/// along each axis (isotropic in normalised k-space), and `slope` is found by
/// bisection until the acceleration matches `R` within 2 %. As in SigPy's
/// `mri.poisson` (Lustig's variable-density Poisson disc). Fails when no slope comes
/// within 10 % of `R`, which happens for `R` below about 2 (one-pixel spacing is the
/// densest pattern).
pub fn poisson_disc(
    height: usize,
    width: usize,
    acceleration: f64,
    center_fraction: f64,
    seed: u64,
) -> Result<Tensor, MaskError> {
    validate(height, width, acceleration, center_fraction)?;
    let grid = PoissonGrid::new(height, width, center_fraction);
    let total = (height * width) as f64;
    let (mut lo, mut hi) = (0.0, height.max(width) as f64);
    let mut best: Option<(f64, Vec<bool>)> = None;
    for _ in 0..32 {
        let slope = 0.5 * (lo + hi);
        let mask = grid.sample(slope, seed);
        let achieved = total / mask.iter().filter(|&&m| m).count() as f64;
        let error = (achieved - acceleration).abs() / acceleration;
        if best
            .as_ref()
            .is_none_or(|(a, _)| error < (a - acceleration).abs() / acceleration)
        {
            best = Some((achieved, mask));
        }
        if error < 0.02 {
            break;
        }
        if achieved < acceleration {
            lo = slope;
        } else {
            hi = slope;
        }
    }
    let (achieved, mask) = best.expect("at least one bisection step");
    if (achieved - acceleration).abs() / acceleration > 0.1 {
        return Err(MaskError::Unreachable {
            target: acceleration,
            achieved,
        });
    }
    let values: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m))).collect();
    Ok(Tensor::from_slice(&values).reshape([height as i64, width as i64]))
}

/// The largest fully sampled rectangle around the zero frequency of a 2-D mask
/// `[H, W]` (non-zero = acquired), grown greedily one row or column at a time from
/// the centre pixel `(H/2, W/2)`: the calibration (ACS) region, as row and column
/// ranges. `None` when the centre pixel itself is not acquired. For a 1-D mask it is
/// the run of acquired rows containing the centre, over all columns.
pub fn calibration_region(mask: &Tensor) -> Option<(Range<usize>, Range<usize>)> {
    let size = mask.size();
    assert_eq!(
        size.len(),
        2,
        "calibration_region expects a mask [H, W], got {size:?}"
    );
    let (h, w) = (size[0] as usize, size[1] as usize);
    let flat = mask.ne(0.0).to_device(tch::Device::Cpu).flatten(0, -1);
    let acquired = Vec::<bool>::try_from(&flat).expect("boolean mask");
    let at = |r: usize, c: usize| acquired[r * w + c];
    let (cr, cc) = (center(h), center(w));
    if !at(cr, cc) {
        return None;
    }
    let (mut rows, mut cols) = (cr..cr + 1, cc..cc + 1);
    loop {
        let mut grew = false;
        if rows.start > 0 && cols.clone().all(|c| at(rows.start - 1, c)) {
            rows.start -= 1;
            grew = true;
        }
        if rows.end < h && cols.clone().all(|c| at(rows.end, c)) {
            rows.end += 1;
            grew = true;
        }
        if cols.start > 0 && rows.clone().all(|r| at(r, cols.start - 1)) {
            cols.start -= 1;
            grew = true;
        }
        if cols.end < w && rows.clone().all(|r| at(r, cols.end)) {
            cols.end += 1;
            grew = true;
        }
        if !grew {
            return Some((rows, cols));
        }
    }
}

fn validate(
    height: usize,
    width: usize,
    acceleration: f64,
    center_fraction: f64,
) -> Result<(), MaskError> {
    if height == 0 || width == 0 {
        return Err(MaskError::EmptyShape(height, width));
    }
    if !(acceleration.is_finite() && acceleration >= 1.0) {
        return Err(MaskError::Acceleration(acceleration));
    }
    if !(0.0..=1.0).contains(&center_fraction) {
        return Err(MaskError::CenterFraction(center_fraction));
    }
    Ok(())
}

/// Validates a 1-D recipe; returns the centre rows and the total line budget.
fn line_budget(
    height: usize,
    width: usize,
    acceleration: f64,
    center_fraction: f64,
) -> Result<(Range<usize>, usize), MaskError> {
    validate(height, width, acceleration, center_fraction)?;
    let budget = ((height as f64 / acceleration).round() as usize).clamp(1, height);
    let acs = center_block(height, center_count(height, center_fraction));
    if acs.len() > budget {
        return Err(MaskError::CalibrationTooLarge {
            acs: acs.len(),
            budget,
            height,
            acceleration,
        });
    }
    Ok((acs, budget))
}

fn rows_to_mask(rows: &[bool], width: usize) -> Tensor {
    let rows: Vec<f32> = rows.iter().map(|&r| f32::from(u8::from(r))).collect();
    Tensor::from_slice(&rows)
        .reshape([rows.len() as i64, 1])
        .expand([rows.len() as i64, width as i64], false)
        .contiguous()
}

/// Geometry of a variable-density Poisson-disc draw: grid size, centre block and the
/// normalised distance of every pixel from the centre block.
struct PoissonGrid {
    height: usize,
    width: usize,
    calib: (Range<usize>, Range<usize>),
    /// `r ∈ [0, √2]` per pixel, row-major.
    distance: Vec<f64>,
}

impl PoissonGrid {
    const CANDIDATES: usize = 30;

    fn new(height: usize, width: usize, center_fraction: f64) -> Self {
        let calib = (
            center_block(height, center_count(height, center_fraction)),
            center_block(width, center_count(width, center_fraction)),
        );
        let axis = |n: usize, half_calib: f64| -> Vec<f64> {
            let d: Vec<f64> = (0..n)
                .map(|i| ((i as f64 - center(n) as f64).abs() - half_calib).max(0.0))
                .collect();
            let max = d.iter().cloned().fold(0.0, f64::max);
            d.into_iter()
                .map(|v| if max > 0.0 { v / max } else { 0.0 })
                .collect()
        };
        let dy = axis(height, calib.0.len() as f64 / 2.0);
        let dx = axis(width, calib.1.len() as f64 / 2.0);
        let distance = dy
            .iter()
            .flat_map(|y| dx.iter().map(move |x| x.hypot(*y)))
            .collect();
        Self {
            height,
            width,
            calib,
            distance,
        }
    }

    /// One Bridson draw at the given radius slope; row-major acquired flags.
    fn sample(&self, slope: f64, seed: u64) -> Vec<bool> {
        let (h, w) = (self.height, self.width);
        let longest = h.max(w) as f64;
        let radius = |p: usize| {
            let base = 1.0 + slope * self.distance[p];
            (
                (base * h as f64 / longest).max(1.0),
                (base * w as f64 / longest).max(1.0),
            )
        };
        let mut mask = vec![false; h * w];
        for r in self.calib.0.clone() {
            mask[r * w + self.calib.1.start..r * w + self.calib.1.end].fill(true);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let first = rng.gen_range(0..h * w);
        mask[first] = true;
        let mut active = vec![first];
        while !active.is_empty() {
            let slot = rng.gen_range(0..active.len());
            let p = active[slot];
            let (ry, rx) = radius(p);
            let (py, px) = ((p / w) as f64, (p % w) as f64);
            let mut accepted = None;
            for _ in 0..Self::CANDIDATES {
                let v = (3.0 * rng.gen::<f64>() + 1.0).sqrt();
                let t = std::f64::consts::TAU * rng.gen::<f64>();
                let (qy, qx) = (py + v * ry * t.sin(), px + v * rx * t.cos());
                if qy < 0.0 || qx < 0.0 || qy >= h as f64 || qx >= w as f64 {
                    continue;
                }
                let q = qy as usize * w + qx as usize;
                if self.is_free(&mask, q, radius(q)) {
                    accepted = Some(q);
                    break;
                }
            }
            match accepted {
                Some(q) => {
                    mask[q] = true;
                    active.push(q);
                }
                None => {
                    active.swap_remove(slot);
                }
            }
        }
        mask
    }

    /// No acquired pixel lies strictly inside the ellipse of radii `(ry, rx)` around
    /// pixel `q`.
    fn is_free(&self, mask: &[bool], q: usize, (ry, rx): (f64, f64)) -> bool {
        let w = self.width;
        let (qy, qx) = ((q / w) as f64, (q % w) as f64);
        let rows =
            (qy - ry).ceil().max(0.0) as usize..((qy + ry).floor() as usize + 1).min(self.height);
        let cols = (qx - rx).ceil().max(0.0) as usize..((qx + rx).floor() as usize + 1).min(w);
        rows.into_iter().all(|y| {
            cols.clone().all(|x| {
                let (dy, dx) = ((y as f64 - qy) / ry, (x as f64 - qx) / rx);
                !mask[y * w + x] || dy * dy + dx * dx >= 1.0
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_gives_back_what_it_was_made_of() {
        for pattern in [
            MaskPattern::RandomLines,
            MaskPattern::EquispacedLines,
            MaskPattern::PoissonDisc,
        ] {
            let spec = MaskSpec::new(pattern, 4.5, 0.08);
            assert_eq!(
                (spec.pattern(), spec.acceleration(), spec.center_fraction()),
                (pattern, 4.5, 0.08)
            );
        }
    }

    #[test]
    fn patterns_parse_by_name_and_short_name() {
        for (names, pattern) in [
            (["random-lines", "random"], MaskPattern::RandomLines),
            (
                ["equispaced-lines", "equispaced"],
                MaskPattern::EquispacedLines,
            ),
            (["poisson-disc", "poisson"], MaskPattern::PoissonDisc),
        ] {
            for name in names {
                assert_eq!(name.parse::<MaskPattern>(), Ok(pattern));
            }
            assert_eq!(pattern.name(), names[0]);
        }
        let err = "spiral".parse::<MaskPattern>().unwrap_err();
        assert!(
            err.contains("\"spiral\"") && err.contains("poisson-disc"),
            "{err}"
        );
        assert_eq!(
            MaskSpec::new(MaskPattern::PoissonDisc, 6.0, 0.1),
            MaskSpec::PoissonDisc {
                acceleration: 6.0,
                center_fraction: 0.1
            }
        );
    }
}
