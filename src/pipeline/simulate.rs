//! Simulated acquisitions: ground-truth images (a phantom, axial NIfTI slices or
//! a DICOM image series) → raw measurements of the profile
//! (docs/dicom-raw-profile.md), one Raw Data Storage object per slice, and the
//! ground truth as an MR or CT image series in the same study and frame of
//! reference.
//!
//! Units:
//! - MR ground truth is a real, non-negative image in arbitrary units: the
//!   modified Shepp–Logan and MR ellipse phantoms in [0, 1], NIfTI values divided
//!   by [`SimulationConfig::nifti_scale`] (255 for Colin27, as the brain prior was
//!   trained), DICOM MR values as stored. The k-space of coil c is
//!   `M ⊙ (fft2c(S_c x) + n_c)` with the centred orthonormal FFT, birdcage
//!   sensitivities normalised to `Σ_c |S_c|² = 1`, and complex Gaussian noise `n_c`
//!   of standard deviation σ per real component; a magnitude reconstruction is
//!   therefore on the scale of the truth.
//! - CT ground truth is in HU, clamped below at −1000 (air). The sinogram holds the
//!   line integrals `p = ∫ μ dl` (dimensionless: μ in 1/mm along mm) of
//!   `μ = μ_water (1 + HU/1000)` with `μ_water` = [`MU_WATER_70KEV_PER_MM`], plus
//!   Gaussian noise of standard deviation σ, or transmission counts
//!   `Poisson(I0 exp(−p))`.
//!
//! Placement (LPS, mm): phantoms are axial slices (ImageOrientationPatient
//! `1\0\0\0\1\0`) centred on the origin, slice k of a case at z = k · Δ (Δ the
//! pixel spacing, also the slice thickness); NIfTI slices are axial in the
//! orientation of [`crate::volume`] (column index towards the patient's right,
//! row index towards posterior: `−1\0\0\0\1\0`), centred in-plane, at z = index ·
//! voxel height; DICOM frames keep their planes, adjusted to the resampled grid.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};
use dps_operators::coils::{birdcage, DEFAULT_RING_RADIUS};
use dps_operators::ct::{uniform_angles, BeamGeometry, CtGeometry, Radon};
use dps_operators::masks::{self, MaskPattern, MaskSpec};
use dps_operators::mri::MultiCoilMri;
use dps_operators::noise::{add_gaussian, transmission_counts};
use dps_operators::Operator;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use crate::dicom::uid::new_uid;
use crate::dicom::{
    read_series, scan_folder, write_raw, write_series, CtDataType, CtGeometry as RawGeometry,
    CtSinogram, FileKind, ImageModality, ImageRole, InstanceContext, Measurement, MriKspace,
    OutputSlice, Plane, RawMeasurement, ReadLimits, SeriesSpec, Window, WrittenSeries, MAX_VIEWS,
    POSITIVE_RANGE,
};
use crate::phantom::{self, PhantomStyle, MU_WATER_70KEV_PER_MM};
use crate::volume::{square_resample, Volume};

/// Field of view of the phantoms when none is given, mm (2 mm pixels at 128²).
pub const DEFAULT_PHANTOM_FOV_MM: f64 = 256.0;

/// Source-to-isocentre distance of the fan-beam simulations by default, mm.
pub const DEFAULT_SOURCE_TO_ISOCENTER_MM: f64 = 570.0;

/// Source-to-detector distance of the fan-beam simulations by default, mm.
pub const DEFAULT_SOURCE_TO_DETECTOR_MM: f64 = 1040.0;

/// Where the ground-truth images come from. The textual form (see
/// [`Source::parse`]) is what the command line takes and the reports record.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `shepp-logan`: the modified Shepp–Logan phantom in [0, 1] (MR).
    SheppLogan,
    /// `shepp-logan-hu`: the original Shepp–Logan phantom in HU (CT).
    SheppLoganHu,
    /// `ellipses-ct:S1,S2,…`: random CT ellipse phantoms in HU, one slice per seed.
    EllipsesCt(Vec<u64>),
    /// `ellipses-mr:S1,S2,…`: random MR ellipse phantoms in [0, 1], one slice per seed.
    EllipsesMr(Vec<u64>),
    /// `nifti:PATH:Z1,Z2,…`: axial slices at voxel indices z of a NIfTI volume.
    Nifti { path: PathBuf, slices: Vec<i64> },
    /// `dicom:DIR` or `dicom:DIR:I1,I2,…`: the one image series in DIR (searched
    /// recursively), all its frames or those at the given 0-based indices in slice
    /// order.
    Dicom {
        dir: PathBuf,
        frames: Option<Vec<usize>>,
    },
}

/// A non-empty comma-separated list of numbers.
fn parse_list<T: std::str::FromStr>(s: &str) -> Option<Vec<T>> {
    s.split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<Vec<T>>>()
        .filter(|v| !v.is_empty())
}

