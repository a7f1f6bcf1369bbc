//! `dps-recon run --pipeline P [--pipeline Q] INPUT... -o OUT`: reconstructs
//! every series of raw measurements found in the inputs with the preset for its
//! modality and writes DICOM series and a manifest per series under OUT (see
//! `dps_recon::pipeline::batch` and docs/pipelines.md).
//!
//! Exit codes: 0 every series done (or already done, or left for a later run
//! under `--stable-age`), 1 some file or series failed, 2 usage or
//! configuration error (bad preset, missing prior, output folder locked by
//! another run). stdout holds the result (a summary, the
//! `--dry-run` plan, or with `--json` one JSON document); stderr the progress
//! (bars on a terminal, one line per series otherwise; none with `-q`) and the
//! failures.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use dps_recon::dicom::ReadLimits;
use dps_recon::memory::Bytes;
use dps_recon::pipeline::batch::{
    self, Action, Observer, Outcome, Plan, PlannedSeries, Preflight, Recipe, RunOptions,
    SeriesReport, Summary,
};
use dps_recon::pipeline::preset::{resolve_preset_path, Preset};
use dps_recon::prior::Precision;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tracing::level_filters::LevelFilter;

use super::write_stdout;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Raw DICOM files or folders (searched recursively, in name order).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// The preset: a name from pipelines/ (e.g. mri-cartesian-4x) or a TOML
    /// file. Give one per modality (an MR and a CT preset) to reconstruct each
    /// series with the preset for its modality.
    #[arg(long, short = 'p', required = true)]
    pub pipeline: Vec<String>,

    /// Output folder: OUT/<study>/<series>/ per input series.
    #[arg(long, short = 'o')]
    pub out: PathBuf,

    /// Model card to use instead of the preset's prior (with a single preset).
    #[arg(long)]
    pub prior: Option<PathBuf>,

    /// Redo series whose manifest says done.
    #[arg(long)]
    pub force: bool,

    /// Redo done series whose input files changed since (slices added, removed
    /// or replaced: a late or corrected series), with the same recipe; leave the
    /// rest as they are.
    #[arg(long)]
    pub redo_changed: bool,

    /// List the work (series, files skipped or unreadable) and write nothing;
    /// read each series to (re)construct and report what the run would fail
    /// on (bad data for the preset, memory), its slice batches and warnings.
    #[arg(long)]
    pub dry_run: bool,

    /// Print a machine-readable summary (or plan) on stdout.
    #[arg(long)]
    pub json: bool,

    /// Seed of the sampler (default: the preset's).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Posterior samples per slice (default: the preset's).
    #[arg(long, value_parser = super::count::<i64>)]
    pub samples: Option<i64>,

    /// Most samples per slice drawn together (memory grows with them); more are
    /// drawn in further batches, seeded apart [default: all at once].
    #[arg(long, value_parser = super::count::<i64>)]
    pub sample_batch: Option<i64>,

    /// Leave series with a file changed less than this many seconds ago for a
    /// later run, and skip unreadable files as recent, as a PACS may still be
    /// writing them (e.g. 60 for a script run on an incoming folder).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub stable_age: u64,

    /// Most slices sharing an acquisition reconstructed together.
    #[arg(long, default_value_t = 4, value_parser = super::count::<u64>)]
    pub batch_slices: u64,

    /// Number format of the prior network: f32, or bf16 (faster on CPUs with
    /// AVX512-BF16 or AMX and on recent GPUs, slower elsewhere; the sampler stays
    /// in f32; docs/priors.md, 'Precision').
    #[arg(long, default_value = "f32")]
    pub precision: Precision,

    /// Most memory reading one file may need, in MiB.
    #[arg(long, default_value_t = ReadLimits::DEFAULT_MAX_BYTES >> 20)]
    pub max_memory_mib: u64,
}

pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    for input in &args.inputs {
        anyhow::ensure!(
            input.exists(),
            "{}: no such file or folder",
            input.display()
        );
    }
    let presets = args
        .pipeline
        .iter()
        .map(|name| Ok(Preset::load(&resolve_preset_path(name)?)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = RunOptions {
        inputs: args.inputs.clone(),
        out: args.out.clone(),
        force: args.force,
        redo_changed: args.redo_changed,
        seed: args.seed,
        samples: args.samples,
        sample_batch: args.sample_batch,
        prior_card: args.prior.clone(),
        batch_slices: usize::try_from(args.batch_slices)?,
        stable_age: std::time::Duration::from_secs(args.stable_age),
        device: ctx.device()?,
        precision: args.precision,
        limits: ReadLimits {
            max_bytes: args.max_memory_mib.saturating_mul(1 << 20),
        },
    };
    let recipes = batch::recipes(presets, &options)?;
    let quiet = LevelFilter::current() < LevelFilter::WARN;

    if args.dry_run {
        let mut plan = batch::plan(&recipes, &options);
        batch::preflight(&recipes, &options, &mut plan);
        let failing = !plan.failed_files.is_empty()
            || plan.series.iter().any(|s| {
                matches!(s.action, Action::Refuse(_))
                    || s.preflight.as_ref().is_some_and(|p| p.error.is_some())
            });
        let text = if args.json {
            format!("{:#}\n", plan_json(&recipes, &options, &plan))
        } else {
            plan_text(&recipes, &plan)
        };
        write_stdout(&text)?;
        return Ok(exit_code(!failing));
    }

    let presets = recipes.iter().map(|r| r.preset.name.clone()).collect();
    let mut observer = Progress::new(quiet, presets);
    let summary = batch::run(&recipes, &options, &mut observer)?;
    observer.finish();
    let text = if args.json {
        format!("{:#}\n", summary_json(&recipes, &options, &summary))
    } else {
        summary_text(&summary)
    };
    write_stdout(&text)?;
    Ok(exit_code(summary.all_done()))
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn action_text(action: &Action) -> String {
    match action {
        Action::Reconstruct => "reconstruct".into(),
        Action::Redo => "redo".into(),
        Action::Skip => "skip (done)".into(),
        Action::Refuse(reason) => format!("refuse: {reason}"),
        Action::Wait(reason) => format!("wait: {reason}"),
    }
}

fn plan_text(recipes: &[Recipe], plan: &Plan) -> String {
    let mut text: String = recipes
        .iter()
        .map(|r| {
            format!(
                "preset {} ({}) for {} data, prior {}\n",
                r.preset.name,
                r.preset.path.display(),
                r.preset.modality.dicom(),
                r.card_path.display()
            )
        })
        .collect();
    for s in &plan.series {
        text += &format!(
            "{}: {} {} slice{} with {} -> {}\n",
            action_text(&s.action),
            s.input.files.len(),
            s.input.modality,
            if s.input.files.len() == 1 { "" } else { "s" },
            recipes[s.recipe].preset.name,
            s.dirs.fin.display()
        );
        if let Some(check) = &s.preflight {
            text += &preflight_text(check);
        }
    }
    for f in &plan.skipped_files {
        text += &format!("skip file {}: {}\n", f.path.display(), f.reason);
    }
    for f in &plan.failed_files {
        text += &format!("bad file {}: {}\n", f.path.display(), f.reason);
    }
    text
}

/// The indented lines under a planned series: the acquisition warnings, then
/// why it would fail, or its slice batches and their memory.
fn preflight_text(check: &Preflight) -> String {
    let warnings: String = check
        .warnings
        .iter()
        .map(|w| format!("  warning: {w}\n"))
        .collect();
    if let Some(error) = &check.error {
        return format!("{warnings}  would fail: {error}\n");
    }
    let largest = check.batches.iter().map(|b| b[1]).max().unwrap_or(0);
    let mut text = format!(
        "  {} slice batch{} (largest {largest} slice{})",
        check.batches.len(),
        if check.batches.len() == 1 { "" } else { "es" },
        if largest == 1 { "" } else { "s" }
    );
    match (check.sampling_bytes, check.available_bytes) {
        (Some(needs), Some(available)) => {
            text += &format!(
                ", sampling needs at least {} of {} available",
                Bytes(needs),
                Bytes(available.into())
            )
        }
        (Some(needs), None) => text += &format!(", sampling needs at least {}", Bytes(needs)),
        (None, _) => {}
    }
    warnings + &text + "\n"
}

/// The run's presets in JSON: name, path, sha256, modality and prior each.
fn presets_json(recipes: &[Recipe]) -> serde_json::Value {
    recipes
        .iter()
        .map(|r| {
            json!({
                "name": r.preset.name,
                "path": r.preset.path,
                "sha256": r.preset.sha256,
                "modality": r.preset.modality.dicom(),
                "prior": r.prior,
            })
        })
        .collect()
}

fn plan_json(recipes: &[Recipe], options: &RunOptions, plan: &Plan) -> serde_json::Value {
    json!({
        "dry_run": true,
        "presets": presets_json(recipes),
        "out": options.out,
        "series": plan.series.iter().map(|s| json!({
            "study_instance_uid": s.input.study_instance_uid,
            "series_instance_uid": s.input.series_instance_uid,
            "modality": s.input.modality,
            "preset": recipes[s.recipe].preset.name,
            "slices": s.input.files.len(),
            "files": s.input.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "dir": s.dirs.fin,
            "plan": s.action,
            "preflight": s.preflight,
        })).collect::<Vec<_>>(),
        "skipped_files": plan.skipped_files,
        "failed_files": plan.failed_files,
    })
}

fn summary_text(summary: &Summary) -> String {
    let mut text = String::new();
    for s in &summary.series {
        let what = match &s.outcome {
            Outcome::Done { seconds } => format!("done in {seconds:.1} s"),
            Outcome::Skipped => "already done".into(),
            Outcome::Waiting { reason } => format!("left for a later run: {reason}"),
            Outcome::Failed { reason } => format!("failed: {reason}"),
        };
        text += &format!(
            "{}: {} {} slice{}: {what}\n",
            s.dir.display(),
            s.slices,
            s.modality,
            if s.slices == 1 { "" } else { "s" }
        );
    }
    for f in &summary.skipped_files {
        text += &format!("skipped file {}: {}\n", f.path.display(), f.reason);
    }
    for f in &summary.failed_files {
        text += &format!("bad file {}: {}\n", f.path.display(), f.reason);
    }
    let c = summary.counts();
    let waiting = match c.waiting {
        0 => String::new(),
        n => format!("{n} left for a later run, "),
    };
    text += &format!(
        "{} series: {} done, {} already done, {waiting}{} failed; \
         {} files skipped, {} bad files\n",
        summary.series.len(),
        c.done,
        c.already_done,
        c.failed,
        summary.skipped_files.len(),
        summary.failed_files.len()
    );
    text
}

fn summary_json(recipes: &[Recipe], options: &RunOptions, summary: &Summary) -> serde_json::Value {
    let c = summary.counts();
    json!({
        "dry_run": false,
        "exit_code": if summary.all_done() { 0 } else { 1 },
        "presets": presets_json(recipes),
        "out": options.out,
        "counts": {
            "series": summary.series.len(),
            "done": c.done,
            "already_done": c.already_done,
            "waiting": c.waiting,
            "failed": c.failed,
            "files_skipped": summary.skipped_files.len(),
            "files_failed": summary.failed_files.len(),
        },
        "series": summary.series,
        "skipped_files": summary.skipped_files,
        "failed_files": summary.failed_files,
        "cleanup": summary.cleanup,
    })
}

/// Progress on stderr: bars on a terminal, plain lines otherwise, nothing but
/// failures with `-q`.
struct Progress {
    quiet: bool,
    /// The run's preset names, indexed as [`PlannedSeries::recipe`].
    presets: Vec<String>,
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
}

impl Progress {
    fn new(quiet: bool, presets: Vec<String>) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let series = multi.add(ProgressBar::new(0));
            series.set_style(
                ProgressStyle::with_template(
                    "series {pos}/{len} [{bar:30}] {elapsed_precise} {msg}",
                )
                .expect("valid template"),
            );
            let steps = multi.add(ProgressBar::new(0));
            steps.set_style(
                ProgressStyle::with_template("  DPS steps {pos}/{len} [{bar:30}] (eta {eta})")
                    .expect("valid template"),
            );
            (multi, series, steps)
        });
        Self {
            quiet,
            presets,
            bars,
        }
    }

    /// Prints a line on stderr without breaking the bars.
    fn line(&self, text: &str) {
        match &self.bars {
            Some((multi, ..)) => multi.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some((multi, series, steps)) = &self.bars {
            steps.finish_and_clear();
            series.finish();
            let _ = multi.clear();
        }
    }
}

