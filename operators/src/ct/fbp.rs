//! Filtered backprojection (FBP) for parallel beam and weighted FBP for fan beam
//! (Kak & Slaney, *Principles of Computerized Tomographic Imaging*, ch. 3).

use std::f64::consts::PI;

use tch::{Kind, Tensor};

use super::geometry::{BeamGeometry, CtGeometry};

/// Apodisation of the ramp filter, as a function of the frequency `f` in cycles
/// per detector sample (`|f| ≤ ½`). The ramp itself is the DFT of the sampled
/// band-limited ramp kernel `h[0] = ¼, h[m] = −1/(π m)²` for odd `m`, `0` for even
/// `m ≠ 0` (Kak & Slaney eq. 3.61, as scikit-image `iradon`), which has no DC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FbpFilter {
    /// The bare ramp (sharpest, noisiest).
    Ramp,
    /// Ramp × `sinc(f) = sin(π f) / (π f)`.
    SheppLogan,
    /// Ramp × `½ (1 + cos 2π f)`, zero at the Nyquist frequency.
    Hann,
}

impl FbpFilter {
    fn window(self, f: f64) -> f64 {
        match self {
            FbpFilter::Ramp => 1.0,
            FbpFilter::SheppLogan if f == 0.0 => 1.0,
            FbpFilter::SheppLogan => (PI * f).sin() / (PI * f),
            FbpFilter::Hann => 0.5 * (1.0 + (2.0 * PI * f).cos()),
        }
    }
}

/// The filtered projections are interpolated on a grid this many times finer than
/// the detector (band-limited upsampling by zero-padding the spectrum) before
/// linear interpolation at each pixel.
const UPSAMPLING: i64 = 4;

/// Upper bound on the `views × pixels` elements handled at once in backprojection.
const ELEMENTS_PER_CHUNK: i64 = 1 << 21;

