//! Training of the built-in UNet prior: the DDPM ε-objective with Adam, EMA
//! weights, random crops and flips, resumable checkpoints and a loss log.
//!
//! Precision: f32, or mixed bf16 (`precision = Bf16`): the network's forward and
//! backward pass run on a bfloat16 copy of the weights, refreshed from the f32
//! master weights before every step; the loss, the gradient clipping, Adam, its
//! moments, the EMA and every file stay in f32. bf16 keeps f32's exponent range,
//! so no loss scaling is needed.
//!
//! Deterministic for a seed: every random draw of step k (images, crops, flips, t,
//! ε) comes from a ChaCha stream seeded by (seed, k), and dropout's masks from
//! libtorch's generator seeded by the same value, so a run resumed from a
//! checkpoint continues exactly as an uninterrupted one (on the same device and
//! thread count).
//!
//! Files in the output folder:
//! - `checkpoint-weights.safetensors` (weights and EMA weights),
//!   `checkpoint-adam.safetensors` (Adam moments) and `checkpoint.json` (the step
//!   reached, the seconds spent): written atomically every `checkpoint_every` steps
//!   and at the end, the JSON last; both tensor files record their step, so a
//!   checkpoint torn by a kill is detected. Two files keep each under 20 MB for the
//!   shipped priors;
//! - `loss.csv`: `step,loss` (mean ε-MSE over each `log_every` window);
//! - `val_loss.csv`: `step,val_loss`, at every checkpoint, with `validation_images`
//!   held out ([`Validation`]);
//! - `<name>.safetensors` + `<name>.json`: the EMA weights and the model card.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use dps_operators::noise::stream_seed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::card::{IntensityMap, ModelCard, ModelFormat, TrainingRecord, ValidationRecord};
use super::intensity;
use super::precision::Precision;
use super::schedule::{BetaSchedule, Schedule};
use super::unet::{UNet, UNetConfig};
use crate::phantom::PhantomFamily;

/// Where training images come from; all in physical units.
pub enum TrainingData {
    /// A fixed set of 2-D images `[H, W]` (DICOM slices, NIfTI slices), each at
    /// least `image_size` on both sides; crops are drawn at random.
    Images(Vec<Tensor>),
    /// A fresh random-ellipse phantom of the family for every draw.
    Phantoms(PhantomFamily),
}

/// Training settings (the command line of `dps-recon train`).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub name: String,
    pub description: String,
    pub data_description: String,
    pub command: String,
    pub out_dir: PathBuf,
    pub image_size: i64,
    pub architecture: UNetConfig,
    pub schedule: BetaSchedule,
    pub intensity: IntensityMap,
    pub steps: u64,
    pub batch_size: i64,
    pub learning_rate: f64,
    pub ema_decay: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub device: Device,
    /// The format of the forward and backward pass (the master weights, Adam and
    /// the EMA stay in f32).
    pub precision: Precision,
    /// Images held out of training for the validation loss (0: none); see
    /// [`validation_split`] and [`Validation`].
    pub validation_images: usize,
}

/// Most validation images (`--val-images`): each is scored at every one of the
/// [`Validation::TIMESTEPS`] at every checkpoint, and all are kept in memory.
pub const MAX_VALIDATION_IMAGES: usize = 256;

/// Positions of the `n` images held out of `len` loaded images for validation:
/// spread evenly, `(2k + 1)·len / (2n)` for k = 0…n−1 (for a volume's slices, from
/// all along it). Fails unless 0 < n < len, which leaves training images.
pub fn validation_split(len: usize, n: usize) -> Result<Vec<usize>, String> {
    if n == 0 || n >= len {
        return Err(format!(
            "cannot hold out {n} of {len} training images for validation \
             (--val-images must leave at least one for training)"
        ));
    }
    Ok((0..n).map(|k| (2 * k + 1) * len / (2 * n)).collect())
}

