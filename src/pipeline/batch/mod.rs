//! Batch reconstruction (`dps-recon run`): raw files in, one folder of DICOM
//! series and a manifest per input series out, resumable and safe to kill.
//!
//! 1. [`recipes`] checks each preset against its prior (configuration errors);
//!    a run has one preset, or one per modality, and each series goes to the
//!    preset of its modality ([`recipe_for`]).
//! 2. [`OutputLock::acquire`] takes the output folder; [`clean_stale`] removes
//!    what killed runs left (see [`layout`]).
//! 3. [`plan`] scans the inputs ([`inputs`]) and decides per series: wait (a file
//!    changed more recently than `--stable-age`: the series may still be
//!    arriving), reconstruct, skip (its manifest says done with the same recipe
//!    and inputs, and its files are there), redo (failed before, files missing,
//!    `--force`, or other inputs under `--redo-changed`), or refuse (done with
//!    another recipe or other inputs, without `--force`).
//! 4. [`run`] does 2 and 3, then reconstructs each series into a build folder and publishes it
//!    with one rename; a failing series gets a manifest with status `failed` and
//!    the batch goes on.

pub mod inputs;
pub mod layout;
pub mod lock;
pub mod manifest;
mod series;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use dps_operators::ct::FbpFilter;
use serde::Serialize;
use tch::Device;

use crate::dicom::SeriesGroup;

pub use inputs::{FileIssue, Inventory};
pub use layout::{clean_stale, Cleanup, SeriesDirs, MANIFEST};
pub use lock::{LockError, OutputLock};
pub use manifest::{Manifest, SeriesStatus};

use self::manifest::{Parameters, PresetRecord, PriorRecord, Software, MANIFEST_VERSION};
use super::panics::catch_internal;
use super::preset::{sha256_file, sha256_hex, Preset, PresetModality};
use super::reconstruct::{ensure_sampling_fits, sampling_batch, Baseline, DpsSettings};
use crate::dicom::ReadLimits;
use crate::memory;
use crate::prior::{ModelCard, ModelFormat, Precision, Prior, Schedule};

/// Options of a run besides the preset.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Files or folders to reconstruct.
    pub inputs: Vec<PathBuf>,
    /// The output folder.
    pub out: PathBuf,
    /// Redo series whose manifest says done.
    pub force: bool,
    /// Redo done series whose inputs changed (their SOPInstanceUIDs: slices
    /// added, removed or replaced by new instances), the recipe being the same;
    /// others are skipped as usual.
    pub redo_changed: bool,
    /// Overrides the preset's seed.
    pub seed: Option<u64>,
    /// Overrides the preset's sample count.
    pub samples: Option<i64>,
    /// Most samples per slice drawn together (`None`: all).
    pub sample_batch: Option<i64>,
    /// Overrides the preset's prior card.
    pub prior_card: Option<PathBuf>,
    /// Most slices reconstructed together (≥ 1).
    pub batch_slices: usize,
    /// Series with a file modified less than this long ago are left for a
    /// later run, and unreadable files as recent are skipped, not failed (a
    /// PACS may still be writing them); zero: every series is taken.
    pub stable_age: Duration,
    pub device: Device,
    /// The number format of the prior network.
    pub precision: Precision,
    pub limits: ReadLimits,
}

/// The checked recipe of a run: preset, prior card and effective settings.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub preset: Preset,
    pub card_path: PathBuf,
    pub card: ModelCard,
    pub prior: PriorRecord,
    pub settings: DpsSettings,
    pub batch_slices: usize,
    /// See [`Manifest::fingerprint`].
    pub fingerprint: String,
}