fn join<T: fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Source {
    /// Parses `shepp-logan`, `shepp-logan-hu`, `ellipses-ct:SEEDS`,
    /// `ellipses-mr:SEEDS`, `nifti:PATH:Z1,Z2,…` or `dicom:DIR[:I1,I2,…]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected shepp-logan, shepp-logan-hu, ellipses-ct:SEED[,SEED…], \
                        ellipses-mr:SEED[,SEED…], nifti:PATH:Z1[,Z2…] or dicom:DIR[:I1,I2…]";
        match s {
            "shepp-logan" => return Ok(Self::SheppLogan),
            "shepp-logan-hu" => return Ok(Self::SheppLoganHu),
            _ => {}
        }
        let seeds = |rest: &str| {
            parse_list(rest).ok_or_else(|| format!("'{s}': seeds must be integers ≥ 0"))
        };
        if let Some(rest) = s.strip_prefix("ellipses-ct:") {
            return seeds(rest).map(Self::EllipsesCt);
        }
        if let Some(rest) = s.strip_prefix("ellipses-mr:") {
            return seeds(rest).map(Self::EllipsesMr);
        }
        if let Some(rest) = s.strip_prefix("nifti:") {
            return match rest
                .rsplit_once(':')
                .and_then(|(p, z)| Some((p, parse_list::<i64>(z)?)))
            {
                Some((path, slices)) if !path.is_empty() => Ok(Self::Nifti {
                    path: path.into(),
                    slices,
                }),
                _ => Err(format!("'{s}': expected nifti:PATH:Z1[,Z2…]")),
            };
        }
        if let Some(rest) = s.strip_prefix("dicom:") {
            let (dir, frames) = match rest
                .rsplit_once(':')
                .and_then(|(d, i)| Some((d, parse_list::<usize>(i)?)))
            {
                Some((dir, frames)) => (dir, Some(frames)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(format!("'{s}': expected dicom:DIR[:I1,I2…]"));
            }
            return Ok(Self::Dicom {
                dir: dir.into(),
                frames,
            });
        }
        Err(format!("'{s}': {expected}"))
    }

    /// The modality a phantom is made for; `None` for files (NIfTI, DICOM).
    pub fn implied_modality(&self) -> Option<ImageModality> {
        match self {
            Self::SheppLogan | Self::EllipsesMr(_) => Some(ImageModality::Mr),
            Self::SheppLoganHu | Self::EllipsesCt(_) => Some(ImageModality::Ct),
            Self::Nifti { .. } | Self::Dicom { .. } => None,
        }
    }

    fn is_phantom(&self) -> bool {
        self.implied_modality().is_some()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SheppLogan => write!(f, "shepp-logan"),
            Self::SheppLoganHu => write!(f, "shepp-logan-hu"),
            Self::EllipsesCt(seeds) => write!(f, "ellipses-ct:{}", join(seeds)),
            Self::EllipsesMr(seeds) => write!(f, "ellipses-mr:{}", join(seeds)),
            Self::Nifti { path, slices } => write!(f, "nifti:{}:{}", path.display(), join(slices)),
            Self::Dicom { dir, frames: None } => write!(f, "dicom:{}", dir.display()),
            Self::Dicom {
                dir,
                frames: Some(frames),
            } => write!(f, "dicom:{}:{}", dir.display(), join(frames)),
        }
    }
}

/// A multi-coil Cartesian MRI acquisition.
#[derive(Clone, Debug, PartialEq)]
pub struct MriAcquisition {
    /// Receive coils of the simulated birdcage array.
    pub coils: usize,
    /// Sampling pattern (one mask for all slices, drawn with the case seed).
    pub mask: MaskSpec,
    /// Noise standard deviation per real component of each acquired k-space
    /// sample (orthonormal FFT: the same in image space), in truth units; ≥ 0.
    pub noise_sigma: f64,
    /// Store the simulated sensitivities in the raw objects (else a reader
    /// estimates them from the calibration lines).
    pub store_sensitivities: bool,
}

/// The CT measurement noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CtNoise {
    /// Line integrals plus Gaussian noise of standard deviation `sigma` (≥ 0,
    /// dimensionless like the line integrals).
    LineIntegrals { sigma: f64 },
    /// Transmission counts `Poisson(I0 exp(−p))` with `blank_scan_counts` = I0 > 0.
    Counts { blank_scan_counts: f64 },
}

/// A 2-D CT acquisition. The detector is derived from the image grid: it covers
/// the image's circumscribed circle with one element per pixel width at the
/// isocentre (parallel beam: Δ mm; equiangular fan: Δ / D_so rad; flat fan:
/// Δ · D_sd / D_so mm), an odd number of elements, centred.
#[derive(Clone, Debug, PartialEq)]
pub struct CtAcquisition {
    /// Beam shape and, for fan beams, the distances in mm.
    pub beam: BeamGeometry,
    /// Views, uniformly spaced over `[0, arc_deg)`.
    pub views: usize,
    /// Angular range of the views, degrees.
    pub arc_deg: f64,
    pub noise: CtNoise,
}

/// How the truth is measured.
#[derive(Clone, Debug, PartialEq)]
pub enum Acquisition {
    Mri(MriAcquisition),
    Ct(CtAcquisition),
}

impl Acquisition {
    /// MR for k-space, CT for sinograms.
    pub fn modality(&self) -> ImageModality {
        match self {
            Self::Mri(_) => ImageModality::Mr,
            Self::Ct(_) => ImageModality::Ct,
        }
    }
}

