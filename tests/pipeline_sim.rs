//! `pipeline::simulate`: the raw objects read back with `read_raw` have the asked
//! dimensions, mask and noise level; the ground-truth series holds the source
//! images in the raw series' study and frame of reference.

use std::path::{Path, PathBuf};

use dps_operators::ct::{BeamGeometry, CtGeometry, Radon};
use dps_operators::masks::{center_block, MaskSpec};
use dps_operators::mri::MultiCoilMri;
use dps_operators::Operator;
use dps_recon::dicom::{
    read_raw, read_series, CtDataType, CtGeometry as RawGeometry, ImageSeries, Measurement,
    RawMeasurement, ReadLimits,
};
use dps_recon::metrics::psnr;
use dps_recon::phantom::{
    hu_to_mu, random_ellipses, shepp_logan_hu, PhantomStyle, MU_WATER_70KEV_PER_MM,
};
use dps_recon::pipeline::problem::Problem;
use dps_recon::pipeline::reconstruct::{baseline, Baseline, DEFAULT_CG_ITERATIONS};
use dps_recon::pipeline::simulate::{
    simulate, write_simulation, Acquisition, CtAcquisition, CtNoise, MriAcquisition,
    SimulationConfig, Source, WrittenSimulation,
};
use dps_recon::volume::square_resample;
use tch::{Device, Kind, Tensor};

fn mri(coils: usize, sigma: f64, store_sensitivities: bool) -> Acquisition {
    Acquisition::Mri(MriAcquisition {
        coils,
        mask: MaskSpec::RandomLines {
            acceleration: 4.0,
            center_fraction: 0.08,
        },
        noise_sigma: sigma,
        store_sensitivities,
    })
}

fn ct(beam: BeamGeometry, views: usize, noise: CtNoise) -> Acquisition {
    Acquisition::Ct(CtAcquisition {
        beam,
        views,
        arc_deg: if beam == BeamGeometry::Parallel {
            180.0
        } else {
            360.0
        },
        noise,
    })
}

fn config(source: Source, acquisition: Acquisition, size: usize) -> SimulationConfig {
    SimulationConfig {
        source,
        acquisition,
        size,
        phantom_fov_mm: None,
        nifti_scale: 255.0,
        seed: 7,
        body_part: None,
    }
}

/// Simulates and writes into `dir`.
fn run(cfg: &SimulationConfig, dir: &Path) -> WrittenSimulation {
    let sim = simulate(cfg).unwrap();
    write_simulation(&sim, dir, Some("test")).unwrap()
}

fn raws(w: &WrittenSimulation) -> Vec<RawMeasurement> {
    w.raw_files
        .iter()
        .map(|f| read_raw(f, ReadLimits::default()).unwrap())
        .collect()
}

fn truth(w: &WrittenSimulation) -> ImageSeries {
    read_series(&w.truth.files, ReadLimits::default()).unwrap()
}

