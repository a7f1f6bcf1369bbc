//! `pipeline::validate` without a prior: baseline parsing, the TV weight for
//! counts, and the averages, best baseline and montage of a validation.

use std::collections::BTreeMap;

use dps_operators::ct::{BeamGeometry, FbpFilter};
use dps_operators::noise::pwls_weights;
use dps_recon::dicom::ImageModality;
use dps_recon::pipeline::problem::Problem;
use dps_recon::pipeline::reconstruct::{tv_weight, Baseline};
use dps_recon::pipeline::simulate::{
    simulate, Acquisition, CtAcquisition, CtNoise, SimulationConfig, Source,
};
use dps_recon::pipeline::validate::{
    default_baselines, parse_baseline, Scores, SliceResult, Validation, DPS,
};
use tch::{Device, Kind, Tensor};

#[test]
fn baselines_parse_with_their_defaults_and_modality() {
    let mr = ImageModality::Mr;
    let ct = ImageModality::Ct;
    let p = |s: &str, m| parse_baseline(s, m).unwrap();
    assert_eq!(p("zero-filled", mr), Baseline::ZeroFilled);
    assert_eq!(p("cg-sense", mr), Baseline::CgSense { iterations: 10 });
    assert_eq!(p("cg-sense:7", mr), Baseline::CgSense { iterations: 7 });
    assert_eq!(p("fbp", ct), Baseline::Fbp(FbpFilter::Hann));
    assert_eq!(p("fbp:ramp", ct), Baseline::Fbp(FbpFilter::Ramp));
    assert_eq!(
        p("fbp:shepp-logan", ct),
        Baseline::Fbp(FbpFilter::SheppLogan)
    );
    assert_eq!(
        p("tv", mr),
        Baseline::Tv {
            lambda: 0.001,
            iterations: 1000
        }
    );
    assert_eq!(
        p("tv", ct),
        Baseline::Tv {
            lambda: 0.02,
            iterations: 1000
        }
    );
    assert_eq!(
        p("tv:0.5:40", ct),
        Baseline::Tv {
            lambda: 0.5,
            iterations: 40
        }
    );
    for (bad, m, why) in [
        ("fbp", mr, "does not apply to MR"),
        ("cg-sense", ct, "does not apply to CT"),
        ("zero-filled", ct, "does not apply to CT"),
        ("tv:-1", ct, "not a number ≥ 0"),
        ("cg-sense:0", mr, "iteration count"),
        ("fbp:gauss", ct, "not ramp, shepp-logan or hann"),
        ("tv:1:2:3", ct, "expected"),
        ("sense", mr, "expected"),
    ] {
        let e = parse_baseline(bad, m).err().unwrap().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    let names = |m| {
        default_baselines(m)
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(mr), ["zero-filled", "cg-sense", "tv"]);
    assert_eq!(names(ct), ["fbp", "tv"]);
}

#[test]
fn tv_weight_for_counts_is_scaled_by_the_mean_count() {
    let sim = simulate(&SimulationConfig {
        source: Source::SheppLoganHu,
        acquisition: Acquisition::Ct(CtAcquisition {
            beam: BeamGeometry::Parallel,
            views: 6,
            arc_deg: 180.0,
            noise: CtNoise::Counts {
                blank_scan_counts: 1e3,
            },
        }),
        size: 32,
        phantom_fov_mm: None,
        nifti_scale: 255.0,
        seed: 0,
        body_part: None,
    })
    .unwrap();
    let problem = Problem::from_raw(&sim.raw[0], Device::Cpu).unwrap();
    let mean = problem.y.mean(Kind::Double).double_value(&[]);
    assert!(mean > 10.0 && mean < 1e3, "mean count {mean}");
    let lambda = tv_weight(0.02, Some(&pwls_weights(&problem.y)));
    assert!((lambda - 0.02 * mean).abs() < 1e-9 * lambda, "{lambda}");
}

fn scores(psnr: f64, residual: Option<f64>) -> Scores {
    Scores {
        psnr,
        ssim: psnr / 100.0,
        nmse: 1.0 / psnr,
        residual,
        seconds: 2.0 * psnr,
    }
}

/// A 16 × 16 MR slice: truth a ramp over [0, 1], DPS off by 0.06, posterior
/// std 0.02, the baselines scored `zf` and `cg` dB.
fn slice(zf: f64, cg: f64, residual: Option<f64>) -> SliceResult {
    let truth = Tensor::arange(256, (Kind::Float, Device::Cpu)).view([16, 16]) / 255.0;
    let mut images = BTreeMap::new();
    images.insert("zero-filled".to_string(), &truth * 0.5);
    images.insert("cg-sense".to_string(), truth.copy());
    images.insert(DPS.to_string(), &truth + 0.06);
    let mut s = BTreeMap::new();
    s.insert("zero-filled".to_string(), scores(zf, None));
    s.insert("cg-sense".to_string(), scores(cg, Some(1.0)));
    s.insert(DPS.to_string(), scores(30.0, residual));
    SliceResult {
        location_mm: 0.0,
        file: "x.dcm".into(),
        mri_scale: Some(1.0),
        scores: s,
        posterior_std: Tensor::full([16, 16], 0.02, (Kind::Float, Device::Cpu)),
        calibration: None,
        truth,
        images,
    }
}

#[test]
fn means_best_baseline_and_montage() {
    let v = Validation {
        modality: ImageModality::Mr,
        data_range: 1.0,
        baselines: vec![Baseline::ZeroFilled, Baseline::CgSense { iterations: 10 }],
        slices: vec![slice(20.0, 26.0, Some(1.5)), slice(22.0, 21.0, None)],
    };
    assert_eq!(v.methods(), ["zero-filled", "cg-sense", "dps"]);
    let mean = v.mean();
    assert_eq!(mean["zero-filled"].psnr, 21.0);
    assert_eq!(mean["cg-sense"].psnr, 23.5);
    assert_eq!(mean["cg-sense"].seconds, 47.0);
    assert_eq!(mean["cg-sense"].residual, Some(1.0));
    assert_eq!(mean[DPS].residual, None, "one slice has no residual");
    assert_eq!(v.best_baseline().as_deref(), Some("cg-sense"));
    assert_eq!(
        v.montage_columns(),
        [
            "truth",
            "cg-sense",
            "dps posterior mean",
            "|dps − truth|",
            "dps posterior std"
        ]
    );

    let m = v.montage();
    assert_eq!(m.size(), [16 + 4 + 16, 5 * 16 + 4 * 4]);
    assert_eq!(m.kind(), Kind::Uint8);
    let px = |r: i64, c: i64| m.int64_value(&[r, c]);
    // Row 0: truth 0 → 0; last truth pixel 1 → 255; gaps are black.
    assert_eq!(px(0, 0), 0);
    assert_eq!(px(15, 15), 255);
    assert_eq!(px(0, 16), 0);
    assert_eq!(px(16, 0), 0);
    // |error| 0.06 and std 0.02 through [0, 0.1]: 153 and 51.
    assert_eq!(px(5, 3 * 20 + 5), 153);
    assert_eq!(px(5, 4 * 20 + 5), 51);
    // The second row starts after the 4-pixel gap.
    assert_eq!(px(20 + 15, 15), 255);
}