/// Filtered backprojection of `sinogram` `[B, C, n_views, n_detectors]` (already
/// checked against `g`) into `[B, C, rows, cols]`; see the [module docs](super).
pub(super) fn filtered_backprojection(
    g: &CtGeometry,
    sinogram: &Tensor,
    filter: FbpFilter,
) -> Tensor {
    let size = sinogram.size();
    let bc = size[0] * size[1];
    let (kind, device) = (sinogram.kind(), sinogram.device());
    let on_device = |v: &[f64]| Tensor::from_slice(v).to_kind(kind).to_device(device);
    let (views, dets) = (g.n_views() as i64, g.n_detectors as i64);
    let centre = g.detector_center();
    let offsets: Vec<f64> = (0..dets).map(|k| k as f64 - centre).collect();

    // Detector pre-weights, modulation of the ramp kernel (equiangular), scale of
    // the discrete convolution, and the period of the view angles.
    let (pre, alpha, scale, period): (Vec<f64>, Option<f64>, f64, f64) = match g.beam {
        BeamGeometry::Parallel => (vec![1.0; dets as usize], None, 1.0 / g.detector_spacing, PI),
        BeamGeometry::FanEquiangular {
            source_to_isocenter_mm: dso,
            ..
        } => {
            let alpha = g.detector_spacing.to_radians();
            let pre = offsets.iter().map(|m| dso * (m * alpha).cos()).collect();
            (pre, Some(alpha), 0.5 / alpha, 2.0 * PI)
        }
        BeamGeometry::FanFlat {
            source_to_isocenter_mm: dso,
            source_to_detector_mm: dsd,
        } => {
            let tau = g.detector_spacing * dso / dsd;
            let pre = offsets.iter().map(|m| dso / dso.hypot(m * tau)).collect();
            (pre, None, 0.5 / tau, 2.0 * PI)
        }
    };

    // Filter along the detector, zero-padded to avoid wrap-around, and evaluate the
    // filtered projections on the fine grid k = j / UPSAMPLING, j = 0 ..= fine − 1.
    let padded = (2 * dets as usize).next_power_of_two().max(64) as i64;
    let response = on_device(&filter_response(
        padded as usize,
        dets as usize,
        alpha,
        filter,
    ));
    let p = sinogram.reshape([bc, views, dets]) * on_device(&pre);
    // A fan-beam short scan measures some rays twice and others once: Parker weights.
    let p = match fan_angles_rad(g, &offsets)
        .and_then(|gammas| parker_weights(&g.angles_deg, &gammas))
    {
        Some(w) => p * on_device(&w).reshape([views, dets]),
        None => p,
    };
    let fine = (dets - 1) * UPSAMPLING + 1;
    let q = (p.fft_rfft(padded, -1, "backward") * response)
        .fft_irfft(padded * UPSAMPLING, -1, "backward")
        .narrow(2, 0, fine)
        * (UPSAMPLING as f64 * scale);
    // A zero at either end: pixels whose ray falls off the detector get 0.
    let q = q.constant_pad_nd([1, 1]);

    let (h, w) = (g.rows as i64, g.cols as i64);
    let dx = g.pixel_spacing_mm;
    let x = ((Tensor::arange(w, (kind, device)) - (w - 1) as f64 / 2.0) * dx)
        .reshape([1, w])
        .expand([h, w], false)
        .reshape([1, h * w]);
    let y = (((h - 1) as f64 / 2.0 - Tensor::arange(h, (kind, device))) * dx)
        .reshape([h, 1])
        .expand([h, w], false)
        .reshape([1, h * w]);

    let weights = view_weights(&g.angles_deg, period);
    let chunk = (ELEMENTS_PER_CHUNK / (h * w * bc.max(1))).max(1);
    let mut image = Tensor::zeros([bc, h * w], (kind, device));
    for v0 in (0..views).step_by(chunk as usize) {
        let len = chunk.min(views - v0);
        let range = v0 as usize..(v0 + len) as usize;
        let angles = &g.angles_deg[range.clone()];
        let cos = on_device(
            &angles
                .iter()
                .map(|a| a.to_radians().cos())
                .collect::<Vec<_>>(),
        )
        .reshape([len, 1]);
        let sin = on_device(
            &angles
                .iter()
                .map(|a| a.to_radians().sin())
                .collect::<Vec<_>>(),
        )
        .reshape([len, 1]);
        // Pixel coordinates along the detector axis e_s and the beam direction e_r.
        let a = &x * &cos + &y * &sin;
        let r = &y * &cos - &x * &sin;
        let (index, pixel_weight) = match g.beam {
            BeamGeometry::Parallel => (a / g.detector_spacing, None),
            BeamGeometry::FanEquiangular {
                source_to_isocenter_mm: dso,
                ..
            } => {
                let b = r + dso;
                let inv_l2 = (a.square() + b.square()).reciprocal();
                (a.atan2(&b) / alpha.unwrap_or(1.0), Some(inv_l2))
            }
            BeamGeometry::FanFlat {
                source_to_isocenter_mm: dso,
                source_to_detector_mm: dsd,
            } => {
                let inv_u = (r + dso).reciprocal() * dso;
                let tau = g.detector_spacing * dso / dsd;
                (a * &inv_u / tau, Some(inv_u.square()))
            }
        };
        let j = ((index + centre) * UPSAMPLING as f64 + 1.0).clamp(0.0, (fine + 1) as f64);
        let j0 = j.floor().clamp_max(fine as f64);
        let frac = &j - &j0;
        let i0 = j0.to_kind(Kind::Int64).expand([bc, len, h * w], false);
        let qc = q.narrow(1, v0, len);
        let q0 = qc.gather(2, &i0, false);
        let q1 = qc.gather(2, &(&i0 + 1), false);
        let values = &q0 + (q1 - &q0) * frac;
        let view_weight = on_device(&weights[range]).reshape([len, 1]);
        let weight = match pixel_weight {
            Some(pw) => pw * view_weight,
            None => view_weight,
        };
        image += (values * weight).sum_dim_intlist(1, false, kind);
    }

    let r_fov = g.field_of_view_radius_mm();
    let inside = (x.square() + y.square()).le(r_fov * r_fov).to_kind(kind);
    (image * inside).reshape([size[0], size[1], h, w])
}

