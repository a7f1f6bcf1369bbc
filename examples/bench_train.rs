//! Time per training step of the shipped-prior UNet (`UNetConfig::small`, 128²,
//! batch 8, CT phantoms, as `scripts/train_priors.sh` trains it) with the forward
//! and backward pass in f32 and in mixed bf16 (`train --precision bf16`), run by
//! `make bench`. Prints one JSON object per precision.
//!
//! Short runs of each precision alternate, so load changes on a shared machine hit
//! both alike; a step's time is the interval between two progress calls (the
//! batch draw, forward, backward, Adam and EMA update), without each run's first
//! step (warm-up) and its final checkpoint and card.

use std::time::Instant;

use dps_recon::phantom::{PhantomFamily, PhantomStyle};
use dps_recon::prior::train::{train, TrainConfig, TrainingData};
use dps_recon::prior::{BetaSchedule, IntensityMap, Precision, UNetConfig};
use tch::Device;

const ROUNDS: usize = 3;
const STEPS_PER_RUN: u64 = 6;

/// The seconds of steps 2… of one fresh `STEPS_PER_RUN`-step run.
fn step_seconds(precision: Precision) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let cfg = TrainConfig {
        name: "bench".into(),
        description: String::new(),
        data_description: "CT phantoms".into(),
        command: "bench_train".into(),
        out_dir: dir.path().to_path_buf(),
        image_size: 128,
        architecture: UNetConfig::small(1),
        schedule: BetaSchedule::default(),
        intensity: IntensityMap {
            unit: "HU".into(),
            physical_min: -1000.0,
            physical_max: 1500.0,
            reference_p999: None,
        },
        steps: STEPS_PER_RUN,
        batch_size: 8,
        learning_rate: 2e-4,
        ema_decay: 0.999,
        seed: 0,
        checkpoint_every: STEPS_PER_RUN,
        log_every: 1,
        device: Device::Cpu,
        precision,
        validation_images: 0,
    };
    let data = TrainingData::Phantoms(PhantomFamily::of(PhantomStyle::Ct));
    let mut ticks = Vec::new();
    train(&cfg, &data, &mut |_| ticks.push(Instant::now())).expect("training run");
    ticks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let precisions = [Precision::F32, Precision::Bf16];
    let mut times = vec![Vec::new(); precisions.len()];
    for _ in 0..ROUNDS {
        for (p, t) in precisions.iter().zip(&mut times) {
            t.extend(step_seconds(*p));
        }
    }
    for (p, t) in precisions.iter().zip(times) {
        let steps = t.len();
        println!(
            "{}",
            serde_json::json!({
                "precision": p.to_string(),
                "size": 128,
                "batch": 8,
                "threads": tch::get_num_threads(),
                "steps_timed": steps,
                "step_ms": median(t) * 1e3,
            })
        );
    }
}
