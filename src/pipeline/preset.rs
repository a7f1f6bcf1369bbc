//! Pipeline presets: one TOML file in `pipelines/` is one reconstruction recipe —
//! the data it is for, the likelihood, the prior, the DPS sampler, the classical
//! baselines and the outputs. The schema is documented in `docs/pipelines.md`.
//!
//! A preset is named by its file stem (`pipelines/mri-cartesian-4x.toml` is
//! `mri-cartesian-4x`). Reading is strict: unknown keys, wrong types and values out
//! of range are errors of the form `<file>: key `<table.key>`: <reason>`.

use std::fmt;
use std::path::{Path, PathBuf};

use dps_operators::ct::FbpFilter;
use dps_operators::masks::{MaskPattern, MaskSpec};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use super::reconstruct::{
    Baseline, DpsSettings, Guidance, Refine, DEFAULT_CG_ITERATIONS, DEFAULT_TV_ITERATIONS,
};
use crate::dicom::{CtDataType, CtGeometry, Measurement, RawMeasurement};
use crate::sampler::ClampGradient;

/// A preset error: the file, the key (dotted path, when known) and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetError {
    /// The preset file.
    pub path: PathBuf,
    /// Dotted key path, e.g. `sampler.zeta`; `None` for errors of the file as a
    /// whole (unreadable, TOML syntax).
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for PresetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: key `{key}`: {}", self.path.display(), self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for PresetError {}

/// The modality a preset reconstructs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresetModality {
    /// MRI k-space (`MRI_KSPACE`), prior intensity unit `MR`.
    Mr,
    /// CT sinograms (`CT_SINOGRAM`), prior intensity unit `HU`.
    Ct,
}

impl PresetModality {
    /// `MR` or `CT`, as DICOM Modality and model cards write it.
    pub fn dicom(&self) -> &'static str {
        match self {
            Self::Mr => "MR",
            Self::Ct => "CT",
        }
    }

    /// The intensity unit a prior for this modality must have (`MR` or `HU`).
    pub fn prior_unit(&self) -> &'static str {
        match self {
            Self::Mr => "MR",
            Self::Ct => "HU",
        }
    }
}

/// Which likelihood guides DPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LikelihoodChoice {
    /// From the raw data: CT counts → transmission (PWLS weights), everything
    /// else → Gaussian.
    Auto,
    /// Gaussian on the data; CT counts are post-logged to line integrals first
    /// (unweighted least squares, also for the TV baseline).
    Gaussian,
    /// CT transmission counts (Poisson, PWLS approximation); line-integral data
    /// are refused.
    Transmission,
}

impl LikelihoodChoice {
    /// The TOML spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Gaussian => "gaussian",
            Self::Transmission => "transmission",
        }
    }
}

/// The scale between the prior's MR intensity and the data's image magnitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MriScale {
    /// Estimated per series (see `reconstruct::mri_intensity_scale`).
    Auto,
    /// Image magnitude per unit of prior intensity, > 0.
    Fixed(f64),
}

impl<'de> Deserialize<'de> for MriScale {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
            Integer(i64),
        }
        let bad =
            || serde::de::Error::custom("expected \"auto\" or a positive number (1e-30…1e30)");
        match Raw::deserialize(d).map_err(|_: D::Error| bad())? {
            Raw::Text(s) if s == "auto" => Ok(Self::Auto),
            Raw::Number(v) => Self::fixed(v).ok_or_else(bad),
            Raw::Integer(v) => Self::fixed(v as f64).ok_or_else(bad),
            Raw::Text(_) => Err(bad()),
        }
    }
}

impl MriScale {
    /// `Fixed(v)` for `v` in 1e-30…1e30, else `None`: k-space is stored in
    /// float32, so a scale outside that range only turns the data into 0 or inf.
    pub fn fixed(v: f64) -> Option<Self> {
        (1e-30..=1e30).contains(&v).then_some(Self::Fixed(v))
    }
}

impl std::str::FromStr for MriScale {
    type Err = String;

    /// `auto` or a positive number in 1e-30…1e30 (the command-line form of
    /// `data.mri_scale`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            _ => {
                s.parse::<f64>().ok().and_then(Self::fixed).ok_or_else(|| {
                    format!("'{s}': expected auto or a positive number (1e-30…1e30)")
                })
            }
        }
    }
}

/// What the recipe is tuned for: `simulate`/`validate` make data like this, and
/// `run` warns when raw data differ from it.
#[derive(Clone, Debug, PartialEq)]
pub enum Acquisition {
    /// Cartesian MRI undersampling.
    Mr { mask: MaskSpec },
    /// A CT scan.
    Ct {
        geometry: CtGeometry,
        /// Views, evenly spread over `arc_deg`.
        views: usize,
        /// Angular range of the views, degrees.
        arc_deg: f64,
        /// I0 of a transmission (counts) scan; `None`: line integrals.
        blank_scan_counts: Option<f64>,
    },
}

