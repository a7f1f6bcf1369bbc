//! A TorchScript module traced by PyTorch (the .venv's torch) loads as a prior
//! through its model card, ignores extra output channels, and is
//! differentiable with respect to its input.

use std::path::{Path, PathBuf};
use std::process::Command;

use dps_recon::prior::{Precision, Prior};
use tch::{Device, Kind, Tensor};

const TRACE: &str = r#"
import sys, torch
class Eps(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
    def forward(self, x, t):
        eps = torch.tanh(x) * self.w + t.float().view(-1, 1, 1, 1) * 1e-3
        return torch.cat([eps, torch.full_like(x, 7.0)], 1)  # + a 'learned variance'
m = torch.jit.trace(Eps(), (torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)))
m.save(sys.argv[1])
"#;

/// Runs `script` (PyTorch) with the module path `DIR/eps.pt` as its argument and
/// writes a one-channel model card for it; returns the card's path.
fn export(dir: &Path, script: &str) -> PathBuf {
    let pt = dir.join("eps.pt");
    // From a file: torch.jit.script reads the module's source.
    let py = dir.join("export.py");
    std::fs::write(&py, script).unwrap();
    let status = Command::new("python3")
        .arg(&py)
        .arg(&pt)
        .status()
        .expect("python3 (the .venv's, with torch) must be on PATH: run through `make test`");
    assert!(status.success(), "exporting the test module failed");
    let card = dir.join("eps.json");
    std::fs::write(
        &card,
        r#"{"name": "traced-test", "description": "test", "format": "torchscript",
            "weights": "eps.pt", "image_size": 4, "channels": 1,
            "schedule": {"kind": "linear", "beta_start": 0.0001, "beta_end": 0.02, "timesteps": 1000},
            "intensity": {"unit": "HU", "physical_min": -1000, "physical_max": 1000}}"#,
    )
    .unwrap();
    card
}

#[test]
fn traced_module_loads_and_differentiates() {
    let dir = tempfile::tempdir().unwrap();
    let card = export(dir.path(), TRACE);
    let prior = Prior::load(&card, Device::Cpu, Precision::F32).unwrap();
    // Other sizes and batch sizes than traced: the module is size-agnostic.
    let x = (Tensor::randn([3, 1, 6, 5], (Kind::Float, Device::Cpu)) * 0.7).set_requires_grad(true);
    let t = Tensor::from_slice(&[0i64, 10, 999]);
    let eps = prior.model.eps(&x, &t);
    assert_eq!(eps.size(), [3, 1, 6, 5]);
    let expect =
        x.detach().tanh() * 0.5 + Tensor::from_slice(&[0f32, 0.01, 0.999]).view([3, 1, 1, 1]);
    assert!((eps.detach() - expect).abs().max().double_value(&[]) < 1e-6);

    let g = Tensor::run_backward(&[eps.sum(Kind::Float)], &[&x], false, false);
    let expect_grad: Tensor = (-x.detach().tanh().square() + 1.0) * 0.5;
    assert!((&g[0] - expect_grad).abs().max().double_value(&[]) < 1e-6);

    // The intensity map of the card: −1000 HU → −1, +1000 HU → +1.
    let hu = Tensor::from_slice(&[-1000f32, 0., 1000.]);
    let m = prior.to_model(&hu);
    assert!(
        (m - Tensor::from_slice(&[-1f32, 0., 1.]))
            .abs()
            .max()
            .double_value(&[])
            < 1e-6
    );
    assert!(
        (prior.to_physical(&prior.to_model(&hu)) - &hu)
            .abs()
            .max()
            .double_value(&[])
            < 1e-3
    );
}

/// In bf16 the module's parameter and input are cast to bf16; ε̂ and the
/// gradient come back in f32, within bf16's rounding of the exact values.
#[test]
fn traced_module_runs_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let prior = Prior::load(&export(dir.path(), TRACE), Device::Cpu, Precision::Bf16).unwrap();
    let x = (Tensor::randn([2, 1, 6, 5], (Kind::Float, Device::Cpu)) * 0.7).set_requires_grad(true);
    let eps = prior.model.eps(&x, &Tensor::from_slice(&[0i64, 999]));
    assert_eq!((eps.size(), eps.kind()), (vec![2, 1, 6, 5], Kind::Float));
    let expect = x.detach().tanh() * 0.5 + Tensor::from_slice(&[0f32, 0.999]).view([2, 1, 1, 1]);
    let err = (eps.detach() - expect).abs().max().double_value(&[]);
    assert!(err > 0.0 && err < 1e-2, "ε̂ off by {err}");
    let g = Tensor::run_backward(&[eps.sum(Kind::Float)], &[&x], false, false);
    assert_eq!(g[0].kind(), Kind::Float);
    let expect_grad: Tensor = (-x.detach().tanh().square() + 1.0) * 0.5;
    assert!((&g[0] - expect_grad).abs().max().double_value(&[]) < 1e-2);
}