impl Recipe {
    /// Reads the prior card and hashes its weights; checks the card against the
    /// preset (unit, channels, steps ≤ T) and the overrides. Every error here is
    /// a configuration error naming the preset.
    pub fn new(preset: Preset, options: &RunOptions) -> anyhow::Result<Self> {
        let who = format!("preset {} ({})", preset.name, preset.path.display());
        let card_path = options
            .prior_card
            .clone()
            .unwrap_or_else(|| preset.prior_card.clone());
        let card = ModelCard::read(&card_path).with_context(|| format!("{who}: prior"))?;
        let weights = card.weights_path(&card_path);
        let weights_sha256 = sha256_file(&weights)
            .with_context(|| format!("{who}: prior weights {}", weights.display()))?;
        anyhow::ensure!(
            card.intensity.unit == preset.modality.prior_unit(),
            "{who}: prior {} has intensity unit {}, but {} data need a prior in {}",
            card_path.display(),
            card.intensity.unit,
            preset.modality.dicom(),
            preset.modality.prior_unit()
        );
        card.ensure_one_channel()
            .map_err(|e| anyhow::anyhow!("{who}: {}: {e}", card_path.display()))?;
        let t = Schedule::new(&card.schedule).len();
        anyhow::ensure!(
            preset.steps <= t,
            "{who}: sampler.steps = {} exceeds the {t} steps of prior {}",
            preset.steps,
            card_path.display()
        );
        let mut settings = preset.dps_settings(options.seed, options.samples);
        // A sample batch that holds every sample changes nothing: it is not kept,
        // so it does not change the fingerprint either.
        settings.sample_batch = options.sample_batch.filter(|&k| k < settings.samples);
        anyhow::ensure!(
            settings.samples >= 1,
            "--samples must be at least 1, got {}",
            settings.samples
        );
        anyhow::ensure!(
            !(preset.outputs.uncertainty && settings.samples < 2),
            "{who} writes the posterior standard deviation, which needs at least 2 samples \
             (--samples {})",
            settings.samples
        );
        anyhow::ensure!(
            options.batch_slices >= 1,
            "--batch-slices must be at least 1"
        );
        let mut decisive = serde_json::json!({
            "preset_sha256": preset.sha256,
            "prior_weights_sha256": weights_sha256,
            "seed": settings.seed,
            "samples": settings.samples,
            "batch_slices": options.batch_slices,
        });
        // Only a precision other than f32 and a sample batch that splits the
        // samples enter, so that series done before these options existed keep
        // their fingerprint and are not redone.
        if options.precision != Precision::F32 {
            decisive["precision"] = options.precision.to_string().into();
        }
        if let Some(k) = settings.sample_batch {
            decisive["sample_batch"] = k.into();
        }
        let fingerprint = sha256_hex(decisive.to_string().as_bytes());
        let absolute = |p: &Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .to_string_lossy()
                .into_owned()
        };
        Ok(Self {
            prior: PriorRecord {
                card: absolute(&card_path),
                name: card.name.clone(),
                weights: absolute(&weights),
                weights_sha256,
            },
            preset,
            card_path,
            card,
            settings,
            batch_slices: options.batch_slices,
            fingerprint,
        })
    }
}

/// The recipes of a run, one per preset, in the order given. More than one
/// preset is allowed when each is for another modality, so that one run covers
/// a folder of MR and CT series; `--prior` (`options.prior_card`) then has no
/// single preset to replace the prior of and is refused. Every error here is a
/// configuration error.
pub fn recipes(presets: Vec<Preset>, options: &RunOptions) -> anyhow::Result<Vec<Recipe>> {
    anyhow::ensure!(!presets.is_empty(), "no preset given");
    for (k, later) in presets.iter().enumerate() {
        if let Some(earlier) = presets[..k].iter().find(|p| p.modality == later.modality) {
            anyhow::bail!(
                "presets {} ({}) and {} ({}) are both for {} data; give at most one preset \
                 per modality",
                earlier.name,
                earlier.path.display(),
                later.name,
                later.path.display(),
                later.modality.dicom()
            );
        }
    }
    if let (Some(card), true) = (&options.prior_card, presets.len() > 1) {
        anyhow::bail!(
            "--prior {} replaces the prior of a single preset, but {} presets are given; \
             set the card in each preset's [prior] section instead",
            card.display(),
            presets.len()
        );
    }
    presets
        .into_iter()
        .map(|preset| Recipe::new(preset, options))
        .collect()
}

