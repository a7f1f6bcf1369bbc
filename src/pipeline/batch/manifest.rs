//! The per-series manifest, `OUT/<study>/<series>/manifest.json`: what went in,
//! with which recipe, what came out, how well it fits the data and how long it
//! took. Written into the series' build folder last, so a published series always
//! has one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layout::write_atomic;

/// Version of the manifest layout.
pub const MANIFEST_VERSION: u32 = 1;

/// Outcome of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesStatus {
    /// Every output written.
    Done,
    /// Nothing but this manifest written; see `error`.
    Failed,
}

/// One series' manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub manifest_version: u32,
    pub status: SeriesStatus,
    /// Why the series failed (`status` = failed).
    pub error: Option<String>,
    /// `dps-recon` and its version.
    pub software: Software,
    /// When the manifest was written, UTC, RFC 3339.
    pub created_utc: String,
    /// StudyInstanceUID of the input.
    pub study_instance_uid: String,
    /// SeriesInstanceUID of the input.
    pub series_instance_uid: String,
    /// `MR` or `CT`.
    pub modality: String,
    /// SHA-256 (hex) of everything that decides the result: preset bytes, prior
    /// weights, seed, samples and slices per batch. A done series is skipped only
    /// when it matches (and its inputs do).
    pub fingerprint: String,
    /// The raw files, in slice order.
    pub inputs: Vec<InputRecord>,
    pub preset: PresetRecord,
    /// The prior (absent when the series failed before it was needed).
    pub prior: Option<PriorRecord>,
    pub parameters: Parameters,
    /// Per-slice results, in slice order.
    pub slices: Vec<SliceRecord>,
    /// Seconds per stage: `read`, `prepare` (operators, intensity scale),
    /// `baseline:<name>`, `dps`, `residuals`, `write`, `total`.
    pub timings_s: BTreeMap<String, f64>,
    /// The written series.
    pub outputs: Vec<OutputRecord>,
    /// Differences between the data and what the preset is tuned for.
    pub warnings: Vec<String>,
}

/// The program that wrote a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Software {
    pub name: String,
    pub version: String,
}

impl Software {
    /// This build.
    pub fn this() -> Self {
        Self {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// One raw input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Absolute path when it was read.
    pub path: String,
    pub sop_instance_uid: String,
    pub instance_number: Option<i64>,
}

/// The preset used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetRecord {
    pub name: String,
    pub path: String,
    /// SHA-256 of the preset file, hex.
    pub sha256: String,
}

/// The prior used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorRecord {
    /// The model card.
    pub card: String,
    /// Name from the card.
    pub name: String,
    /// The weights file.
    pub weights: String,
    /// SHA-256 of the weights file, hex.
    pub weights_sha256: String,
}

/// The effective reconstruction parameters (preset with command-line overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    pub steps: usize,
    pub zeta: f64,
    /// `null`: DDPM steps; a number: DDIM with this η.
    pub eta: Option<f64>,
    /// `plain` (Algorithm 1) or `ramp` (CT: ramp-filtered residual).
    #[serde(default = "plain")]
    pub guidance: String,
    /// `exact` (Algorithm 1), `straight-through` or `straight-through:T`: the
    /// guidance's derivative through the clamp of x̂_0.
    #[serde(default = "exact")]
    pub clamp_gradient: String,
    /// `none` (Algorithm 1's samples) or `lowpass:SIGMA_PX:ITERATIONS` (CT: each
    /// sample's smooth component fitted to the data).
    #[serde(default = "none")]
    pub refine: String,
    pub samples: i64,
    /// Most samples per slice drawn together; `null`: all at once.
    #[serde(default)]
    pub sample_batch: Option<i64>,
    /// Seed of the first batch; batch k (slices from index i) uses `seed + i`.
    pub seed: u64,
    /// `auto`, `gaussian` or `transmission` as asked, and what was used.
    pub likelihood: String,
    pub likelihood_used: Option<String>,
    /// MR: image magnitude per unit of prior intensity.
    pub mri_scale: Option<f64>,
    /// Most slices reconstructed together.
    pub batch_slices: usize,
    /// Batches as `[first slice, slice count]`.
    pub batches: Vec<[usize; 2]>,
    /// Baselines with their parameters, e.g. `{"name": "cg-sense", "iterations": 30}`
    /// or `{"name": "fbp", "filter": "hann"}`.
    pub baselines: Vec<serde_json::Value>,
    /// The compute device, e.g. `Cpu` or `Cuda(0)`.
    pub device: String,
    /// The prior network's number format, `f32` or `bf16` (`--precision`).
    #[serde(default = "f32")]
    pub precision: String,
}

/// One reconstructed slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceRecord {
    /// Position in the output series, from 0 (InstanceNumber − 1).
    pub index: usize,
    /// The raw object it came from.
    pub input_sop_instance_uid: String,
    /// Data-consistency residual per output (`dps` for the posterior mean,
    /// then each baseline): `‖y − A x‖ / (σ √m)` (≈ 1 at the noise level), or
    /// the PWLS residual for CT counts; `null` without a known σ.
    pub residual: BTreeMap<String, Option<f64>>,
}

/// One written output series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// `dps`, `uncertainty` or a baseline name; also the folder name.
    pub kind: String,
    pub series_instance_uid: String,
    pub series_number: i32,
    /// File paths relative to the series folder, in slice order.
    pub files: Vec<String>,
    pub sop_instance_uids: Vec<String>,
}

impl Manifest {
    /// Writes the manifest as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(path, format!("{text}\n").as_bytes())
    }

    /// Reads a manifest.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read manifest: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: invalid manifest: {e}", path.display()))
    }

    /// The input SOP Instance UIDs, sorted.
    pub fn input_uids(&self) -> Vec<&str> {
        let mut uids: Vec<&str> = self
            .inputs
            .iter()
            .map(|i| i.sop_instance_uid.as_str())
            .collect();
        uids.sort_unstable();
        uids
    }
}

fn plain() -> String {
    "plain".into()
}

fn exact() -> String {
    "exact".into()
}

fn none() -> String {
    "none".into()
}

fn f32() -> String {
    "f32".into()
}