/// The square root `H` of the ramp filter along the detector axis: `H r` filters
/// each view of a sinogram `[…, n_views, n_detectors]` with `sqrt(R(f))`, `R` the
/// [`FbpFilter::Ramp`] response of FBP (zero-padded, so without wrap-around), and
/// keeps the `n_detectors` samples. A preconditioner for data consistency: the
/// gradient of `½‖H (y − A x)‖²` is `−Aᵀ HᵀH (y − A x)`, a backprojection of the
/// ramp-filtered residual, whose spectrum in the image is flat where that of
/// `Aᵀ(y − A x)` falls as 1/|frequency|. The detector pre-weights of fan-beam FBP
/// are left out (`H` only has to be a good preconditioner, not an inverse).
///
/// With a floor `c` (cycles per sample, like `R`), `H = sqrt(R + c)`: the ramp
/// weighs the lowest frequencies of the residual (large, low-contrast structures)
/// almost not at all; the floor gives them back a weight, the balance between a
/// plain (`c` ≫ 0.5) and a ramp-filtered (`c` = 0) backprojection.
pub struct SqrtRamp {
    /// `sqrt(R + c)` on the rfft bins of the padded length, `[padded / 2 + 1]`, f64.
    response: Tensor,
    padded: i64,
    dets: i64,
}

impl SqrtRamp {
    /// For the detector of `g`, on `device`.
    pub fn new(g: &CtGeometry, device: tch::Device) -> Self {
        Self::with_floor(g, 0.0, device)
    }

    /// `sqrt(R + floor)`, `floor` ≥ 0 in cycles per sample (`R` runs from about 0
    /// at DC to 0.5 at Nyquist).
    pub fn with_floor(g: &CtGeometry, floor: f64, device: tch::Device) -> Self {
        assert!(floor >= 0.0 && floor.is_finite(), "ramp floor {floor}");
        let dets = g.n_detectors;
        let padded = (2 * dets).next_power_of_two().max(64);
        let alpha = match g.beam {
            BeamGeometry::FanEquiangular { .. } => Some(g.detector_spacing.to_radians()),
            _ => None,
        };
        let response: Vec<f64> = filter_response(padded, dets, alpha, FbpFilter::Ramp)
            .into_iter()
            .map(|r| (r.max(0.0) + floor).sqrt())
            .collect();
        Self {
            response: Tensor::from_slice(&response).to_device(device),
            padded: padded as i64,
            dets: dets as i64,
        }
    }

    /// `H r` for `r` `[…, n_detectors]` (real; differentiable), in `r`'s precision.
    pub fn apply(&self, r: &Tensor) -> Tensor {
        let n = r.size();
        assert_eq!(
            n.last().copied(),
            Some(self.dets),
            "the last axis of the sinogram must have the {} detector elements",
            self.dets
        );
        (r.fft_rfft(self.padded, -1, "backward") * self.response.to_kind(r.kind()))
            .fft_irfft(self.padded, -1, "backward")
            .narrow(-1, 0, self.dets)
    }
}