/// Everything a simulation depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulationConfig {
    pub source: Source,
    pub acquisition: Acquisition,
    /// Side of the square images and of the k-space, pixels; file sources are
    /// zero-padded to a centred square (air for CT) and resampled to it.
    pub size: usize,
    /// Field of view of the phantoms, mm (phantom sources only; `None`:
    /// [`DEFAULT_PHANTOM_FOV_MM`]).
    pub phantom_fov_mm: Option<f64>,
    /// MR from NIfTI: truth = voxel value / `nifti_scale`.
    pub nifti_scale: f64,
    /// Seed of the mask (the seed itself) and of the noise of slice i (seed + 1 + i).
    pub seed: u64,
    /// BodyPartExamined of both series (`None`: `HEAD` for the Shepp–Logan
    /// phantoms, the source series' for DICOM, absent otherwise).
    pub body_part: Option<String>,
}

/// One ground-truth slice.
#[derive(Debug)]
pub struct TruthSlice {
    /// `[size, size]` f32 on the CPU, in MR truth units or HU.
    pub image: Tensor,
    /// `[between rows, between columns]`, mm.
    pub pixel_spacing_mm: [f64; 2],
    pub plane: Plane,
    /// SliceLocation, mm.
    pub slice_location_mm: Option<f64>,
    /// SliceThickness, mm.
    pub slice_thickness_mm: Option<f64>,
    /// Where it came from, e.g. `z = 85` or `seed 3`.
    pub label: String,
}

/// A simulated case in memory.
#[derive(Debug)]
pub struct Simulation {
    pub modality: ImageModality,
    /// One raw measurement per slice, in slice order, all of one series.
    pub raw: Vec<RawMeasurement>,
    /// The ground truth of each raw measurement (same order).
    pub truth: Vec<TruthSlice>,
    /// The source as given.
    pub source: String,
    /// Every parameter, as written to `simulation.json`.
    pub parameters: Value,
}

/// The noise seed of slice `index`.
pub fn noise_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_add(1 + index as u64)
}

/// Simulates the case on the CPU.
pub fn simulate(config: &SimulationConfig) -> anyhow::Result<Simulation> {
    let _guard = tch::no_grad_guard();
    ensure!(
        (16..=4096).contains(&config.size),
        "image size {} outside 16…4096",
        config.size
    );
    let modality = config.acquisition.modality();
    if let Some(m) = config.source.implied_modality() {
        ensure!(
            m == modality,
            "source {} is a {} phantom, but the acquisition is {}",
            config.source,
            modality_str(m),
            modality_str(modality)
        );
    }
    ensure!(
        config.phantom_fov_mm.is_none() || config.source.is_phantom(),
        "a field of view applies to phantoms only; {} brings its own pixel spacing",
        config.source
    );
    let (truth, patient) = load_source(config, modality)?;
    ensure!(
        !truth.is_empty(),
        "the source {} has no slices",
        config.source
    );
    let spacing = truth[0].pixel_spacing_mm;
    ensure!(
        truth.iter().all(|t| t.pixel_spacing_mm == spacing),
        "the source slices differ in pixel spacing"
    );
    let (measurements, acquisition) = match &config.acquisition {
        Acquisition::Mri(a) => measure_mri(a, &truth, config.seed)?,
        Acquisition::Ct(a) => measure_ct(a, &truth, spacing, config.seed)?,
    };
    let source = config.source.to_string();
    let mut context = new_context(modality, &source, patient.as_ref());
    if let Some(part) = &config.body_part {
        context.body_part_examined.clone_from(part);
    } else if matches!(config.source, Source::SheppLogan | Source::SheppLoganHu) {
        context.body_part_examined = "HEAD".into();
    }
    context.series_description = raw_series_description(&config.acquisition);
    // Patient attributes copied from a source series must fit a raw file.
    context.check_default_repertoire().with_context(|| {
        format!("{source}: the source's patient attributes cannot be copied to raw data")
    })?;
    let raw: Vec<RawMeasurement> = truth
        .iter()
        .zip(measurements)
        .enumerate()
        .map(|(i, (t, (data, noise_sigma)))| RawMeasurement {
            data,
            noise_sigma,
            recon_size: [t.image.size()[0] as u32, t.image.size()[1] as u32],
            recon_pixel_spacing_mm: t.pixel_spacing_mm,
            context: context.clone(),
            plane: t.plane,
            slice_location_mm: t.slice_location_mm,
            slice_thickness_mm: t.slice_thickness_mm,
            instance_number: Some(i as i32 + 1),
            sop_instance_uid: new_uid(),
        })
        .collect();
    for (i, r) in raw.iter().enumerate() {
        r.validate()
            .with_context(|| format!("simulated slice {}", i + 1))?;
    }
    let slices: Vec<Value> = truth
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "label": t.label,
                "noise_seed": noise_seed(config.seed, i),
                "image_position_patient_mm": t.plane.position_mm,
                "image_orientation_patient": t.plane.orientation,
                "slice_location_mm": t.slice_location_mm,
            })
        })
        .collect();
    let (unit, truth_units) = match modality {
        ImageModality::Mr => (
            "MR",
            match config.source {
                Source::Nifti { .. } => format!("NIfTI voxel value / {}", config.nifti_scale),
                Source::Dicom { .. } => "DICOM pixel values after the Modality LUT".into(),
                _ => "phantom intensity in [0, 1]".into(),
            },
        ),
        ImageModality::Ct if config.source.is_phantom() => ("HU", "phantom values in HU".into()),
        ImageModality::Ct => ("HU", "HU, clamped below at −1000 (air)".into()),
    };
    let parameters = json!({
        "dps_recon_version": env!("CARGO_PKG_VERSION"),
        "source": source,
        "modality": modality_str(modality),
        "size": config.size,
        "pixel_spacing_mm": spacing,
        "seed": config.seed,
        "body_part_examined": context.body_part_examined,
        "truth_unit": unit,
        "truth_values": truth_units,
        "nifti_scale": matches!(config.source, Source::Nifti { .. }).then_some(config.nifti_scale),
        "phantom_fov_mm": config.source.is_phantom()
            .then(|| config.phantom_fov_mm.unwrap_or(DEFAULT_PHANTOM_FOV_MM)),
        "acquisition": acquisition,
        "slices": slices,
    });
    Ok(Simulation {
        modality,
        raw,
        truth,
        source,
        parameters,
    })
}

