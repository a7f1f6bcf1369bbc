//! `dps-recon simulate`: a phantom, NIfTI slices or a DICOM image series → raw
//! DICOM (k-space or sinograms) in OUT/raw, the ground truth as an image series in
//! OUT/truth, and every parameter in OUT/simulation.json.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, ensure, Context as _};
use clap::ValueEnum;
use dps_operators::ct::BeamGeometry;
use dps_operators::masks::{MaskPattern, MaskSpec};
use dps_recon::dicom::{CtGeometry, ImageModality};
use dps_recon::pipeline::preset::{
    resolve_preset_path, Acquisition as PresetAcquisition, Preset, PresetModality,
};

use super::write_stdout;
use dps_recon::pipeline::simulate::{
    modality_str, simulate, write_simulation, Acquisition, CtAcquisition, CtNoise, MriAcquisition,
    SimulationConfig, Source, DEFAULT_SOURCE_TO_DETECTOR_MM, DEFAULT_SOURCE_TO_ISOCENTER_MM,
};

/// The simulation options, shared with `validate`. Options of the other modality
/// are refused.
#[derive(clap::Args, Debug)]
pub struct SimulationArgs {
    /// Ground truth: shepp-logan (MR, [0, 1]), shepp-logan-hu (CT), ellipses-ct:SEED[,SEED…],
    /// ellipses-mr:SEED[,SEED…] (one slice per seed), nifti:PATH:Z1[,Z2…] (axial slices),
    /// dicom:DIR[:I1,I2…] (the image series in DIR, all frames or those at 0-based indices).
    #[arg(long, value_parser = Source::parse)]
    pub source: Option<Source>,

    /// Modality (default: the phantom's; required for nifti and dicom sources).
    #[arg(long, value_enum)]
    pub modality: Option<ModalityArg>,

    /// Image and k-space side, pixels (file sources are padded to a square and resampled).
    #[arg(long, default_value_t = 128)]
    pub size: usize,

    /// Phantoms only: field of view in mm [default: 256].
    #[arg(long)]
    pub fov_mm: Option<f64>,

    /// MR from NIfTI: ground truth = voxel value / this (255 as for the brain prior).
    #[arg(long, default_value_t = 255.0)]
    pub nifti_scale: f64,

    /// Seed of the mask (the seed) and of the noise of slice i (seed + 1 + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// BodyPartExamined of the simulated series, e.g. HEAD (a DICOM code string: at
    /// most 16 of A–Z, 0–9, space and _) [default: HEAD for the Shepp–Logan
    /// phantoms, the source series' for dicom sources, none otherwise].
    #[arg(long, value_parser = code_string)]
    pub body_part: Option<String>,

    /// Gaussian noise σ per real component: of each acquired MR k-space sample
    /// (orthonormal FFT, truth units) or of each CT line integral [default: 0].
    #[arg(long)]
    pub noise_sigma: Option<f64>,

    /// MR: receive coils (birdcage) [default: 8].
    #[arg(long, help_heading = "MR")]
    pub coils: Option<usize>,

    /// MR: sampling mask: random-lines, equispaced-lines or poisson-disc (random,
    /// equispaced, poisson for short) [default: random-lines].
    #[arg(long, help_heading = "MR")]
    pub mask: Option<MaskPattern>,

    /// MR: nominal acceleration R [default: 4].
    #[arg(long, help_heading = "MR")]
    pub acceleration: Option<f64>,

    /// MR: fully sampled centre, fraction of the lines (or of each axis for poisson) [default: 0.08].
    #[arg(long, help_heading = "MR")]
    pub acs: Option<f64>,

    /// MR: store the simulated coil sensitivities in the raw objects (else they are
    /// estimated from the calibration lines on reconstruction).
    #[arg(long, help_heading = "MR")]
    pub with_sensitivities: bool,

    /// CT: beam geometry [default: parallel].
    #[arg(long, value_enum, help_heading = "CT")]
    pub geometry: Option<GeometryArg>,

    /// CT: number of views [default: 30].
    #[arg(long, help_heading = "CT")]
    pub views: Option<usize>,

    /// CT: angular range of the views, degrees [default: 180 parallel, 360 fan].
    #[arg(long, help_heading = "CT")]
    pub arc: Option<f64>,