/// The index in `recipes` of the recipe for a series of `modality` (its
/// Modality tag): the one whose preset is for that modality, otherwise the
/// first, whose run then fails the series as data of another modality.
pub fn recipe_for(recipes: &[Recipe], modality: &str) -> usize {
    recipes
        .iter()
        .position(|r| r.preset.modality.dicom() == modality)
        .unwrap_or(0)
}

/// What a run does with a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "reason")]
pub enum Action {
    /// No output yet.
    Reconstruct,
    /// Replaces a failed series, a done one with files missing, a done one
    /// under `--force`, or one whose inputs changed under `--redo-changed`.
    Redo,
    /// Done with this recipe and these inputs.
    Skip,
    /// Output exists that this run may not replace without `--force`.
    Refuse(String),
    /// A file of the series changed less than `stable_age` ago: left for a
    /// later run.
    Wait(String),
}

/// A series and what the run will do with it.
#[derive(Debug, Clone)]
pub struct PlannedSeries {
    pub input: SeriesGroup,
    /// Its recipe: an index in the run's recipes ([`recipe_for`]).
    pub recipe: usize,
    pub dirs: SeriesDirs,
    pub action: Action,
    /// What [`preflight`] found (`None` before it ran, or when the series is
    /// not to be reconstructed).
    pub preflight: Option<Preflight>,
}

/// What a dry run checks of a series it would (re)construct, beyond the plan's
/// header scan: that its raw files read, pass the profile and suit the preset,
/// and that each slice batch the run would form makes a problem (operator,
/// data, likelihood); the batches; and each batch's memory check before
/// sampling (as the run makes it, against the memory available now).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Preflight {
    /// The slice batches, `[first slice, slices]` in slice order, as the
    /// manifest's `parameters.batches` will list them.
    pub batches: Vec<[usize; 2]>,
    /// The most bytes of network activations a batch needs at least
    /// ([`crate::memory::SamplingBatch::bytes`]); `None` for a TorchScript prior.
    pub sampling_bytes: Option<u128>,
    /// The memory available now; `None` on a GPU, where it is not checked.
    pub available_bytes: Option<u64>,
    /// Why the run would fail the series.
    pub error: Option<String>,
    /// Where the data differ from what the preset is tuned for (the
    /// manifest's `warnings`).
    pub warnings: Vec<String>,
}

/// The work of a run.
#[derive(Debug)]
pub struct Plan {
    pub series: Vec<PlannedSeries>,
    pub skipped_files: Vec<FileIssue>,
    pub failed_files: Vec<FileIssue>,
}

/// Scans the inputs, gives each series its recipe and decides what to do with
/// it (reads only).
pub fn plan(recipes: &[Recipe], options: &RunOptions) -> Plan {
    let mut inventory = inputs::collect(&options.inputs, Some(&options.out), options.limits);
    let now = SystemTime::now();
    // How long ago `path` changed, when that is less than --stable-age.
    let recent = |path: &Path| {
        if options.stable_age.is_zero() {
            return None;
        }
        let age = inputs::age(path, now);
        (age < options.stable_age).then_some(age)
    };
    for f in std::mem::take(&mut inventory.failed) {
        match recent(&f.path) {
            Some(age) => inventory.skipped.push(FileIssue {
                reason: format!(
                    "{} (changed {:.0} s ago, less than --stable-age: it may still be arriving)",
                    f.reason,
                    age.as_secs_f64()
                ),
                path: f.path,
            }),
            None => inventory.failed.push(f),
        }
    }
    let series = inventory
        .series
        .into_iter()
        .map(|input| {
            let dirs = SeriesDirs::new(
                &options.out,
                &input.study_instance_uid,
                &input.series_instance_uid,
            );
            let recipe = recipe_for(recipes, &input.modality);
            let youngest = input.files.iter().filter_map(|(p, _)| recent(p)).min();
            let action = match youngest {
                Some(age) => Action::Wait(format!(
                    "a file changed {:.0} s ago, less than --stable-age {} s: the series \
                     may still be arriving",
                    age.as_secs_f64(),
                    options.stable_age.as_secs()
                )),
                None => decide(&recipes[recipe], &input, &dirs, options),
            };
            PlannedSeries {
                input,
                recipe,
                dirs,
                action,
                preflight: None,
            }
        })
        .collect();
    Plan {
        series,
        skipped_files: inventory.skipped,
        failed_files: inventory.failed,
    }
}