/// Real frequency response `[padded / 2 + 1]` of the (apodised) ramp filter in
/// cycles per sample: the cosine DFT of the ramp kernel over lags `|m| < dets` (the
/// only lags that reach the `dets` output samples), each lag multiplied by
/// `(m α / sin m α)²` for an equiangular detector of angular spacing `α` rad.
fn filter_response(padded: usize, dets: usize, alpha: Option<f64>, filter: FbpFilter) -> Vec<f64> {
    let kernel: Vec<f64> = (0..dets)
        .map(|m| {
            if m == 0 {
                return 0.25;
            }
            if m % 2 == 0 {
                return 0.0;
            }
            let mf = m as f64;
            let ramp = -1.0 / (PI * mf).powi(2);
            match alpha {
                Some(a) => ramp * (mf * a / (mf * a).sin()).powi(2),
                None => ramp,
            }
        })
        .collect();
    (0..=padded / 2)
        .map(|k| {
            let f = k as f64 / padded as f64;
            let dft: f64 = kernel[0]
                + 2.0
                    * kernel
                        .iter()
                        .enumerate()
                        .skip(1)
                        .step_by(2)
                        .map(|(m, h)| h * (2.0 * PI * f * m as f64).cos())
                        .sum::<f64>();
            dft * filter.window(f)
        })
        .collect()
}

/// Fan angle γ (rad) of each detector element for a fan beam (see the module
/// docs: positive toward `+e_s`), `None` for parallel beam. `offsets`: element
/// index minus the central element's.
fn fan_angles_rad(g: &CtGeometry, offsets: &[f64]) -> Option<Vec<f64>> {
    match g.beam {
        BeamGeometry::Parallel => None,
        BeamGeometry::FanEquiangular { .. } => Some(
            offsets
                .iter()
                .map(|m| (m * g.detector_spacing).to_radians())
                .collect(),
        ),
        BeamGeometry::FanFlat {
            source_to_detector_mm: dsd,
            ..
        } => Some(
            offsets
                .iter()
                .map(|m| (m * g.detector_spacing / dsd).atan())
                .collect(),
        ),
    }
}

/// Redundancy weights of a fan-beam short scan, row-major `[n_views, n_detectors]`,
/// already doubled to replace the ½ of the full-scan formula; `None` for a scan
/// that needs none or cannot have them.
///
/// The scan is the arc from the view after the widest angular gap (a gap wider
/// than three median gaps, angles modulo 360°) to the view before it, of length
/// Δ. With this module's convention ray `(β, γ)` is the line measured again at
/// `(β + π − 2γ, −γ)`, so Parker's weights (Med. Phys. 9, 254, 1982) apply with
/// γ mirrored, in Wesarg's form for any Δ ≥ π + 2 max|γ| (half-width
/// δ = (Δ − π) / 2, Med. Phys. 29, 2002):
/// `w = sin²(π/4 · β / (δ + γ))` for `β < 2(δ + γ)`,
/// `w = sin²(π/4 · (Δ − β) / (δ − γ))` for `β > π + 2γ`, else 1, so that the two
/// measurements of every line weigh 1 together. `None` for a full turn (no gap
/// wider than three median gaps) and for an arc shorter than π + 2 max|γ| (less
/// than one measurement of some lines: a limited-angle scan, reconstructed like
/// the parallel-beam limited arc, without compensation).
fn parker_weights(angles_deg: &[f64], gammas: &[f64]) -> Option<Vec<f64>> {
    let period = 2.0 * PI;
    let a = AngularGaps::new(angles_deg, period);
    let (widest, gap) = a
        .gaps
        .iter()
        .copied()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(&y.1))?;
    let arc = period - gap;
    let gamma_max = gammas.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    if !a.is_wedge(gap) || arc < PI + 2.0 * gamma_max - 1e-9 {
        return None;
    }
    let start = a.phase[a.order[(widest + 1) % a.order.len()]];
    let delta = 0.5 * (arc - PI);
    // sin²(π/4 · num / den), 1 where the transition is empty (den = 0).
    let ramp = |num: f64, den: f64| {
        if den <= 0.0 {
            1.0
        } else {
            (0.25 * PI * (num / den).clamp(0.0, 2.0)).sin().powi(2)
        }
    };
    let mut weights = Vec::with_capacity(a.phase.len() * gammas.len());
    for p in &a.phase {
        let beta = (p - start).rem_euclid(period);
        for &gamma in gammas {
            let w = if beta < 2.0 * (delta + gamma) {
                ramp(beta, delta + gamma)
            } else if beta > PI + 2.0 * gamma {
                ramp(arc - beta, delta - gamma)
            } else {
                1.0
            };
            weights.push(2.0 * w);
        }
    }
    Some(weights)
}