/// Seeds of validation phantoms: `VALIDATION_PHANTOM_SEED + k`, 2⁵³ − 2¹⁶ + k,
/// below 2⁵³ so that JSON readers that hold numbers as doubles read the card's
/// seeds exactly. Training phantoms take uniform 64-bit seeds, so one meets a
/// validation phantom with a chance of N·2⁻⁶⁴.
const VALIDATION_PHANTOM_SEED: u64 = (1 << 53) - (1 << 16);

/// The validation loss: the mean ε-MSE of a network on held-out images, each
/// (centre crop, in the model's range) noised at every one of [`Self::TIMESTEPS`]
/// with noise drawn from the run's seed, the same at every evaluation, so that
/// every checkpoint is scored on the same inputs. Evaluated in f32, without
/// dropout.
pub struct Validation {
    /// The held-out images in the model's range, `[n, 1, S, S]`.
    x0: Tensor,
    /// The k timesteps each image is noised at, and their `ᾱ_t`; input j of an
    /// evaluation is image j / k at timestep j mod k.
    timesteps: Vec<i64>,
    alpha_bar: Vec<f32>,
    /// Seeds the noise, drawn again in the same order at every evaluation.
    noise_seed: u64,
    held_out: Vec<u64>,
}

impl Validation {
    /// Ten timesteps spread over the 1000-step schedule, t = 50, 150, …, 950
    /// (scaled for schedules of another length).
    pub const TIMESTEPS: usize = 10;

    fn timesteps(schedule: &Schedule) -> Vec<i64> {
        let k = Self::TIMESTEPS;
        (0..k)
            .map(|i| ((2 * i + 1) * schedule.len() / (2 * k)) as i64)
            .collect()
    }

