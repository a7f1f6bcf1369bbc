//! Diffusion priors: the ε-prediction networks, their schedule, model cards and
//! training.

pub mod card;
pub mod gaussian;
pub mod intensity;
pub mod precision;
pub mod schedule;
pub mod torchscript;
pub mod train;
pub mod unet;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Device, Tensor};

pub use card::{IntensityMap, ModelCard, ModelFormat};
pub use precision::Precision;
pub use schedule::{BetaSchedule, Schedule};
pub use unet::{UNet, UNetConfig};

/// A network predicting the noise ε̂(x_t, t) of the DDPM forward process.
pub trait EpsModel {
    /// `x`: f32 `[B, C, H, W]` in the model's range; `t`: i64 `[B]` timesteps of the
    /// original schedule. Returns ε̂ of the shape of `x`; differentiable w.r.t. `x`.
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor;

    /// Fails, saying why, unless the model runs on `channels × h × w` images (a
    /// module written for its training size may not). The built-in UNet is fully
    /// convolutional and runs at any size.
    fn check_size(&self, _h: i64, _w: i64) -> anyhow::Result<()> {
        Ok(())
    }

    /// Bytes of memory that one `channels × h × w` image takes through a
    /// guided step (the activations the forward pass keeps for the gradient,
    /// and the backward pass): a lower bound, for the check before sampling
    /// ([`crate::memory::SamplingBatch`]). `None` when the model cannot say (a
    /// TorchScript module).
    fn guided_step_bytes(&self, _h: i64, _w: i64) -> Option<u64> {
        None
    }
}

/// The built-in UNet with its (frozen) variables.
pub struct UNetPrior {
    /// Owns the weights the network reads; kept alive with it.
    pub vs: nn::VarStore,
    pub net: UNet,
    /// The format of the weights and activations (see [`Precision`]).
    precision: Precision,
}

impl UNetPrior {
    /// A UNet with fresh f32 variables on `device`.
    pub fn new(config: &UNetConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), config);
        Self {
            vs,
            net,
            precision: Precision::F32,
        }
    }

    /// A UNet of `config` with the weights of the safetensors file `weights`,
    /// frozen. The file must hold exactly the network's variables, with their
    /// shapes: a card whose architecture differs from its weights is refused, with
    /// the first differences named (libtorch's own loader ignores tensors the
    /// network lacks and panics on a shape). The weights are then cast to
    /// `precision`.
    pub fn load(
        config: &UNetConfig,
        weights: &Path,
        device: Device,
        precision: Precision,
    ) -> anyhow::Result<Self> {
        let mut prior = Self::new(config, device);
        let stored: BTreeMap<String, Tensor> = Tensor::read_safetensors(weights)
            .map_err(|e| anyhow::anyhow!("{}: cannot read UNet weights: {e}", weights.display()))?
            .into_iter()
            .collect();
        let vars: BTreeMap<String, Tensor> = prior.vs.variables().into_iter().collect();
        if let Some(misfit) = misfit(&shapes(&vars), &shapes(&stored)) {
            anyhow::bail!(
                "{}: the weights do not fit the card's architecture: tensors {misfit}",
                weights.display()
            );
        }
        tch::no_grad(|| {
            for (k, v) in &vars {
                v.shallow_clone().copy_(&stored[k]);
            }
        });
        prior.vs.freeze();
        Ok(prior.with_precision(precision))
    }

    /// The same network with its weights cast to `precision` (kept as they are
    /// for f32); ε̂ then runs in it (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        if precision != Precision::F32 {
            self.vs.set_kind(precision.kind());
        }
        self.precision = precision;
        self
    }
}

/// The shape of each named tensor.
pub(crate) fn shapes<'a>(
    tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
) -> BTreeMap<String, Vec<i64>> {
    tensors
        .into_iter()
        .map(|(k, t)| (k.clone(), t.size()))
        .collect()
}

/// How the named tensor shapes `stored` differ from those a network has
/// (`expected`): how many are missing, not in the network or of another shape,
/// with the first three of each; `None` when they fit.
pub(crate) fn misfit(
    expected: &BTreeMap<String, Vec<i64>>,
    stored: &BTreeMap<String, Vec<i64>>,
) -> Option<String> {
    let missing = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .cloned()
        .collect();
    let unused = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .cloned()
        .collect();
    let reshaped = expected
        .iter()
        .filter_map(|(k, e)| {
            let s = stored.get(k)?;
            (s != e).then(|| format!("{k} {s:?} (network {e:?})"))
        })
        .collect();
    let problems: Vec<String> = [
        ("missing", missing),
        ("not in the network", unused),
        ("of another shape", reshaped),
    ]
    .into_iter()
    .filter(|(_, names): &(_, Vec<String>)| !names.is_empty())
    .map(|(what, names)| {
        let more = match names.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        format!(
            "{} {what} ({}{more})",
            names.len(),
            names[..names.len().min(3)].join(", ")
        )
    })
    .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

impl EpsModel for UNetPrior {
    /// Runs the network in its precision; ε̂ comes back in `x`'s kind.
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let out = self.net.forward_t(&self.precision.cast_in(x), t, false);
        self.precision.cast_out(out, x)
    }

    /// The network's activations in its precision ([`UNetConfig::pass_bytes`]).
    fn guided_step_bytes(&self, h: i64, w: i64) -> Option<u64> {
        Some(self.net.config().pass_bytes(h, w, self.precision.kind()))
    }
}

/// A loaded prior: the network, its card and its full schedule.
pub struct Prior {
    pub model: Box<dyn EpsModel>,
    pub card: ModelCard,
    pub schedule: Schedule,
    /// The format the network computes in.
    pub precision: Precision,
}

impl Prior {
    /// Loads the prior described by the model card at `card_path` onto `device`, with
    /// frozen weights in `precision`.
    pub fn load(card_path: &Path, device: Device, precision: Precision) -> anyhow::Result<Self> {
        let card = ModelCard::read(card_path)?;
        let weights = card.weights_path(card_path);
        let schedule = Schedule::new(&card.schedule);
        let model: Box<dyn EpsModel> = match card.format {
            ModelFormat::Unet => {
                let arch = card
                    .architecture
                    .as_ref()
                    .expect("validated by ModelCard::read");
                let prior = UNetPrior::load(arch, &weights, device, precision)
                    .map_err(|e| e.context(card_path.display().to_string()))?;
                Box::new(prior)
            }
            ModelFormat::Torchscript => Box::new(torchscript::TorchScriptPrior::load(
                &weights,
                (card.channels, card.image_size),
                schedule.timesteps.iter().copied().max().unwrap_or(0),
                device,
                precision,
            )?),
        };
        Ok(Self {
            model,
            card,
            schedule,
            precision,
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
