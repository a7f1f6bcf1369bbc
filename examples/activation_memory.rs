//! Peak resident memory of guided DPS steps through a built-in UNet of random
//! weights, and the memory per image that the check before sampling assumes
//! (`EpsModel::guided_step_bytes`, from `UNetConfig::saved_values_per_pixel`).
//! Run by `scripts/bench/sampling_memory.sh`.
//!
//! Usage: `cargo run --release --example activation_memory -- BASE MULTS RES ATTN
//! SIZE BATCH [f32|bf16]`, e.g. `16 1,2,4,4 2 3 128 4 f32` (the shipped priors'
//! network; ATTN `-` for none). Runs three DPS steps at batch BATCH and prints one
//! JSON object with the process's peak resident memory (VmHWM) in MiB and the
//! estimate per image; the measured memory per image is the difference of two
//! batch sizes.

use dps_recon::prior::{BetaSchedule, EpsModel, Precision, Schedule, UNetConfig, UNetPrior};
use dps_recon::sampler::{ClampGradient, DpsConfig, DpsSampler, Update};
use tch::{Device, Kind, Tensor};

fn list(arg: &str) -> Vec<i64> {
    if arg == "-" {
        return Vec::new();
    }
    arg.split(',')
        .map(|v| v.parse().expect("a number"))
        .collect()
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn main() {
    tch::set_num_threads(1);
    let a: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        a.len() >= 6,
        "usage: BASE MULTS RES ATTN SIZE BATCH [f32|bf16]"
    );
    let config = UNetConfig {
        in_channels: 1,
        out_channels: 1,
        base_channels: a[0].parse().unwrap(),
        channel_mults: list(&a[1]),
        num_res_blocks: a[2].parse().unwrap(),
        attention_levels: list(&a[3]).into_iter().map(|l| l as usize).collect(),
        groups: 8,
        dropout: 0.0,
    };
    let (size, batch): (i64, i64) = (a[4].parse().unwrap(), a[5].parse().unwrap());
    let precision: Precision = a.get(6).map_or("f32", String::as_str).parse().unwrap();
    let mut prior = UNetPrior::new(&config, Device::Cpu);
    prior.vs.freeze();
    let prior = prior.with_precision(precision);
    let schedule = Schedule::new(&BetaSchedule::default());
    let sampler = DpsSampler::new(
        &prior,
        &schedule,
        DpsConfig {
            steps: 1000,
            zeta: 1.0,
            update: Update::Ddpm,
            clamp_gradient: ClampGradient::Exact,
            seed: 0,
        },
    );
    let shape = [batch, 1, size, size];
    let y = Tensor::rand(shape, (Kind::Float, Device::Cpu));
    let distance = |x0: &Tensor| {
        (x0 - &y)
            .square()
            .sum_dim_intlist(&[1i64, 2, 3][..], false, None)
            .sqrt()
    };
    let estimate = prior
        .guided_step_bytes(size, size)
        .expect("a UNet estimates");
    let before = peak_mib();
    let mut x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    for i in [900, 500, 100] {
        let z = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        x = sampler.step(i, &x, &z, &distance).x_prev;
    }
    println!(
        r#"{{"base": {}, "mults": "{}", "res": {}, "attn": "{}", "size": {size}, "batch": {batch}, "precision": "{precision}", "saved_values_per_pixel": {:.1}, "estimate_mib_per_image": {:.1}, "peak_before_mib": {before:.1}, "peak_mib": {:.1}}}"#,
        config.base_channels,
        a[1],
        config.num_res_blocks,
        a[3],
        config.saved_values_per_pixel(),
        estimate as f64 / (1u64 << 20) as f64,
        peak_mib()
    );
}