/// Quadrature weights (radians) of the view angles for the backprojection integral
/// over one `period` (π for parallel, 2π for fan beam): each view gets half the
/// angular gaps to its neighbours (angles taken modulo `period`); a gap wider than
/// three times the median positive gap is a missing wedge and counts as one median
/// gap, so that it does not inflate its edge views. `n` views uniform over the
/// period give `period / n` each; a uniform limited arc of step `δ` gives `δ` each.
fn view_weights(angles_deg: &[f64], period: f64) -> Vec<f64> {
    let a = AngularGaps::new(angles_deg, period);
    let n = a.order.len();
    let gap = |d: f64| if a.is_wedge(d) { a.median } else { d };
    let mut weights = vec![0.0; n];
    for i in 0..n {
        weights[a.order[i]] = 0.5 * (gap(a.gaps[(i + n - 1) % n]) + gap(a.gaps[i]));
    }
    weights
}

/// The view angles taken modulo one `period` (radians) and the gaps between them.
struct AngularGaps {
    /// Each view's angle modulo the period, radians, in view order.
    phase: Vec<f64>,
    /// View indices sorted by phase.
    order: Vec<usize>,
    /// `gaps[i]`: from the i-th to the (i+1)-th phase in sorted order, wrapping around.
    gaps: Vec<f64>,
    /// Median of the positive gaps (the angular step); the period without any.
    median: f64,
}