/// `MR` or `CT`.
pub fn modality_str(m: ImageModality) -> &'static str {
    match m {
        ImageModality::Mr => "MR",
        ImageModality::Ct => "CT",
    }
}

fn raw_series_description(acquisition: &Acquisition) -> String {
    match acquisition {
        Acquisition::Mri(a) => format!(
            "Simulated k-space, {} coils, {}x {}",
            a.coils,
            a.mask.acceleration(),
            mask_kind(&a.mask).0
        ),
        Acquisition::Ct(a) => format!(
            "Simulated sinogram, {} views over {} deg, {}",
            a.views,
            a.arc_deg,
            beam_name(&a.beam)
        ),
    }
}

/// Patient, study, raw series and frame of reference of a new simulated case;
/// the patient attributes come from the source series when there is one.
fn new_context(
    modality: ImageModality,
    source: &str,
    patient: Option<&InstanceContext>,
) -> InstanceContext {
    let now = chrono::Local::now();
    let mut ctx = InstanceContext {
        patient_name: "SIMULATION^DPSRECON".into(),
        patient_id: "DPSRECON-SIM".into(),
        patient_position: "HFS".into(),
        ..InstanceContext::default()
    };
    if let Some(p) = patient {
        ctx.patient_name.clone_from(&p.patient_name);
        ctx.patient_id.clone_from(&p.patient_id);
        ctx.patient_birth_date.clone_from(&p.patient_birth_date);
        ctx.patient_sex.clone_from(&p.patient_sex);
        ctx.body_part_examined.clone_from(&p.body_part_examined);
        ctx.patient_position.clone_from(&p.patient_position);
    }
    InstanceContext {
        study_instance_uid: new_uid(),
        study_date: now.format("%Y%m%d").to_string(),
        study_time: now.format("%H%M%S").to_string(),
        study_id: "SIM".into(),
        study_description: format!("dps-recon simulation: {source}"),
        series_instance_uid: new_uid(),
        series_number: Some(1),
        modality: modality_str(modality).into(),
        frame_of_reference_uid: new_uid(),
        manufacturer: "dps-recon".into(),
        manufacturer_model_name: "dps-recon simulate".into(),
        software_versions: env!("CARGO_PKG_VERSION").into(),
        ..ctx
    }
}

/// An axial plane with row direction `row` and column direction +y (posterior),
/// centred on `(0, 0, z)`.
fn axial_plane(n: usize, spacing: [f64; 2], z: f64, row: [f64; 3]) -> Plane {
    let col = [0.0, 1.0, 0.0];
    let half = (n as f64 - 1.0) / 2.0;
    // `+ 0.0` turns −0 into 0 (written as "0", not "-0").
    let mut position_mm: [f64; 3] =
        std::array::from_fn(|a| -half * (spacing[1] * row[a] + spacing[0] * col[a]) + 0.0);
    position_mm[2] = z;
    Plane {
        position_mm,
        orientation: [row[0], row[1], row[2], col[0], col[1], col[2]],
    }
}

/// The truth slices in output units, and the source series' context (DICOM only).
fn load_source(
    config: &SimulationConfig,
    modality: ImageModality,
) -> anyhow::Result<(Vec<TruthSlice>, Option<InstanceContext>)> {
    let n = config.size;
    let phantom_slices = |images: Vec<(Tensor, String)>| {
        let d = config.phantom_fov_mm.unwrap_or(DEFAULT_PHANTOM_FOV_MM) / n as f64;
        images
            .into_iter()
            .enumerate()
            .map(|(k, (image, label))| {
                let z = k as f64 * d;
                TruthSlice {
                    image,
                    pixel_spacing_mm: [d, d],
                    plane: axial_plane(n, [d, d], z, [1.0, 0.0, 0.0]),
                    slice_location_mm: Some(z),
                    slice_thickness_mm: Some(d),
                    label,
                }
            })
            .collect::<Vec<_>>()
    };
    if let Some(fov) = config.phantom_fov_mm {
        ensure!(
            fov.is_finite() && fov > 0.0,
            "field of view {fov} mm must be > 0"
        );
    }
    let slices = match &config.source {
        Source::SheppLogan => phantom_slices(vec![(phantom::shepp_logan(n), "shepp-logan".into())]),
        Source::SheppLoganHu => {
            phantom_slices(vec![(phantom::shepp_logan_hu(n), "shepp-logan-hu".into())])
        }
        Source::EllipsesCt(seeds) | Source::EllipsesMr(seeds) => {
            let style = match config.source {
                Source::EllipsesCt(_) => PhantomStyle::Ct,
                _ => PhantomStyle::Mr,
            };
            phantom_slices(
                seeds
                    .iter()
                    .map(|&s| (phantom::random_ellipses(n, s, style), format!("seed {s}")))
                    .collect(),
            )
        }
        Source::Nifti { path, slices } => nifti_slices(config, modality, path, slices)?,
        Source::Dicom { dir, frames } => {
            let (slices, context) = dicom_slices(config, modality, dir, frames.as_deref())?;
            return Ok((slices, Some(context)));
        }
    };
    Ok((slices, None))
}