    /// The held-out images of `data` and the training data without them.
    fn split(
        cfg: &TrainConfig,
        data: &TrainingData,
        schedule: &Schedule,
    ) -> anyhow::Result<(Option<Self>, Option<TrainingData>)> {
        let n = cfg.validation_images;
        if n == 0 {
            return Ok((None, None));
        }
        anyhow::ensure!(
            n <= MAX_VALIDATION_IMAGES,
            "{n} validation images: at most {MAX_VALIDATION_IMAGES}"
        );
        let s = cfg.image_size;
        let crop = |img: &Tensor| {
            let (h, w) = (img.size()[0], img.size()[1]);
            img.narrow(0, (h - s) / 2, s).narrow(1, (w - s) / 2, s)
        };
        let (images, held_out, kept) = match data {
            TrainingData::Images(images) => {
                let pick = validation_split(images.len(), n).map_err(anyhow::Error::msg)?;
                let held: Vec<Tensor> = pick.iter().map(|&i| crop(&images[i])).collect();
                let kept = images
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !pick.contains(i))
                    .map(|(_, im)| im.shallow_clone())
                    .collect();
                let pick = pick.iter().map(|&i| i as u64).collect();
                (held, pick, Some(TrainingData::Images(kept)))
            }
            TrainingData::Phantoms(family) => {
                let seeds: Vec<u64> = (0..n as u64).map(|k| VALIDATION_PHANTOM_SEED + k).collect();
                let held = seeds
                    .iter()
                    .map(|&seed| family.sample(s as usize, seed))
                    .collect();
                (held, seeds, None)
            }
        };
        let (scale, offset) = cfg.intensity.to_model_affine();
        let x0 = (Tensor::stack(&images, 0).unsqueeze(1).to_kind(Kind::Float) * scale + offset)
            .clamp(-1.0, 1.0);
        let timesteps = Self::timesteps(schedule);
        let v = Self {
            x0: x0.to_device(cfg.device),
            alpha_bar: timesteps
                .iter()
                .map(|&t| schedule.alphas_cumprod[t as usize] as f32)
                .collect(),
            timesteps,
            noise_seed: cfg.seed ^ 0x5641_4C49_4441_5445, // "VALIDATE"
            held_out,
        };
        Ok((Some(v), kept))
    }

    /// Mean ε-MSE of `net` (f32 weights) over every held-out image and timestep,
    /// `batch` inputs at a time (the noise, drawn in order, does not depend on
    /// `batch`).
    pub fn loss(&self, net: &UNet, batch: i64) -> f64 {
        tch::no_grad(|| {
            let device = self.x0.device();
            let k = self.timesteps.len();
            let total = self.held_out.len() * k;
            let mut rng = ChaCha8Rng::seed_from_u64(self.noise_seed);
            let (mut sum, mut count) = (0.0, 0i64);
            for first in (0..total).step_by(batch.max(1) as usize) {
                let inputs = first..total.min(first + batch.max(1) as usize);
                let image: Vec<i64> = inputs.clone().map(|j| (j / k) as i64).collect();
                let t: Vec<i64> = inputs.clone().map(|j| self.timesteps[j % k]).collect();
                let ab: Vec<f32> = inputs.map(|j| self.alpha_bar[j % k]).collect();
                let x0 = self
                    .x0
                    .index_select(0, &Tensor::from_slice(&image).to_device(device));
                let t = Tensor::from_slice(&t).to_device(device);
                let ab = Tensor::from_slice(&ab)
                    .to_device(device)
                    .view([-1, 1, 1, 1]);
                let eps = normal(&mut rng, &x0.size()).to_device(device);
                let x_t = &x0 * ab.sqrt() + &eps * (-&ab + 1.0).sqrt();
                sum += (net.forward_t(&x_t, &t, false) - &eps)
                    .square()
                    .sum(Kind::Double)
                    .double_value(&[]);
                count += eps.numel() as i64;
            }
            sum / count as f64
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointInfo {
    step: u64,
    seconds: f64,
    last_loss: f64,
    seed: u64,
    /// What the weights mean, which a resumed run must share. Absent from
    /// checkpoints written before they were recorded (the tensors' names and
    /// shapes are checked against the network in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    architecture: Option<UNetConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<BetaSchedule>,
    /// Unit and physical range (the percentile of MR cards is made at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intensity: Option<IntensityMap>,
    /// The forward and backward pass's format of the stretch that wrote it
    /// (absent: f32, as before it was recorded). A resumed run may change it, as
    /// it may change the data: the weights mean the same.
    #[serde(default)]
    precision: Precision,
}

impl CheckpointInfo {
    /// Fails unless a run with `cfg` can continue this checkpoint: the same seed,
    /// and, where recorded, the same architecture, schedule, unit and range.
    fn check_resumable(&self, cfg: &TrainConfig) -> Result<(), String> {
        fn json(v: &impl Serialize) -> String {
            serde_json::to_string(v).unwrap_or_default()
        }
        if self.seed != cfg.seed {
            return Err(format!(
                "checkpoint was made with seed {}, not {}",
                self.seed, cfg.seed
            ));
        }
        if let Some(a) = self
            .architecture
            .as_ref()
            .filter(|a| **a != cfg.architecture)
        {
            return Err(format!(
                "checkpoint was made with architecture {}, not {} (--arch)",
                json(a),
                json(&cfg.architecture)
            ));
        }
        if let Some(s) = self.schedule.as_ref().filter(|s| **s != cfg.schedule) {
            return Err(format!(
                "checkpoint was made with schedule {}, not {}",
                json(s),
                json(&cfg.schedule)
            ));
        }
        let range = |i: &IntensityMap| (i.unit.clone(), i.physical_min, i.physical_max);
        if let Some(i) = self
            .intensity
            .as_ref()
            .filter(|i| range(i) != range(&cfg.intensity))
        {
            return Err(format!(
                "checkpoint was made for {} in [{}, {}], not {} in [{}, {}] (--data, \
                 --intensity-range)",
                i.unit,
                i.physical_min,
                i.physical_max,
                cfg.intensity.unit,
                cfg.intensity.physical_min,
                cfg.intensity.physical_max
            ));
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba) with bias correction, β = (0.9, 0.999), ε = 1e-8, and
/// gradient-norm clipping at 1; its moments are part of the checkpoint.
struct Adam {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    lr: f64,
}

impl Adam {
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;

    fn new(params: &[Tensor], lr: f64) -> Self {
        Self {
            m: params.iter().map(Tensor::zeros_like).collect(),
            v: params.iter().map(Tensor::zeros_like).collect(),
            lr,
        }
    }

    /// Applies step number `t` (1-based) to the f32 `params` with the gradients
    /// held by `grads_in` (the parameters themselves, or their bf16 working copy;
    /// cast to f32 here), and clears those gradients.
    fn step(&mut self, params: &mut [Tensor], grads_in: &[Tensor], t: u64) {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = grads_in
                .iter()
                .map(|w| w.grad().to_kind(Kind::Float))
                .collect();
            // Each gradient's squared norm on its device, read back in one copy
            // (not one per parameter, each a device sync), summed here in order.
            let squares: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Double)).collect();
            let total: f64 = Vec::<f64>::try_from(Tensor::stack(&squares, 0))
                .expect("f64 squared norms")
                .iter()
                .sum::<f64>()
                .sqrt();
            let clip = if total > 1.0 { 1.0 / total } else { 1.0 };
            let (c1, c2) = (1.0 - Self::B1.powi(t as i32), 1.0 - Self::B2.powi(t as i32));
            for ((((p, g), m), v), w) in params
                .iter_mut()
                .zip(&grads)
                .zip(&mut self.m)
                .zip(&mut self.v)
                .zip(grads_in)
            {
                let g = g * clip;
                *m = &*m * Self::B1 + &g * (1.0 - Self::B1);
                *v = &*v * Self::B2 + g.square() * (1.0 - Self::B2);
                let upd = (&*m / c1) / ((&*v / c2).sqrt() + 1e-8) * self.lr;
                let _ = p.f_sub_(&upd).expect("parameter update");
                let _ = w.grad().zero_();
            }
        });
    }
}

/// The outcome of a training run (or stretch).
pub struct TrainSummary {
    pub step: u64,
    pub final_loss: f64,
    /// The EMA weights' validation loss at `step` (with `validation_images`).
    pub validation_loss: Option<f64>,
    pub seconds: f64,
    pub card_path: PathBuf,
}

/// What a training run reports as it goes.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub step: u64,
    /// Mean ε-MSE of the last log window.
    pub loss: f64,
    /// The step and loss of the last validation (with `validation_images`).
    pub validation: Option<(u64, f64)>,
}

