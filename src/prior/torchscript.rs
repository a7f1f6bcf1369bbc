//! Priors trained elsewhere (e.g. PyTorch guided-diffusion), exported to TorchScript.
//! See docs/priors.md for the export recipe.

use std::path::Path;

use tch::{CModule, Device, IValue, Tensor};

use super::EpsModel;

/// A TorchScript module with `forward(x: f32 [B,C,H,W], t: i64 [B]) -> Tensor`
/// returning ε̂ in its first `channels` output channels (any further channels, such
/// as a learned variance, are dropped).
pub struct TorchScriptPrior {
    module: CModule,
    channels: i64,
}

impl TorchScriptPrior {
    /// Loads the module onto `device`, in eval mode, with every parameter frozen so
    /// that the sampler's backward pass builds no weight gradients.
    pub fn load(path: &Path, channels: i64, device: Device) -> anyhow::Result<Self> {
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            anyhow::anyhow!("{}: cannot load TorchScript module: {e}", path.display())
        })?;
        module.set_eval();
        for (_, p) in module.named_parameters()? {
            let _ = p.set_requires_grad(false);
        }
        Ok(Self { module, channels })
    }
}

impl EpsModel for TorchScriptPrior {
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let out = self
            .module
            .forward_is(&[
                IValue::Tensor(x.shallow_clone()),
                IValue::Tensor(t.shallow_clone()),
            ])
            .expect("TorchScript prior forward failed");
        let out = match out {
            IValue::Tensor(t) => t,
            IValue::Tuple(mut v) if !v.is_empty() => match v.swap_remove(0) {
                IValue::Tensor(t) => t,
                other => panic!("TorchScript prior returned {other:?}, expected a tensor"),
            },
            other => panic!("TorchScript prior returned {other:?}, expected a tensor"),
        };
        out.narrow(1, 0, self.channels)
    }
}