fn tensor(pixels: &[f32], n: i64) -> Tensor {
    Tensor::from_slice(pixels).view([n, n])
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Population standard deviation and mean.
fn std_mean(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (var.sqrt(), mean)
}

#[test]
fn mri_kspace_has_the_mask_noise_and_truth_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let sigma = 0.01;
    let cfg = config(Source::EllipsesMr(vec![3, 4]), mri(4, sigma, true), 64);
    let written = run(&cfg, dir.path());
    let raws = raws(&written);
    let series = truth(&written);
    assert_eq!(raws.len(), 2);
    assert_eq!(series.frames.len(), 2);

    let ctx = &raws[0].context;
    assert_eq!(ctx.modality, "MR");
    assert_eq!(raws[1].context.series_instance_uid, ctx.series_instance_uid);
    assert_eq!(series.context.study_instance_uid, ctx.study_instance_uid);
    assert_eq!(
        series.context.frame_of_reference_uid,
        ctx.frame_of_reference_uid
    );
    assert_ne!(series.context.series_instance_uid, ctx.series_instance_uid);
    assert_eq!(series.context.modality, "MR");

    let mut residuals = Vec::new();
    for (i, (raw, seed)) in raws.iter().zip([3u64, 4]).enumerate() {
        assert_eq!(raw.recon_size, [64, 64]);
        assert_eq!(raw.recon_pixel_spacing_mm, [4.0, 4.0]); // 256 mm / 64
        assert_eq!(raw.noise_sigma, Some(sigma));
        assert_eq!(raw.instance_number, Some(i as i32 + 1));
        let Measurement::MriKspace(k) = &raw.data else {
            panic!("not k-space")
        };
        assert_eq!(raw.data.dimensions(), vec![4, 64, 64]);
        // 16 of 64 lines (4×), the 5 centre lines among them, whole lines.
        let rows: Vec<bool> = (0..64)
            .map(|r| k.mask[r * 64..(r + 1) * 64].iter().all(|&m| m == 1))
            .collect();
        assert!(k.mask.iter().all(|&m| m <= 1));
        let acquired = k.mask.iter().filter(|&&m| m == 1).count();
        assert_eq!(acquired, 16 * 64);
        assert!(center_block(64, 5).all(|r| rows[r]));

        // The truth frame at this slice's position is the phantom.
        let frame = &series.frames[i];
        assert_eq!(frame.plane.unwrap().position_mm, raw.plane.position_mm);
        assert_eq!(frame.pixel_spacing_mm, Some([4.0, 4.0]));
        let truth = tensor(&frame.pixels, 64);
        let phantom = random_ellipses(64, seed, PhantomStyle::Mr);
        assert!(max_abs_diff(&truth, &phantom) < 1e-4);

        // y − A(truth) on the acquired samples is the noise.
        let sens = Tensor::view_as_complex(
            &Tensor::from_slice(k.sensitivities.as_ref().unwrap()).view([4, 64, 64, 2]),
        );
        let mask = Tensor::from_slice(&k.mask)
            .view([64, 64])
            .to_kind(Kind::Float);
        let op = MultiCoilMri::new(&mask, &sens, Device::Cpu).unwrap();
        let clean = op.forward(&truth.view([1, 1, 64, 64]));
        let clean = Vec::<f32>::try_from(clean.view_as_real().contiguous().view([-1])).unwrap();
        for (j, (y, a)) in k.data.iter().zip(&clean).enumerate() {
            if k.mask[(j / 2) % 4096] == 1 {
                residuals.push(f64::from(y - a));
            } else {
                assert_eq!(*y, 0.0);
            }
        }
    }
    let (std, mean) = std_mean(&residuals);
    assert_eq!(residuals.len(), 2 * 4 * 16 * 64 * 2);
    assert!(
        (std / sigma - 1.0).abs() < 0.1,
        "noise std {std}, σ {sigma}"
    );
    assert!(mean.abs() < 0.1 * sigma, "noise mean {mean}");
}

#[test]
fn mri_without_stored_sensitivities_reconstructs_from_the_acs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Source::SheppLogan, mri(8, 0.0, false), 64);
    let written = run(&cfg, dir.path());
    let raw = &raws(&written)[0];
    let Measurement::MriKspace(k) = &raw.data else {
        panic!("not k-space")
    };
    assert!(k.sensitivities.is_none());
    assert_eq!(raw.noise_sigma, Some(0.0));
    let problem = Problem::from_raw(raw, Device::Cpu).unwrap();
    assert_eq!(problem.image_size, [64, 64]);
    assert_eq!(problem.y.size(), [1, 8, 64, 64]);
    // Coil maps estimated from the 5 calibration lines: CG-SENSE gains over the
    // zero-filled adjoint (measured 20.31 against 18.19 dB; with the true maps
    // stored, 22.59 dB). Maps of the wrong coil order or scale fall below.
    let truth = tensor(&truth(&written).frames[0].pixels, 64);
    let score = |which| {
        let x = baseline(&problem, which).unwrap().abs().view([64, 64]);
        psnr(&x, &truth, 1.0)
    };
    let zero_filled = score(Baseline::ZeroFilled);
    let cg = score(Baseline::CgSense {
        iterations: DEFAULT_CG_ITERATIONS,
    });
    assert!(
        cg > 19.8 && cg > zero_filled + 1.5,
        "CG-SENSE {cg:.2} dB, zero-filled {zero_filled:.2} dB"
    );
}