/// Trains (or resumes training of) a UNet prior; `progress` is called after each
/// logged window and each validation.
pub fn train(
    cfg: &TrainConfig,
    data: &TrainingData,
    progress: &mut dyn FnMut(&Progress),
) -> anyhow::Result<TrainSummary> {
    cfg.architecture.check().map_err(anyhow::Error::msg)?;
    cfg.schedule.check().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        cfg.image_size >= 1 && cfg.batch_size >= 1,
        "image size ({}) and batch size ({}) must be ≥ 1",
        cfg.image_size,
        cfg.batch_size
    );
    anyhow::ensure!(
        cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0,
        "learning rate {} must be a finite number > 0",
        cfg.learning_rate
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&cfg.ema_decay),
        "EMA decay {} must lie in [0, 1)",
        cfg.ema_decay
    );
    anyhow::ensure!(
        cfg.checkpoint_every >= 1 && cfg.log_every >= 1,
        "checkpoint and log intervals must be ≥ 1"
    );
    if let TrainingData::Images(images) = data {
        anyhow::ensure!(!images.is_empty(), "no training images");
        for (k, im) in images.iter().enumerate() {
            let s = im.size();
            anyhow::ensure!(
                s.len() == 2 && s[0] >= cfg.image_size && s[1] >= cfg.image_size,
                "training image {k} has shape {s:?}, smaller than {}²",
                cfg.image_size
            );
        }
    }
    ensure_memory(cfg)?;
    let schedule = Schedule::new(&cfg.schedule);
    let (validation, kept) = Validation::split(cfg, data, &schedule)?;
    // The training images: without the held-out ones.
    let data = kept.as_ref().unwrap_or(data);
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("{}: cannot create output folder", cfg.out_dir.display()))?;

    // Initial weights come from libtorch's global generator: seed it (a process
    // should not train two priors at once).
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(cfg.device);
    let master = UNet::new(&vs.root(), &cfg.architecture);
    // With bf16, the network that runs is a working copy, refreshed each step.
    let working = (cfg.precision != Precision::F32).then(|| {
        let mut w = nn::VarStore::new(cfg.device);
        let net = UNet::new(&w.root(), &cfg.architecture);
        w.set_kind(cfg.precision.kind());
        (w, net)
    });
    let net = working.as_ref().map_or(&master, |(_, net)| net);
    let (ema_vs, ema_net) = {
        let mut e = nn::VarStore::new(cfg.device);
        let net = UNet::new(&e.root(), &cfg.architecture);
        e.copy(&vs)?;
        e.freeze();
        (e, net)
    };
    let names: Vec<String> = sorted(&vs).into_keys().collect();
    let mut params: Vec<Tensor> = names
        .iter()
        .map(|n| vs.variables()[n].shallow_clone())
        .collect();
    let ema: Vec<Tensor> = names
        .iter()
        .map(|n| ema_vs.variables()[n].shallow_clone())
        .collect();
    // The tensors whose gradients the backward pass fills, in `names` order.
    let grads_in: Vec<Tensor> = match &working {
        Some((w, _)) => names
            .iter()
            .map(|n| w.variables()[n].shallow_clone())
            .collect(),
        None => params.iter().map(Tensor::shallow_clone).collect(),
    };
    let mut adam = Adam::new(&params, cfg.learning_rate);

    let files = CheckpointFiles::in_dir(&cfg.out_dir);
    let (mut step, mut seconds, mut last_loss) = (0u64, 0f64, f64::NAN);
    let mut saved = None;
    if files.info.exists() {
        let info = files.read_info()?;
        info.check_resumable(cfg)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.info.display()))?;
        let stored = files.read_tensors(info.step)?;
        let expected = super::shapes(vs.variables().iter());
        for prefix in ["model", "ema", "adam_m", "adam_v"] {
            let found: BTreeMap<String, Vec<i64>> = stored
                .iter()
                .filter_map(|(k, t)| {
                    Some((
                        k.strip_prefix(prefix)?.strip_prefix('/')?.to_string(),
                        t.size(),
                    ))
                })
                .collect();
            if let Some(misfit) = super::misfit(&expected, &found) {
                anyhow::bail!(
                    "{}: the checkpoint's {prefix} tensors do not fit the network (--arch): {misfit}",
                    cfg.out_dir.display()
                );
            }
        }
        let get = |prefix: &str, name: &str| -> anyhow::Result<Tensor> {
            stored
                .get(&format!("{prefix}/{name}"))
                .map(|t| t.to_device(cfg.device))
                .with_context(|| format!("{}: missing {prefix}/{name}", cfg.out_dir.display()))
        };
        tch::no_grad(|| -> anyhow::Result<()> {
            for (k, n) in names.iter().enumerate() {
                params[k].copy_(&get("model", n)?);
                ema[k].shallow_clone().copy_(&get("ema", n)?);
                adam.m[k] = get("adam_m", n)?;
                adam.v[k] = get("adam_v", n)?;
            }
            Ok(())
        })?;
        (step, seconds, last_loss) = (info.step, info.seconds, info.last_loss);
        if info.precision != cfg.precision {
            tracing::info!(
                "the checkpoint's steps ran in {}; the steps from {} run in {}",
                info.precision,
                step + 1,
                cfg.precision
            );
        }
        saved = Some(step);
        tracing::info!(step, "resumed from {}", files.info.display());
    }

    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.out_dir.join("loss.csv"))?;
    if log.metadata()?.len() == 0 {
        writeln!(log, "step,loss")?;
    }
    let mut val_log = match validation {
        Some(_) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(cfg.out_dir.join("val_loss.csv"))?;
            if f.metadata()?.len() == 0 {
                writeln!(f, "step,val_loss")?;
            }
            Some(f)
        }
        None => None,
    };
    // The step and validation loss last measured.
    let mut val_loss: Option<(u64, f64)> = None;

    let started = Instant::now();
    let mut window = (0f64, 0u64);
    while step < cfg.steps {
        let step_seed = stream_seed(cfg.seed, step + 1);
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed);
        // Dropout masks come from libtorch's global generator: reseed it per step so
        // that they too depend only on (seed, step).
        tch::manual_seed(step_seed as i64);
        let x0 = draw_batch(cfg, data, &mut rng).to_device(cfg.device);
        let t: Vec<i64> = (0..cfg.batch_size)
            .map(|_| rng.gen_range(0..schedule.len() as i64))
            .collect();
        let eps = normal(&mut rng, &x0.size()).to_device(cfg.device);
        let ab: Vec<f32> = t
            .iter()
            .map(|&t| schedule.alphas_cumprod[t as usize] as f32)
            .collect();
        let ab = Tensor::from_slice(&ab)
            .to_device(cfg.device)
            .view([-1, 1, 1, 1]);
        let x_t = &x0 * ab.sqrt() + &eps * (-&ab + 1.0).sqrt();
        let t = Tensor::from_slice(&t).to_device(cfg.device);

        if working.is_some() {
            tch::no_grad(|| {
                for (w, p) in grads_in.iter().zip(&params) {
                    w.shallow_clone().copy_(p);
                }
            });
        }
        let p = cfg.precision;
        let eps_hat = p.cast_out(net.forward_t(&p.cast_in(&x_t), &t, true), &x_t);
        let loss = (eps_hat - &eps).square().mean(Kind::Float);
        loss.backward();
        let value = loss.double_value(&[]);
        // Stop before the update, so that the last checkpoint stays usable.
        anyhow::ensure!(
            value.is_finite(),
            "step {}: the loss is {value} (training diverged, or the data hold \
             non-finite values); {}",
            step + 1,
            match saved {
                Some(s) => format!("the last checkpoint, of step {s}, resumes with a lower --lr"),
                None => "no checkpoint was written; rerun with a lower --lr".into(),
            }
        );
        step += 1;
        adam.step(&mut params, &grads_in, step);
        let decay = ema_decay(cfg.ema_decay, step);
        tch::no_grad(|| {
            for (e, p) in ema.iter().zip(&params) {
                let _ = e
                    .shallow_clone()
                    .g_mul_scalar_(decay)
                    .g_add_(&(p * (1.0 - decay)));
            }
        });

        window.0 += value;
        window.1 += 1;
        if step % cfg.log_every == 0 || step == cfg.steps {
            last_loss = window.0 / window.1 as f64;
            writeln!(log, "{step},{last_loss:.6}")?;
            progress(&Progress {
                step,
                loss: last_loss,
                validation: val_loss,
            });
            window = (0.0, 0);
        }
        if step % cfg.checkpoint_every == 0 || step == cfg.steps {
            let info = CheckpointInfo {
                step,
                seconds: seconds + started.elapsed().as_secs_f64(),
                last_loss,
                seed: cfg.seed,
                architecture: Some(cfg.architecture.clone()),
                schedule: Some(cfg.schedule.clone()),
                intensity: Some(IntensityMap {
                    reference_p999: None,
                    ..cfg.intensity.clone()
                }),
                precision: cfg.precision,
            };
            files.save(&names, &params, &ema, &adam, &info)?;
            saved = Some(step);
            if let (Some(v), Some(f)) = (&validation, &mut val_log) {
                let loss = v.loss(&ema_net, cfg.batch_size);
                writeln!(f, "{step},{loss:.6}")?;
                val_loss = Some((step, loss));
                progress(&Progress {
                    step,
                    loss: last_loss,
                    validation: val_loss,
                });
            }
        }
    }
    seconds += started.elapsed().as_secs_f64();

    let weights = format!("{}.safetensors", cfg.name);
    let weights_path = cfg.out_dir.join(&weights);
    write_atomic(&weights_path, |p| Ok(ema_vs.save(p)?))?;
    let intensity = IntensityMap {
        reference_p999: (cfg.intensity.unit == "MR").then(|| median_p999(cfg, data)),
        ..cfg.intensity.clone()
    };
    let card = ModelCard {
        name: cfg.name.clone(),
        description: cfg.description.clone(),
        format: ModelFormat::Unet,
        weights,
        image_size: cfg.image_size,
        channels: cfg.architecture.in_channels,
        schedule: cfg.schedule.clone(),
        architecture: Some(cfg.architecture.clone()),
        intensity,
        training: Some(TrainingRecord {
            command: cfg.command.clone(),
            data: cfg.data_description.clone(),
            steps: step,
            batch_size: cfg.batch_size,
            learning_rate: cfg.learning_rate,
            ema_decay: cfg.ema_decay,
            seed: cfg.seed,
            final_loss: last_loss,
            date: today(),
            seconds,
            validation: validation.map(|v| ValidationRecord {
                images: cfg.validation_images,
                loss: match val_loss {
                    Some((s, loss)) if s == step => loss,
                    _ => v.loss(&ema_net, cfg.batch_size),
                },
                timesteps: v.timesteps,
                held_out: v.held_out,
            }),
        }),
    };
    let card_path = cfg.out_dir.join(format!("{}.json", cfg.name));
    card.write(&card_path)?;
    let validation_loss = card
        .training
        .as_ref()
        .and_then(|t| t.validation.as_ref())
        .map(|v| v.loss);
    Ok(TrainSummary {
        step,
        final_loss: last_loss,
        validation_loss,
        seconds,
        card_path,
    })
}