/// What `run` writes besides the posterior mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outputs {
    /// The per-pixel posterior standard deviation series (needs ≥ 2 samples).
    pub uncertainty: bool,
    /// The baseline series (and their residuals in the manifest).
    pub baselines: bool,
}

/// A parsed and checked preset.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// The file stem.
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    pub description: String,
    pub modality: PresetModality,
    pub likelihood: LikelihoodChoice,
    /// Only meaningful for MR.
    pub mri_scale: MriScale,
    /// The model card, resolved against the preset's folder.
    pub prior_card: PathBuf,
    /// DPS steps (≤ the prior's T).
    pub steps: usize,
    /// Guidance step size ζ (plain-norm gradient).
    pub zeta: f64,
    /// `None`: ancestral DDPM steps; `Some(η)`: DDIM with η ∈ [0, 1].
    pub eta: Option<f64>,
    /// What the guidance measures (`sampler.guidance`, default ramp for CT, plain
    /// for MR).
    pub guidance: Guidance,
    /// The guidance's derivative through the clamp of x̂_0
    /// (`sampler.clamp_gradient`, default exact).
    pub clamp_gradient: ClampGradient,
    /// What is done to each sample after sampling (`sampler.refine`, default none;
    /// `lowpass` is for CT).
    pub refine: Refine,
    /// Posterior samples per slice.
    pub samples: i64,
    /// Seed of the first slice batch (overridable by `--seed`).
    pub seed: u64,
    /// The baselines, in the order of `baselines.list`.
    pub baselines: Vec<Baseline>,
    pub outputs: Outputs,
    pub acquisition: Option<Acquisition>,
}

// ---- The TOML document, as written -----------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    description: String,
    data: DataTable,
    prior: PriorTable,
    sampler: SamplerTable,
    #[serde(default)]
    baselines: BaselinesTable,
    #[serde(default)]
    outputs: OutputsTable,
    acquisition: Option<AcquisitionTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataTable {
    modality: PresetModality,
    #[serde(default = "auto_likelihood")]
    likelihood: LikelihoodChoice,
    mri_scale: Option<MriScale>,
}

