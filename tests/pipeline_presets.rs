//! The shipped presets (pipelines/*.toml): every file parses, the required
//! recipes and their fast variants exist with consistent settings, they point at
//! the shipped priors, and docs/pipelines.md lists them all.

use std::path::{Path, PathBuf};

use dps_operators::masks::MaskSpec;
use dps_recon::dicom::{read_raw, RawMeasurement, ReadLimits};
use dps_recon::pipeline::preset::{
    resolve_preset_path, Acquisition, LikelihoodChoice, Preset, PresetModality,
};
use dps_recon::pipeline::reconstruct::{Baseline, Refine};
use dps_recon::sampler::ClampGradient;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> Vec<Preset> {
    let mut presets: Vec<Preset> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| Preset::load(&p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    presets.sort_by(|a, b| a.name.cmp(&b.name));
    presets
}

#[test]
fn required_recipes_and_fast_variants_exist() {
    let presets = shipped();
    let names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
    for base in [
        "mri-cartesian-4x",
        "mri-cartesian-8x",
        "ct-sparse-view",
        "ct-low-dose-poisson",
    ] {
        let full = presets
            .iter()
            .find(|p| p.name == base)
            .unwrap_or_else(|| panic!("{base}"));
        let fast_name = format!("{base}-fast");
        let fast = presets
            .iter()
            .find(|p| p.name == fast_name)
            .unwrap_or_else(|| panic!("{fast_name} missing from {names:?}"));
        assert_eq!(full.modality, fast.modality, "{base}");
        assert_eq!(full.acquisition, fast.acquisition, "{base}");
        assert_eq!(full.baselines, fast.baselines, "{base}");
        assert_eq!(full.prior_card, fast.prior_card, "{base}");
        assert_eq!(
            (full.steps, full.eta),
            (1000, None),
            "{base}: DDPM, 1000 steps"
        );
        assert!(full.samples >= 2 && full.outputs.uncertainty, "{base}");
        assert_eq!((fast.steps, fast.eta), (100, Some(1.0)), "{fast_name}");
        // Fewer steps take larger guidance steps.
        assert!(
            fast.zeta > full.zeta,
            "{base}: ζ {} vs {}",
            fast.zeta,
            full.zeta
        );
    }
}

#[test]
fn presets_match_their_names() {
    let models = root().join("pipelines").join("../models");
    for p in shipped() {
        let card = match p.modality {
            PresetModality::Mr => models.join("brain-t1-128/brain-t1-128.json"),
            PresetModality::Ct => models.join("ct-phantom-128/ct-phantom-128.json"),
        };
        assert_eq!(p.prior_card, card, "{}", p.name);
        assert!(!p.description.is_empty(), "{}", p.name);
        match (&p.acquisition, p.modality) {
            (Some(Acquisition::Mr { mask }), PresetModality::Mr) => {
                let r = if p.name.contains("-4x") { 4.0 } else { 8.0 };
                assert_eq!(mask.acceleration(), r, "{}", p.name);
                assert!(
                    matches!(mask, MaskSpec::EquispacedLines { .. }),
                    "{}",
                    p.name
                );
                assert_eq!(
                    p.baselines,
                    vec![Baseline::ZeroFilled, Baseline::CgSense { iterations: 10 }],
                    "{}",
                    p.name
                );
            }
            (
                Some(Acquisition::Ct {
                    views,
                    blank_scan_counts,
                    ..
                }),
                PresetModality::Ct,
            ) => {
                let low_dose = p.name.starts_with("ct-low-dose-poisson");
                assert_eq!(blank_scan_counts.is_some(), low_dose, "{}", p.name);
                if low_dose {
                    assert_eq!(p.likelihood, LikelihoodChoice::Transmission, "{}", p.name);
                } else {
                    assert_eq!(p.likelihood, LikelihoodChoice::Auto, "{}", p.name);
                    assert!(*views <= 90, "{}: sparse view", p.name);
                }
                assert!(matches!(p.baselines[0], Baseline::Fbp(_)), "{}", p.name);
            }
            other => panic!("{}: acquisition {other:?}", p.name),
        }
    }
}

#[test]
fn presets_are_found_by_name_and_documented() {
    let docs = std::fs::read_to_string(root().join("docs/pipelines.md")).unwrap();
    for p in shipped() {
        let found = resolve_preset_path(&p.name).unwrap();
        assert_eq!(
            found.canonicalize().unwrap(),
            p.path.canonicalize().unwrap(),
            "{}",
            p.name
        );
        let row_of = |name: &str| {
            docs.lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/pipelines.md has no table row for {name}"))
        };
        let row = row_of(&p.name);
        let steps = match p.eta {
            None => format!("{} DDPM steps", p.steps),
            Some(eta) => format!("{} DDIM steps (η {eta})", p.steps),
        };
        let clamp = match p.clamp_gradient {
            ClampGradient::Exact => String::new(),
            st => format!("clamp gradient {st}"),
        };
        let refine = match p.refine {
            Refine::None => String::new(),
            r => format!("{r} refinement"),
        };
        for e in [
            steps,
            format!("ζ {},", p.zeta),
            format!(" {} sample", p.samples),
            clamp,
            refine,
        ] {
            assert!(row.contains(&e), "docs/pipelines.md: {e:?} not in {row}");
        }
        // A fast variant's baselines are its full preset's ("same").
        let baselines_row = row_of(p.name.trim_end_matches("-fast"));
        for b in &p.baselines {
            if let Baseline::Tv { lambda, .. } = b {
                let e = format!("(λ {lambda})");
                assert!(
                    baselines_row.contains(&e),
                    "docs/pipelines.md: {e:?} not in {baselines_row}"
                );
            }
        }
    }
    let err = resolve_preset_path("mri-cartesian-3x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no preset named `mri-cartesian-3x`"), "{err}");
    assert!(Path::new(&resolve_preset_path("x/y.toml").unwrap()) == Path::new("x/y.toml"));
}

/// The presets `make demo` runs on the bundled sample cases are tuned for those
/// cases' acquisitions: `run` and `validate --pipeline` warn about none of them.
/// (The sparse-view presets said 60 views while their ζ and λ were tuned on, and
/// demoed with, 30.)
#[test]
fn the_sample_cases_are_acquired_as_their_presets_expect() {
    for (case, presets) in [
        (
            "mri-brain-4x",
            ["mri-cartesian-4x", "mri-cartesian-4x-fast"],
        ),
        (
            "ct-shepp-logan-sparse",
            ["ct-sparse-view", "ct-sparse-view-fast"],
        ),
    ] {
        let dir = root().join("sample_data").join(case).join("raw");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let raws: Vec<RawMeasurement> = files
            .iter()
            .map(|f| read_raw(f, ReadLimits::default()).unwrap())
            .collect();
        assert!(!raws.is_empty(), "{case}");
        for name in presets {
            let preset = Preset::load(&resolve_preset_path(name).unwrap()).unwrap();
            let warnings = preset.acquisition_warnings(&raws);
            assert!(warnings.is_empty(), "{name} on {case}: {warnings:?}");
        }
    }
}
