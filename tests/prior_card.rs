//! Model cards are checked when a prior is loaded: a schedule that is no diffusion,
//! an architecture that cannot be built or run, and UNet weights that do not fit
//! the card's architecture are refused with the card's name and the field, where
//! before they panicked inside libtorch or loaded a network without some of its
//! weights.

use std::path::{Path, PathBuf};

use dps_recon::prior::{
    BetaSchedule, IntensityMap, ModelCard, ModelFormat, Precision, Prior, UNetConfig, UNetPrior,
};
use tch::{Device, Kind, Tensor};

/// A tiny UNet's weights (perturbed, so that ε̂ is not zero) in `dir`, a card for
/// them, and the network's ε̂ at t = 500 for an input x: (card, x, ε̂).
fn tiny_prior(dir: &Path) -> (ModelCard, Tensor, Tensor) {
    tch::manual_seed(3);
    let prior = UNetPrior::new(&UNetConfig::tiny(1), Device::Cpu);
    tch::no_grad(|| {
        for (_, v) in prior.vs.variables() {
            let _ = v.shallow_clone().g_add_(&(v.randn_like() * 0.05));
        }
    });
    prior.vs.save(dir.join("tiny.safetensors")).unwrap();
    let x = Tensor::randn([1, 1, 16, 16], (Kind::Float, Device::Cpu));
    let eps = tch::no_grad(|| {
        prior
            .net
            .forward_t(&x, &Tensor::from_slice(&[500i64]), false)
    });
    let card = ModelCard {
        name: "tiny".into(),
        description: "test".into(),
        format: ModelFormat::Unet,
        weights: "tiny.safetensors".into(),
        image_size: 16,
        channels: 1,
        schedule: BetaSchedule::default(),
        architecture: Some(UNetConfig::tiny(1)),
        intensity: IntensityMap {
            unit: "MR".into(),
            physical_min: 0.0,
            physical_max: 1.0,
            reference_p999: None,
        },
        training: None,
    };
    (card, x, eps)
}

fn write(dir: &Path, name: &str, card: &ModelCard) -> PathBuf {
    let path = dir.join(name);
    card.write(&path).unwrap();
    path
}

/// Loading `card` as `name` fails with an error naming the card and holding `what`.
fn refused(dir: &Path, name: &str, card: &ModelCard, what: &str) {
    let err = format!(
        "{:#}",
        Prior::load(&write(dir, name, card), Device::Cpu, Precision::F32)
            .err()
            .unwrap_or_else(|| panic!("{name} must be refused"))
    );
    assert!(err.contains(name) && err.contains(what), "{name}: {err}");
}

#[test]
fn a_card_that_fits_its_weights_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (card, x, eps) = tiny_prior(dir.path());
    let prior = Prior::load(
        &write(dir.path(), "tiny.json", &card),
        Device::Cpu,
        Precision::F32,
    )
    .unwrap();
    let loaded = tch::no_grad(|| prior.model.eps(&x, &Tensor::from_slice(&[500i64])));
    assert!(eps.abs().max().double_value(&[]) > 1e-3);
    assert!(loaded.equal(&eps));
}

/// In bf16 the weights are stored as bf16, ε̂ comes back in f32 close to the
/// f32 network's (but not equal to it), and the gradient reaches the f32 input.
#[test]
fn a_card_loads_in_bf16_and_runs_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (card, x, eps) = tiny_prior(dir.path());
    let path = write(dir.path(), "tiny.json", &card);
    let t = Tensor::from_slice(&[500i64]);
    let grad = |precision| {
        let prior = Prior::load(&path, Device::Cpu, precision).unwrap();
        assert_eq!(prior.precision, precision);
        let xi = x.detach().set_requires_grad(true);
        let out = prior.model.eps(&xi, &t);
        assert_eq!(out.kind(), Kind::Float);
        let g = Tensor::run_backward(&[(&out * &out).sum(Kind::Float)], &[&xi], false, false);
        (out.detach(), g[0].shallow_clone())
    };
    let relative =
        |a: &Tensor, b: &Tensor| (a - b).norm().double_value(&[]) / b.norm().double_value(&[]);
    let (eps32, grad32) = grad(Precision::F32);
    let (eps16, grad16) = grad(Precision::Bf16);
    assert!(eps32.equal(&eps));
    assert_eq!(grad16.kind(), Kind::Float);
    let (e, g) = (relative(&eps16, &eps32), relative(&grad16, &grad32));
    // bf16 rounds every layer's input by up to 2⁻⁹; this random network (whose
    // weights depend on the order the tests draw from libtorch's generator)
    // measured 1–3.4 % for ε̂ and 2–5 % for the gradient over 12 runs. What it
    // costs the shipped priors is measured in PSNR (docs/priors.md, 'Precision').
    assert!(e > 1e-4 && e < 0.1, "ε̂ relative error {e}");
    assert!(g > 1e-4 && g < 0.15, "gradient relative error {g}");
    let vs = UNetPrior::load(
        card.architecture.as_ref().unwrap(),
        &dir.path().join("tiny.safetensors"),
        Device::Cpu,
        Precision::Bf16,
    )
    .unwrap()
    .vs;
    assert!(vs
        .variables()
        .values()
        .all(|v| v.kind() == Kind::BFloat16 && !v.requires_grad()));
}