#[test]
fn ct_line_integrals_have_the_geometry_and_noise_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let sigma = 0.02;
    let cfg = config(
        Source::SheppLoganHu,
        ct(BeamGeometry::Parallel, 20, CtNoise::LineIntegrals { sigma }),
        64,
    );
    let written = run(&cfg, dir.path());
    let raw = &raws(&written)[0];
    assert_eq!(raw.context.modality, "CT");
    assert_eq!(raw.noise_sigma, Some(sigma));
    let Measurement::CtSinogram(s) = &raw.data else {
        panic!("not a sinogram")
    };
    // The detector covers the image diagonal (64 · 4 mm · √2) with 4 mm elements.
    assert_eq!((s.views, s.detectors), (20, 93));
    assert_eq!(s.geometry, RawGeometry::Parallel);
    assert_eq!(s.detector_spacing, 4.0);
    assert_eq!(s.data_type, CtDataType::LineIntegral);
    assert_eq!(s.water_attenuation_per_mm, MU_WATER_70KEV_PER_MM);
    assert_eq!(s.view_angles_deg[1], 9.0);

    let series = truth(&written);
    assert_eq!(series.context.modality, "CT");
    let truth = tensor(&series.frames[0].pixels, 64);
    assert!(max_abs_diff(&truth, &shepp_logan_hu(64)) < 0.51);

    let geometry = CtGeometry {
        rows: 64,
        cols: 64,
        pixel_spacing_mm: 4.0,
        angles_deg: s.view_angles_deg.clone(),
        n_detectors: s.detectors,
        detector_spacing: s.detector_spacing,
        detector_offset: 0.0,
        beam: BeamGeometry::Parallel,
    };
    let clean = Radon::new(&geometry, Device::Cpu).forward(&hu_to_mu(
        &shepp_logan_hu(64).view([1, 1, 64, 64]),
        MU_WATER_70KEV_PER_MM,
    ));
    let clean = Vec::<f32>::try_from(clean.view([-1])).unwrap();
    // Line integrals of μ (1/mm) along mm: a few units through the head.
    let peak = clean.iter().cloned().fold(0.0f32, f32::max);
    assert!((3.0..7.0).contains(&peak), "largest line integral {peak}");
    let residuals: Vec<f64> = s
        .data
        .iter()
        .zip(&clean)
        .map(|(y, a)| f64::from(y - a))
        .collect();
    let (std, mean) = std_mean(&residuals);
    assert!(
        (std / sigma - 1.0).abs() < 0.1,
        "noise std {std}, σ {sigma}"
    );
    assert!(mean.abs() < 0.1 * sigma, "noise mean {mean}");
}