/// Runs [`Preflight`] on every series of `plan` that is to be reconstructed or
/// redone (reads only; each series' raw files are read whole once more, and
/// its problems are built on the CPU one batch at a time).
pub fn preflight(recipes: &[Recipe], options: &RunOptions, plan: &mut Plan) {
    let available = memory::available_on(options.device);
    for s in &mut plan.series {
        if matches!(s.action, Action::Reconstruct | Action::Redo) {
            let recipe = &recipes[s.recipe];
            s.preflight = Some(preflight_series(recipe, options, &s.input, available));
        }
    }
}

fn preflight_series(
    recipe: &Recipe,
    options: &RunOptions,
    input: &SeriesGroup,
    available: Option<u64>,
) -> Preflight {
    let mut check = Preflight {
        available_bytes: available,
        ..Preflight::default()
    };
    let preview = match series::preview(&recipe.preset, input, recipe.batch_slices, options.limits)
    {
        Ok(preview) => preview,
        Err(e) => {
            check.error = Some(format!("{e:#}"));
            return check;
        }
    };
    check.warnings = preview.warnings;
    let batches = preview.batches;
    check.batches = batches.iter().map(|(r, _)| [r.start, r.len()]).collect();
    let network = match recipe.card.format {
        ModelFormat::Unet => recipe.card.architecture.as_ref(),
        ModelFormat::Torchscript => None,
    };
    let complex = recipe.preset.modality == PresetModality::Mr;
    for (range, [h, w]) in &batches {
        let Some(net) = network else { break };
        let per_image = net.pass_bytes(*h, *w, options.precision.kind());
        let batch = sampling_batch(range.len() as i64, complex, per_image, &recipe.settings);
        check.sampling_bytes = check.sampling_bytes.max(Some(batch.bytes()));
        if let (None, Some(available)) = (&check.error, available) {
            if let Err(e) = ensure_sampling_fits(&batch, available) {
                // As the run words it (its DPS stage's context).
                check.error = Some(format!("DPS: {e:#}"));
            }
        }
    }
    check
}

fn decide(recipe: &Recipe, input: &SeriesGroup, dirs: &SeriesDirs, options: &RunOptions) -> Action {
    let force = options.force;
    if !dirs.fin.exists() {
        return Action::Reconstruct;
    }
    let existing = match Manifest::read(&dirs.fin.join(MANIFEST)) {
        Ok(m) => m,
        Err(_) if force => return Action::Redo,
        Err(e) => {
            return Action::Refuse(format!(
                "{} exists without a valid manifest ({e:#}); remove it or use --force",
                dirs.fin.display()
            ))
        }
    };
    if existing.status != SeriesStatus::Done || force {
        return Action::Redo;
    }
    let mut uids: Vec<&str> = input
        .files
        .iter()
        .map(|(_, s)| s.sop_instance_uid.as_str())
        .collect();
    uids.sort_unstable();
    let same_recipe = existing.fingerprint == recipe.fingerprint;
    match (same_recipe, existing.input_uids() == uids) {
        (true, true) => {
            let missing = existing
                .outputs
                .iter()
                .flat_map(|o| &o.files)
                .find(|f| !dirs.fin.join(f).is_file());
            match missing {
                None => Action::Skip,
                Some(file) => {
                    tracing::warn!(
                        "{}: {file} of its manifest is missing; redoing the series",
                        dirs.fin.display()
                    );
                    Action::Redo
                }
            }
        }
        (true, false) if options.redo_changed => Action::Redo,
        (true, false) => Action::Refuse(format!(
            "{} holds a reconstruction made with other inputs (preset {}); use \
             --redo-changed to redo the series whose inputs changed, or --force to redo \
             every series",
            dirs.fin.display(),
            existing.preset.name
        )),
        (false, _) => Action::Refuse(format!(
            "{} holds a reconstruction made with another recipe (preset {}); use --force to \
             replace it",
            dirs.fin.display(),
            existing.preset.name
        )),
    }
}