#[test]
fn schedules_that_are_no_diffusion_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (card, _, _) = tiny_prior(dir.path());
    for (name, schedule, what) in [
        ("t0.json", (1e-4, 0.02, 0), "timesteps must be ≥ 1"),
        ("negative.json", (-1e-4, 0.02, 1000), "must lie in (0, 1)"),
        ("one.json", (1e-4, 1.0, 1000), "must lie in (0, 1)"),
    ] {
        let card = ModelCard {
            schedule: BetaSchedule::Linear {
                beta_start: schedule.0,
                beta_end: schedule.1,
                timesteps: schedule.2,
            },
            ..card.clone()
        };
        refused(dir.path(), name, &card, what);
    }
}

/// Intensity ranges that float32 cannot map to the model's range and back (a
/// range of ±1e308 sampled to infinity, and the error blamed ζ).
#[test]
fn intensity_ranges_out_of_float32_reach_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (card, _, _) = tiny_prior(dir.path());
    for (name, (lo, hi), what) in [
        ("huge.json", (-1e308, 1e308), "must lie within ±1e12"),
        ("far.json", (1e13, 1e13 + 1e6), "must lie within ±1e12"),
        ("thin.json", (0.0, 1e-9), "at least 1e-6 wide"),
        ("reversed.json", (1.0, 0.0), "must exceed physical_min"),
    ] {
        let mut card = card.clone();
        (card.intensity.physical_min, card.intensity.physical_max) = (lo, hi);
        refused(dir.path(), name, &card, what);
    }
    let mut card = card;
    (card.intensity.physical_min, card.intensity.physical_max) = (-1e12, 1e12);
    Prior::load(
        &write(dir.path(), "widest.json", &card),
        Device::Cpu,
        Precision::F32,
    )
    .unwrap();
}

#[test]
fn architectures_that_cannot_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (card, _, _) = tiny_prior(dir.path());
    let tiny = UNetConfig::tiny(1);
    for (name, arch, what) in [
        (
            "odd-base.json",
            UNetConfig {
                base_channels: 7,
                ..tiny.clone()
            },
            "base_channels (7) must be even",
        ),
        (
            "no-levels.json",
            UNetConfig {
                channel_mults: vec![],
                ..tiny.clone()
            },
            "channel_mults [] must hold 1 to 8 levels",
        ),
        (
            "no-blocks.json",
            UNetConfig {
                num_res_blocks: 0,
                ..tiny.clone()
            },
            "num_res_blocks must be ≥ 1",
        ),
        (
            "attention.json",
            UNetConfig {
                attention_levels: vec![2],
                ..tiny.clone()
            },
            "attention level 2 does not exist (levels 0…1)",
        ),
        (
            "groups.json",
            UNetConfig {
                groups: 3,
                ..tiny.clone()
            },
            "groups (3) must divide every level's channel count [8, 8, 16]",
        ),
        (
            "dropout.json",
            UNetConfig {
                dropout: 1.0,
                ..tiny.clone()
            },
            "dropout (1) must lie in [0, 1)",
        ),
        (
            "out.json",
            UNetConfig {
                out_channels: 2,
                ..tiny.clone()
            },
            "out_channels (2) equal to it",
        ),
    ] {
        let card = ModelCard {
            architecture: Some(arch),
            ..card.clone()
        };
        refused(dir.path(), name, &card, what);
    }
    let two = ModelCard {
        channels: 2,
        ..card.clone()
    };
    refused(
        dir.path(),
        "channels.json",
        &two,
        "architecture.in_channels (1) differs from channels (2)",
    );
}

#[test]
fn weights_of_another_architecture_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (card, _, _) = tiny_prior(dir.path());
    let tiny = UNetConfig::tiny(1);
    // The tiny UNet has attention at level 1: a card without it would leave those
    // weights unused, one with it at level 0 would miss its weights.
    let without = ModelCard {
        architecture: Some(UNetConfig {
            attention_levels: vec![],
            ..tiny.clone()
        }),
        ..card.clone()
    };
    refused(
        dir.path(),
        "no-attention.json",
        &without,
        "18 not in the network (down.1.attn.0.norm.bias",
    );
    let moved = ModelCard {
        architecture: Some(UNetConfig {
            attention_levels: vec![0, 1],
            ..tiny.clone()
        }),
        ..card.clone()
    };
    refused(dir.path(), "moved.json", &moved, "missing (down.0.attn.0");
    let wider = ModelCard {
        architecture: Some(UNetConfig {
            base_channels: 16,
            ..tiny.clone()
        }),
        ..card.clone()
    };
    refused(
        dir.path(),
        "wider.json",
        &wider,
        "of another shape (conv_in.bias [8] (network [16])",
    );
}

#[test]
fn shipped_cards_pass_the_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for name in ["brain-t1-128", "ct-phantom-128"] {
        let path = root.join(name).join(format!("{name}.json"));
        Prior::load(&path, Device::Cpu, Precision::F32).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

/// DPS here takes one-channel priors; `validate` and `run` ask the card before
/// they write anything (validate used to write the simulated case first).
#[test]
fn priors_with_more_channels_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (card, _, _) = tiny_prior(dir.path());
    assert!(card.ensure_one_channel().is_ok());
    let two = ModelCard {
        channels: 2,
        ..card
    };
    assert_eq!(
        two.ensure_one_channel().unwrap_err().to_string(),
        "prior tiny has 2 channels; only 1-channel priors are supported"
    );
}
