//! Diffusion priors: the ε-prediction networks, their schedule, model cards and
//! training.

pub mod card;
pub mod gaussian;
pub mod intensity;
pub mod schedule;
pub mod torchscript;
pub mod train;
pub mod unet;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Device, Tensor};

pub use card::{IntensityMap, ModelCard, ModelFormat};
pub use schedule::{BetaSchedule, Schedule};
pub use unet::{UNet, UNetConfig};

/// A network predicting the noise ε̂(x_t, t) of the DDPM forward process.
pub trait EpsModel {
    /// `x`: f32 `[B, C, H, W]` in the model's range; `t`: i64 `[B]` timesteps of the
    /// original schedule. Returns ε̂ of the shape of `x`; differentiable w.r.t. `x`.
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor;
}

/// The built-in UNet with its (frozen) variables.
pub struct UNetPrior {
    /// Owns the weights the network reads; kept alive with it.
    pub vs: nn::VarStore,
    pub net: UNet,
}

impl UNetPrior {
    /// A UNet with fresh variables on `device`.
    pub fn new(config: &UNetConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), config);
        Self { vs, net }
    }
}

impl UNetPrior {
    /// A UNet of `config` with the weights of the safetensors file `weights`,
    /// frozen. The file must hold exactly the network's variables, with their
    /// shapes: a card whose architecture differs from its weights is refused, with
    /// the first differences named (libtorch's own loader ignores tensors the
    /// network lacks and panics on a shape).
    pub fn load(config: &UNetConfig, weights: &Path, device: Device) -> anyhow::Result<Self> {
        let mut prior = Self::new(config, device);
        let stored: BTreeMap<String, Tensor> = Tensor::read_safetensors(weights)
            .map_err(|e| anyhow::anyhow!("{}: cannot read UNet weights: {e}", weights.display()))?
            .into_iter()
            .collect();
        let vars: BTreeMap<String, Tensor> = prior.vs.variables().into_iter().collect();
        let missing: Vec<&String> = vars.keys().filter(|k| !stored.contains_key(*k)).collect();
        let unused: Vec<&String> = stored.keys().filter(|k| !vars.contains_key(*k)).collect();
        let reshaped: Vec<String> = vars
            .iter()
            .filter_map(|(k, v)| {
                let s = stored.get(k)?;
                (s.size() != v.size())
                    .then(|| format!("{k} {:?} (network {:?})", s.size(), v.size()))
            })
            .collect();
        let mut problems = Vec::new();
        for (what, names) in [
            (
                "missing",
                missing.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ),
            (
                "not in the network",
                unused.iter().map(|s| s.to_string()).collect(),
            ),
            ("of another shape", reshaped),
        ] {
            if !names.is_empty() {
                let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                let more = names.len().saturating_sub(3);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                problems.push(format!(
                    "{} {what} ({}{more})",
                    names.len(),
                    shown.join(", ")
                ));
            }
        }
        anyhow::ensure!(
            problems.is_empty(),
            "{}: the weights do not fit the card's architecture: tensors {}",
            weights.display(),
            problems.join("; ")
        );
        tch::no_grad(|| {
            for (k, v) in &vars {
                v.shallow_clone().copy_(&stored[k]);
            }
        });
        prior.vs.freeze();
        Ok(prior)
    }
}

impl EpsModel for UNetPrior {
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor {
        self.net.forward_t(x, t, false)
    }
}

/// A loaded prior: the network, its card and its full schedule.
pub struct Prior {
    pub model: Box<dyn EpsModel>,
    pub card: ModelCard,
    pub schedule: Schedule,
}

impl Prior {
    /// Loads the prior described by the model card at `card_path` onto `device`, with
    /// frozen weights.
    pub fn load(card_path: &Path, device: Device) -> anyhow::Result<Self> {
        let card = ModelCard::read(card_path)?;
        let weights = card.weights_path(card_path);
        let schedule = Schedule::new(&card.schedule);
        let model: Box<dyn EpsModel> = match card.format {
            ModelFormat::Unet => {
                let arch = card
                    .architecture
                    .as_ref()
                    .expect("validated by ModelCard::read");
                let prior = UNetPrior::load(arch, &weights, device)
                    .map_err(|e| e.context(card_path.display().to_string()))?;
                Box::new(prior)
            }
            ModelFormat::Torchscript => Box::new(torchscript::TorchScriptPrior::load(
                &weights,
                (card.channels, card.image_size),
                schedule.timesteps.iter().copied().max().unwrap_or(0),
                device,
            )?),
        };
        Ok(Self {
            model,
            card,
            schedule,
        })
    }

    /// Maps physical values (HU, MR intensity) to the model's range.
    pub fn to_model(&self, physical: &Tensor) -> Tensor {
        let (s, o) = self.card.intensity.to_model_affine();
        physical * s + o
    }

    /// Maps model-range values back to physical units.
    pub fn to_physical(&self, model: &Tensor) -> Tensor {
        let (s, o) = self.card.intensity.to_physical_affine();
        model * s + o
    }
}
