//! How well the shipped CT prior's denoiser reproduces an image it did not train on:
//! for each timestep t, x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε (one seeded ε), then
//! Tweedie's x̂_0 from the network's ε̂, and the PSNR of x̂_0 against x_0 (data range
//! 2000 HU). Shepp–Logan (the report's CT test image, each pixel the mean of 3 × 3
//! sub-samples), the same sampled once per pixel centre (aliased edges), and
//! random-ellipse phantoms of the training family with unseen seeds: the gaps show
//! how far a test image lies outside what the prior learned (docs/priors.md,
//! "What limits DPS on sparse-view CT").
//!
//! `cargo run --release --example prior_denoising` (the shipped CT prior, or the model
//! card named by the environment variable `CARD`)

use std::path::Path;

use dps_recon::phantom::{
    random_ellipses, rasterize, shepp_logan_hu, Ellipse, PhantomStyle, SHEPP_LOGAN,
};
use dps_recon::prior::{Precision, Prior};
use dps_recon::sampler::dps::tweedie;
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    let card = std::env::var("CARD")
        .unwrap_or_else(|_| "models/ct-phantom-128/ct-phantom-128.json".into());
    let prior = Prior::load(Path::new(&card), Device::Cpu, Precision::F32)?;
    let point_sampled = SHEPP_LOGAN.map(|el| Ellipse {
        intensity: 1000.0 * el.intensity,
        ..el
    });
    let point_sampled = Tensor::from_slice(&rasterize(&point_sampled, 128, 1)) - 1000.0;
    let mut images = vec![
        ("Shepp–Logan".to_string(), shepp_logan_hu(128)),
        ("Shepp–Logan, 1 sample per pixel".to_string(), point_sampled),
    ];
    for seed in [12345, 12346, 12347] {
        let image = random_ellipses(128, seed, PhantomStyle::Ct);
        images.push((format!("ellipses seed {seed}"), image));
    }
    // Standard deviation of x_t / sqrt(ᾱ) in HU per unit of the model's range.
    let (hu_per_unit, _) = prior.card.intensity.to_physical_affine();
    let psnr = |a: &Tensor, b: &Tensor| {
        let mse = (a - b).square().mean(Kind::Double).double_value(&[]);
        10.0 * (2000f64.powi(2) / mse).log10()
    };
    println!("| image | t | noise (HU) | x_t / sqrt(ᾱ) PSNR | x̂_0 PSNR |");
    println!("|---|---|---|---|---|");
    for (name, image) in &images {
        let image = image.reshape([1, 1, 128, 128]);
        let x0 = prior.to_model(&image);
        for t in [5i64, 10, 20, 50, 100, 200] {
            let ab = prior.schedule.alphas_cumprod[t as usize];
            tch::manual_seed(0);
            let xt = &x0 * ab.sqrt() + x0.randn_like() * (1.0 - ab).sqrt();
            let eps = prior
                .model
                .eps(&xt, &Tensor::full([1], t, (Kind::Int64, Device::Cpu)));
            let x0_hat = prior.to_physical(&tweedie(&xt, &eps, ab).clamp(-1.0, 1.0));
            let noisy = prior.to_physical(&(&xt / ab.sqrt()));
            println!(
                "| {name} | {t} | {:.0} | {:.2} | {:.2} |",
                ((1.0 - ab) / ab).sqrt() * hu_per_unit,
                psnr(&noisy, &image),
                psnr(&x0_hat, &image)
            );
        }
    }
    Ok(())
}
