//! The low-frequency data-consistency step on a CT case with a known answer: a
//! smooth offset and lost contrast are put back from the data, fine detail is
//! left alone, and an image that already fits the data is returned unchanged.

use dps_operators::blur::Blur;
use dps_operators::ct::{uniform_angles, CtGeometry, Radon};
use dps_operators::kernels::gaussian_kernel;
use dps_operators::noise::add_gaussian;
use dps_operators::op::Operator;
use dps_operators::solvers::lowpass::{low_frequency_correction, LowpassOptions};
use tch::{Device, Kind, Tensor};

const N: i64 = 64;

/// The step under test: σ = 3 px, 20 CG iterations.
const OPTIONS: LowpassOptions = LowpassOptions {
    sigma_px: 3.0,
    iterations: 20,
};

/// `[1, 1, N, N]`: value `v` inside the disc of radius `r` px about (`cy`, `cx`).
fn disc(cy: f64, cx: f64, r: f64, v: f64) -> Tensor {
    let i = Tensor::arange(N, (Kind::Float, Device::Cpu)) + 0.5 - N as f64 / 2.0;
    let (y, x) = (i.view([N, 1]), i.view([1, N]));
    ((y - cy).square() + (x - cx).square())
        .le(r * r)
        .to_kind(Kind::Float)
        .view([1, 1, N, N])
        * v
}

fn rms(x: &Tensor) -> f64 {
    x.square().mean(Kind::Double).sqrt().double_value(&[])
}

/// The blur that defines "smooth" in the checks (σ = 3 px).
fn smooth(x: &Tensor) -> Tensor {
    Blur::new(&gaussian_kernel(19, 3.0)).forward(x)
}

fn radon() -> Radon {
    Radon::new(
        &CtGeometry::parallel(N as usize, uniform_angles(90, 180.0)),
        Device::Cpu,
    )
}

/// Truth: a body with a faint large insert. The image to correct has lost half of
/// the insert's contrast, carries a wide offset, and has fine noise the data do not
/// ask to remove.
fn case() -> (Tensor, Tensor, Tensor) {
    let truth = disc(0.0, 0.0, 26.0, 1.0) + disc(-6.0, 4.0, 9.0, -0.1);
    let offset = disc(0.0, 0.0, 26.0, 1.0) * 0.04 * (-disc(8.0, -8.0, 12.0, 1.0) + 1.0);
    let detail = add_gaussian(
        &Tensor::zeros([1, 1, N, N], (Kind::Float, Device::Cpu)),
        0.02,
        7,
    );
    let image = &truth - disc(-6.0, 4.0, 9.0, -0.05) + offset + &detail;
    (truth, image, detail)
}

#[test]
fn fits_the_smooth_error_and_keeps_the_detail() {
    let op = radon();
    let (truth, image, detail) = case();
    let y = op.forward(&truth);
    for weights in [
        None,
        Some(add_gaussian(&y.zeros_like(), 1.0, 3).abs() + 2.0),
    ] {
        let out = low_frequency_correction(&op, &image, &y, weights.as_ref(), &OPTIONS);
        let before = rms(&smooth(&(&image - &truth)));
        let after = rms(&smooth(&(&out - &truth)));
        assert!(
            after < 0.1 * before,
            "smooth error {before:.4} → {after:.4} (weights: {})",
            weights.is_some()
        );
        // The fine noise is left in place: the step removes little of it (its share
        // at low frequencies, which the data do ask to remove: 3.7 % here).
        let change = &out - &image;
        let removed = -(&change * &detail).sum(Kind::Double).double_value(&[])
            / detail.square().sum(Kind::Double).double_value(&[]);
        assert!(
            removed.abs() < 0.1,
            "the step removed {:.1} % of the fine detail",
            100.0 * removed
        );
    }
}

#[test]
fn an_image_that_fits_the_data_is_unchanged() {
    let op = radon();
    let (truth, _, _) = case();
    let y = op.forward(&truth);
    let out = low_frequency_correction(&op, &truth, &y, None, &OPTIONS);
    assert_eq!(
        (&out - &truth).abs().max().double_value(&[]),
        0.0,
        "an exact fit must come back bit for bit"
    );
    let none = LowpassOptions {
        iterations: 0,
        ..OPTIONS
    };
    let (_, image, _) = case();
    let out = low_frequency_correction(&op, &image, &y, None, &none);
    assert_eq!((&out - &image).abs().max().double_value(&[]), 0.0);
}