/// What happened to a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// Reconstructed and published.
    Done { seconds: f64 },
    /// Already done by an earlier run.
    Skipped,
    /// Left for a later run (see `reason`).
    Waiting { reason: String },
    /// Not (re)done; see `reason`. A done series replaced under `--force` that
    /// fails again keeps its earlier outputs.
    Failed { reason: String },
}

/// A series in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesReport {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: String,
    /// The name of the preset the series went to.
    pub preset: String,
    pub slices: usize,
    /// The series folder.
    pub dir: PathBuf,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub series: Vec<SeriesReport>,
    pub skipped_files: Vec<FileIssue>,
    pub failed_files: Vec<FileIssue>,
    /// What killed runs left, cleaned up before the run.
    pub cleanup: Cleanup,
}

impl Summary {
    /// Whether every series and every file went through (exit code 0).
    pub fn all_done(&self) -> bool {
        self.failed_files.is_empty()
            && self
                .series
                .iter()
                .all(|s| !matches!(s.outcome, Outcome::Failed { .. }))
    }

    /// How many series ended how.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.series {
            match s.outcome {
                Outcome::Done { .. } => c.done += 1,
                Outcome::Skipped => c.already_done += 1,
                Outcome::Waiting { .. } => c.waiting += 1,
                Outcome::Failed { .. } => c.failed += 1,
            }
        }
        c
    }
}

/// Series counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub done: usize,
    pub already_done: usize,
    pub waiting: usize,
    pub failed: usize,
}

/// Sees a run's progress.
pub trait Observer {
    /// The plan, before any series starts.
    fn planned(&mut self, plan: &Plan);
    /// Series `index` (from 0) of `total` starts.
    fn series_started(&mut self, index: usize, total: usize, series: &PlannedSeries);
    /// DPS steps of the current series: (done, in all).
    fn steps(&mut self, done: usize, total: usize);
    /// Series `index` of `total` ended (also for skipped and refused ones).
    fn series_finished(&mut self, index: usize, total: usize, report: &SeriesReport);
}

