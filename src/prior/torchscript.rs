//! Priors trained elsewhere (e.g. PyTorch guided-diffusion), exported to TorchScript.
//! See docs/priors.md for the export recipe.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, IValue, Kind, Tensor};

use super::{EpsModel, Precision};

/// A TorchScript module with `forward(x: f32 [B,C,H,W], t: i64 [B]) -> Tensor`
/// returning ε̂ in its first `channels` output channels (any further channels, such
/// as a learned variance, are dropped). With a [`Precision`] other than f32 the
/// module's parameters are cast to it and so is `x`; ε̂ comes back in `x`'s kind.
pub struct TorchScriptPrior {
    module: CModule,
    channels: i64,
    precision: Precision,
    /// The module's file, for errors.
    path: PathBuf,
    device: Device,
}

impl TorchScriptPrior {
    /// Loads the module onto `device`, in eval mode, with every parameter frozen so
    /// that the sampler's backward pass builds no weight gradients, and runs it once
    /// on a zero image of `channels × image_size²` at t = 0 and t = T − 1 (`last_t`)
    /// so that a module that cannot run on `device` (one traced on another device
    /// keeps that device in its graph; one that builds f32 tensors of its own may
    /// not run in bf16) or returns the wrong shape is refused here, naming the
    /// file, instead of failing mid-sampling.
    pub fn load(
        path: &Path,
        (channels, image_size): (i64, i64),
        last_t: i64,
        device: Device,
        precision: Precision,
    ) -> anyhow::Result<Self> {
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            anyhow::anyhow!("{}: cannot load TorchScript module: {e}", path.display())
        })?;
        module.set_eval();
        if precision != Precision::F32 {
            module.to(device, precision.kind(), false);
        }
        for (_, p) in module.named_parameters()? {
            let _ = p.set_requires_grad(false);
        }
        let prior = Self {
            module,
            channels,
            precision,
            path: path.to_path_buf(),
            device,
        };
        let shape = [2, channels, image_size, image_size];
        let x = Tensor::zeros(shape, (Kind::Float, device));
        let t = Tensor::from_slice(&[0, last_t]).to_device(device);
        let out = tch::no_grad(|| prior.output(&x, &t)).map_err(|e| {
            anyhow::anyhow!(
                "{}: the TorchScript module does not run on {device:?} in {precision} with \
                 x {shape:?} and t [0, {last_t}]: {e} (a module traced on another device \
                 keeps that device; trace it on this one or script it: docs/priors.md)",
                path.display()
            )
        })?;
        let eps = prior
            .eps_of(&out, &x)
            .map_err(|e| anyhow::anyhow!("{}: the TorchScript module {e}", path.display()))?;
        anyhow::ensure!(
            eps.isfinite().all().int64_value(&[]) == 1,
            "{}: the TorchScript module returns non-finite ε̂ for a zero image",
            path.display()
        );
        Ok(prior)
    }

    /// The module's output for `(x, t)` (the first element of a tuple), run in
    /// the prior's precision (see [`Precision::cast_in`]), or why it failed.
    fn output(&self, x: &Tensor, t: &Tensor) -> Result<Tensor, String> {
        let out = self
            .module
            .forward_is(&[
                IValue::Tensor(self.precision.cast_in(x)),
                IValue::Tensor(t.shallow_clone()),
            ])
            .map_err(|e| e.to_string())?;
        let out = match out {
            IValue::Tensor(t) => t,
            IValue::Tuple(mut v) if !v.is_empty() => match v.swap_remove(0) {
                IValue::Tensor(t) => t,
                other => return Err(format!("returned {other:?}, expected a tensor")),
            },
            other => return Err(format!("returned {other:?}, expected a tensor")),
        };
        Ok(self.precision.cast_out(out, x))
    }

    /// ε̂, the first `channels` channels of the output `out` for the input `x`, or
    /// why `out` has the wrong shape.
    fn eps_of(&self, out: &Tensor, x: &Tensor) -> Result<Tensor, String> {
        let (want, got) = (x.size(), out.size());
        if got.len() != 4 || got[0] != want[0] || got[1] < self.channels || got[2..] != want[2..] {
            return Err(format!(
                "returns ε̂ of shape {got:?} for x {want:?}; expected [{}, ≥ {}, {}, {}]",
                want[0], self.channels, want[2], want[3]
            ));
        }
        Ok(out.narrow(1, 0, self.channels))
    }
}

impl EpsModel for TorchScriptPrior {
    fn eps(&self, x: &Tensor, t: &Tensor) -> Tensor {
        // The module ran at load and at the data's size (`check_size`, which the
        // pipeline calls before sampling); a failure now is a fault of the module.
        self.output(x, t)
            .and_then(|out| self.eps_of(&out, x))
            .unwrap_or_else(|e| panic!("TorchScript prior: {e}"))
    }

    fn check_size(&self, h: i64, w: i64) -> anyhow::Result<()> {
        let x = Tensor::zeros([1, self.channels, h, w], (Kind::Float, self.device));
        let t = Tensor::from_slice(&[0i64]).to_device(self.device);
        tch::no_grad(|| self.output(&x, &t).and_then(|out| self.eps_of(&out, &x)))
            .map(|_| ())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: the TorchScript module does not run on {h} × {w} images: {e}",
                    self.path.display()
                )
            })
    }
}