fn auto_likelihood() -> LikelihoodChoice {
    LikelihoodChoice::Auto
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorTable {
    card: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplerTable {
    steps: i64,
    zeta: f64,
    eta: Option<f64>,
    guidance: Option<String>,
    clamp_gradient: Option<String>,
    refine: Option<String>,
    #[serde(default = "one")]
    samples: i64,
    #[serde(default)]
    seed: u64,
}

fn one() -> i64 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum BaselineName {
    ZeroFilled,
    CgSense,
    Fbp,
    Tv,
}

impl BaselineName {
    fn as_str(&self) -> &'static str {
        match self {
            Self::ZeroFilled => "zero-filled",
            Self::CgSense => "cg-sense",
            Self::Fbp => "fbp",
            Self::Tv => "tv",
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselinesTable {
    #[serde(default)]
    list: Vec<BaselineName>,
    #[serde(rename = "cg-sense")]
    cg_sense: Option<CgTable>,
    tv: Option<TvTable>,
    fbp: Option<FbpTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CgTable {
    iterations: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TvTable {
    lambda: f64,
    iterations: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FbpTable {
    filter: FilterName,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FilterName {
    Ramp,
    SheppLogan,
    Hann,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputsTable {
    #[serde(default = "yes")]
    uncertainty: bool,
    #[serde(default = "yes")]
    baselines: bool,
}

impl Default for OutputsTable {
    fn default() -> Self {
        Self {
            uncertainty: true,
            baselines: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquisitionTable {
    // MR
    mask: Option<String>,
    acceleration: Option<f64>,
    center_fraction: Option<f64>,
    // CT
    geometry: Option<GeometryName>,
    views: Option<i64>,
    arc_deg: Option<f64>,
    blank_scan_counts: Option<f64>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum GeometryName {
    Parallel,
    FanEquiangular,
    FanFlat,
}

// ---- Reading ----------------------------------------------------------------

impl Preset {
    /// Reads and checks the preset at `path`.
    pub fn load(path: &Path) -> Result<Self, PresetError> {
        let bytes = std::fs::read(path).map_err(|e| PresetError {
            path: path.to_path_buf(),
            key: None,
            reason: format!("cannot read preset: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| PresetError {
            path: path.to_path_buf(),
            key: None,
            reason: "not UTF-8 text".into(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses preset text as if read from `path` (which names it and anchors a
    /// relative prior card path).
    pub fn parse(text: &str, path: &Path) -> Result<Self, PresetError> {
        let fail = |key: Option<&str>, reason: String| PresetError {
            path: path.to_path_buf(),
            key: key.map(str::to_owned),
            reason,
        };
        // Syntax first, so that a deserialisation error always has a valid document
        // to locate its key in.
        text.parse::<toml::Table>()
            .map_err(|e| {
                let at = e.span().map_or_else(String::new, |s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line}, column {column}")
                });
                fail(None, format!("invalid TOML{at}: {}", one_line(e.message())))
            })
            .and_then(|_| {
                toml::from_str::<Document>(text).map_err(|e| {
                    let key = e.span().and_then(|s| key_at(text, s.start));
                    fail(key.as_deref(), one_line(e.message()))
                })
            })
            .and_then(|doc| Self::check(doc, text, path).map_err(|(k, r)| fail(Some(&k), r)))
    }

    /// Checks ranges and combinations; errors are (key, reason).
    fn check(doc: Document, text: &str, path: &Path) -> Result<Self, (String, String)> {
        let err = |key: &str, reason: String| (key.to_owned(), reason);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let modality = doc.data.modality;

        if modality == PresetModality::Mr && doc.data.likelihood == LikelihoodChoice::Transmission {
            return Err(err(
                "data.likelihood",
                "\"transmission\" applies to CT counts only".into(),
            ));
        }
        let mri_scale = match (modality, doc.data.mri_scale) {
            (PresetModality::Ct, Some(_)) => {
                return Err(err("data.mri_scale", "applies to MR data only".into()))
            }
            (_, scale) => scale.unwrap_or(MriScale::Auto),
        };

        if doc.prior.card.trim().is_empty() {
            return Err(err("prior.card", "must name a model card file".into()));
        }
        let card = Path::new(&doc.prior.card);
        let prior_card = if card.is_absolute() {
            card.to_path_buf()
        } else {
            path.parent().unwrap_or_else(|| Path::new("")).join(card)
        };

        let s = &doc.sampler;
        let steps = usize::try_from(s.steps)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| err("sampler.steps", format!("must be ≥ 1, got {}", s.steps)))?;
        if !(s.zeta.is_finite() && s.zeta > 0.0) {
            return Err(err(
                "sampler.zeta",
                format!("must be a finite number > 0, got {}", s.zeta),
            ));
        }
        if let Some(eta) = s.eta {
            if !(0.0..=1.0).contains(&eta) {
                return Err(err("sampler.eta", format!("must be in [0, 1], got {eta}")));
            }
        }
        let guidance = match &s.guidance {
            None => Guidance::default_for(
                modality == PresetModality::Ct,
                doc.data.likelihood == LikelihoodChoice::Transmission,
            ),
            Some(name) => name.parse().map_err(|e| err("sampler.guidance", e))?,
        };
        if matches!(guidance, Guidance::Ramp { .. }) && modality != PresetModality::Ct {
            return Err(err(
                "sampler.guidance",
                "ramp guidance is for CT data; MR takes plain".into(),
            ));
        }
        let clamp_gradient = match &s.clamp_gradient {
            None => ClampGradient::default(),
            Some(name) => name.parse().map_err(|e| err("sampler.clamp_gradient", e))?,
        };
        let refine = match &s.refine {
            None => Refine::None,
            Some(name) => name.parse().map_err(|e| err("sampler.refine", e))?,
        };
        if matches!(refine, Refine::Lowpass(_)) && modality != PresetModality::Ct {
            return Err(err(
                "sampler.refine",
                "the lowpass refinement is for CT data; MR takes none".into(),
            ));
        }
        if s.samples < 1 {
            return Err(err(
                "sampler.samples",
                format!("must be ≥ 1, got {}", s.samples),
            ));
        }
        let outputs = Outputs {
            uncertainty: doc.outputs.uncertainty,
            baselines: doc.outputs.baselines,
        };
        if outputs.uncertainty && s.samples < 2 {
            return Err(err(
                "outputs.uncertainty",
                format!(
                    "the posterior standard deviation needs sampler.samples ≥ 2, got {}",
                    s.samples
                ),
            ));
        }

        let baselines = resolve_baselines(&doc.baselines, modality)?;
        let acquisition = doc
            .acquisition
            .map(|a| resolve_acquisition(a, modality))
            .transpose()?;

        Ok(Self {
            name,
            path: path.to_path_buf(),
            sha256: sha256_hex(text.as_bytes()),
            description: doc.description,
            modality,
            likelihood: doc.data.likelihood,
            mri_scale,
            prior_card,
            steps,
            zeta: s.zeta,
            eta: s.eta,
            guidance,
            clamp_gradient,
            refine,
            samples: s.samples,
            seed: s.seed,
            baselines,
            outputs,
            acquisition,
        })
    }

    /// Where the raw data differ from what the preset is tuned for (its
    /// `[acquisition]`): MRI acceleration off by more than 25 %, another CT view
    /// count, counts where line integrals are expected or the reverse.
    pub fn acquisition_warnings<'a>(
        &self,
        raws: impl IntoIterator<Item = &'a RawMeasurement>,
    ) -> Vec<String> {
        let mut warnings: Vec<String> = Vec::new();
        let mut warn = |w: String| {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        };
        for raw in raws {
            match (&self.acquisition, &raw.data) {
                (Some(Acquisition::Mr { mask }), Measurement::MriKspace(k)) => {
                    let acquired = k.mask.iter().filter(|&&m| m != 0).count().max(1);
                    let measured = k.mask.len() as f64 / acquired as f64;
                    let ratio = measured / mask.acceleration();
                    if !(0.8..=1.25).contains(&ratio) {
                        warn(format!(
                            "the data are {measured:.2}× undersampled; preset {} is tuned for {}×",
                            self.name,
                            mask.acceleration()
                        ));
                    }
                }
                (
                    Some(Acquisition::Ct {
                        views,
                        blank_scan_counts,
                        ..
                    }),
                    Measurement::CtSinogram(sino),
                ) => {
                    if sino.views != *views {
                        warn(format!(
                            "the data have {} views; preset {} is tuned for {views}",
                            sino.views, self.name
                        ));
                    }
                    match (blank_scan_counts, sino.data_type) {
                        (Some(i0), CtDataType::LineIntegral) => warn(format!(
                            "the data are line integrals; preset {} is tuned for counts (I0 = {i0})",
                            self.name
                        )),
                        (None, CtDataType::Counts { .. }) => warn(format!(
                            "the data are counts; preset {} is tuned for line integrals",
                            self.name
                        )),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        warnings
    }

    /// The DPS settings with optional overrides of the seed and the sample count.
    pub fn dps_settings(&self, seed: Option<u64>, samples: Option<i64>) -> DpsSettings {
        DpsSettings {
            steps: self.steps,
            zeta: self.zeta,
            eta: self.eta,
            samples: samples.unwrap_or(self.samples),
            sample_batch: None,
            seed: seed.unwrap_or(self.seed),
            guidance: self.guidance,
            clamp_gradient: self.clamp_gradient,
            refine: self.refine,
        }
    }
}

fn resolve_baselines(
    table: &BaselinesTable,
    modality: PresetModality,
) -> Result<Vec<Baseline>, (String, String)> {
    let listed = |b: BaselineName| table.list.contains(&b);
    for (b, given) in [
        (BaselineName::CgSense, table.cg_sense.is_some()),
        (BaselineName::Tv, table.tv.is_some()),
        (BaselineName::Fbp, table.fbp.is_some()),
    ] {
        if given && !listed(b) {
            return Err((
                format!("baselines.{}", b.as_str()),
                format!(
                    "parameters given but `{}` is not in baselines.list",
                    b.as_str()
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(table.list.len());
    for (k, &b) in table.list.iter().enumerate() {
        if table.list[..k].contains(&b) {
            return Err((
                "baselines.list".into(),
                format!("`{}` is listed twice", b.as_str()),
            ));
        }
        let applies = match b {
            BaselineName::ZeroFilled | BaselineName::CgSense => modality == PresetModality::Mr,
            BaselineName::Fbp => modality == PresetModality::Ct,
            BaselineName::Tv => true,
        };
        if !applies {
            return Err((
                "baselines.list".into(),
                format!(
                    "`{}` does not apply to {} data",
                    b.as_str(),
                    modality.dicom()
                ),
            ));
        }
        let positive = |key: &str, v: i64| {
            usize::try_from(v)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| (key.to_owned(), format!("must be ≥ 1, got {v}")))
        };
        out.push(match b {
            BaselineName::ZeroFilled => Baseline::ZeroFilled,
            BaselineName::CgSense => Baseline::CgSense {
                iterations: match &table.cg_sense {
                    Some(t) => positive("baselines.cg-sense.iterations", t.iterations)?,
                    None => DEFAULT_CG_ITERATIONS,
                },
            },
            BaselineName::Fbp => Baseline::Fbp(match table.fbp.as_ref().map(|t| t.filter) {
                None | Some(FilterName::Hann) => FbpFilter::Hann,
                Some(FilterName::Ramp) => FbpFilter::Ramp,
                Some(FilterName::SheppLogan) => FbpFilter::SheppLogan,
            }),
            BaselineName::Tv => {
                let t = table.tv.as_ref().ok_or_else(|| {
                    (
                        "baselines.tv".to_owned(),
                        "`tv` is listed: its table needs `lambda` (in units of the data term)"
                            .to_owned(),
                    )
                })?;
                if !(t.lambda.is_finite() && t.lambda >= 0.0) {
                    return Err((
                        "baselines.tv.lambda".into(),
                        format!("must be a finite number ≥ 0, got {}", t.lambda),
                    ));
                }
                Baseline::Tv {
                    lambda: t.lambda,
                    iterations: match t.iterations {
                        Some(n) => positive("baselines.tv.iterations", n)?,
                        None => DEFAULT_TV_ITERATIONS,
                    },
                }
            }
        });
    }
    Ok(out)
}

fn resolve_acquisition(
    a: AcquisitionTable,
    modality: PresetModality,
) -> Result<Acquisition, (String, String)> {
    let foreign = |key: &str| {
        Err((
            format!("acquisition.{key}"),
            format!("not a setting of {} acquisitions", modality.dicom()),
        ))
    };
    let missing = |key: &str| {
        (
            format!("acquisition.{key}"),
            format!("required for {} acquisitions", modality.dicom()),
        )
    };
    match modality {
        PresetModality::Mr => {
            for (key, given) in [
                ("geometry", a.geometry.is_some()),
                ("views", a.views.is_some()),
                ("arc_deg", a.arc_deg.is_some()),
                ("blank_scan_counts", a.blank_scan_counts.is_some()),
            ] {
                if given {
                    return foreign(key);
                }
            }
            let acceleration = a.acceleration.ok_or_else(|| missing("acceleration"))?;
            if !(acceleration.is_finite() && acceleration >= 1.0) {
                return Err((
                    "acquisition.acceleration".into(),
                    format!("must be a finite number ≥ 1, got {acceleration}"),
                ));
            }
            let center_fraction = a
                .center_fraction
                .ok_or_else(|| missing("center_fraction"))?;
            if !(0.0..=1.0).contains(&center_fraction) {
                return Err((
                    "acquisition.center_fraction".into(),
                    format!("must be in [0, 1], got {center_fraction}"),
                ));
            }
            let pattern: MaskPattern = a
                .mask
                .ok_or_else(|| missing("mask"))?
                .parse()
                .map_err(|e| ("acquisition.mask".to_string(), e))?;
            let mask = MaskSpec::new(pattern, acceleration, center_fraction);
            Ok(Acquisition::Mr { mask })
        }
        PresetModality::Ct => {
            for (key, given) in [
                ("mask", a.mask.is_some()),
                ("acceleration", a.acceleration.is_some()),
                ("center_fraction", a.center_fraction.is_some()),
            ] {
                if given {
                    return foreign(key);
                }
            }
            let geometry = match a.geometry.ok_or_else(|| missing("geometry"))? {
                GeometryName::Parallel => CtGeometry::Parallel,
                GeometryName::FanEquiangular => CtGeometry::FanEquiangular,
                GeometryName::FanFlat => CtGeometry::FanFlat,
            };
            let views = a.views.ok_or_else(|| missing("views"))?;
            let views = usize::try_from(views)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| {
                    (
                        "acquisition.views".to_owned(),
                        format!("must be ≥ 1, got {views}"),
                    )
                })?;
            let arc_deg = a.arc_deg.ok_or_else(|| missing("arc_deg"))?;
            if !(arc_deg.is_finite() && arc_deg > 0.0 && arc_deg <= 360.0) {
                return Err((
                    "acquisition.arc_deg".into(),
                    format!("must be in (0, 360], got {arc_deg}"),
                ));
            }
            if let Some(i0) = a.blank_scan_counts {
                if !(i0.is_finite() && i0 > 0.0) {
                    return Err((
                        "acquisition.blank_scan_counts".into(),
                        format!("must be a finite number > 0, got {i0}"),
                    ));
                }
            }
            Ok(Acquisition::Ct {
                geometry,
                views,
                arc_deg,
                blank_scan_counts: a.blank_scan_counts,
            })
        }
    }
}

/// Where the preset named on the command line lives: a path when `arg` names an
/// existing file, ends in `.toml` or contains a path separator; otherwise
/// `<arg>.toml` in `./pipelines/`, then in the `pipelines/` folder of the source
/// tree this binary was built from.
pub fn resolve_preset_path(arg: &str) -> anyhow::Result<PathBuf> {
    let as_path = Path::new(arg);
    if as_path.is_file() || arg.ends_with(".toml") || arg.contains(std::path::is_separator) {
        return Ok(as_path.to_path_buf());
    }
    let dirs = preset_dirs();
    for dir in &dirs {
        let candidate = dir.join(format!("{arg}.toml"));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let mut known: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    known.sort();
    known.dedup();
    anyhow::bail!(
        "no preset named `{arg}` in {} (known: {})",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )
}

/// The folders searched for presets by name.
pub fn preset_dirs() -> Vec<PathBuf> {
    let local = PathBuf::from("pipelines");
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    if local.canonicalize().ok() == built.canonicalize().ok() {
        vec![local]
    } else {
        vec![local, built]
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of the file at `path`, lower-case hex (read in 1 MiB pieces).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The dotted key path of the entry at byte `offset` of a syntactically valid
/// TOML document: the `[table]` header in force there and the key of the
/// `key = value` line (or, inside a multi-line array, of the line that opened
/// it). A table header itself gives the table's path.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table: Vec<String> = Vec::new();
    let mut current_key: Option<Vec<String>> = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let code = strip_comment(line).trim();
        if code.starts_with('[') && !code.starts_with("[[") && code.ends_with(']') {
            table = split_key(&code[1..code.len() - 1]);
            current_key = None;
            if (start..end).contains(&offset) {
                return Some(table.join("."));
            }
        } else if let Some(eq) = find_assignment(code) {
            current_key = Some(split_key(&code[..eq]));
        }
        if (start..end).contains(&offset) {
            let mut path = table.clone();
            path.extend(current_key?);
            return Some(path.join("."));
        }
        start = end;
    }
    None
}

/// `line` without a trailing `# comment` (outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// The byte index of the `=` of a `key = value` line (outside quotes), when the
/// text before it is a plain or quoted dotted key.
fn find_assignment(code: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in code.char_indices() {
        match (quote, c) {
            (None, '=') => {
                let key = code[..i].trim();
                let plain = key.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' ')
                });
                return (!key.is_empty() && plain).then_some(i);
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            _ => {}
        }
    }
    None
}

/// `a."b.c".d` → `["a", "b.c", "d"]`.
fn split_key(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quote: Option<char> = None;
    for c in key.chars() {
        match (quote, c) {
            (None, '.') => parts.push(std::mem::take(&mut part).trim().to_owned()),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            _ => part.push(c),
        }
    }
    parts.push(part.trim().to_owned());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MR: &str = r#"
description = "test"
[data]
modality = "mr"
[prior]
card = "../models/x/x.json"
[sampler]
steps = 100
zeta = 8.0
eta = 1.0
samples = 2
[baselines]
list = ["zero-filled", "cg-sense"]
[baselines.cg-sense]
iterations = 12
[acquisition]
mask = "equispaced-lines"
acceleration = 4
center_fraction = 0.08
"#;

    fn parse(text: &str) -> Result<Preset, PresetError> {
        Preset::parse(text, Path::new("/p/pipelines/t.toml"))
    }

    fn error(text: &str) -> (Option<String>, String) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.path, Path::new("/p/pipelines/t.toml"));
        (e.key, e.reason)
    }

    #[test]
    fn parses_a_full_preset() {
        let p = parse(MR).unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.modality, PresetModality::Mr);
        assert_eq!(p.likelihood, LikelihoodChoice::Auto);
        assert_eq!(p.mri_scale, MriScale::Auto);
        assert_eq!(p.prior_card, Path::new("/p/pipelines/../models/x/x.json"));
        assert_eq!(
            (p.steps, p.zeta, p.eta, p.samples, p.seed),
            (100, 8.0, Some(1.0), 2, 0)
        );
        assert_eq!(p.guidance, Guidance::Plain);
        assert_eq!(
            p.baselines,
            vec![Baseline::ZeroFilled, Baseline::CgSense { iterations: 12 }]
        );
        assert_eq!(
            p.outputs,
            Outputs {
                uncertainty: true,
                baselines: true
            }
        );
        assert_eq!(
            p.acquisition,
            Some(Acquisition::Mr {
                mask: MaskSpec::EquispacedLines {
                    acceleration: 4.0,
                    center_fraction: 0.08
                }
            })
        );
        assert_eq!(p.sha256, sha256_hex(MR.as_bytes()));
        assert_eq!(p.sha256.len(), 64);
        let s = p.dps_settings(Some(9), None);
        assert_eq!((s.seed, s.samples, s.steps), (9, 2, 100));

        // What the sampler checks before it runs, whoever built the settings.
        assert!(s.check(1000).is_ok());
        let fails = |bad: DpsSettings, message: &str| {
            let err = bad.check(1000).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        };
        fails(
            DpsSettings {
                steps: 0,
                ..s.clone()
            },
            "steps must be 1…1000",
        );
        fails(
            DpsSettings {
                steps: 1001,
                ..s.clone()
            },
            "(the prior's schedule), got 1001",
        );
        fails(
            DpsSettings {
                zeta: f64::NAN,
                ..s.clone()
            },
            "ζ must be a finite number > 0",
        );
        fails(
            DpsSettings {
                eta: Some(1.5),
                ..s.clone()
            },
            "η must be in [0, 1], got 1.5",
        );
        fails(
            DpsSettings {
                samples: 0,
                ..s.clone()
            },
            "samples must be at least 1, got 0",
        );
    }

    #[test]
    fn sha256_matches_the_standard_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let (key, reason) = error(&MR.replace("zeta = 8.0", "zeta = 8.0\nzetta = 1"));
        assert_eq!(key.as_deref(), Some("sampler.zetta"));
        assert!(reason.contains("unknown field `zetta`"), "{reason}");
        let (key, reason) = error(&format!("{MR}\n[extra]\na = 1\n"));
        assert_eq!(key.as_deref(), Some("extra"));
        assert!(reason.contains("unknown field `extra`"), "{reason}");
    }

    #[test]
    fn wrong_types_and_bad_values_are_named() {
        let cases = [
            (
                "steps = 100",
                "steps = \"many\"",
                "sampler.steps",
                "invalid type",
            ),
            (
                "steps = 100",
                "steps = 0",
                "sampler.steps",
                "must be ≥ 1, got 0",
            ),
            ("zeta = 8.0", "zeta = -1.0", "sampler.zeta", "> 0, got -1"),
            ("eta = 1.0", "eta = 1.5", "sampler.eta", "[0, 1], got 1.5"),
            (
                "samples = 2",
                "samples = 1",
                "outputs.uncertainty",
                "samples ≥ 2",
            ),
            (
                "modality = \"mr\"",
                "modality = \"pet\"",
                "data.modality",
                "unknown variant `pet`",
            ),
            (
                "list = [\"zero-filled\", \"cg-sense\"]",
                "list = [\"cg-sense\", \"fbp\"]",
                "baselines.list",
                "`fbp` does not apply to MR data",
            ),
            (
                "list = [\"zero-filled\", \"cg-sense\"]",
                "list = [\"zero-filled\", \"cgsense\"]",
                "baselines.list",
                "unknown variant `cgsense`",
            ),
            (
                "iterations = 12",
                "iterations = -3",
                "baselines.cg-sense.iterations",
                "≥ 1, got -3",
            ),
            (
                "acceleration = 4",
                "acceleration = 0.5",
                "acquisition.acceleration",
                "≥ 1, got 0.5",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nguidance = \"ramp\"",
                "sampler.guidance",
                "ramp guidance is for CT data",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nguidance = \"filtered\"",
                "sampler.guidance",
                "unknown guidance \"filtered\"",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nguidance = \"ramp:-0.1\"",
                "sampler.guidance",
                "ramp:C (C in 0 … 1",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nguidance = \"ramp:1e300\"",
                "sampler.guidance",
                "ramp:C (C in 0 … 1",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nrefine = \"lowpass\"",
                "sampler.refine",
                "the lowpass refinement is for CT data",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nrefine = \"lowpass:4:0\"",
                "sampler.refine",
                "unknown refinement \"lowpass:4:0\"",
            ),
            (
                "zeta = 8.0",
                "zeta = 8.0\nclamp_gradient = \"soft\"",
                "sampler.clamp_gradient",
                "unknown clamp gradient \"soft\": expected exact, straight-through or",
            ),
            (
                "mask = \"equispaced-lines\"",
                "mask = \"spiral\"",
                "acquisition.mask",
                "unknown mask \"spiral\"",
            ),
            (
                "center_fraction = 0.08",
                "views = 60",
                "acquisition.views",
                "not a setting of MR",
            ),
        ];
        for (from, to, key, reason) in cases {
            let text = MR.replace(from, to);
            assert_ne!(text, MR, "{from}");
            let (k, r) = error(&text);
            assert_eq!(k.as_deref(), Some(key), "{to}: {r}");
            assert!(r.contains(reason), "{to}: {r}");
        }
    }

    #[test]
    fn mri_scale_is_auto_or_a_positive_number_in_toml_and_on_the_command_line() {
        let toml = |v: &str| {
            parse(&MR.replace(
                "modality = \"mr\"",
                &format!("modality = \"mr\"\nmri_scale = {v}"),
            ))
            .map(|p| p.mri_scale)
        };
        assert_eq!(toml("\"auto\"").unwrap(), MriScale::Auto);
        assert_eq!(toml("0.5").unwrap(), MriScale::Fixed(0.5));
        assert_eq!(toml("3").unwrap(), MriScale::Fixed(3.0));
        for bad in ["0", "-1.5", "nan", "inf", "\"0.5\"", "\"AUTO\"", "1e31"] {
            assert!(toml(bad).is_err(), "TOML mri_scale = {bad} was accepted");
        }
        assert_eq!("auto".parse::<MriScale>(), Ok(MriScale::Auto));
        assert_eq!("0.5".parse::<MriScale>(), Ok(MriScale::Fixed(0.5)));
        // 1e300 used to run, with NaN images (the data divided to 0 in float32).
        for bad in ["0", "-2", "NaN", "inf", "big", "", "1e300", "1e-300"] {
            let err = bad.parse::<MriScale>().unwrap_err();
            assert!(
                err.contains("expected auto or a positive number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn scale_and_likelihood_are_checked_against_the_modality() {
        let (k, r) = error(&MR.replace(
            "modality = \"mr\"",
            "modality = \"mr\"\nmri_scale = \"big\"",
        ));
        assert_eq!(k.as_deref(), Some("data.mri_scale"));
        assert!(r.contains("\"auto\" or a positive number"), "{r}");
        let p =
            parse(&MR.replace("modality = \"mr\"", "modality = \"mr\"\nmri_scale = 2")).unwrap();
        assert_eq!(p.mri_scale, MriScale::Fixed(2.0));
        let (k, r) = error(&MR.replace(
            "modality = \"mr\"",
            "modality = \"mr\"\nlikelihood = \"transmission\"",
        ));
        assert_eq!(k.as_deref(), Some("data.likelihood"));
        assert!(r.contains("CT counts only"), "{r}");
    }

    #[test]
    fn missing_keys_and_syntax_errors_name_the_file() {
        let e = parse(&MR.replace("zeta = 8.0\n", "")).unwrap_err();
        assert!(e.reason.contains("missing field `zeta`"), "{e}");
        assert!(e.to_string().starts_with("/p/pipelines/t.toml: "), "{e}");
        let e = parse("description = \"x\"\n[data]\nmodality = \n").unwrap_err();
        assert_eq!(e.key, None);
        assert!(
            e.reason.starts_with("invalid TOML at line 3, column 12: "),
            "{e}"
        );
    }

    #[test]
    fn ct_presets_take_ct_settings() {
        let text = r#"
description = "ct"
[data]
modality = "ct"
likelihood = "transmission"
[prior]
card = "/abs/card.json"
[sampler]
steps = 10
zeta = 0.5
[baselines]
list = ["fbp", "tv"]
tv = { lambda = 10.0 }
[outputs]
uncertainty = false
[acquisition]
geometry = "fan-equiangular"
views = 90
arc_deg = 360
blank_scan_counts = 1e4
"#;
        let p = parse(text).unwrap();
        assert_eq!(p.prior_card, Path::new("/abs/card.json"));
        // Transmission counts default to the ramp with the low-dose floor, other
        // CT data to the bare ramp.
        assert_eq!(p.guidance, Guidance::Ramp { floor: 0.02 });
        let auto = parse(&text.replace("likelihood = \"transmission\"\n", "")).unwrap();
        assert_eq!(auto.guidance, Guidance::RAMP);
        // The preset with one more `[sampler]` line.
        let with = |line: &str| {
            parse(&text.replace("zeta = 0.5", &format!("zeta = 0.5\n{line}"))).unwrap()
        };
        let guided = |g: &str| with(&format!("guidance = \"{g}\"")).guidance;
        assert_eq!(guided("plain"), Guidance::Plain);
        assert_eq!(guided("ramp"), Guidance::RAMP);
        assert_eq!(guided("ramp:0.05"), Guidance::Ramp { floor: 0.05 });
        assert_eq!(Guidance::Ramp { floor: 0.02 }.to_string(), "ramp:0.02");
        assert_eq!(Guidance::RAMP.to_string(), "ramp");
        // The refinement: none by default; `lowpass` with or without parameters,
        // written back in full.
        assert_eq!(p.refine, Refine::None);
        let refined = |r: &str| with(&format!("refine = \"{r}\"")).refine;
        assert_eq!(refined("lowpass"), Refine::LOWPASS);
        assert_eq!(Refine::LOWPASS.to_string(), "lowpass:4:20");
        assert_eq!(refined("lowpass:2.5").to_string(), "lowpass:2.5:20");
        assert_eq!(refined("lowpass:3:10").to_string(), "lowpass:3:10");
        assert_eq!(refined("none"), Refine::None);
        assert_eq!(p.clamp_gradient, ClampGradient::Exact);
        assert_eq!(
            with("clamp_gradient = \"straight-through:700\"").clamp_gradient,
            ClampGradient::StraightThrough { above: Some(700) }
        );
        assert_eq!(p.eta, None);
        assert_eq!(p.samples, 1);
        assert_eq!(
            p.baselines,
            vec![
                Baseline::Fbp(FbpFilter::Hann),
                Baseline::Tv {
                    lambda: 10.0,
                    iterations: DEFAULT_TV_ITERATIONS
                }
            ]
        );
        assert_eq!(
            p.acquisition,
            Some(Acquisition::Ct {
                geometry: CtGeometry::FanEquiangular,
                views: 90,
                arc_deg: 360.0,
                blank_scan_counts: Some(1e4)
            })
        );
        let (k, r) = error(&text.replace("tv = { lambda = 10.0 }", ""));
        assert_eq!(k.as_deref(), Some("baselines.tv"));
        assert!(r.contains("needs `lambda`"), "{r}");
        let (k, _) = error(&text.replace("modality = \"ct\"", "modality = \"ct\"\nmri_scale = 1"));
        assert_eq!(k.as_deref(), Some("data.mri_scale"));
    }

    #[test]
    fn key_paths_are_found_in_documents() {
        let text = "a = 1\n[t.\"u.v\"]  # c\nx = [\n  1,\n  2,\n]\n";
        assert_eq!(key_at(text, 0).as_deref(), Some("a"));
        assert_eq!(key_at(text, 7).as_deref(), Some("t.u.v"));
        let two = text.find("2,").unwrap();
        assert_eq!(key_at(text, two).as_deref(), Some("t.u.v.x"));
    }
}