/// A whole run: takes the output lock, removes what killed runs left, plans and
/// executes. Errs on configuration errors (the lock is held by another run, the
/// output folder cannot be used, the prior cannot be loaded); everything else
/// ends up in the summary.
pub fn run(
    recipes: &[Recipe],
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> anyhow::Result<Summary> {
    let _lock = OutputLock::acquire(&options.out)?;
    let cleanup = clean_stale(&options.out).with_context(|| {
        format!(
            "{}: cannot clean up after earlier runs",
            options.out.display()
        )
    })?;
    for path in &cleanup.removed {
        tracing::info!("removed {} left by a killed run", path.display());
    }
    for path in &cleanup.restored {
        tracing::info!("restored {} after a killed run", path.display());
    }
    let plan = plan(recipes, options);
    observer.planned(&plan);
    let mut summary = execute(recipes, options, plan, observer)?;
    summary.cleanup = cleanup;
    Ok(summary)
}

/// Loads the prior of each recipe that has a series to (re)construct, before
/// any series starts.
fn load_priors(
    recipes: &[Recipe],
    options: &RunOptions,
    plan: &Plan,
) -> anyhow::Result<Vec<Option<Prior>>> {
    let needed = |k: usize| {
        plan.series
            .iter()
            .any(|s| s.recipe == k && matches!(s.action, Action::Reconstruct | Action::Redo))
    };
    let mut priors = Vec::with_capacity(recipes.len());
    for (k, recipe) in recipes.iter().enumerate() {
        let prior = if needed(k) {
            let who = format!(
                "preset {} ({})",
                recipe.preset.name,
                recipe.preset.path.display()
            );
            Some(
                Prior::load(&recipe.card_path, options.device, options.precision).with_context(
                    || format!("{who}: loading prior {}", recipe.card_path.display()),
                )?,
            )
        } else {
            None
        };
        priors.push(prior);
    }
    Ok(priors)
}

fn execute(
    recipes: &[Recipe],
    options: &RunOptions,
    plan: Plan,
    observer: &mut dyn Observer,
) -> anyhow::Result<Summary> {
    let priors = load_priors(recipes, options, &plan)?;
    let total = plan.series.len();
    let mut reports = Vec::with_capacity(total);
    for (index, planned) in plan.series.iter().enumerate() {
        observer.series_started(index, total, planned);
        let recipe = &recipes[planned.recipe];
        let outcome = match (&planned.action, priors[planned.recipe].as_ref()) {
            (Action::Reconstruct | Action::Redo, Some(prior)) => {
                run_series(recipe, options, prior, planned, observer)
            }
            (Action::Refuse(reason), _) => Outcome::Failed {
                reason: reason.clone(),
            },
            (Action::Wait(reason), _) => Outcome::Waiting {
                reason: reason.clone(),
            },
            _ => Outcome::Skipped,
        };
        let report = SeriesReport {
            study_instance_uid: planned.input.study_instance_uid.clone(),
            series_instance_uid: planned.input.series_instance_uid.clone(),
            modality: planned.input.modality.clone(),
            preset: recipe.preset.name.clone(),
            slices: planned.input.files.len(),
            dir: planned.dirs.fin.clone(),
            outcome,
        };
        observer.series_finished(index, total, &report);
        reports.push(report);
    }
    Ok(Summary {
        series: reports,
        skipped_files: plan.skipped_files,
        failed_files: plan.failed_files,
        cleanup: Cleanup::default(),
    })
}

/// Reconstructs and publishes one series; on failure publishes a failed
/// manifest unless that would replace a done series.
fn run_series(
    recipe: &Recipe,
    options: &RunOptions,
    prior: &Prior,
    planned: &PlannedSeries,
    observer: &mut dyn Observer,
) -> Outcome {
    let started = Instant::now();
    let dirs = &planned.dirs;
    let mut manifest = base_manifest(recipe, options, &planned.input);
    let job = series::Job {
        preset: &recipe.preset,
        prior,
        settings: &recipe.settings,
        batch_slices: recipe.batch_slices,
        device: options.device,
        limits: options.limits,
    };
    let result = dirs
        .make_temp()
        .with_context(|| format!("creating {}", dirs.temp.display()))
        .and_then(|()| {
            catch_internal(|| {
                series::reconstruct_series(
                    &job,
                    &planned.input,
                    &dirs.temp,
                    &mut manifest,
                    &mut |done, total| observer.steps(done, total),
                )
            })
        })
        .and_then(|()| {
            manifest.status = SeriesStatus::Done;
            manifest.created_utc = now_utc();
            manifest
                .write(&dirs.temp.join(MANIFEST))
                .context("writing the manifest")?;
            dirs.publish()
                .with_context(|| format!("publishing {}", dirs.fin.display()))
        });
    match result {
        Ok(()) => Outcome::Done {
            seconds: started.elapsed().as_secs_f64(),
        },
        Err(error) => {
            let reason = format!("{error:#}");
            let _ = dirs.discard_temp();
            if let Err(e) = publish_failure(dirs, manifest, &reason) {
                tracing::error!("{}: cannot record the failure: {e:#}", dirs.fin.display());
            }
            Outcome::Failed { reason }
        }
    }
}

/// Publishes a manifest with status failed (and no outputs), keeping a done
/// series in place.
fn publish_failure(dirs: &SeriesDirs, mut manifest: Manifest, reason: &str) -> anyhow::Result<()> {
    let done =
        Manifest::read(&dirs.fin.join(MANIFEST)).is_ok_and(|m| m.status == SeriesStatus::Done);
    if done {
        return Ok(());
    }
    manifest.status = SeriesStatus::Failed;
    manifest.error = Some(reason.to_owned());
    manifest.outputs.clear();
    manifest.created_utc = now_utc();
    dirs.make_temp()?;
    manifest.write(&dirs.temp.join(MANIFEST))?;
    dirs.publish()?;
    Ok(())
}

/// The manifest before reconstruction: inputs from the headers, the recipe.
fn base_manifest(recipe: &Recipe, options: &RunOptions, input: &SeriesGroup) -> Manifest {
    let preset = &recipe.preset;
    let s = &recipe.settings;
    Manifest {
        manifest_version: MANIFEST_VERSION,
        status: SeriesStatus::Failed,
        error: None,
        software: Software::this(),
        created_utc: String::new(),
        study_instance_uid: input.study_instance_uid.clone(),
        series_instance_uid: input.series_instance_uid.clone(),
        modality: input.modality.clone(),
        fingerprint: recipe.fingerprint.clone(),
        inputs: input
            .files
            .iter()
            .map(|(path, summary)| manifest::InputRecord {
                path: std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .to_string_lossy()
                    .into_owned(),
                sop_instance_uid: summary.sop_instance_uid.clone(),
                instance_number: summary.instance_number,
            })
            .collect(),
        preset: PresetRecord {
            name: preset.name.clone(),
            path: std::path::absolute(&preset.path)
                .unwrap_or_else(|_| preset.path.clone())
                .to_string_lossy()
                .into_owned(),
            sha256: preset.sha256.clone(),
        },
        prior: Some(recipe.prior.clone()),
        parameters: Parameters {
            steps: s.steps,
            zeta: s.zeta,
            eta: s.eta,
            guidance: s.guidance.to_string(),
            clamp_gradient: s.clamp_gradient.to_string(),
            refine: s.refine.to_string(),
            samples: s.samples,
            sample_batch: s.sample_batch,
            seed: s.seed,
            likelihood: preset.likelihood.as_str().to_owned(),
            likelihood_used: None,
            mri_scale: None,
            batch_slices: recipe.batch_slices,
            batches: Vec::new(),
            baselines: if preset.outputs.baselines {
                preset
                    .baselines
                    .iter()
                    .map(|&b| baseline_record(b))
                    .collect()
            } else {
                Vec::new()
            },
            device: format!("{:?}", options.device),
            precision: options.precision.to_string(),
        },
        slices: Vec::new(),
        timings_s: BTreeMap::new(),
        outputs: Vec::new(),
        warnings: Vec::new(),
    }
}

/// A baseline and its parameters as JSON.
fn baseline_record(b: Baseline) -> serde_json::Value {
    match b {
        Baseline::ZeroFilled => serde_json::json!({ "name": b.name() }),
        Baseline::CgSense { iterations } => {
            serde_json::json!({ "name": b.name(), "iterations": iterations })
        }
        Baseline::Fbp(filter) => serde_json::json!({
            "name": b.name(),
            "filter": match filter {
                FbpFilter::Ramp => "ramp",
                FbpFilter::SheppLogan => "shepp-logan",
                FbpFilter::Hann => "hann",
            },
        }),
        Baseline::Tv { lambda, iterations } => {
            serde_json::json!({ "name": b.name(), "lambda": lambda, "iterations": iterations })
        }
    }
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
