//! `dps_recon::metrics` against scikit-image: tests/fixtures/metrics/ holds image
//! pairs and skimage's PSNR, SSIM and NMSE for them, written by
//! scripts/fixtures/make_metrics_fixtures.py.

use std::path::{Path, PathBuf};

use dps_recon::metrics::{calibration, mse, nmse, psnr, ssim, Calibration};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
}

/// One fixture pair: (name, x, reference, data_range, expected case).
fn cases() -> Vec<(String, Tensor, Tensor, f64, Value)> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let meta: Value = serde_json::from_str(&text).unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    cases
        .iter()
        .map(|c| {
            let load = |key: &str| {
                let path = fixtures().join(c[key].as_str().unwrap());
                Tensor::read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            };
            let (x, r) = (load("x"), load("reference"));
            let shape: Vec<i64> = c["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(x.size(), shape);
            assert_eq!(x.kind(), Kind::Float);
            let name = c["name"].as_str().unwrap().to_owned();
            let range = c["data_range"].as_f64().unwrap();
            (name, x, r, range, c.clone())
        })
        .collect()
}

fn expected(case: &Value, key: &str) -> f64 {
    case[key].as_f64().unwrap()
}

/// Agreement bound for PSNR (dB), SSIM (absolute) and NMSE (relative). Both
/// sides compute in float64 from the same float32 images; the measured gap is
/// below 2e-15.
const TOL: f64 = 1e-9;

#[test]
fn psnr_matches_skimage() {
    for (name, x, r, range, case) in cases() {
        let got = psnr(&x, &r, range);
        let want = expected(&case, "psnr");
        assert!((got - want).abs() < TOL, "{name}: {got} dB vs {want} dB");
    }
}

#[test]
fn ssim_matches_skimage() {
    for (name, x, r, range, case) in cases() {
        let got = ssim(&x, &r, range);
        let want = expected(&case, "ssim");
        assert!((got - want).abs() < TOL, "{name}: {got} vs {want}");
        // Symmetric in its arguments.
        assert!((ssim(&r, &x, range) - got).abs() < 1e-12, "{name}");
    }
}

#[test]
fn nmse_matches_skimage() {
    for (name, x, r, _, case) in cases() {
        let got = nmse(&x, &r);
        let want = expected(&case, "nmse");
        assert!((got / want - 1.0).abs() < TOL, "{name}: {got} vs {want}");
    }
}

#[test]
fn ssim_is_invariant_to_units() {
    // Scaling images and data_range together keeps SSIM (an offset would not:
    // the luminance term depends on the means themselves).
    for (name, x, r, range, _) in cases() {
        let base = ssim(&x, &r, range);
        let (x, r) = (x.to_kind(Kind::Double), r.to_kind(Kind::Double));
        let scaled = ssim(&(&x * 0.0193), &(&r * 0.0193), range * 0.0193);
        assert!((scaled - base).abs() < 1e-9, "{name}: {scaled} vs {base}");
    }
}

#[test]
fn ssim_of_a_batch_is_the_mean_over_images() {
    let (_, x, r, range, case) = cases().remove(0);
    let single = ssim(&x, &r, range);
    let expect = (expected(&case, "ssim") + 1.0) / 2.0;
    // [1, 1, H, W] is the same image.
    assert!(
        (ssim(
            &x.unsqueeze(0).unsqueeze(0),
            &r.unsqueeze(0).unsqueeze(0),
            range
        ) - single)
            .abs()
            < 1e-12
    );
    // [2, 1, H, W]: the pair and the reference with itself (SSIM 1).
    let xs = Tensor::stack(&[&x, &r], 0).unsqueeze(1);
    let rs = Tensor::stack(&[&r, &r], 0).unsqueeze(1);
    assert_eq!(xs.size()[..2], [2, 1]);
    assert!((ssim(&xs, &rs, range) - expect).abs() < TOL);
}

#[test]
fn identical_images() {
    let (_, _, r, range, _) = cases().remove(2);
    assert_eq!(ssim(&r, &r, range), 1.0);
    assert_eq!(psnr(&r, &r, range), f64::INFINITY);
    assert_eq!(mse(&r, &r), 0.0);
    assert_eq!(nmse(&r, &r), 0.0);
}

#[test]
fn constant_offset_gives_known_values() {
    // x = ref + 0.1 everywhere: MSE 0.01, PSNR 20 dB for data_range 1.
    let r = Tensor::rand([20, 30], (Kind::Float, Device::Cpu));
    let x = &r + 0.1;
    assert!((mse(&x, &r) - 0.01).abs() < 1e-8);
    assert!((psnr(&x, &r, 1.0) - 20.0).abs() < 1e-5);
    let rr = r
        .to_kind(Kind::Double)
        .square()
        .sum(Kind::Double)
        .double_value(&[]);
    assert!((nmse(&x, &r) - 600.0 * 0.01 / rr).abs() < 1e-8);
}