fn sorted(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

/// The median over the training images of each image's 99.9th percentile, in
/// physical units (the card's `reference_p999`); for generated phantoms, over
/// those of seeds 0…63.
fn median_p999(cfg: &TrainConfig, data: &TrainingData) -> f64 {
    let p999 = |img: &Tensor| intensity::p999_each(&img.unsqueeze(0))[0];
    let q: Vec<f64> = match data {
        TrainingData::Images(images) => images.iter().map(p999).collect(),
        TrainingData::Phantoms(family) => (0..64)
            .map(|seed| p999(&family.sample(cfg.image_size as usize, seed)))
            .collect(),
    };
    intensity::median_positive(&q).unwrap_or(cfg.intensity.physical_max)
}

/// Fails before any file is written when a training batch's activations exceed
/// the host memory available (CPU only; a GPU that runs out fails with an error):
/// the kernel would kill the run at its first step instead.
fn ensure_memory(cfg: &TrainConfig) -> anyhow::Result<()> {
    let Some(available) = crate::memory::available_on(cfg.device) else {
        return Ok(());
    };
    let s = cfg.image_size;
    let per_image = cfg.architecture.pass_bytes(s, s, cfg.precision.kind());
    crate::memory::ensure_training_fits(cfg.batch_size, per_image, available)
        .map_err(anyhow::Error::msg)
}

/// EMA decay at optimisation step `step` (1-based), warmed up as
/// `min(decay, (1 + step) / (10 + step))`: without the warm-up the average of a
/// short run is dominated by the random initial weights (0.999^500 ≈ 0.61).
fn ema_decay(decay: f64, step: u64) -> f64 {
    decay.min((1 + step) as f64 / (10 + step) as f64)
}

fn normal(rng: &mut ChaCha8Rng, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_slice(&v).reshape(shape)
}

/// A batch `[B, 1, S, S]` in the model's range: random images, random crops
/// (images are reflect-padded by S/16 first, so crops also shift the content),
/// random left–right flips.
fn draw_batch(cfg: &TrainConfig, data: &TrainingData, rng: &mut ChaCha8Rng) -> Tensor {
    let s = cfg.image_size;
    let (scale, offset) = cfg.intensity.to_model_affine();
    let crops: Vec<Tensor> = (0..cfg.batch_size)
        .map(|_| {
            let img = match data {
                TrainingData::Images(images) => {
                    images[rng.gen_range(0..images.len())].shallow_clone()
                }
                TrainingData::Phantoms(family) => family.sample(s as usize, rng.gen()),
            };
            let pad = s / 16;
            let img = img
                .view([1, 1, img.size()[0], img.size()[1]])
                .pad([pad, pad, pad, pad], "reflect", None)
                .squeeze_dim(0);
            let (h, w) = (img.size()[1], img.size()[2]);
            let r = rng.gen_range(0..=h - s);
            let c = rng.gen_range(0..=w - s);
            let crop = img.narrow(1, r, s).narrow(2, c, s);
            if rng.gen_bool(0.5) {
                crop.flip([2])
            } else {
                crop
            }
        })
        .collect();
    (Tensor::stack(&crops, 0) * scale + offset).clamp(-1.0, 1.0)
}

/// The files of a training checkpoint in an output folder.
struct CheckpointFiles {
    weights: PathBuf,
    adam: PathBuf,
    info: PathBuf,
}

impl CheckpointFiles {
    fn in_dir(dir: &Path) -> Self {
        Self {
            weights: dir.join("checkpoint-weights.safetensors"),
            adam: dir.join("checkpoint-adam.safetensors"),
            info: dir.join("checkpoint.json"),
        }
    }

    fn read_info(&self) -> anyhow::Result<CheckpointInfo> {
        let text = std::fs::read_to_string(&self.info)
            .with_context(|| format!("{}: cannot read", self.info.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid checkpoint info", self.info.display()))
    }

    /// Both tensor files, checked to be of `step`.
    fn read_tensors(&self, step: u64) -> anyhow::Result<BTreeMap<String, Tensor>> {
        let mut all = BTreeMap::new();
        for path in [&self.weights, &self.adam] {
            let mut stored: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
                .with_context(|| format!("{}: cannot read checkpoint", path.display()))?
                .into_iter()
                .collect();
            let found = stored.remove("step").map(|t| t.int64_value(&[]));
            anyhow::ensure!(
                found == Some(step as i64),
                "{}: holds step {found:?} but checkpoint.json says {step} (a torn checkpoint)",
                path.display()
            );
            all.extend(stored);
        }
        Ok(all)
    }

    fn save(
        &self,
        names: &[String],
        params: &[Tensor],
        ema: &[Tensor],
        adam: &Adam,
        info: &CheckpointInfo,
    ) -> anyhow::Result<()> {
        let step = ("step".to_string(), Tensor::from(info.step as i64));
        let group = |a: (&str, &[Tensor]), b: (&str, &[Tensor])| {
            let mut named = vec![(step.0.clone(), step.1.shallow_clone())];
            for (prefix, tensors) in [a, b] {
                for (n, t) in names.iter().zip(tensors) {
                    named.push((format!("{prefix}/{n}"), t.shallow_clone()));
                }
            }
            named
        };
        let weights = group(("model", params), ("ema", ema));
        let moments = group(("adam_m", &adam.m), ("adam_v", &adam.v));
        write_atomic(&self.weights, |p| {
            Ok(Tensor::write_safetensors(&weights, p)?)
        })?;
        write_atomic(&self.adam, |p| Ok(Tensor::write_safetensors(&moments, p)?))?;
        write_atomic(&self.info, |p| {
            Ok(std::fs::write(p, serde_json::to_string_pretty(info)?)?)
        })
    }
}

/// Writes through `write` to a temporary file beside `path`, then renames it.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tmp = path.with_extension(format!("tmp.{ext}"));
    write(&tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::ema_decay;

    #[test]
    fn ema_warm_up_forgets_the_initial_weights() {
        assert!((ema_decay(0.999, 1) - 2.0 / 11.0).abs() < 1e-15);
        assert_eq!(ema_decay(0.999, 100_000), 0.999);
        // Weight left on the initial weights after 500 steps.
        let left: f64 = (1..=500).map(|s| ema_decay(0.999, s)).product();
        assert!(left < 1e-6, "{left}");
    }
}
