//! The phantom/operator demo run by `make demo` until the DICOM pipeline lands:
//! sparse-view CT and undersampled multi-coil MRI of a Shepp–Logan phantom,
//! reconstructed with the classical baselines, PSNR printed, PNGs written.
//!
//! Usage: `cargo run --release --example demo -- OUT_DIR`

use std::path::PathBuf;

use dps_operators::coils::{birdcage, root_sum_of_squares, DEFAULT_RING_RADIUS};
use dps_operators::ct::{uniform_angles, CtGeometry, FbpFilter, Radon};
use dps_operators::fft::ifft2c;
use dps_operators::masks::random_lines;
use dps_operators::mri::MultiCoilMri;
use dps_operators::noise::add_gaussian;
use dps_operators::solvers::cg::{solve_normal, CgOptions};
use dps_operators::solvers::tv::{tv_pdhg, TvOptions};
use dps_operators::Operator;
use dps_recon::metrics::{psnr, ssim};
use dps_recon::phantom::shepp_logan;
use dps_recon::render::{write_montage, Window};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "out/demo".into()));
    std::fs::create_dir_all(&out)?;
    let _guard = tch::no_grad_guard();
    let n = 256;
    let truth = shepp_logan(n);
    let x = truth.view([1, 1, n as i64, n as i64]);
    let show = |t: &Tensor| t.view([n as i64, n as i64]);
    let score = |t: &Tensor| (psnr(&show(t), &truth, 1.0), ssim(&show(t), &truth, 1.0));

    // Sparse-view CT: 60 parallel views over 180°, 1 % Gaussian noise on the line integrals.
    let radon = Radon::new(
        &CtGeometry::parallel(n, uniform_angles(60, 180.0)),
        Device::Cpu,
    );
    let clean = radon.forward(&x);
    let sigma = 0.01 * clean.max().double_value(&[]);
    let sino = add_gaussian(&clean, sigma, 1);
    let fbp = radon.fbp(&sino, FbpFilter::Hann);
    let tv = tv_pdhg(
        &radon,
        &sino,
        None,
        Some(&fbp),
        &TvOptions {
            lambda: 2.0,
            iterations: 300,
            nonnegative: true,
            ..Default::default()
        },
    );
    let (p_fbp, s_fbp) = score(&fbp);
    let (p_tv, s_tv) = score(&tv);
    println!("CT, 60 views, 1 % noise:  FBP {p_fbp:.2} dB (SSIM {s_fbp:.3})  TV {p_tv:.2} dB (SSIM {s_tv:.3})");
    let ct_png = out.join("ct_truth_fbp_tv.png");
    write_montage(
        &[
            (truth.shallow_clone(), Window::UNIT),
            (show(&fbp), Window::UNIT),
            (show(&tv), Window::UNIT),
        ],
        &ct_png,
    )?;

    // MRI: 8 coils, 4× random phase-encode lines with 8 % ACS, complex noise σ = 0.002.
    let mask = random_lines(n, n, 4.0, 0.08, 0)?;
    let sens = birdcage(8, n, n, DEFAULT_RING_RADIUS);
    let mri = MultiCoilMri::new(&mask, &sens, Device::Cpu)?;
    let k = mri.forward(&x);
    let noise = add_gaussian(&k.view_as_real(), 0.002, 2);
    let k = Tensor::view_as_complex(&noise) * mri.mask();
    let zero_filled = root_sum_of_squares(&ifft2c(&k), 1);
    let cg = solve_normal(
        &mri,
        &k,
        None,
        &CgOptions {
            max_iter: 30,
            ..Default::default()
        },
    )
    .x
    .abs();
    let zf = zero_filled.to_kind(Kind::Float);
    let (p_zf, s_zf) = score(&zf);
    let (p_cg, s_cg) = score(&cg);
    println!("MRI, 8 coils, 4x:          zero-filled {p_zf:.2} dB (SSIM {s_zf:.3})  CG-SENSE {p_cg:.2} dB (SSIM {s_cg:.3})");
    let mri_png = out.join("mri_truth_zerofilled_cgsense.png");
    write_montage(
        &[
            (truth.shallow_clone(), Window::UNIT),
            (show(&zf), Window::UNIT),
            (show(&cg), Window::UNIT),
        ],
        &mri_png,
    )?;
    println!(
        "montages (truth | baseline | better baseline): {} and {}",
        ct_png.display(),
        mri_png.display()
    );
    Ok(())
}
