//! Reconstruction of one series into its build folder: read the raw slices, order
//! them, batch those that share an acquisition, run the baselines and DPS, write
//! the output series and fill in the manifest.
//!
//! Batching: consecutive slices (in slice order) go into one [`Problem`] when
//! they share the whole acquisition — CT: geometry, angles, detectors, data type,
//! I0, μ_water; MRI: matrix, coils, sampling mask and *stored* coil
//! sensitivities (slices whose sensitivities are estimated from their own ACS
//! lines are reconstructed one at a time) — and the same noise σ, image size and
//! pixel spacing, up to `batch_slices` slices. Batch k, starting at slice i, is
//! sampled with seed `seed + i`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use dicom_dictionary_std::uids;
use tch::{Device, Kind, Tensor};

use super::manifest::{InputRecord, Manifest, OutputRecord, SliceRecord};
use crate::dicom::SeriesGroup;
use crate::dicom::{
    read_raw, write_series, ImageModality, ImageRole, InstanceRef, Measurement, OutputSlice,
    RawMeasurement, ReadLimits, SeriesSpec,
};
use crate::pipeline::preset::{Preset, PresetModality};
use crate::pipeline::problem::Problem;
use crate::pipeline::reconstruct::{
    baseline, ensure_dps_memory, normalized_residual, reconstruct_dps, resolve_mri_scale, Baseline,
    DpsSettings,
};
use crate::prior::Prior;
use crate::sampler::Likelihood;

/// What every series of a run shares.
pub(crate) struct Job<'a> {
    pub preset: &'a Preset,
    pub prior: &'a Prior,
    pub settings: &'a DpsSettings,
    pub batch_slices: usize,
    pub device: Device,
    pub limits: ReadLimits,
}

/// One raw slice and the file it came from.
struct Slice {
    path: PathBuf,
    raw: RawMeasurement,
}