impl AngularGaps {
    fn new(angles_deg: &[f64], period: f64) -> Self {
        let n = angles_deg.len();
        let phase: Vec<f64> = angles_deg
            .iter()
            .map(|a| a.to_radians().rem_euclid(period))
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| phase[i].total_cmp(&phase[j]));
        let gaps: Vec<f64> = (0..n)
            .map(|i| {
                let next = if i + 1 < n {
                    phase[order[i + 1]]
                } else {
                    phase[order[0]] + period
                };
                next - phase[order[i]]
            })
            .collect();
        let mut positive: Vec<f64> = gaps.iter().copied().filter(|&d| d > 1e-9).collect();
        positive.sort_by(f64::total_cmp);
        let median = match positive.len() {
            0 => period,
            m if m % 2 == 1 => positive[m / 2],
            m => 0.5 * (positive[m / 2 - 1] + positive[m / 2]),
        };
        Self {
            phase,
            order,
            gaps,
            median,
        }
    }

    /// A gap wider than three median gaps: a missing wedge, not a step.
    fn is_wedge(&self, gap: f64) -> bool {
        gap > 3.0 * self.median
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct::uniform_angles;

    fn assert_all_close(w: &[f64], value: f64) {
        for (i, v) in w.iter().enumerate() {
            assert!((v - value).abs() < 1e-12, "weight {i}: {v} ≠ {value}");
        }
    }

    #[test]
    fn view_weights_uniform_half_and_full_turn() {
        assert_all_close(&view_weights(&uniform_angles(180, 180.0), PI), PI / 180.0);
        // 360° parallel: θ and θ + 180° measure the same lines, half weight each.
        assert_all_close(&view_weights(&uniform_angles(360, 360.0), PI), PI / 360.0);
        assert_all_close(
            &view_weights(&uniform_angles(90, 360.0), 2.0 * PI),
            PI / 45.0,
        );
        // Order and shifts do not matter.
        let mut shuffled: Vec<f64> = uniform_angles(12, 180.0).iter().map(|a| a - 90.0).collect();
        shuffled.reverse();
        assert_all_close(&view_weights(&shuffled, PI), PI / 12.0);
    }

    #[test]
    fn view_weights_limited_angle_and_irregular() {
        // 0..=119° in 1° steps: the 61° wedge does not leak into the edge views.
        let limited: Vec<f64> = (0..120).map(f64::from).collect();
        assert_all_close(&view_weights(&limited, PI), 1f64.to_radians());
        // A 20° gap among 10° steps is kept; the 130° wedge counts as 10°.
        let w = view_weights(&[0.0, 10.0, 20.0, 40.0, 50.0], PI);
        let deg: Vec<f64> = w.iter().map(|v| v.to_degrees()).collect();
        let expect = [10.0, 10.0, 15.0, 15.0, 10.0];
        for (d, e) in deg.iter().zip(expect) {
            assert!((d - e).abs() < 1e-9, "{deg:?}");
        }
    }

    #[test]
    fn parker_weights_sum_to_one_per_line() {
        // 10° of fan each side, a 215° arc from 40° in 0.5° steps: Δ = 214.5°.
        let gammas: Vec<f64> = (-10..=10).map(|g| f64::from(g).to_radians()).collect();
        let angles: Vec<f64> = (0..430).map(|k| 40.0 + 0.5 * f64::from(k)).collect();
        let w = parker_weights(&angles, &gammas).expect("a short scan");
        let at = |view: usize, det: usize| w[view * gammas.len() + det];
        for (view, a) in angles.iter().enumerate() {
            for (det, g) in gammas.iter().enumerate() {
                let v = at(view, det);
                assert!((0.0..=2.0).contains(&v), "weight {v}");
                // The same line at β + 180° − 2γ with −γ, when the arc holds it.
                let again = a + 180.0 - 2.0 * g.to_degrees();
                let k = (again - 40.0) / 0.5;
                if k.fract().abs() < 1e-9 && k <= 429.0 {
                    let twin = at(k as usize, gammas.len() - 1 - det);
                    assert!((v + twin - 2.0).abs() < 1e-9, "{a}° γ {g}: {v} + {twin}");
                } else if again > 40.0 + 429.0 * 0.5 + 1e-9
                    && a - 180.0 - 2.0 * g.to_degrees() < 40.0
                {
                    assert!((v - 2.0).abs() < 1e-9, "{a}° γ {g}: measured once, {v}");
                }
            }
        }
        // Unsorted and shifted by whole turns: the same weights.
        let mut shuffled: Vec<f64> = angles.iter().map(|a| a - 720.0).collect();
        shuffled.swap(0, 300);
        let ws = parker_weights(&shuffled, &gammas).unwrap();
        let row = |w: &[f64], v: usize| w[v * 21..(v + 1) * 21].to_vec();
        assert_eq!(row(&ws, 300), row(&w, 0));
        // A full turn, or an arc shorter than 180° + 20°, gets none.
        assert!(parker_weights(&uniform_angles(360, 360.0), &gammas).is_none());
        let short: Vec<f64> = (0..390).map(|k| 0.5 * f64::from(k)).collect();
        assert!(parker_weights(&short, &gammas).is_none());
    }

    #[test]
    fn ramp_response_matches_continuous_ramp() {
        let r = filter_response(256, 128, None, FbpFilter::Ramp);
        assert_eq!(r.len(), 129);
        // No DC offset, |f| in the pass band, ½ at Nyquist (within the truncation).
        assert!(r[0].abs() < 2e-3, "DC {}", r[0]);
        for (k, v) in r.iter().enumerate().skip(8) {
            let f = k as f64 / 256.0;
            assert!((v - f).abs() < 3e-3, "f = {f}: {v}");
        }
        let hann = filter_response(256, 128, None, FbpFilter::Hann);
        assert!(hann[128].abs() < 1e-12 && (hann[64] - 0.5 * r[64]).abs() < 1e-12);
    }
}