#[test]
fn ssim_on_cuda_matches_cpu() {
    // Runs only where a CUDA device is present; on CPU-only machines it has nothing to compare.
    if !tch::Cuda::is_available() {
        eprintln!("ssim_on_cuda_matches_cpu: skipped, no CUDA device");
        return;
    }
    for (name, x, r, range, case) in cases() {
        let (xg, rg) = (x.to_device(Device::Cuda(0)), r.to_device(Device::Cuda(0)));
        let got = ssim(&xg, &rg, range);
        assert!((got - expected(&case, "ssim")).abs() < TOL, "{name}: {got}");
        assert!(
            (psnr(&xg, &rg, range) - expected(&case, "psnr")).abs() < TOL,
            "{name}"
        );
    }
}

#[test]
#[should_panic(expected = "ssim: shape mismatch: x is [12, 13] but reference is [13, 12]")]
fn ssim_rejects_mismatched_shapes() {
    let a = Tensor::zeros([12, 13], (Kind::Float, Device::Cpu));
    ssim(&a, &a.transpose(0, 1), 1.0);
}

#[test]
#[should_panic(expected = "psnr: shape mismatch: x is [4, 1] but reference is [1, 4]")]
fn psnr_does_not_broadcast() {
    let a = Tensor::zeros([4, 1], (Kind::Float, Device::Cpu));
    psnr(&a, &a.view([1, 4]), 1.0);
}

#[test]
#[should_panic(expected = "ssim: images must be at least 11 × 11 pixels, got 10 × 40")]
fn ssim_rejects_images_smaller_than_the_window() {
    let a = Tensor::zeros([10, 40], (Kind::Float, Device::Cpu));
    ssim(&a, &a, 1.0);
}

#[test]
#[should_panic(expected = "ssim: data_range must be positive and finite, got 0")]
fn ssim_rejects_zero_range() {
    let a = Tensor::zeros([16, 16], (Kind::Float, Device::Cpu));
    ssim(&a, &a, 0.0);
}

#[test]
fn calibration_by_hand() {
    let reference = Tensor::zeros([2, 2], (Kind::Double, Device::Cpu));
    let mean = Tensor::from_slice(&[0.0, 1.0, -2.0, 3.0]).view([2, 2]);
    let std = Tensor::from_slice(&[1.0, 1.0, 2.0, 2.0]).view([2, 2]);
    let c = calibration(&mean, &std, &reference, 3).unwrap();
    // Measured MSE 14/4; predicted mean(std²) (N + 1)/(N − 1) = 2.5 · 2.
    assert!(
        (c.error_ratio - (3.5f64 / 5.0).sqrt()).abs() < 1e-12,
        "{c:?}"
    );
    // |error| = 0, 1, 2, 3 against std 1, 1, 2, 2: 2 / √5.
    assert!((c.correlation - 2.0 / 5f64.sqrt()).abs() < 1e-12, "{c:?}");
    assert_eq!(calibration(&mean, &std, &reference, 1), None);
    assert_eq!(calibration(&mean, &std.ones_like(), &reference, 3), None);

    // Means of several checks, none if any check or every check is missing.
    let other = Calibration {
        error_ratio: 2.0,
        correlation: -0.5,
    };
    let m = Calibration::mean_of([Some(c), Some(other)]).unwrap();
    assert_eq!(m.error_ratio, (c.error_ratio + 2.0) / 2.0);
    assert_eq!(m.correlation, (c.correlation - 0.5) / 2.0);
    assert_eq!(Calibration::mean_of([Some(c), None]), None);
    assert_eq!(Calibration::mean_of([]), None);
}

/// N samples and the reference drawn from one Gaussian per pixel, with σ from
/// 0.01 to 1 across the image: calibrated by construction.
#[test]
fn a_calibrated_posterior_scores_one_and_a_wrong_std_does_not() {
    tch::manual_seed(11);
    let n = 4;
    let opts = (Kind::Double, Device::Cpu);
    let sigma = Tensor::linspace(0.01, 1.0, 256, opts)
        .view([1, 256])
        .expand([256, 256], false);
    let mu = Tensor::randn([256, 256], opts);
    let draw = || &mu + &sigma * Tensor::randn([256, 256], opts);
    let samples = Tensor::stack(&(0..n).map(|_| draw()).collect::<Vec<_>>(), 0);
    let reference = draw();
    let mean = samples.mean_dim(&[0i64][..], false, Kind::Double);
    let std = samples.std_dim(&[0i64][..], false, false);

    let c = calibration(&mean, &std, &reference, n).unwrap();
    assert!((c.error_ratio - 1.0).abs() < 0.02, "{c:?}");
    // 0.42 here: one pixel's |error| is a single draw and its std comes from 4
    // samples, so even a calibrated posterior is far from 1.
    assert!(c.correlation > 0.35, "{c:?}");
    // A standard deviation half as large understates the error twofold.
    let half = calibration(&mean, &(&std * 0.5), &reference, n).unwrap();
    assert!(
        (half.error_ratio - 2.0 * c.error_ratio).abs() < 1e-9,
        "{half:?}"
    );
    assert!((half.correlation - c.correlation).abs() < 1e-9, "{half:?}");
    // A map of the right size but unrelated to where the errors are.
    let shuffled = std
        .flatten(0, -1)
        .index_select(0, &Tensor::randperm(256 * 256, (Kind::Int64, Device::Cpu)))
        .view([256, 256]);
    let blind = calibration(&mean, &shuffled, &reference, n).unwrap();
    assert!(blind.correlation.abs() < 0.02, "{blind:?}");
}