/// Reconstructs `input` into `dir` (the empty build folder) and fills `manifest`
/// (inputs, parameters, slices, timings, outputs, warnings); `progress` sees
/// (DPS steps done, DPS steps in all) over the whole series.
pub(crate) fn reconstruct_series(
    job: &Job<'_>,
    input: &SeriesGroup,
    dir: &Path,
    manifest: &mut Manifest,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut clock = Instant::now();
    let mut lap = |manifest: &mut Manifest, stage: &str| {
        let now = Instant::now();
        *manifest.timings_s.entry(stage.to_owned()).or_default() += (now - clock).as_secs_f64();
        clock = now;
    };
    let preset = job.preset;

    let slices = read_slices(preset, input, job.limits)?;
    manifest.inputs = slices
        .iter()
        .map(|s| InputRecord {
            path: std::path::absolute(&s.path)
                .unwrap_or_else(|_| s.path.clone())
                .to_string_lossy()
                .into_owned(),
            sop_instance_uid: s.raw.sop_instance_uid.clone(),
            instance_number: s.raw.instance_number.map(i64::from),
        })
        .collect();
    manifest.warnings = preset.acquisition_warnings(slices.iter().map(|s| &s.raw));
    for w in &manifest.warnings {
        tracing::warn!("series {}: {w}", input.series_instance_uid);
    }
    lap(manifest, "read");

    let batches = batches(&slices, job.batch_slices);
    let problems = batches
        .iter()
        .map(|r| build_problem(&slices[r.clone()], preset, job.device))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mri_scale = match preset.modality {
        PresetModality::Ct => None,
        PresetModality::Mr => Some(resolve_mri_scale(preset.mri_scale, &problems, job.prior)?),
    };
    let params = &mut manifest.parameters;
    params.mri_scale = mri_scale;
    params.batches = batches.iter().map(|r| [r.start, r.len()]).collect();
    params.likelihood_used = problems
        .first()
        .map(|p| likelihood_name(p.likelihood).into());
    lap(manifest, "prepare");
    // Before the baselines, which may take a while, rather than at the batch.
    for problem in &problems {
        ensure_dps_memory(problem, job.prior, job.settings).context("DPS")?;
    }

    let n = slices.len();
    let mut residuals: Vec<BTreeMap<String, Option<f64>>> = vec![BTreeMap::new(); n];
    let mut baseline_images: Vec<(Baseline, Vec<Vec<f32>>)> = Vec::new();
    if preset.outputs.baselines {
        for &b in &preset.baselines {
            let mut images = Vec::with_capacity(n);
            for (range, problem) in batches.iter().zip(&problems) {
                let x = baseline(problem, b).with_context(|| format!("baseline {}", b.name()))?;
                for (i, r) in range.clone().zip(normalized_residual(problem, &x)) {
                    residuals[i].insert(b.name().to_owned(), r);
                }
                images.extend(per_slice(&x)?);
            }
            baseline_images.push((b, images));
            lap(manifest, &format!("baseline:{}", b.name()));
        }
    }

    let steps_per_batch = job.settings.steps.min(job.prior.schedule.len());
    let total_steps = steps_per_batch * batches.len();
    let mut means = Vec::with_capacity(n);
    let mut stds = Vec::with_capacity(n);
    let mut mean_tensors = Vec::with_capacity(batches.len());
    for (k, (range, problem)) in batches.iter().zip(&problems).enumerate() {
        let settings = DpsSettings {
            seed: job.settings.seed.wrapping_add(range.start as u64),
            ..job.settings.clone()
        };
        let done_before = k * steps_per_batch;
        let rec = reconstruct_dps(
            problem,
            job.prior,
            &settings,
            mri_scale.unwrap_or(1.0),
            &mut |done, total| {
                progress(
                    done_before + done * steps_per_batch / total.max(1),
                    total_steps,
                )
            },
        )
        .context("DPS")?;
        means.extend(per_slice(&rec.mean)?);
        stds.extend(per_slice(&rec.std)?);
        mean_tensors.push(rec.mean);
    }
    lap(manifest, "dps");

    for ((range, problem), mean) in batches.iter().zip(&problems).zip(&mean_tensors) {
        for (i, r) in range.clone().zip(normalized_residual(problem, mean)) {
            residuals[i].insert("dps".to_owned(), r);
        }
    }
    manifest.slices = slices
        .iter()
        .zip(residuals)
        .enumerate()
        .map(|(index, (s, residual))| SliceRecord {
            index,
            input_sop_instance_uid: s.raw.sop_instance_uid.clone(),
            residual,
        })
        .collect();
    lap(manifest, "residuals");

    let writer = Writer {
        preset,
        slices: &slices,
        base_number: base_series_number(&slices[0].raw),
        dir,
    };
    let dps = writer.write(
        "dps",
        1,
        ImageRole::Reconstruction,
        &format!("DPS {}", preset.name),
        &dps_derivation(preset, job.settings, &job.prior.card.name),
        &means,
        None,
    )?;
    let mut outputs = vec![];
    if preset.outputs.uncertainty {
        outputs.push(writer.write(
            "uncertainty",
            2,
            ImageRole::DerivedMap,
            &format!("DPS posterior std {}", preset.name),
            &format!(
                "Per-pixel posterior standard deviation over {} DPS samples of {}",
                job.settings.samples,
                dps_derivation(preset, job.settings, &job.prior.card.name)
            ),
            &stds,
            Some(&dps),
        )?);
    }
    for (k, (b, images)) in baseline_images.iter().enumerate() {
        outputs.push(writer.write(
            b.name(),
            3 + k as i32,
            ImageRole::Reconstruction,
            &format!("{} {}", baseline_label(*b), preset.name),
            &baseline_derivation(*b),
            images,
            None,
        )?);
    }
    outputs.insert(0, dps);
    manifest.outputs = outputs;
    lap(manifest, "write");
    manifest
        .timings_s
        .insert("total".into(), started.elapsed().as_secs_f64());
    Ok(())
}