/// Resamples a `[h, w]` image to `[n, n]` (centred square padding with `pad`).
fn resample(image: &Tensor, n: usize, pad: f64) -> Tensor {
    square_resample(&(image.to_kind(Kind::Float) - pad), n as i64) + pad
}

/// The truth values of a file source in output units: MR as given, CT clamped
/// at −1000 HU.
fn to_truth(image: Tensor, modality: ImageModality) -> Tensor {
    match modality {
        ImageModality::Mr => image,
        ImageModality::Ct => image.clamp_min(-1000.0),
    }
}

/// Air for CT, 0 for MR: the value around a source image.
fn background(modality: ImageModality) -> f64 {
    match modality {
        ImageModality::Mr => 0.0,
        ImageModality::Ct => -1000.0,
    }
}

fn nifti_slices(
    config: &SimulationConfig,
    modality: ImageModality,
    path: &Path,
    zs: &[i64],
) -> anyhow::Result<Vec<TruthSlice>> {
    let vol = Volume::read(path)?;
    let [nx, ny, nz] = vol.dims;
    let side = nx.max(ny) as f64;
    let n = config.size;
    let spacing = [
        vol.voxel_mm[1] * side / n as f64,
        vol.voxel_mm[0] * side / n as f64,
    ];
    let scale = match modality {
        ImageModality::Mr => {
            ensure!(
                config.nifti_scale.is_finite() && config.nifti_scale > 0.0,
                "NIfTI scale {} must be > 0",
                config.nifti_scale
            );
            config.nifti_scale
        }
        ImageModality::Ct => 1.0,
    };
    zs.iter()
        .map(|&z| {
            ensure!(
                (0..nz).contains(&z),
                "{}: slice z = {z} outside 0…{}",
                path.display(),
                nz - 1
            );
            let image = to_truth(
                resample(&vol.axial(z), n, background(modality) * scale) / scale,
                modality,
            );
            let location = z as f64 * vol.voxel_mm[2];
            Ok(TruthSlice {
                image,
                pixel_spacing_mm: spacing,
                plane: axial_plane(n, spacing, location, [-1.0, 0.0, 0.0]),
                slice_location_mm: Some(location),
                slice_thickness_mm: Some(vol.voxel_mm[2]).filter(|t| *t > 0.0),
                label: format!("z = {z}"),
            })
        })
        .collect()
}

