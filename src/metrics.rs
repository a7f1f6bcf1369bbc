//! Image-quality metrics against a reference: PSNR, SSIM, MSE, NMSE, and how
//! well a posterior's standard deviation predicts its error ([`calibration`]).
//!
//! All take real-valued tensors of equal shape on any device (`x` and
//! `reference` on the same one) and compute in double precision. `data_range` is
//! the span of possible values (1.0 for images in [0, 1], 2000 for CT in HU over
//! [−1000, 1000], or max − min of the reference), as in scikit-image.
//!
//! # Panics
//! Every function panics with a message naming the metric and both shapes when
//! the shapes differ (there is no broadcasting), and [`psnr`] and [`ssim`] panic
//! when `data_range` is not a positive finite number.

use serde::Serialize;
use tch::{Kind, Tensor};

/// Peak signal-to-noise ratio in dB: `10 log10(data_range² / MSE)`, as
/// scikit-image's `peak_signal_noise_ratio`. Identical images give `+inf`.
pub fn psnr(x: &Tensor, reference: &Tensor, data_range: f64) -> f64 {
    check_shapes("psnr", x, reference);
    check_range("psnr", data_range);
    let mse = mse(x, reference);
    10.0 * (data_range * data_range / mse).log10()
}

/// Mean squared error over all elements.
pub fn mse(x: &Tensor, reference: &Tensor) -> f64 {
    check_shapes("mse", x, reference);
    let d = x.to_kind(Kind::Double) - reference.to_kind(Kind::Double);
    d.square().mean(Kind::Double).double_value(&[])
}

/// Normalised mean squared error `‖x − ref‖² / ‖ref‖²` (scikit-image's
/// `normalized_root_mse(ref, x, normalization='euclidean')` squared). 0 for
/// identical images; NaN or +inf when the reference is all zeros.
pub fn nmse(x: &Tensor, reference: &Tensor) -> f64 {
    check_shapes("nmse", x, reference);
    let r = reference.to_kind(Kind::Double);
    let d = x.to_kind(Kind::Double) - &r;
    d.square().sum(Kind::Double).double_value(&[]) / r.square().sum(Kind::Double).double_value(&[])
}

/// Standard deviation of the Gaussian SSIM window, in pixels.
const SSIM_SIGMA: f64 = 1.5;
/// Radius of the Gaussian SSIM window: `int(3.5·σ + 0.5)` = 5, an 11-tap window.
const SSIM_RADIUS: i64 = 5;
/// The side of the SSIM window, and so the smallest image side [`ssim`] takes.
pub const SSIM_WINDOW: usize = 2 * SSIM_RADIUS as usize + 1;
const SSIM_K1: f64 = 0.01;
const SSIM_K2: f64 = 0.03;

/// Mean structural similarity (Wang et al., 2004) with a Gaussian window,
/// matching scikit-image's `structural_similarity(x, reference,
/// data_range=data_range, gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False)`: K1 = 0.01, K2 = 0.03, an 11-tap Gaussian
/// window (σ = 1.5 px, truncated at 3.5 σ), population (co)variances, and the
/// mean of the SSIM map without its 5-pixel border. Values lie in [−1, 1], 1
/// for identical images; symmetric in its arguments.
///
/// Shapes: `[H, W]` or `[..., H, W]` (e.g. `[1, 1, H, W]`, `[B, C, H, W]`), with
/// H, W ≥ 11. Leading dimensions index separate 2-D images, and the result is
/// the mean of their SSIMs (not a 3-D SSIM).
///
/// The windows of the pixels that are kept lie wholly inside the image, so the
/// map is computed by valid (unpadded) separable convolutions; scikit-image's
/// `'reflect'` boundary mode only affects the border it discards.
///
/// # Panics
/// Besides the shape and range checks above, when an image is smaller than
/// 11 × 11 or has fewer than 2 dimensions.
pub fn ssim(x: &Tensor, reference: &Tensor, data_range: f64) -> f64 {
    check_shapes("ssim", x, reference);
    check_range("ssim", data_range);
    let size = x.size();
    assert!(
        size.len() >= 2,
        "ssim: expected images of shape [..., H, W], got {size:?}"
    );
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    let win = SSIM_WINDOW as i64;
    assert!(
        h >= win && w >= win,
        "ssim: images must be at least {win} × {win} pixels, got {h} × {w}"
    );
    let x = x.to_kind(Kind::Double).reshape([-1, 1, h, w]);
    let y = reference.to_kind(Kind::Double).reshape([-1, 1, h, w]);
    let stack = Tensor::cat(&[&x, &y, &(&x * &x), &(&y * &y), &(&x * &y)], 0);
    let filtered = gaussian_valid(&stack).chunk(5, 0);
    let [ux, uy, uxx, uyy, uxy] = &filtered[..] else {
        unreachable!("chunk of 5 equal parts")
    };
    let vx = uxx - ux * ux;
    let vy = uyy - uy * uy;
    let vxy = uxy - ux * uy;
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let num = (ux * uy * 2.0 + c1) * (vxy * 2.0 + c2);
    let den = (ux.square() + uy.square() + c1) * (vx + vy + c2);
    (num / den).mean(Kind::Double).double_value(&[])
}