/// A module that raises mid-chain (it passed the load and size checks at t = 0
/// and T − 1) ends `validate` with an error naming the failure and exit code 2,
/// where the process used to die of the panic (exit code 101).
#[test]
fn a_module_failing_mid_chain_ends_validate_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let card = export(
        dir.path(),
        "import sys, torch\n\
         class Eps(torch.nn.Module):\n\
         \x20   def forward(self, x, t):\n\
         \x20       if bool(((t > 0) & (t < 999)).any()):\n\
         \x20           raise RuntimeError('mid-chain failure')\n\
         \x20       return x * 0.0\n\
         torch.jit.script(Eps()).save(sys.argv[1])\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["--threads", "1", "validate", "--source", "shepp-logan-hu"])
        .args([
            "--size",
            "16",
            "--views",
            "6",
            "--steps",
            "5",
            "--samples",
            "1",
        ])
        .args([
            "--baselines",
            "fbp",
            "--prior",
            card.to_str().unwrap(),
            "-o",
        ])
        .arg(dir.path().join("val"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: internal error: TorchScript prior")
            && stderr.contains("mid-chain failure"),
        "{stderr}"
    );
}

#[test]
fn bad_card_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("bad.json");
    std::fs::write(&card, r#"{"name": "x"}"#).unwrap();
    let err = Prior::load(&card, Device::Cpu, Precision::F32)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("invalid model card"),
        "{err}"
    );
    let missing = dir.path().join("none.json");
    let err = Prior::load(&missing, Device::Cpu, Precision::F32)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("none.json"), "{err}");
}

/// A module that cannot serve as a prior is refused when it is loaded, with the
/// file and the reason, not in the middle of sampling: one whose output has the
/// wrong shape, and one that asks for a device it is not run on (as a module
/// traced on a GPU does; here scripted, since this machine may have none).
#[test]
fn a_module_that_cannot_run_is_refused_at_load() {
    let cases = [
        (
            "import sys, torch\n\
             class Eps(torch.nn.Module):\n\
             \x20   def forward(self, x, t):\n\
             \x20       return x[:, :, ::2, ::2]\n\
             torch.jit.trace(Eps(), (torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))).save(sys.argv[1])\n",
            "returns ε̂ of shape [2, 1, 2, 2]",
        ),
        (
            "import sys, torch\n\
             class Eps(torch.nn.Module):\n\
             \x20   def forward(self, x, t):\n\
             \x20       return x + torch.zeros(1, device=torch.device('meta'))\n\
             torch.jit.script(Eps()).save(sys.argv[1])\n",
            "does not run on Cpu",
        ),
    ];
    for (script, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let card = export(dir.path(), script);
        let err = format!(
            "{:#}",
            Prior::load(&card, Device::Cpu, Precision::F32)
                .err()
                .expect("refused")
        );
        assert!(err.contains("eps.pt") && err.contains(reason), "{err}");
    }
}

/// A module written for its training size is refused at another size by
/// `check_size`, which the pipeline calls before sampling (before, the first
/// network call of the chain panicked); a size-agnostic module passes.
#[test]
fn a_module_fixed_to_its_size_is_refused_at_another() {
    let dir = tempfile::tempdir().unwrap();
    let card = export(
        dir.path(),
        "import sys, torch\n\
         class Eps(torch.nn.Module):\n\
         \x20   def __init__(self):\n\
         \x20       super().__init__()\n\
         \x20       self.lin = torch.nn.Linear(16, 16)\n\
         \x20   def forward(self, x, t):\n\
         \x20       return self.lin(x.flatten(1)).view(x.shape) * 0.0\n\
         torch.jit.script(Eps()).save(sys.argv[1])\n",
    );
    let prior = Prior::load(&card, Device::Cpu, Precision::F32).unwrap();
    prior.model.check_size(4, 4).unwrap();
    let err = format!("{:#}", prior.model.check_size(8, 8).unwrap_err());
    assert!(
        err.contains("eps.pt: the TorchScript module does not run on 8 × 8 images"),
        "{err}"
    );

    let agnostic = tempfile::tempdir().unwrap();
    let prior = Prior::load(&export(agnostic.path(), TRACE), Device::Cpu, Precision::F32).unwrap();
    prior.model.check_size(6, 5).unwrap();
}