    /// CT: store transmission counts with Poisson noise for I0 photons per ray
    /// (instead of line integrals).
    #[arg(long, help_heading = "CT", conflicts_with = "noise_sigma")]
    pub counts: Option<f64>,

    /// CT fan beam: source to isocentre, mm [default: 570].
    #[arg(long, help_heading = "CT")]
    pub source_to_isocenter: Option<f64>,

    /// CT fan beam: source to detector, mm [default: 1040].
    #[arg(long, help_heading = "CT")]
    pub source_to_detector: Option<f64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModalityArg {
    Mr,
    Ct,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GeometryArg {
    Parallel,
    FanEquiangular,
    FanFlat,
}

impl SimulationArgs {
    /// Takes `preset`'s modality (for sources that imply none) and its
    /// `[acquisition]` (mask, acceleration and calibration fraction; CT
    /// geometry, views, arc and I0 unless a noise σ is given) for every option
    /// not given. Fails when the simulation is of the other modality.
    pub fn default_to(&mut self, preset: &Preset) -> anyhow::Result<()> {
        let implied = self.source.as_ref().and_then(Source::implied_modality);
        if self.modality.is_none() && implied.is_none() {
            self.modality = Some(match preset.modality {
                PresetModality::Mr => ModalityArg::Mr,
                PresetModality::Ct => ModalityArg::Ct,
            });
        }
        let modality = match self.modality {
            Some(ModalityArg::Mr) => Some(ImageModality::Mr),
            Some(ModalityArg::Ct) => Some(ImageModality::Ct),
            None => implied,
        };
        if let Some(m) = modality {
            ensure!(
                modality_str(m) == preset.modality.dicom(),
                "preset {} ({}) is for {} data, but the simulation is {}",
                preset.name,
                preset.path.display(),
                preset.modality.dicom(),
                modality_str(m)
            );
        }
        match (&preset.acquisition, modality) {
            (Some(PresetAcquisition::Mr { mask }), Some(ImageModality::Mr)) => {
                self.mask.get_or_insert(mask.pattern());
                self.acceleration.get_or_insert(mask.acceleration());
                self.acs.get_or_insert(mask.center_fraction());
            }
            (
                Some(PresetAcquisition::Ct {
                    geometry,
                    views,
                    arc_deg,
                    blank_scan_counts,
                }),
                Some(ImageModality::Ct),
            ) => {
                self.geometry.get_or_insert(match geometry {
                    CtGeometry::Parallel => GeometryArg::Parallel,
                    CtGeometry::FanEquiangular => GeometryArg::FanEquiangular,
                    CtGeometry::FanFlat => GeometryArg::FanFlat,
                });
                self.views.get_or_insert(*views);
                self.arc.get_or_insert(*arc_deg);
                if self.counts.is_none() && self.noise_sigma.is_none() {
                    self.counts = *blank_scan_counts;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The simulation these options describe; fails when `--source` is missing or
    /// an option does not fit the modality.
    pub fn config(&self) -> anyhow::Result<SimulationConfig> {
        let source = self
            .source
            .clone()
            .context("--source is required (e.g. --source shepp-logan-hu)")?;
        let modality = match (self.modality, source.implied_modality()) {
            (Some(ModalityArg::Mr), _) => ImageModality::Mr,
            (Some(ModalityArg::Ct), _) => ImageModality::Ct,
            (None, Some(m)) => m,
            (None, None) => bail!("--modality mr|ct is required for the source {source}"),
        };
        let given = |name: &str, present: bool| (present).then(|| name.to_string());
        let (own, other): (Vec<Option<String>>, &str) = match modality {
            ImageModality::Mr => (
                vec![
                    given("--geometry", self.geometry.is_some()),
                    given("--views", self.views.is_some()),
                    given("--arc", self.arc.is_some()),
                    given("--counts", self.counts.is_some()),
                    given("--source-to-isocenter", self.source_to_isocenter.is_some()),
                    given("--source-to-detector", self.source_to_detector.is_some()),
                ],
                "CT",
            ),
            ImageModality::Ct => (
                vec![
                    given("--coils", self.coils.is_some()),
                    given("--mask", self.mask.is_some()),
                    given("--acceleration", self.acceleration.is_some()),
                    given("--acs", self.acs.is_some()),
                    given("--with-sensitivities", self.with_sensitivities),
                ],
                "MR",
            ),
        };
        let misplaced: Vec<String> = own.into_iter().flatten().collect();
        ensure!(
            misplaced.is_empty(),
            "{} appl{} to {other} only, the simulation is {}",
            misplaced.join(", "),
            if misplaced.len() == 1 { "ies" } else { "y" },
            modality_str(modality)
        );
        let sigma = self.noise_sigma.unwrap_or(0.0);
        let acquisition = match modality {
            ImageModality::Mr => {
                let acceleration = self.acceleration.unwrap_or(4.0);
                let center_fraction = self.acs.unwrap_or(0.08);
                Acquisition::Mri(MriAcquisition {
                    coils: self.coils.unwrap_or(8),
                    mask: MaskSpec::new(
                        self.mask.unwrap_or(MaskPattern::RandomLines),
                        acceleration,
                        center_fraction,
                    ),
                    noise_sigma: sigma,
                    store_sensitivities: self.with_sensitivities,
                })
            }
            ImageModality::Ct => {
                let geometry = self.geometry.unwrap_or(GeometryArg::Parallel);
                let fan = !matches!(geometry, GeometryArg::Parallel);
                ensure!(
                    fan || (self.source_to_isocenter.is_none()
                        && self.source_to_detector.is_none()),
                    "--source-to-isocenter and --source-to-detector apply to fan beams only"
                );
                let dso = self
                    .source_to_isocenter
                    .unwrap_or(DEFAULT_SOURCE_TO_ISOCENTER_MM);
                let dsd = self
                    .source_to_detector
                    .unwrap_or(DEFAULT_SOURCE_TO_DETECTOR_MM);
                Acquisition::Ct(CtAcquisition {
                    beam: match geometry {
                        GeometryArg::Parallel => BeamGeometry::Parallel,
                        GeometryArg::FanEquiangular => BeamGeometry::FanEquiangular {
                            source_to_isocenter_mm: dso,
                            source_to_detector_mm: dsd,
                        },
                        GeometryArg::FanFlat => BeamGeometry::FanFlat {
                            source_to_isocenter_mm: dso,
                            source_to_detector_mm: dsd,
                        },
                    },
                    views: self.views.unwrap_or(30),
                    arc_deg: self.arc.unwrap_or(if fan { 360.0 } else { 180.0 }),
                    noise: match self.counts {
                        Some(i0) => CtNoise::Counts {
                            blank_scan_counts: i0,
                        },
                        None => CtNoise::LineIntegrals { sigma },
                    },
                })
            }
        };
        Ok(SimulationConfig {
            source,
            acquisition,
            size: self.size,
            phantom_fov_mm: self.fov_mm,
            nifti_scale: self.nifti_scale,
            seed: self.seed,
            body_part: self.body_part.clone(),
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub simulation: SimulationArgs,

    /// Simulate data as this preset expects (a name from pipelines/ or a TOML
    /// file): its modality and [acquisition] for the options not given.
    #[arg(long, short = 'p')]
    pub pipeline: Option<String>,

    /// Output folder: raw/ and truth/ must be missing or empty.
    #[arg(short, long)]
    pub out: PathBuf,
}

/// The command line as run, for the records.
pub fn command_line() -> String {
    std::iter::once("dps-recon".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(_ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let mut simulation = args.simulation;
    if let Some(name) = &args.pipeline {
        simulation.default_to(&Preset::load(&resolve_preset_path(name)?)?)?;
    }
    let config = simulation.config()?;
    let sim = simulate(&config)?;
    let written = write_simulation(&sim, &args.out, Some(&command_line()))?;
    write_stdout(&format!(
        "simulated {} {} slice(s) of {}×{} from {}\n\
         raw data:     {} ({} files)\n\
         ground truth: {} ({} files)\n\
         parameters:   {}\n",
        sim.raw.len(),
        modality_str(sim.modality),
        config.size,
        config.size,
        sim.source,
        args.out.join("raw").display(),
        written.raw_files.len(),
        args.out.join("truth").display(),
        written.truth.files.len(),
        written.parameters_file.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// A DICOM code string (CS) as given: 1 to 16 of A–Z, 0–9, space and _ (the
/// writer would otherwise cut or replace characters without saying so).
fn code_string(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_';
    if (1..=16).contains(&text.len()) && text.chars().all(allowed) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a DICOM code string: at most 16 of A–Z, 0–9, space and _"
        ))
    }
}