/// The raw slices of `input`, read and validated, of the preset's modality, in
/// slice order ([`order_slices`]).
fn read_slices(
    preset: &Preset,
    input: &SeriesGroup,
    limits: ReadLimits,
) -> anyhow::Result<Vec<Slice>> {
    let mut slices = input
        .files
        .iter()
        .map(|(path, _)| {
            read_raw(path, limits)
                .map(|raw| Slice {
                    path: path.clone(),
                    raw,
                })
                .with_context(|| format!("{}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for s in &slices {
        anyhow::ensure!(
            s.raw.data.modality() == preset.modality.dicom(),
            "{}: holds {} data but preset {} is for {} data",
            s.path.display(),
            s.raw.data.modality(),
            preset.name,
            preset.modality.dicom()
        );
    }
    order_slices(&mut slices);
    Ok(slices)
}

/// What a run of `preset` would find in `input` before it needs the prior:
/// each slice batch (its slices in slice order, its image size `[rows, cols]`)
/// and the acquisition warnings.
pub(crate) struct SeriesPreview {
    pub batches: Vec<(Range<usize>, [i64; 2])>,
    pub warnings: Vec<String>,
}

/// Reads `input` and builds the problem of each slice batch on the CPU, as a
/// run does, then drops it; fails where the run would before its baselines,
/// except on the MR intensity scale, which needs the prior.
pub(crate) fn preview(
    preset: &Preset,
    input: &SeriesGroup,
    batch_slices: usize,
    limits: ReadLimits,
) -> anyhow::Result<SeriesPreview> {
    let slices = read_slices(preset, input, limits)?;
    let batches = batches(&slices, batch_slices)
        .into_iter()
        .map(|r| {
            let problem = build_problem(&slices[r.clone()], preset, Device::Cpu)?;
            Ok((r, problem.image_size))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(SeriesPreview {
        batches,
        warnings: preset.acquisition_warnings(slices.iter().map(|s| &s.raw)),
    })
}

/// Orders slices along the normal of the first slice when all share its
/// orientation (to 1e-4), then by InstanceNumber, then by path.
fn order_slices(slices: &mut [Slice]) {
    let first = slices[0].raw.plane;
    let normal = first.normal();
    let aligned = slices.iter().all(|s| {
        s.raw
            .plane
            .orientation
            .iter()
            .zip(&first.orientation)
            .all(|(a, b)| (a - b).abs() <= 1e-4)
    });
    slices.sort_by(|a, b| {
        let along = |s: &Slice| {
            if aligned {
                s.raw.plane.distance_along(normal)
            } else {
                0.0
            }
        };
        along(a)
            .total_cmp(&along(b))
            .then(
                a.raw
                    .instance_number
                    .unwrap_or(i32::MAX)
                    .cmp(&b.raw.instance_number.unwrap_or(i32::MAX)),
            )
            .then(a.path.cmp(&b.path))
    });
}

/// Whether two slices can share one operator (see the module docs).
fn same_acquisition(a: &RawMeasurement, b: &RawMeasurement) -> bool {
    let common = a.recon_size == b.recon_size
        && a.recon_pixel_spacing_mm == b.recon_pixel_spacing_mm
        && a.noise_sigma == b.noise_sigma;
    common
        && match (&a.data, &b.data) {
            (Measurement::MriKspace(x), Measurement::MriKspace(y)) => {
                (x.coils, x.ky, x.kx) == (y.coils, y.ky, y.kx)
                    && x.mask == y.mask
                    && x.sensitivities.is_some()
                    && x.sensitivities == y.sensitivities
            }
            (Measurement::CtSinogram(x), Measurement::CtSinogram(y)) => {
                (x.views, x.detectors) == (y.views, y.detectors)
                    && x.geometry == y.geometry
                    && x.view_angles_deg == y.view_angles_deg
                    && x.detector_spacing == y.detector_spacing
                    && x.source_to_isocenter_mm == y.source_to_isocenter_mm
                    && x.source_to_detector_mm == y.source_to_detector_mm
                    && x.detector_offset == y.detector_offset
                    && x.data_type == y.data_type
                    && x.water_attenuation_per_mm == y.water_attenuation_per_mm
            }
            _ => false,
        }
}

/// Runs of consecutive slices sharing an acquisition, at most `max` long.
fn batches(slices: &[Slice], max: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for i in 0..slices.len() {
        match out.last_mut() {
            Some(r) if r.len() < max && same_acquisition(&slices[r.start].raw, &slices[i].raw) => {
                r.end = i + 1
            }
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// The data of one slice as the tensor `Problem::from_raw` builds: k-space
/// `[1, C, ky, kx]` complex64 or a sinogram `[1, 1, views, detectors]` f32.
fn data_tensor(raw: &RawMeasurement) -> Tensor {
    match &raw.data {
        Measurement::MriKspace(k) => Tensor::view_as_complex(&Tensor::from_slice(&k.data).view([
            1,
            k.coils as i64,
            k.ky as i64,
            k.kx as i64,
            2,
        ])),
        Measurement::CtSinogram(s) => {
            Tensor::from_slice(&s.data).view([1, 1, s.views as i64, s.detectors as i64])
        }
    }
}

/// The problem of a batch of slices sharing an acquisition, with the preset's
/// likelihood.
fn build_problem(slices: &[Slice], preset: &Preset, device: Device) -> anyhow::Result<Problem> {
    let mut problem = Problem::from_raw(&slices[0].raw, device)
        .with_context(|| format!("{}", slices[0].path.display()))?;
    if slices.len() > 1 {
        let ys: Vec<Tensor> = slices.iter().map(|s| data_tensor(&s.raw)).collect();
        problem.y = Tensor::cat(&ys, 0).to_device(device);
    }
    problem.choose_likelihood(preset.likelihood).map_err(|_| {
        anyhow::anyhow!(
            "preset {} asks for the transmission likelihood, but {} holds line integrals, \
             not counts",
            preset.name,
            slices[0].path.display()
        )
    })?;
    Ok(problem)
}

fn likelihood_name(l: Likelihood) -> &'static str {
    match l {
        Likelihood::Gaussian => "gaussian",
        Likelihood::Poisson { .. } => "poisson",
        Likelihood::Transmission { .. } => "transmission",
    }
}

/// `[B, 1, H, W]` → B row-major `H·W` images on the CPU.
fn per_slice(x: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    let x = x.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let b = x.size()[0];
    (0..b)
        .map(|i| Ok(Vec::<f32>::try_from(x.get(i).flatten(0, -1))?))
        .collect()
}

/// SeriesNumber base of the outputs: `100 · (input SeriesNumber mod 10⁷)`; output
/// k adds k (1 DPS, 2 uncertainty, 3… baselines in preset order).
fn base_series_number(raw: &RawMeasurement) -> i32 {
    raw.context
        .series_number
        .unwrap_or(0)
        .rem_euclid(10_000_000)
        * 100
}

fn dps_derivation(preset: &Preset, s: &DpsSettings, prior: &str) -> String {
    let update = match s.eta {
        None => "DDPM".to_owned(),
        Some(eta) => format!("DDIM eta {eta}"),
    };
    format!(
        "DPS (Chung et al. 2023), prior {prior}: {} {update} steps, zeta {} ({} guidance, \
         {} clamp gradient, refinement {}), mean of {} samples, seed {}; preset {} (sha256 {})",
        s.steps,
        s.zeta,
        s.guidance,
        s.clamp_gradient,
        s.refine,
        s.samples,
        s.seed,
        preset.name,
        &preset.sha256[..12]
    )
}

fn baseline_label(b: Baseline) -> String {
    match b {
        Baseline::ZeroFilled => "Zero-filled".into(),
        Baseline::CgSense { iterations } => format!("CG-SENSE {iterations} it"),
        Baseline::Fbp(filter) => format!("FBP {filter:?}"),
        Baseline::Tv { lambda, iterations } => format!("TV lambda {lambda} {iterations} it"),
    }
}

fn baseline_derivation(b: Baseline) -> String {
    match b {
        Baseline::ZeroFilled => "Zero-filled inverse FFT, coil-combined (adjoint A* y)".into(),
        Baseline::CgSense { iterations } => {
            format!(
                "CG-SENSE: conjugate gradients on the normal equations, {iterations} iterations"
            )
        }
        Baseline::Fbp(filter) => format!("Filtered backprojection, {filter:?} filter"),
        Baseline::Tv { lambda, iterations } => format!(
            "TV-regularised least squares (PWLS for counts) by PDHG, lambda {lambda}, \
             {iterations} iterations"
        ),
    }
}

/// Writes output series of one input series.
struct Writer<'a> {
    preset: &'a Preset,
    slices: &'a [Slice],
    base_number: i32,
    dir: &'a Path,
}

impl Writer<'_> {
    /// Writes `images` (one per slice) as `<dir>/<kind>/`; `derived_from` makes
    /// each slice reference that series' slice as its source image.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        kind: &str,
        offset: i32,
        role: ImageRole,
        description: &str,
        derivation: &str,
        images: &[Vec<f32>],
        derived_from: Option<&OutputRecord>,
    ) -> anyhow::Result<OutputRecord> {
        let (modality, image_class) = match self.preset.modality {
            PresetModality::Mr => (ImageModality::Mr, uids::MR_IMAGE_STORAGE),
            PresetModality::Ct => (ImageModality::Ct, uids::CT_IMAGE_STORAGE),
        };
        let first = &self.slices[0].raw;
        let spec = SeriesSpec {
            modality,
            role,
            context: first.context.clone(),
            series_number: self.base_number + offset,
            series_description: description.to_owned(),
            derivation_description: derivation.to_owned(),
            window: None,
        };
        let out: Vec<OutputSlice> = self
            .slices
            .iter()
            .zip(images)
            .enumerate()
            .map(|(i, (s, pixels))| OutputSlice {
                rows: s.raw.recon_size[0] as usize,
                cols: s.raw.recon_size[1] as usize,
                pixels: pixels.clone(),
                pixel_spacing_mm: s.raw.recon_pixel_spacing_mm,
                plane: s.raw.plane,
                slice_location_mm: s.raw.slice_location_mm,
                slice_thickness_mm: s.raw.slice_thickness_mm,
                source_raw: vec![InstanceRef::raw(&s.raw.sop_instance_uid)],
                source_images: derived_from
                    .map(|d| {
                        vec![InstanceRef {
                            sop_class_uid: image_class.to_owned(),
                            sop_instance_uid: d.sop_instance_uids[i].clone(),
                        }]
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let written = write_series(&self.dir.join(kind), &spec, &out)
            .with_context(|| format!("writing the {kind} series"))?;
        Ok(OutputRecord {
            kind: kind.to_owned(),
            series_instance_uid: written.series_instance_uid,
            series_number: spec.series_number,
            files: written
                .files
                .iter()
                .map(|f| {
                    f.strip_prefix(self.dir)
                        .unwrap_or(f)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            sop_instance_uids: written.sop_instance_uids,
        })
    }
}