impl Observer for Progress {
    fn planned(&mut self, plan: &Plan) {
        for f in &plan.failed_files {
            self.line(&format!("error: {}: {}", f.path.display(), f.reason));
        }
        if !self.quiet {
            for f in &plan.skipped_files {
                tracing::info!("skipping {}: {}", f.path.display(), f.reason);
            }
            if plan.series.is_empty() {
                self.line("no raw measurements found in the inputs");
            }
        }
        if let Some((_, series, _)) = &self.bars {
            series.set_length(plan.series.len() as u64);
        }
    }

    fn series_started(&mut self, index: usize, total: usize, s: &PlannedSeries) {
        let name = format!(
            "{}/{}",
            s.input.study_instance_uid, s.input.series_instance_uid
        );
        match &self.bars {
            Some((_, series, steps)) => {
                series.set_position(index as u64);
                series.set_message(format!("{name} ({})", self.presets[s.recipe]));
                steps.reset();
                steps.set_length(0);
            }
            None if !self.quiet && matches!(s.action, Action::Reconstruct | Action::Redo) => {
                self.line(&format!(
                    "[{}/{total}] {name}: reconstructing {} {} slice{} with {}",
                    index + 1,
                    s.input.files.len(),
                    s.input.modality,
                    if s.input.files.len() == 1 { "" } else { "s" },
                    self.presets[s.recipe]
                ));
            }
            None => {}
        }
    }

    fn steps(&mut self, done: usize, total: usize) {
        if let Some((_, _, steps)) = &self.bars {
            steps.set_length(total as u64);
            steps.set_position(done as u64);
        }
    }

    fn series_finished(&mut self, index: usize, total: usize, report: &SeriesReport) {
        let name = format!(
            "{}/{}",
            report.study_instance_uid, report.series_instance_uid
        );
        match &report.outcome {
            Outcome::Failed { reason } => {
                self.line(&format!("error: series {name}: {reason}"));
            }
            Outcome::Done { seconds } if !self.quiet && self.bars.is_none() => {
                self.line(&format!(
                    "[{}/{total}] {name}: done in {seconds:.1} s -> {}",
                    index + 1,
                    report.dir.display()
                ));
            }
            Outcome::Skipped if !self.quiet && self.bars.is_none() => {
                self.line(&format!("[{}/{total}] {name}: already done", index + 1));
            }
            Outcome::Waiting { reason } if !self.quiet => {
                self.line(&format!(
                    "[{}/{total}] {name}: waiting: {reason}",
                    index + 1
                ));
            }
            _ => {}
        }
        if let Some((_, series, _)) = &self.bars {
            series.set_position(index as u64 + 1);
        }
    }
}