fn dicom_slices(
    config: &SimulationConfig,
    modality: ImageModality,
    dir: &Path,
    frames: Option<&[usize]>,
) -> anyhow::Result<(Vec<TruthSlice>, InstanceContext)> {
    let limits = ReadLimits::default();
    let scan = scan_folder(dir, limits);
    let grouping = scan.series();
    if let Some(d) = grouping.duplicates.first() {
        bail!(
            "{}: duplicate of {} (same SOPInstanceUID {})",
            d.path.display(),
            d.first.display(),
            d.sop_instance_uid
        );
    }
    let images: Vec<_> = grouping
        .series
        .into_iter()
        .filter(|g| {
            g.files
                .iter()
                .all(|(_, s)| matches!(s.kind, FileKind::Image { .. }))
        })
        .collect();
    let group = match images.as_slice() {
        [one] => one,
        [] => bail!("{}: no DICOM image series found", dir.display()),
        many => bail!(
            "{}: {} image series found ({}); point to a folder holding one",
            dir.display(),
            many.len(),
            many.iter()
                .map(|g| g.series_instance_uid.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let series = read_series(&group.paths(), limits)
        .with_context(|| format!("{}: reading the image series", dir.display()))?;
    let wanted = match series.context.modality.as_str() {
        "MR" => ImageModality::Mr,
        "CT" => ImageModality::Ct,
        other => bail!(
            "{}: the series has modality {other:?}; MR or CT images are needed",
            dir.display()
        ),
    };
    ensure!(
        wanted == modality,
        "{}: a {} series cannot be the truth of a {} acquisition",
        dir.display(),
        series.context.modality,
        modality_str(modality)
    );
    let indices: Vec<usize> = match frames {
        Some(f) => f.to_vec(),
        None => (0..series.frames.len()).collect(),
    };
    let n = config.size;
    let slices = indices
        .iter()
        .map(|&i| {
            let frame = series.frames.get(i).with_context(|| {
                format!(
                    "{}: frame {i} requested, the series has {}",
                    dir.display(),
                    series.frames.len()
                )
            })?;
            let [dr, dc] = frame
                .pixel_spacing_mm
                .with_context(|| format!("{}: frame {i} has no PixelSpacing", dir.display()))?;
            let (rows, cols) = (frame.rows, frame.cols);
            let side = rows.max(cols);
            let zoom = side as f64 / n as f64;
            let spacing = [dr * zoom, dc * zoom];
            let image = Tensor::from_slice(&frame.pixels).view([rows as i64, cols as i64]);
            let image = to_truth(resample(&image, n, background(modality)), modality);
            // New pixel (0, 0) lies at source index 0.5·zoom − 0.5 − pad offset.
            let plane = frame.plane.map(|p| {
                let (r, c) = (p.row_direction(), p.column_direction());
                let di = 0.5 * zoom - 0.5 - ((side - rows) / 2) as f64;
                let dj = 0.5 * zoom - 0.5 - ((side - cols) / 2) as f64;
                Plane {
                    position_mm: std::array::from_fn(|a| {
                        p.position_mm[a] + dj * dc * r[a] + di * dr * c[a]
                    }),
                    orientation: p.orientation,
                }
            });
            let z = i as f64 * frame.slice_thickness_mm.unwrap_or(spacing[0]);
            let plane = plane.unwrap_or_else(|| axial_plane(n, spacing, z, [1.0, 0.0, 0.0]));
            let location = plane.distance_along(plane.normal());
            Ok(TruthSlice {
                image,
                pixel_spacing_mm: spacing,
                plane,
                slice_location_mm: Some(location),
                slice_thickness_mm: frame.slice_thickness_mm,
                label: format!("frame {i}"),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((slices, series.context))
}

/// The name and the parameters of a mask recipe.
fn mask_kind(spec: &MaskSpec) -> (&'static str, f64) {
    let name = match spec.pattern() {
        MaskPattern::RandomLines => "random",
        MaskPattern::EquispacedLines => "equispaced",
        MaskPattern::PoissonDisc => "poisson",
    };
    (name, spec.center_fraction())
}

/// A complex tensor as interleaved `(re, im)` f32 values in C order.
fn interleaved(complex: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        complex
            .to_kind(Kind::ComplexFloat)
            .view_as_real()
            .contiguous()
            .view([-1]),
    )?)
}

/// One measurement per truth slice with its noise σ, and the acquisition's
/// parameters.
type Measured = (Vec<(Measurement, Option<f64>)>, Value);

fn measure_mri(a: &MriAcquisition, truth: &[TruthSlice], seed: u64) -> anyhow::Result<Measured> {
    ensure!(a.coils >= 1, "at least one coil is needed");
    ensure!(
        a.noise_sigma.is_finite() && a.noise_sigma >= 0.0,
        "noise sigma {} must be ≥ 0",
        a.noise_sigma
    );
    let (h, w) = (truth[0].image.size()[0], truth[0].image.size()[1]);
    let mask = a
        .mask
        .generate(h as usize, w as usize, seed)
        .context("making the sampling mask")?;
    let sens = birdcage(a.coils, h as usize, w as usize, DEFAULT_RING_RADIUS);
    let op = MultiCoilMri::new(&mask, &sens, Device::Cpu).context("building the MRI operator")?;
    let mask_bytes = Vec::<u8>::try_from(mask.ne(0.0).to_kind(Kind::Uint8).view([-1]))?;
    let stored_sens = if a.store_sensitivities {
        Some(interleaved(&sens)?)
    } else {
        None
    };
    let measurements = truth
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let k = op.forward(&t.image.view([1, 1, h, w]));
            let k = if a.noise_sigma > 0.0 {
                add_gaussian(&k, a.noise_sigma, noise_seed(seed, i)) * &mask
            } else {
                k
            };
            let data = Measurement::MriKspace(MriKspace {
                coils: a.coils,
                ky: h as usize,
                kx: w as usize,
                data: interleaved(&k.squeeze_dim(0))?,
                mask: mask_bytes.clone(),
                sensitivities: stored_sens.clone(),
            });
            Ok((data, Some(a.noise_sigma)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (kind, center_fraction) = mask_kind(&a.mask);
    let acquired_lines = mask
        .ne(0.0)
        .any_dim(1, false)
        .sum(Kind::Int64)
        .int64_value(&[]);
    let parameters = json!({
        "kind": "MRI_KSPACE",
        "coils": a.coils,
        "sensitivities": format!(
            "birdcage (ring radius {DEFAULT_RING_RADIUS} half-FOVs), Σ|S|² = 1; {}",
            if a.store_sensitivities { "stored in the raw objects" } else { "not stored" }
        ),
        "fft": "centred orthonormal, k = fft2c(S·x)",
        "mask": {
            "kind": kind,
            "acceleration": a.mask.acceleration(),
            "center_fraction": center_fraction,
            "measured_acceleration": masks::acceleration(&mask),
            "acquired_lines": acquired_lines,
            "seed": seed,
        },
        "noise_sigma": a.noise_sigma,
    });
    Ok((measurements, parameters))
}

fn beam_name(beam: &BeamGeometry) -> &'static str {
    match beam {
        BeamGeometry::Parallel => "parallel",
        BeamGeometry::FanEquiangular { .. } => "fan-equiangular",
        BeamGeometry::FanFlat { .. } => "fan-flat",
    }
}

/// The geometry of `a` for an `n × n` image of `pixel_mm` pixels (detector as
/// documented on [`CtAcquisition`]).
pub fn ct_geometry(a: &CtAcquisition, n: usize, pixel_mm: f64) -> anyhow::Result<CtGeometry> {
    ensure!(a.views >= 1, "at least one view is needed");
    ensure!(
        a.views <= MAX_VIEWS,
        "{} views: a raw file holds at most {MAX_VIEWS} (docs/dicom-raw-profile.md)",
        a.views
    );
    ensure!(
        a.arc_deg.is_finite() && a.arc_deg > 0.0,
        "arc {} degrees must be > 0",
        a.arc_deg
    );
    let radius = 0.5 * pixel_mm * (n as f64) * std::f64::consts::SQRT_2;
    let odd_cover =
        |half_extent: f64, spacing: f64| 2 * (half_extent / spacing).ceil() as usize + 1;
    let (n_detectors, detector_spacing) = match a.beam {
        BeamGeometry::Parallel => (odd_cover(radius, pixel_mm), pixel_mm),
        BeamGeometry::FanEquiangular {
            source_to_isocenter_mm: dso,
            ..
        }
        | BeamGeometry::FanFlat {
            source_to_isocenter_mm: dso,
            ..
        } if radius >= dso => bail!(
            "the image (half-diagonal {radius:.1} mm) does not fit inside the source \
             circle ({dso} mm)"
        ),
        BeamGeometry::FanEquiangular {
            source_to_isocenter_mm: dso,
            ..
        } => {
            let step = pixel_mm / dso;
            (odd_cover((radius / dso).asin(), step), step.to_degrees())
        }
        BeamGeometry::FanFlat {
            source_to_isocenter_mm: dso,
            source_to_detector_mm: dsd,
        } => {
            let step = pixel_mm * dsd / dso;
            let half = dsd * (radius / dso).asin().tan();
            (odd_cover(half, step), step)
        }
    };
    let geometry = CtGeometry {
        rows: n,
        cols: n,
        pixel_spacing_mm: pixel_mm,
        angles_deg: uniform_angles(a.views, a.arc_deg),
        n_detectors,
        detector_spacing,
        detector_offset: 0.0,
        beam: a.beam,
    };
    geometry.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(geometry)
}

fn measure_ct(
    a: &CtAcquisition,
    truth: &[TruthSlice],
    spacing: [f64; 2],
    seed: u64,
) -> anyhow::Result<Measured> {
    ensure!(
        (spacing[0] - spacing[1]).abs() <= 1e-9 * spacing[0],
        "CT needs square pixels, the source has {} × {} mm",
        spacing[0],
        spacing[1]
    );
    match a.noise {
        CtNoise::LineIntegrals { sigma } => ensure!(
            sigma.is_finite() && sigma >= 0.0,
            "noise sigma {sigma} must be ≥ 0"
        ),
        CtNoise::Counts { blank_scan_counts } => ensure!(
            blank_scan_counts > 0.0 && blank_scan_counts <= *POSITIVE_RANGE.end(),
            "blank-scan counts {blank_scan_counts:e} must be > 0 and ≤ {:e} (the raw \
             profile's limit)",
            POSITIVE_RANGE.end()
        ),
    }
    let n = truth[0].image.size()[0];
    let geometry = ct_geometry(a, n as usize, spacing[0])?;
    let radon = Radon::new(&geometry, Device::Cpu);
    let (raw_geometry, dso, dsd) = match a.beam {
        BeamGeometry::Parallel => (RawGeometry::Parallel, None, None),
        BeamGeometry::FanEquiangular {
            source_to_isocenter_mm,
            source_to_detector_mm,
        } => (
            RawGeometry::FanEquiangular,
            Some(source_to_isocenter_mm),
            Some(source_to_detector_mm),
        ),
        BeamGeometry::FanFlat {
            source_to_isocenter_mm,
            source_to_detector_mm,
        } => (
            RawGeometry::FanFlat,
            Some(source_to_isocenter_mm),
            Some(source_to_detector_mm),
        ),
    };
    let measurements = truth
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mu = phantom::hu_to_mu(&t.image.view([1, 1, n, n]), MU_WATER_70KEV_PER_MM);
            let p = radon.forward(&mu);
            let (values, data_type, sigma) = match a.noise {
                CtNoise::LineIntegrals { sigma } if sigma > 0.0 => (
                    add_gaussian(&p, sigma, noise_seed(seed, i)),
                    CtDataType::LineIntegral,
                    Some(sigma),
                ),
                CtNoise::LineIntegrals { sigma } => (p, CtDataType::LineIntegral, Some(sigma)),
                CtNoise::Counts { blank_scan_counts } => (
                    transmission_counts(&p, blank_scan_counts, noise_seed(seed, i)),
                    CtDataType::Counts { blank_scan_counts },
                    None,
                ),
            };
            let data = Vec::<f32>::try_from(values.to_kind(Kind::Float).contiguous().view([-1]))?;
            Ok((
                Measurement::CtSinogram(CtSinogram {
                    views: geometry.n_views(),
                    detectors: geometry.n_detectors,
                    data,
                    geometry: raw_geometry,
                    view_angles_deg: geometry.angles_deg.clone(),
                    detector_spacing: geometry.detector_spacing,
                    source_to_isocenter_mm: dso,
                    source_to_detector_mm: dsd,
                    detector_offset: 0.0,
                    data_type,
                    water_attenuation_per_mm: MU_WATER_70KEV_PER_MM,
                }),
                sigma,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (data_type, sigma, i0) = match a.noise {
        CtNoise::LineIntegrals { sigma } => ("LINE_INTEGRAL", Some(sigma), None),
        CtNoise::Counts { blank_scan_counts } => ("COUNTS", None, Some(blank_scan_counts)),
    };
    let parameters = json!({
        "kind": "CT_SINOGRAM",
        "geometry": beam_name(&a.beam),
        "views": a.views,
        "arc_deg": a.arc_deg,
        "detectors": geometry.n_detectors,
        "detector_spacing": geometry.detector_spacing,
        "detector_spacing_unit": if matches!(a.beam, BeamGeometry::FanEquiangular { .. }) { "deg" } else { "mm" },
        "source_to_isocenter_mm": dso,
        "source_to_detector_mm": dsd,
        "data_type": data_type,
        "noise_sigma": sigma,
        "blank_scan_counts": i0,
        "water_attenuation_per_mm": MU_WATER_70KEV_PER_MM,
    });
    Ok((measurements, parameters))
}

/// What [`write_simulation`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenSimulation {
    /// `OUT/raw/slice_0001.dcm`, … in slice order.
    pub raw_files: Vec<PathBuf>,
    /// The ground-truth series in `OUT/truth`.
    pub truth: WrittenSeries,
    /// `OUT/simulation.json`.
    pub parameters_file: PathBuf,
}

/// Fails unless `dir` is missing or empty.
fn ensure_empty(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        ensure!(
            entries.next().is_none(),
            "{} is not empty; choose a new output folder",
            dir.display()
        );
    }
    Ok(())
}

/// Writes the case under `out`: `raw/slice_NNNN.dcm` (one Raw Data Storage object
/// per slice, one series), `truth/slice_NNNN.dcm` (the ground truth as an MR or CT
/// image series, series number 2, in the raw series' study and frame of
/// reference) and `simulation.json` (the parameters, the UIDs and `command` when
/// given). `raw/` and `truth/` must be missing or empty.
pub fn write_simulation(
    sim: &Simulation,
    out: &Path,
    command: Option<&str>,
) -> anyhow::Result<WrittenSimulation> {
    let raw_dir = out.join("raw");
    let truth_dir = out.join("truth");
    ensure_empty(&raw_dir)?;
    ensure_empty(&truth_dir)?;
    std::fs::create_dir_all(&raw_dir)
        .with_context(|| format!("cannot create {}", raw_dir.display()))?;
    let raw_files = sim
        .raw
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = raw_dir.join(format!("slice_{:04}.dcm", i + 1));
            write_raw(&path, r).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let context = &sim.raw[0].context;
    let spec = SeriesSpec {
        modality: sim.modality,
        role: ImageRole::Reconstruction,
        context: context.clone(),
        series_number: 2,
        series_description: "Ground truth (simulated)".into(),
        derivation_description: format!(
            "Ground truth of a dps-recon simulation from {}; raw data: series {}",
            sim.source, context.series_instance_uid
        ),
        window: match sim.modality {
            ImageModality::Ct => Some(Window {
                center: 40.0,
                width: 400.0,
            }),
            ImageModality::Mr => None,
        },
    };
    let slices = sim
        .truth
        .iter()
        .map(|t| {
            let s = t.image.size();
            Ok(OutputSlice {
                rows: s[0] as usize,
                cols: s[1] as usize,
                pixels: Vec::<f32>::try_from(t.image.contiguous().view([-1]))?,
                pixel_spacing_mm: t.pixel_spacing_mm,
                plane: t.plane,
                slice_location_mm: t.slice_location_mm,
                slice_thickness_mm: t.slice_thickness_mm,
                source_raw: Vec::new(),
                source_images: Vec::new(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let truth = write_series(&truth_dir, &spec, &slices)
        .with_context(|| format!("writing the ground truth to {}", truth_dir.display()))?;
    let mut parameters = sim.parameters.clone();
    parameters["command"] = json!(command);
    parameters["study_instance_uid"] = json!(context.study_instance_uid);
    parameters["frame_of_reference_uid"] = json!(context.frame_of_reference_uid);
    parameters["raw_series_instance_uid"] = json!(context.series_instance_uid);
    parameters["truth_series_instance_uid"] = json!(truth.series_instance_uid);
    parameters["truth_rescale"] = json!({
        "slope": truth.rescale_slope,
        "intercept": truth.rescale_intercept,
    });
    let parameters_file = out.join("simulation.json");
    std::fs::write(
        &parameters_file,
        serde_json::to_string_pretty(&parameters)? + "\n",
    )
    .with_context(|| format!("cannot write {}", parameters_file.display()))?;
    Ok(WrittenSimulation {
        raw_files,
        truth,
        parameters_file,
    })
}
