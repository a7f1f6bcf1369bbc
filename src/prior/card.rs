//! The JSON model card that travels with every prior: what the network expects, how
//! physical units map to its range, and how it was trained.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schedule::BetaSchedule;
use super::unet::UNetConfig;

/// A prior's model card (`<name>.json` beside its weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    pub description: String,
    /// How the weights are stored and which network runs them.
    pub format: ModelFormat,
    /// Weights file, relative to the card's folder.
    pub weights: String,
    /// Training image size (square, pixels). The networks are fully convolutional,
    /// but the prior is only known to be good at this size.
    pub image_size: i64,
    /// Image channels the network sees (1 for grayscale; a complex MRI image is fed
    /// as its real and imaginary parts, each as a 1-channel image).
    pub channels: i64,
    pub schedule: BetaSchedule,
    /// Architecture of the built-in UNet (format `unet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<UNetConfig>,
    pub intensity: IntensityMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRecord>,
}

/// Storage format of a prior's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// The built-in UNet ([`super::unet::UNet`]) with safetensors weights.
    Unet,
    /// A TorchScript module `forward(x: f32 [B,C,H,W], t: i64 [B]) -> ε` (extra
    /// output channels, e.g. a learned variance, are ignored).
    Torchscript,
}

/// Smallest width and largest magnitude of a card's physical range. The map to
/// the model's range, and back, runs in float32; a range of ±1e308 sent the
/// sampler to infinity, and the error then blamed ζ.
pub const INTENSITY_BOUNDS: (f64, f64) = (1e-6, 1e12);

/// The affine map between physical values and the model's range [−1, 1]:
/// `model = 2 (v − physical_min) / (physical_max − physical_min) − 1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntensityMap {
    /// Physical unit: `HU` for CT, `MR` for MR intensity (arbitrary units).
    pub unit: String,
    pub physical_min: f64,
    pub physical_max: f64,
    /// MR priors: the median, over the training images, of each image's 99.9th
    /// percentile, in physical units (`dps-recon train` measures it). `auto` MR
    /// scaling maps a slice's 99.9th percentile here, so a held-out slice is shown
    /// to the prior at the brightness of a typical training image; without it, to
    /// 0.8 · `physical_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_p999: Option<f64>,
}

impl IntensityMap {
    /// Scale `s` and offset `o` with `model = s · v + o`.
    pub fn to_model_affine(&self) -> (f64, f64) {
        let s = 2.0 / (self.physical_max - self.physical_min);
        (s, -1.0 - s * self.physical_min)
    }

    /// Scale `s` and offset `o` with `v = s · model + o`.
    pub fn to_physical_affine(&self) -> (f64, f64) {
        let s = (self.physical_max - self.physical_min) / 2.0;
        (s, self.physical_min + s)
    }
}

/// How a shipped prior was made: enough to make it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRecord {
    /// The exact `dps-recon train …` command line.
    pub command: String,
    /// Training data and what was held out.
    pub data: String,
    pub steps: u64,
    pub batch_size: i64,
    pub learning_rate: f64,
    /// Largest EMA decay; each step uses min(ema_decay, (1 + k)/(10 + k)).
    pub ema_decay: f64,
    pub seed: u64,
    /// Mean ε-MSE over the last logged window.
    pub final_loss: f64,
    /// Date the run (or its last stretch) finished, ISO 8601.
    pub date: String,
    /// Wall-clock seconds of training, summed over resumed stretches.
    pub seconds: f64,
    /// The held-out validation images and the EMA weights' loss on them
    /// (`train --val-images`); absent when none were held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationRecord>,
}

/// The validation loss of a training run: the EMA weights' mean ε-MSE, in f32, on
/// the centre crops of images held out of training, each noised at the fixed
/// `timesteps` with fixed seeded noise, so checkpoints compare on the same draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRecord {
    /// Number of held-out images.
    pub images: usize,
    /// Which: positions in the loaded image list (image data), or phantom seeds.
    pub held_out: Vec<u64>,
    pub timesteps: Vec<i64>,
    /// At the last step.
    pub loss: f64,
}

impl ModelCard {
    /// Reads and checks a card; errors name the file and the problem.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read model card: {e}", path.display()))?;
        let card: Self = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: invalid model card: {e}", path.display()))?;
        card.validate()
            .map_err(|e| anyhow::anyhow!("{}: invalid model card: {e}", path.display()))?;
        Ok(card)
    }

    /// Writes the card as pretty JSON.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("{}: cannot write model card: {e}", path.display()))
    }

    /// Fails unless the prior sees one-channel images, as DPS here needs (complex
    /// MR images go through it as two real images).
    pub fn ensure_one_channel(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.channels == 1,
            "prior {} has {} channels; only 1-channel priors are supported",
            self.name,
            self.channels
        );
        Ok(())
    }

    /// The weights file of a card read from `card_path`.
    pub fn weights_path(&self, card_path: &Path) -> PathBuf {
        card_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&self.weights)
    }

    fn validate(&self) -> Result<(), String> {
        if self.channels < 1 || self.image_size < 1 {
            return Err("channels and image_size must be positive".into());
        }
        let (lo, hi) = (self.intensity.physical_min, self.intensity.physical_max);
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err("intensity.physical_max must exceed physical_min (both finite)".into());
        }
        let (width, largest) = INTENSITY_BOUNDS;
        if hi - lo < width || lo.abs().max(hi.abs()) > largest {
            return Err(format!(
                "intensity range [{lo}, {hi}] must lie within ±{largest:e} and be at least \
                 {width:e} wide (images are mapped to the model's range in float32)"
            ));
        }
        if let Some(r) = self.intensity.reference_p999 {
            if !(r.is_finite() && r > lo && r <= hi) {
                return Err(format!(
                    "intensity.reference_p999 {r} is not within (physical_min, physical_max]"
                ));
            }
        }
        self.schedule.check()?;
        match (&self.format, &self.architecture) {
            (ModelFormat::Unet, None) => {
                return Err("format \"unet\" needs an \"architecture\"".into())
            }
            (ModelFormat::Unet, Some(arch)) => {
                arch.check()?;
                if arch.in_channels != self.channels {
                    return Err(format!(
                        "architecture.in_channels ({}) differs from channels ({})",
                        arch.in_channels, self.channels
                    ));
                }
            }
            (ModelFormat::Torchscript, _) => {}
        }
        if self.weights.contains("..") || Path::new(&self.weights).is_absolute() {
            return Err("weights must be a file name beside the card".into());
        }
        Ok(())
    }
}