/// How well a per-pixel posterior standard deviation predicts the error of the
/// posterior mean it comes with ([`calibration`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// RMS error of the mean over the RMS error the standard deviation
    /// predicts for it: 1 when calibrated, above 1 when the standard deviation
    /// understates the error (overconfident), below 1 when it overstates it.
    pub error_ratio: f64,
    /// Pearson correlation over the pixels between |mean − reference| and the
    /// standard deviation: how well the map locates the errors (0 when it says
    /// nothing of where they are). Each pixel's error is one draw and its
    /// standard deviation comes from few samples, so even a calibrated posterior
    /// stays well below 1 (about 0.4 with 4 samples and σ spanning 100× over the
    /// image); compare it between methods or settings on the same case.
    pub correlation: f64,
}

/// How [`calibration`]'s two numbers are computed, for reports.
pub const CALIBRATION_RULE: &str = "error_ratio = RMS error / RMS error the std predicts, \
     √(mean(std²)·(N + 1)/(N − 1)) for N samples (1 = calibrated, > 1: the std understates \
     the error); correlation = Pearson correlation of |error| and std over the pixels";

impl Calibration {
    /// The means of each number over several checks (e.g. one per slice);
    /// `None` when there are none or any is `None`.
    pub fn mean_of(checks: impl IntoIterator<Item = Option<Calibration>>) -> Option<Calibration> {
        let all: Vec<Calibration> = checks.into_iter().collect::<Option<_>>()?;
        if all.is_empty() {
            return None;
        }
        let n = all.len() as f64;
        Some(Calibration {
            error_ratio: all.iter().map(|c| c.error_ratio).sum::<f64>() / n,
            correlation: all.iter().map(|c| c.correlation).sum::<f64>() / n,
        })
    }
}

/// Checks `mean` and `std`, the per-pixel mean and population standard
/// deviation (÷ N) of `samples` = N posterior samples, against `reference`.
///
/// If the N samples and the reference were independent draws from one
/// distribution per pixel (a calibrated posterior), the squared error of the
/// mean would average σ²(N + 1)/N and the population variance σ²(N − 1)/N, so
/// the predicted mean squared error is `mean(std²)·(N + 1)/(N − 1)`.
/// [`Calibration::error_ratio`] is the root of the measured over the predicted
/// mean squared error. Both numbers pool every element, whatever the shape.
///
/// `None` for fewer than 2 samples, or when `std` or the error is constant
/// (no correlation is defined).
///
/// # Panics
/// When the shapes differ.
pub fn calibration(
    mean: &Tensor,
    std: &Tensor,
    reference: &Tensor,
    samples: i64,
) -> Option<Calibration> {
    check_shapes("calibration", mean, reference);
    check_shapes("calibration", std, reference);
    if samples < 2 {
        return None;
    }
    let error = (mean.to_kind(Kind::Double) - reference.to_kind(Kind::Double)).abs();
    let std = std.to_kind(Kind::Double);
    let n = samples as f64;
    let predicted = std.square().mean(Kind::Double).double_value(&[]) * (n + 1.0) / (n - 1.0);
    let measured = error.square().mean(Kind::Double).double_value(&[]);
    let centered = |t: &Tensor| t - t.mean(Kind::Double);
    let (e, s) = (centered(&error), centered(&std));
    let spread = (e.square().sum(Kind::Double) * s.square().sum(Kind::Double))
        .sqrt()
        .double_value(&[]);
    if predicted <= 0.0 || spread <= 0.0 {
        return None;
    }
    Some(Calibration {
        error_ratio: (measured / predicted).sqrt(),
        correlation: (e * s).sum(Kind::Double).double_value(&[]) / spread,
    })
}

/// Separable Gaussian filter of `[N, 1, H, W]` without padding: returns
/// `[N, 1, H − 10, W − 10]`, the filtered values at the pixels whose whole
/// window is inside the image. Weights as scipy's `gaussian_filter`:
/// exp(−k²/2σ²) for |k| ≤ 5, normalised to sum 1.
fn gaussian_valid(images: &Tensor) -> Tensor {
    let taps: Vec<f64> = (-SSIM_RADIUS..=SSIM_RADIUS)
        .map(|k| (-0.5 * (k as f64 / SSIM_SIGMA).powi(2)).exp())
        .collect();
    let total: f64 = taps.iter().sum();
    let taps: Vec<f64> = taps.iter().map(|t| t / total).collect();
    let len = taps.len() as i64;
    let kernel = Tensor::from_slice(&taps).to_device(images.device());
    let rows = images.conv2d(
        &kernel.view([1, 1, len, 1]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    );
    rows.conv2d(
        &kernel.view([1, 1, 1, len]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    )
}

fn check_shapes(metric: &str, x: &Tensor, reference: &Tensor) {
    let (sx, sr) = (x.size(), reference.size());
    assert!(
        sx == sr,
        "{metric}: shape mismatch: x is {sx:?} but reference is {sr:?}"
    );
}

fn check_range(metric: &str, data_range: f64) {
    assert!(
        data_range.is_finite() && data_range > 0.0,
        "{metric}: data_range must be positive and finite, got {data_range}"
    );
}