#[test]
fn ct_counts_are_poisson_around_the_blank_scan_attenuated() {
    let dir = tempfile::tempdir().unwrap();
    let i0 = 1e4;
    let beam = BeamGeometry::FanEquiangular {
        source_to_isocenter_mm: 570.0,
        source_to_detector_mm: 1040.0,
    };
    let cfg = config(
        Source::EllipsesCt(vec![5]),
        ct(
            beam,
            24,
            CtNoise::Counts {
                blank_scan_counts: i0,
            },
        ),
        64,
    );
    let written = run(&cfg, dir.path());
    let raw = &raws(&written)[0];
    assert_eq!(raw.noise_sigma, None);
    let Measurement::CtSinogram(s) = &raw.data else {
        panic!("not a sinogram")
    };
    assert_eq!(s.geometry, RawGeometry::FanEquiangular);
    assert_eq!(s.source_to_isocenter_mm, Some(570.0));
    assert_eq!(s.source_to_detector_mm, Some(1040.0));
    assert_eq!(
        s.data_type,
        CtDataType::Counts {
            blank_scan_counts: i0
        }
    );
    assert_eq!(s.view_angles_deg[1], 15.0);
    assert!((s.detector_spacing - (4.0f64 / 570.0).to_degrees()).abs() < 1e-12);

    let problem = Problem::from_raw(raw, Device::Cpu).unwrap();
    assert_eq!(problem.blank_scan_counts, Some(i0));
    let truth = tensor(&truth(&written).frames[0].pixels, 64);
    let phantom = random_ellipses(64, 5, PhantomStyle::Ct);
    assert!(max_abs_diff(&truth, &phantom) < 0.05);
    let p = problem.op().forward(&hu_to_mu(
        &phantom.view([1, 1, 64, 64]),
        MU_WATER_70KEV_PER_MM,
    ));
    let expected =
        Vec::<f64>::try_from((p.neg().exp() * i0).to_kind(Kind::Double).view([-1])).unwrap();
    assert!(s.data.iter().all(|&n| n >= 0.0 && n.fract() == 0.0));
    let z: Vec<f64> = s
        .data
        .iter()
        .zip(&expected)
        .map(|(&n, &lambda)| (f64::from(n) - lambda) / lambda.sqrt())
        .collect();
    let (std, mean) = std_mean(&z);
    assert!((std - 1.0).abs() < 0.1, "standardised count std {std}");
    assert!(mean.abs() < 0.1, "standardised count mean {mean}");
}

#[test]
fn a_dicom_series_is_resampled_about_its_centre() {
    let first = tempfile::tempdir().unwrap();
    let noiseless = CtNoise::LineIntegrals { sigma: 0.0 };
    let written = run(
        &config(
            Source::SheppLoganHu,
            ct(BeamGeometry::Parallel, 10, noiseless),
            64,
        ),
        first.path(),
    );
    let source = truth(&written).frames[0].clone();

    let second = tempfile::tempdir().unwrap();
    let cfg = config(
        Source::Dicom {
            dir: first.path().join("truth"),
            frames: None,
        },
        ct(BeamGeometry::Parallel, 10, noiseless),
        32,
    );
    let again = run(&cfg, second.path());
    let raw = &raws(&again)[0];
    assert_eq!(raw.recon_size, [32, 32]);
    assert_eq!(raw.recon_pixel_spacing_mm, [8.0, 8.0]);
    // The image centre stays where it was: IPP + (n − 1)/2 · Δ along rows and columns.
    let centre = |ipp: [f64; 3], n: f64, d: f64| {
        [ipp[0] + (n - 1.0) / 2.0 * d, ipp[1] + (n - 1.0) / 2.0 * d]
    };
    let before = centre(source.plane.unwrap().position_mm, 64.0, 4.0);
    let after = centre(raw.plane.position_mm, 32.0, 8.0);
    assert!((before[0] - after[0]).abs() < 1e-9 && (before[1] - after[1]).abs() < 1e-9);
    assert_eq!(raw.plane.position_mm, [-124.0, -124.0, 0.0]);

    let resampled = square_resample(&tensor(&source.pixels, 64), 32);
    let truth = tensor(&truth(&again).frames[0].pixels, 32);
    assert!(max_abs_diff(&truth, &resampled.clamp_min(-1000.0)) < 0.05);
}

#[test]
fn nifti_slices_are_divided_by_the_scale_and_placed_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.nii");
    // 24 (x) × 16 (y) × 6 (z) voxels of 1 × 1 × 2.5 mm; value = 10 z + 10 inside a block.
    let mut vol = ndarray::Array3::<f32>::zeros((24, 16, 6));
    for ((x, y, z), v) in vol.indexed_iter_mut() {
        if (4..20).contains(&x) && (3..13).contains(&y) {
            *v = 10.0 * z as f32 + 10.0;
        }
    }
    let header = nifti::NiftiHeader {
        pixdim: [1.0, 1.0, 1.0, 2.5, 1.0, 1.0, 1.0, 1.0],
        ..Default::default()
    };
    nifti::writer::WriterOptions::new(&path)
        .reference_header(&header)
        .write_nifti(&vol)
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(
        Source::Nifti {
            path: path.clone(),
            slices: vec![4, 2],
        },
        mri(2, 0.0, false),
        24,
    );
    cfg.nifti_scale = 50.0;
    let written = run(&cfg, out.path());
    let raws = raws(&written);
    assert_eq!(raws.len(), 2);
    for (raw, z) in raws.iter().zip([4.0, 2.0]) {
        assert_eq!(raw.recon_pixel_spacing_mm, [1.0, 1.0]);
        assert_eq!(raw.slice_location_mm, Some(2.5 * z));
        assert_eq!(raw.slice_thickness_mm, Some(2.5));
        assert_eq!(
            raw.plane.orientation,
            [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            "column index runs towards the patient's right"
        );
        assert_eq!(raw.plane.position_mm, [11.5, -11.5, 2.5 * z]);
    }
    let series = truth(&written);
    assert_eq!(series.frames.len(), 2);
    for frame in &series.frames {
        let z = (frame.plane.unwrap().position_mm[2] / 2.5) as f32;
        let max = frame.pixels.iter().cloned().fold(0.0f32, f32::max);
        assert!((max - (10.0 * z + 10.0) / 50.0).abs() < 1e-4, "max {max}");
    }
}

#[test]
fn sources_parse_and_print_back() {
    for s in [
        "shepp-logan",
        "shepp-logan-hu",
        "ellipses-ct:1,2,3",
        "ellipses-mr:0",
        "nifti:/data/a:b.nii.gz:85,95,105",
        "dicom:/data/series",
        "dicom:/data/series:0,4",
    ] {
        assert_eq!(Source::parse(s).unwrap().to_string(), s);
    }
    assert_eq!(
        Source::parse("nifti:/v.nii:7").unwrap(),
        Source::Nifti {
            path: PathBuf::from("/v.nii"),
            slices: vec![7]
        }
    );
    for bad in [
        "",
        "phantom",
        "ellipses-ct:",
        "ellipses-mr:-1",
        "nifti:/v.nii",
        "nifti::3",
        "dicom:",
    ] {
        assert!(Source::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn mismatched_sources_options_and_folders_are_refused() {
    let err = |cfg: &SimulationConfig| simulate(cfg).err().unwrap().to_string();
    let noiseless = CtNoise::LineIntegrals { sigma: 0.0 };
    let e = err(&config(Source::SheppLoganHu, mri(2, 0.0, false), 32));
    assert!(e.contains("CT phantom"), "{e}");
    let e = err(&config(
        Source::SheppLogan,
        ct(BeamGeometry::Parallel, 4, noiseless),
        32,
    ));
    assert!(e.contains("MR phantom"), "{e}");
    let mut cfg = config(
        Source::Nifti {
            path: "/nonexistent.nii".into(),
            slices: vec![0],
        },
        mri(2, 0.0, false),
        32,
    );
    cfg.phantom_fov_mm = Some(200.0);
    assert!(err(&cfg).contains("phantoms only"));
    let fan = BeamGeometry::FanFlat {
        source_to_isocenter_mm: 100.0,
        source_to_detector_mm: 200.0,
    };
    let e = err(&config(Source::SheppLoganHu, ct(fan, 4, noiseless), 32));
    assert!(e.contains("source circle"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("raw")).unwrap();
    std::fs::write(dir.path().join("raw/old.dcm"), b"x").unwrap();
    let sim = simulate(&config(Source::SheppLogan, mri(2, 0.0, false), 32)).unwrap();
    let e = write_simulation(&sim, dir.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
}
