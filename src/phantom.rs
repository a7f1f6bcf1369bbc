//! Digital phantoms: the Shepp–Logan head phantom (Toft's modified version in
//! [0, 1], and the original one in Hounsfield units) and seeded random-ellipse
//! phantoms in a CT style (HU) and an MR style ([0, 1]).
//!
//! Coordinates: the image covers [−1, 1]² with x to the right (columns) and y up
//! (row 0 is the top, y = +1). Every phantom pixel is the mean of 3 × 3 sub-samples
//! inside it, an approximation of the mean over its area: edges get partial-volume
//! values, as in a scanner's image, instead of the aliased staircase of one
//! sample per pixel centre.
//!
//! CT values are in Hounsfield units, HU = 1000·(μ/μ_water − 1): air −1000,
//! water 0. [`hu_to_mu`] and [`mu_to_hu`] convert to and from linear attenuation
//! coefficients μ in 1/mm.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// One ellipse: intensity, semi-axes (a along x', b along y'), centre, and
/// rotation of the x' axis from the x axis in degrees, counter-clockwise. Lengths
/// are in the [−1, 1]² image coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ellipse {
    pub intensity: f64,
    pub a: f64,
    pub b: f64,
    pub x0: f64,
    pub y0: f64,
    pub phi_deg: f64,
}

/// The ten ellipses of the modified Shepp–Logan phantom (Toft, 1996), as in
/// MATLAB's `phantom('Modified Shepp-Logan')`: background 0, skull 1.0, brain 0.2.
pub const MODIFIED_SHEPP_LOGAN: [Ellipse; 10] = [
    e(1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    e(-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    e(-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    e(-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    e(0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    e(0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    e(0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    e(0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    e(0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    e(0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0),
];

/// The original Shepp–Logan phantom (Shepp & Logan, 1974; Kak & Slaney, table
/// 3.1): the geometry of [`MODIFIED_SHEPP_LOGAN`] with the original intensities,
/// which are attenuation relative to water: background 0, skull 2.0, brain 1.02,
/// ventricles 1.00, small features 1.03–1.04.
pub const SHEPP_LOGAN: [Ellipse; 10] = [
    e(2.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    e(-0.98, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    e(-0.02, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    e(-0.02, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    e(0.01, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    e(0.01, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    e(0.01, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    e(0.01, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    e(0.01, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    e(0.01, 0.0230, 0.0460, 0.06, -0.605, 0.0),
];

const fn e(intensity: f64, a: f64, b: f64, x0: f64, y0: f64, phi_deg: f64) -> Ellipse {
    Ellipse {
        intensity,
        a,
        b,
        x0,
        y0,
        phi_deg,
    }
}

/// Linear attenuation coefficient of water at an effective energy of 70 keV, in
/// 1/mm (NIST XCOM: 0.193 cm²/g at 1 g/cm³).
pub const MU_WATER_70KEV_PER_MM: f64 = 0.0193;

/// Hounsfield units to linear attenuation μ = μ_water·(1 + HU/1000), in the unit
/// of `mu_water` (1/mm by convention). Element-wise, any shape, kind kept;
/// HU below −1000 give negative μ (no clamping).
pub fn hu_to_mu(hu: &Tensor, mu_water: f64) -> Tensor {
    hu * (mu_water / 1000.0) + mu_water
}

/// Linear attenuation μ (same unit as `mu_water`) to Hounsfield units,
/// HU = 1000·(μ/μ_water − 1). Element-wise, any shape, kind kept.
pub fn mu_to_hu(mu: &Tensor, mu_water: f64) -> Tensor {
    mu * (1000.0 / mu_water) - 1000.0
}

/// Rasterises a sum of ellipses on an `n × n` grid over [−1, 1]²: each pixel is
/// the mean of `ss × ss` sub-samples on a regular grid inside it (`ss = 1`: one
/// sample at the pixel centre). Returns row-major values (row 0 at y = +1).
pub fn rasterize(ellipses: &[Ellipse], n: usize, ss: usize) -> Vec<f32> {
    let m = n * ss;
    let mut img = vec![0f64; n * n];
    let coord = |k: usize| (2.0 * k as f64 + 1.0) / m as f64 - 1.0;
    for el in ellipses {
        let (s, c) = el.phi_deg.to_radians().sin_cos();
        for row in 0..m {
            let y = -coord(row) - el.y0;
            let out = &mut img[(row / ss) * n..(row / ss + 1) * n];
            for col in 0..m {
                let x = coord(col) - el.x0;
                let u = (x * c + y * s) / el.a;
                let v = (-x * s + y * c) / el.b;
                if u * u + v * v <= 1.0 {
                    out[col / ss] += el.intensity;
                }
            }
        }
    }
    let w = 1.0 / (ss * ss) as f64;
    img.into_iter().map(|v| (v * w) as f32).collect()
}

/// The modified Shepp–Logan phantom at `n × n` as an `f32` tensor `[n, n]` on the
/// CPU, values in [0, 1], each pixel the mean of 3 × 3 sub-samples.
pub fn shepp_logan(n: usize) -> Tensor {
    to_tensor(rasterize(&MODIFIED_SHEPP_LOGAN, n, SUPERSAMPLE), n)
}

/// The original Shepp–Logan phantom ([`SHEPP_LOGAN`]) in Hounsfield units as an
/// `f32` tensor `[n, n]` on the CPU: its relative attenuation v maps to
/// HU = 1000·(v − 1), so air −1000, skull +1000, brain 20, ventricles 0 (water),
/// small features 30 and 40 HU; each pixel is the mean of 3 × 3 sub-samples, so
/// edges take partial-volume values between these.
///
/// The modified phantom cannot be mapped instead: its ventricles and the air
/// around the head share the value 0.
pub fn shepp_logan_hu(n: usize) -> Tensor {
    let scaled = SHEPP_LOGAN.map(|el| Ellipse {
        intensity: 1000.0 * el.intensity,
        ..el
    });
    to_tensor(rasterize(&scaled, n, SUPERSAMPLE), n) - 1000.0
}

/// Value convention of [`random_ellipses`] phantoms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhantomStyle {
    /// CT in Hounsfield units: air −1000 around the body, fat −120…−80, water
    /// 0…15, soft tissue and organs 20…70 (brain, muscle, liver), blood 35…50 or
    /// contrast-enhanced 150…300, lung −880…−780, cancellous bone 150…400, cortical
    /// bone 700…1500; lesions and inner ellipses add ±20…60 HU. Values ≥ −1000.
    Ct,
    /// MR magnitude in [0, 1], maximum exactly 1: background 0, tissue classes
    /// with T1-, T2- or proton-density-like contrast (randomly jittered), and in
    /// three of four phantoms a smooth multiplicative bias field (gain between
    /// about 0.7 and 1.4) before the normalisation.
    Mr,
}

/// A seeded random phantom of ellipses: a plausible cross-section of a head, a
/// thorax or an abdomen (chosen by the seed) with randomised sizes, positions,
/// orientations and tissue values, inner structures of varied contrast and a
/// few small lesions (up to five). Ellipses are painted in order (a later one replaces, not adds
/// to, the value below it) and each pixel averages 3 × 3 sub-samples.
///
/// Returns an `f32` tensor `[n, n]` on the CPU in the units of `style`. The same
/// `(n, seed, style)` always gives the same image; the anatomy for a seed does not
/// depend on `n`, and the CT and MR phantoms of one seed share it.
pub fn random_ellipses(n: usize, seed: u64, style: PhantomStyle) -> Tensor {
    PhantomFamily::of(style).sample(n, seed)
}

/// A family of [`random_ellipses`] phantoms: their value style and the
/// anatomy variants drawn on top of the standard ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhantomFamily {
    pub style: PhantomStyle,
    /// Probability in [0, 1] that a head has no scalp, so that its skull borders
    /// the air around it (a −1000 → bone edge, as at the skull base, the sinuses
    /// and in the Shepp–Logan phantom; standard heads have a soft-tissue rim
    /// outside the skull). 0 gives exactly the phantoms of [`random_ellipses`].
    pub bare_skull: f64,
}

impl From<PhantomStyle> for PhantomFamily {
    fn from(style: PhantomStyle) -> Self {
        Self::of(style)
    }
}

impl PhantomFamily {
    /// The standard phantoms of `style` (no extra variants).
    pub fn of(style: PhantomStyle) -> Self {
        Self {
            style,
            bare_skull: 0.0,
        }
    }

    /// The phantom of this family for `seed`: an `f32` tensor `[n, n]` on the CPU
    /// in the units of the style, as [`random_ellipses`] describes.
    pub fn sample(&self, n: usize, seed: u64) -> Tensor {
        let style = self.style;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let regions = match rng.gen_range(0..3) {
            0 => head(&mut rng, self.bare_skull),
            1 => thorax(&mut rng),
            _ => abdomen(&mut rng),
        };
        let values = match style {
            PhantomStyle::Ct => TissueValues::ct(&mut rng),
            PhantomStyle::Mr => TissueValues::mr(&mut rng),
        };
        let ellipses: Vec<Ellipse> = regions
            .iter()
            .map(|r| Ellipse {
                intensity: values.of(r.tissue, r.contrast),
                ..r.shape
            })
            .collect();
        let mut img = paint(&ellipses, values.of(Tissue::Air, 0.0), n, SUPERSAMPLE);
        if style == PhantomStyle::Mr {
            if rng.gen_bool(0.75) {
                apply_bias_field(&mut img, n, &mut rng);
            }
            let max = img.iter().copied().fold(0.0, f64::max);
            if max > 0.0 {
                img.iter_mut().for_each(|v| *v /= max);
            }
        }
        to_tensor(img.into_iter().map(|v| v as f32).collect(), n)
    }
}

fn to_tensor(values: Vec<f32>, n: usize) -> Tensor {
    Tensor::from_slice(&values).reshape([n as i64, n as i64])
}

/// Sub-samples per pixel side in every phantom ([`rasterize`], [`paint`]).
const SUPERSAMPLE: usize = 3;

/// Painter's rasterisation on an `n × n` grid over [−1, 1]²: each of the
/// `ss × ss` sub-samples of a pixel takes the intensity of the last ellipse that
/// contains it (`background` where none does), and the pixel is their mean.
/// Row-major, row 0 at y = +1.
fn paint(ellipses: &[Ellipse], background: f64, n: usize, ss: usize) -> Vec<f64> {
    let m = n * ss;
    let mut img = vec![0f64; n * n];
    let mut line = vec![background; m];
    for r in 0..m {
        line.fill(background);
        let y = 1.0 - (2 * r + 1) as f64 / m as f64;
        for el in ellipses {
            if let Some((lo, hi)) = row_span(el, y, m) {
                line[lo..hi].fill(el.intensity);
            }
        }
        let out = &mut img[(r / ss) * n..(r / ss + 1) * n];
        for (c, v) in line.iter().enumerate() {
            out[c / ss] += v;
        }
    }
    let w = 1.0 / (ss * ss) as f64;
    img.iter_mut().for_each(|v| *v *= w);
    img
}

/// The half-open range of sample columns `k` (x_k = (2k + 1)/m − 1) inside `el`
/// on the horizontal line at height `y`, or `None` if it is empty.
fn row_span(el: &Ellipse, y: f64, m: usize) -> Option<(usize, usize)> {
    // Inside iff A·dx² + B·dx + C ≤ 0 with dx = x − x0 (the ellipse's quadric).
    let (s, c) = el.phi_deg.to_radians().sin_cos();
    let (ia2, ib2) = (1.0 / (el.a * el.a), 1.0 / (el.b * el.b));
    let dy = y - el.y0;
    let qa = c * c * ia2 + s * s * ib2;
    let qb = 2.0 * dy * s * c * (ia2 - ib2);
    let qc = dy * dy * (s * s * ia2 + c * c * ib2) - 1.0;
    let disc = qb * qb - 4.0 * qa * qc;
    if disc < 0.0 {
        return None;
    }
    let root = disc.sqrt();
    let x1 = el.x0 + (-qb - root) / (2.0 * qa);
    let x2 = el.x0 + (-qb + root) / (2.0 * qa);
    let mf = m as f64;
    let lo = (((x1 + 1.0) * mf - 1.0) / 2.0).ceil().max(0.0);
    let hi = ((((x2 + 1.0) * mf - 1.0) / 2.0).floor() + 1.0).min(mf);
    (lo < hi).then_some((lo as usize, hi as usize))
}

/// Multiplies the `n × n` image by a smooth field exp(Σ αₖ cos(π(uₖx + vₖy) + φₖ))
/// of three plane waves with |uₖ|, |vₖ| ≤ 1 (at most one period across the image
/// along each axis) and total amplitude Σ|αₖ| < 0.35.
fn apply_bias_field(img: &mut [f64], n: usize, rng: &mut ChaCha8Rng) {
    let strength = rng.gen_range(0.1..0.35);
    let waves: Vec<[f64; 4]> = (0..3)
        .map(|_| {
            [
                strength / 3.0 * rng.gen_range(-1.0..1.0),
                rng.gen_range(-1.0..1.0),
                rng.gen_range(-1.0..1.0),
                rng.gen_range(0.0..2.0 * PI),
            ]
        })
        .collect();
    let coord = |k: usize| (2.0 * k as f64 + 1.0) / n as f64 - 1.0;
    for row in 0..n {
        let y = -coord(row);
        for col in 0..n {
            let x = coord(col);
            let log_gain: f64 = waves
                .iter()
                .map(|[amp, u, v, phase]| amp * (PI * (u * x + v * y) + phase).cos())
                .sum();
            img[row * n + col] *= log_gain.exp();
        }
    }
}

/// Tissue classes of the random phantoms; their values come from [`TissueValues`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tissue {
    Air,
    Lung,
    Fat,
    Water,
    Muscle,
    GrayMatter,
    WhiteMatter,
    Organ,
    Blood,
    CancellousBone,
    CorticalBone,
}

const TISSUES: usize = 11;

/// One painted ellipse of an anatomy: its geometry (intensity unused), tissue
/// class, and contrast in steps of [`TissueValues::step`] from the class value.
struct Region {
    shape: Ellipse,
    tissue: Tissue,
    contrast: f64,
}

/// Per-phantom values of the tissue classes in one style.
struct TissueValues {
    base: [f64; TISSUES],
    /// Value change per unit of [`Region::contrast`].
    step: f64,
    /// Lower bound of any value.
    floor: f64,
}

impl TissueValues {
    /// CT values in HU, each class drawn from a plausible interval.
    fn ct(rng: &mut ChaCha8Rng) -> Self {
        let blood = if rng.gen_bool(0.4) {
            rng.gen_range(150.0..300.0)
        } else {
            rng.gen_range(35.0..50.0)
        };
        let mut base = [0.0; TISSUES];
        for (tissue, value) in [
            (Tissue::Air, -1000.0),
            (Tissue::Lung, rng.gen_range(-880.0..-780.0)),
            (Tissue::Fat, rng.gen_range(-120.0..-80.0)),
            (Tissue::Water, rng.gen_range(0.0..15.0)),
            (Tissue::Muscle, rng.gen_range(35.0..55.0)),
            (Tissue::GrayMatter, rng.gen_range(35.0..45.0)),
            (Tissue::WhiteMatter, rng.gen_range(20.0..32.0)),
            (Tissue::Organ, rng.gen_range(45.0..65.0)),
            (Tissue::Blood, blood),
            (Tissue::CancellousBone, rng.gen_range(150.0..400.0)),
            (Tissue::CorticalBone, rng.gen_range(700.0..1480.0)),
        ] {
            base[tissue as usize] = value;
        }
        Self {
            base,
            step: 20.0,
            floor: -1000.0,
        }
    }

    /// MR intensities: a T1-, T2- or proton-density-like table, each class
    /// jittered by ±15 %.
    fn mr(rng: &mut ChaCha8Rng) -> Self {
        // Columns: T1, T2, PD. Rows in the order of `Tissue`.
        const TABLE: [[f64; 3]; TISSUES] = [
            [0.0, 0.0, 0.0],    // air
            [0.03, 0.03, 0.05], // lung
            [0.95, 0.75, 0.8],  // fat
            [0.12, 0.95, 0.75], // water, CSF
            [0.35, 0.25, 0.55], // muscle
            [0.45, 0.55, 0.7],  // gray matter
            [0.65, 0.4, 0.6],   // white matter
            [0.5, 0.35, 0.6],   // organ parenchyma
            [0.3, 0.2, 0.5],    // blood
            [0.7, 0.55, 0.65],  // cancellous bone (marrow)
            [0.04, 0.04, 0.06], // cortical bone
        ];
        let weighting = rng.gen_range(0..3);
        let base = TABLE.map(|row| row[weighting] * rng.gen_range(0.85..1.15));
        Self {
            base,
            step: 0.06,
            floor: 0.0,
        }
    }

    fn of(&self, tissue: Tissue, contrast: f64) -> f64 {
        (self.base[tissue as usize] + contrast * self.step).max(self.floor)
    }
}

/// An ellipse with intensity 0 (geometry only).
fn ell(x0: f64, y0: f64, a: f64, b: f64, phi_deg: f64) -> Ellipse {
    e(0.0, a, b, x0, y0, phi_deg)
}

/// `el` with both semi-axes reduced by `d` (a rim of thickness ≈ d).
fn shrink(el: &Ellipse, d: f64) -> Ellipse {
    Ellipse {
        a: el.a - d,
        b: el.b - d,
        ..*el
    }
}

/// An ellipse centred at `(dx, dy)` in the rotated frame of `parent` (offsets
/// in image units from its centre), rotated by `phi_deg` relative to it.
fn at(parent: &Ellipse, dx: f64, dy: f64, a: f64, b: f64, phi_deg: f64) -> Ellipse {
    let (s, c) = parent.phi_deg.to_radians().sin_cos();
    ell(
        parent.x0 + c * dx - s * dy,
        parent.y0 + s * dx + c * dy,
        a,
        b,
        parent.phi_deg + phi_deg,
    )
}

/// `at` for the left–right mirrored pair `(±dx, dy)` with angles `±phi_deg`.
fn mirrored(parent: &Ellipse, dx: f64, dy: f64, a: f64, b: f64, phi_deg: f64) -> [Ellipse; 2] {
    [
        at(parent, dx, dy, a, b, phi_deg),
        at(parent, -dx, dy, a, b, -phi_deg),
    ]
}

/// Largest normalised radius (1 on the boundary) of `parent` over 64 points of
/// the boundary of `child`.
fn reach(child: &Ellipse, parent: &Ellipse) -> f64 {
    let (cs, cc) = child.phi_deg.to_radians().sin_cos();
    let (ps, pc) = parent.phi_deg.to_radians().sin_cos();
    (0..64)
        .map(|k| {
            let (st, ct) = (2.0 * PI * k as f64 / 64.0).sin_cos();
            let (u, v) = (child.a * ct, child.b * st);
            let x = child.x0 + cc * u - cs * v - parent.x0;
            let y = child.y0 + cs * u + cc * v - parent.y0;
            let (pu, pv) = ((x * pc + y * ps) / parent.a, (-x * ps + y * pc) / parent.b);
            (pu * pu + pv * pv).sqrt()
        })
        .fold(0.0, f64::max)
}

/// `child` scaled about its centre (by steps of 5 %) until its boundary stays
/// within 0.97 of `parent`'s normalised radius. Its centre must be inside.
fn fit_inside(child: Ellipse, parent: &Ellipse) -> Ellipse {
    let mut el = child;
    while reach(&el, parent) > 0.97 && el.a > 1e-3 {
        el.a *= 0.95;
        el.b *= 0.95;
    }
    el
}

/// A random ellipse inside `parent`: centre uniform over 0.85 of its area,
/// longer semi-axis in `[min, max]` (less where there is no room), aspect ratio
/// 0.4…1 and any orientation.
fn random_inside(rng: &mut ChaCha8Rng, parent: &Ellipse, min: f64, max: f64) -> Ellipse {
    let r = 0.85 * rng.gen_range(0.0f64..1.0).sqrt();
    let t = rng.gen_range(0.0..2.0 * PI);
    // A disc of radius (1 − r)·min(a, b) around a point at normalised radius r
    // lies inside the parent.
    let room = (1.0 - r) * parent.a.min(parent.b);
    let hi = max.min(room);
    let a = rng.gen_range(min.min(0.5 * hi)..=hi);
    let b = a * rng.gen_range(0.4..=1.0);
    let phi = rng.gen_range(0.0..180.0);
    at(
        parent,
        r * parent.a * t.cos(),
        r * parent.b * t.sin(),
        a,
        b,
        phi,
    )
}

fn region(shape: Ellipse, tissue: Tissue, contrast: f64) -> Region {
    Region {
        shape,
        tissue,
        contrast,
    }
}

/// Axial head: scalp, skull (85 %, with diploë in half of them), CSF rim, brain,
/// white matter, ventricles, 1–4 inner ellipses, 0–3 lesions (masses,
/// hyperdense bleeds, calcifications). Field of view ≈ 250 mm. With probability
/// `bare_skull` there is no scalp and the skull (always present then) is the
/// outline; at 0 no extra random number is drawn, so the standard heads of a seed
/// stay as they were.
fn head(rng: &mut ChaCha8Rng, bare_skull: f64) -> Vec<Region> {
    let mut out = Vec::new();
    let bare = bare_skull > 0.0 && rng.gen_bool(bare_skull);
    let outer = ell(
        rng.gen_range(-0.04..0.04),
        rng.gen_range(-0.04..0.04),
        rng.gen_range(0.6..0.78),
        rng.gen_range(0.76..0.92),
        rng.gen_range(-10.0..10.0),
    );
    let skull = if bare {
        outer
    } else {
        out.push(region(outer, Tissue::Muscle, rng.gen_range(-1.5..0.5)));
        shrink(&outer, rng.gen_range(0.025..0.05))
    };
    let bone = rng.gen_range(0.03..0.06);
    if bare || rng.gen_bool(0.85) {
        out.push(region(skull, Tissue::CorticalBone, 0.0));
        if rng.gen_bool(0.5) {
            out.push(region(
                shrink(&skull, 0.3 * bone),
                Tissue::CancellousBone,
                0.0,
            ));
            out.push(region(
                shrink(&skull, 0.7 * bone),
                Tissue::CorticalBone,
                0.0,
            ));
        }
    }
    let csf = shrink(&skull, bone);
    out.push(region(csf, Tissue::Water, rng.gen_range(-0.5..0.5)));
    let brain = shrink(&csf, rng.gen_range(0.008..0.02));
    out.push(region(brain, Tissue::GrayMatter, rng.gen_range(-0.5..0.5)));
    let wm = mirrored(
        &brain,
        rng.gen_range(0.22..0.32) * brain.a,
        rng.gen_range(-0.1..0.1) * brain.b,
        rng.gen_range(0.22..0.34) * brain.a,
        rng.gen_range(0.45..0.65) * brain.b,
        rng.gen_range(-12.0..12.0),
    );
    let c = rng.gen_range(-0.5..0.5);
    out.extend(wm.map(|s| region(s, Tissue::WhiteMatter, c)));
    if rng.gen_bool(0.9) {
        let v = mirrored(
            &brain,
            rng.gen_range(0.05..0.12),
            rng.gen_range(-0.05..0.25),
            rng.gen_range(0.03..0.07),
            rng.gen_range(0.1..0.2),
            rng.gen_range(5.0..30.0),
        );
        out.extend(v.map(|s| region(s, Tissue::Water, 0.0)));
    }
    for _ in 0..rng.gen_range(1..=4) {
        let tissue = if rng.gen_bool(0.5) {
            Tissue::GrayMatter
        } else {
            Tissue::WhiteMatter
        };
        let s = random_inside(rng, &brain, 0.04, 0.25);
        out.push(region(s, tissue, rng.gen_range(-1.5..1.5)));
    }
    for _ in 0..rng.gen_range(0..=3) {
        let kind = rng.gen_range(0.0..1.0);
        let (s, tissue, c) = if kind < 0.7 {
            let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            let s = random_inside(rng, &brain, 0.012, 0.07);
            (s, Tissue::GrayMatter, sign * rng.gen_range(0.8..2.5))
        } else if kind < 0.9 {
            let s = random_inside(rng, &brain, 0.012, 0.07);
            (s, Tissue::GrayMatter, rng.gen_range(1.5..2.5))
        } else {
            let s = random_inside(rng, &brain, 0.006, 0.02);
            (s, Tissue::CancellousBone, rng.gen_range(-1.0..1.0))
        };
        out.push(region(s, tissue, c));
    }
    out
}

/// Trunk outline shared by thorax and abdomen: subcutaneous fat, muscle wall and
/// the inner cavity (returned, painted as fat). Field of view ≈ 450 mm.
fn trunk(rng: &mut ChaCha8Rng, out: &mut Vec<Region>, a: (f64, f64), b: (f64, f64)) -> Ellipse {
    let outer = ell(
        rng.gen_range(-0.04..0.04),
        rng.gen_range(-0.1..0.02),
        rng.gen_range(a.0..a.1),
        rng.gen_range(b.0..b.1),
        rng.gen_range(-4.0..4.0),
    );
    out.push(region(outer, Tissue::Fat, rng.gen_range(-0.5..0.5)));
    let wall = shrink(&outer, rng.gen_range(0.02..0.12));
    out.push(region(wall, Tissue::Muscle, rng.gen_range(-0.5..0.5)));
    let cavity = shrink(&wall, rng.gen_range(0.03..0.06));
    out.push(region(cavity, Tissue::Fat, rng.gen_range(-0.5..1.5)));
    cavity
}

/// Paraspinal muscles (painted first, call before the organs) and the vertebra
/// at the back of `cavity`; returns the vertebral body.
fn spine_muscles(rng: &mut ChaCha8Rng, out: &mut Vec<Region>, cavity: &Ellipse) -> Ellipse {
    let r = rng.gen_range(0.07..0.1);
    let body = at(
        cavity,
        rng.gen_range(-0.02..0.02),
        -cavity.b + r + rng.gen_range(0.1..0.14),
        r,
        r * rng.gen_range(0.85..1.0),
        rng.gen_range(-5.0..5.0),
    );
    let muscles = mirrored(
        cavity,
        rng.gen_range(0.1..0.14),
        -cavity.b + rng.gen_range(0.07..0.1),
        rng.gen_range(0.07..0.1),
        rng.gen_range(0.06..0.08),
        rng.gen_range(-10.0..10.0),
    );
    let c = rng.gen_range(-0.5..0.5);
    out.extend(muscles.map(|s| region(fit_inside(s, cavity), Tissue::Muscle, c)));
    body
}

/// Paints the vertebral body (cortical shell, cancellous core) and its spinous
/// process, pointing to the back.
fn vertebra(rng: &mut ChaCha8Rng, out: &mut Vec<Region>, body: &Ellipse) {
    let process = at(
        body,
        0.0,
        -body.b - rng.gen_range(0.04..0.06),
        rng.gen_range(0.015..0.025),
        rng.gen_range(0.04..0.06),
        0.0,
    );
    out.push(region(process, Tissue::CorticalBone, 0.0));
    out.push(region(*body, Tissue::CorticalBone, 0.0));
    out.push(region(
        shrink(body, rng.gen_range(0.008..0.015)),
        Tissue::CancellousBone,
        rng.gen_range(-1.0..1.0),
    ));
}

/// Axial thorax: trunk, lungs with vessels and 0–3 nodules, heart (with an
/// enhanced chamber in half), descending aorta, spine, 6–12 rib sections and
/// 0–2 soft-tissue masses.
fn thorax(rng: &mut ChaCha8Rng) -> Vec<Region> {
    let mut out = Vec::new();
    let cavity = trunk(rng, &mut out, (0.78, 0.95), (0.5, 0.68));
    let body = spine_muscles(rng, &mut out, &cavity);
    let lungs = mirrored(
        &cavity,
        rng.gen_range(0.42..0.5) * cavity.a,
        rng.gen_range(-0.05..0.1) * cavity.b,
        rng.gen_range(0.34..0.44) * cavity.a,
        rng.gen_range(0.58..0.75) * cavity.b,
        rng.gen_range(-10.0..10.0),
    )
    .map(|s| fit_inside(s, &cavity));
    let c = rng.gen_range(-1.0..1.0);
    out.extend(lungs.iter().map(|s| region(*s, Tissue::Lung, c)));
    let heart = fit_inside(
        at(
            &cavity,
            rng.gen_range(-0.02..0.12),
            rng.gen_range(0.0..0.2) * cavity.b,
            rng.gen_range(0.18..0.26),
            rng.gen_range(0.14..0.2),
            rng.gen_range(15.0..40.0),
        ),
        &cavity,
    );
    out.push(region(heart, Tissue::Muscle, rng.gen_range(-0.5..1.0)));
    if rng.gen_bool(0.5) {
        let chamber = random_inside(rng, &heart, 0.04, 0.1);
        out.push(region(chamber, Tissue::Blood, 0.0));
    }
    let r = rng.gen_range(0.035..0.05);
    let aorta = at(
        &body,
        rng.gen_range(0.08..0.12),
        body.b + r * 0.5,
        r,
        r,
        0.0,
    );
    out.push(region(aorta, Tissue::Blood, 0.0));
    vertebra(rng, &mut out, &body);
    let offset = rng.gen_range(0.005..0.02);
    let (ra, rb) = (cavity.a + offset, cavity.b + offset);
    for _ in 0..rng.gen_range(6..=12) {
        let t: f64 = rng.gen_range(0.0..2.0 * PI);
        let rib = at(
            &cavity,
            ra * t.cos(),
            rb * t.sin(),
            rng.gen_range(0.015..0.03),
            rng.gen_range(0.01..0.018),
            (rb * t.cos()).atan2(-ra * t.sin()).to_degrees(),
        );
        out.push(region(rib, Tissue::CorticalBone, 0.0));
    }
    for lung in &lungs {
        for _ in 0..rng.gen_range(3..=10) {
            let vessel = random_inside(rng, lung, 0.004, 0.014);
            out.push(region(vessel, Tissue::Blood, 0.0));
        }
    }
    for _ in 0..rng.gen_range(0..=3) {
        let lung = &lungs[rng.gen_range(0..2)];
        let nodule = random_inside(rng, lung, 0.01, 0.06);
        out.push(region(nodule, Tissue::Muscle, rng.gen_range(-1.0..1.0)));
    }
    for _ in 0..rng.gen_range(0..=2) {
        let mass = random_inside(rng, &cavity, 0.03, 0.1);
        out.push(region(mass, Tissue::Organ, rng.gen_range(-2.0..2.0)));
    }
    out
}

/// Axial upper abdomen: trunk, liver (with 0–3 lesions), spleen, kidneys, aorta,
/// vena cava, 3–8 bowel loops (gas, fluid or wall), 0–2 masses and the spine.
fn abdomen(rng: &mut ChaCha8Rng) -> Vec<Region> {
    let mut out = Vec::new();
    let cavity = trunk(rng, &mut out, (0.72, 0.95), (0.5, 0.72));
    let body = spine_muscles(rng, &mut out, &cavity);
    for _ in 0..rng.gen_range(3..=8) {
        let loop_ = random_inside(rng, &cavity, 0.03, 0.1);
        let kind = rng.gen_range(0.0..1.0);
        if kind < 0.35 {
            out.push(region(loop_, Tissue::Muscle, rng.gen_range(-1.0..1.0)));
            let gas = shrink(&loop_, rng.gen_range(0.004f64..0.01).min(0.5 * loop_.b));
            out.push(region(gas, Tissue::Air, 0.0));
        } else if kind < 0.7 {
            out.push(region(loop_, Tissue::Water, rng.gen_range(0.0..1.5)));
        } else {
            out.push(region(loop_, Tissue::Muscle, rng.gen_range(-1.0..1.0)));
        }
    }
    let liver = rng.gen_bool(0.9).then(|| {
        fit_inside(
            at(
                &cavity,
                -rng.gen_range(0.35..0.6) * cavity.a,
                rng.gen_range(-0.1..0.3) * cavity.b,
                rng.gen_range(0.28..0.4),
                rng.gen_range(0.25..0.38),
                rng.gen_range(-20.0..20.0),
            ),
            &cavity,
        )
    });
    if let Some(liver) = &liver {
        out.push(region(*liver, Tissue::Organ, rng.gen_range(-0.3..0.3)));
    }
    if rng.gen_bool(0.7) {
        let spleen = at(
            &cavity,
            rng.gen_range(0.45..0.65) * cavity.a,
            rng.gen_range(-0.4..-0.1) * cavity.b,
            rng.gen_range(0.08..0.14),
            rng.gen_range(0.12..0.2),
            rng.gen_range(-40.0..-10.0),
        );
        out.push(region(
            fit_inside(spleen, &cavity),
            Tissue::Organ,
            rng.gen_range(-0.5..0.2),
        ));
    }
    if rng.gen_bool(0.85) {
        let kidneys = mirrored(
            &body,
            rng.gen_range(0.2..0.28),
            rng.gen_range(-0.02..0.06),
            rng.gen_range(0.06..0.09),
            rng.gen_range(0.09..0.13),
            rng.gen_range(10.0..30.0),
        );
        let c = rng.gen_range(-0.8..2.5);
        out.extend(kidneys.map(|s| region(fit_inside(s, &cavity), Tissue::Organ, c)));
    }
    let r = rng.gen_range(0.03..0.045);
    let aorta = at(
        &body,
        rng.gen_range(0.0..0.06),
        body.b + r + 0.005,
        r,
        r,
        0.0,
    );
    out.push(region(aorta, Tissue::Blood, 0.0));
    let cava = at(
        &body,
        -rng.gen_range(0.08..0.12),
        body.b + r,
        rng.gen_range(0.03..0.045),
        rng.gen_range(0.02..0.03),
        rng.gen_range(-20.0..20.0),
    );
    out.push(region(cava, Tissue::Blood, rng.gen_range(-1.0..0.0)));
    if let Some(liver) = &liver {
        for _ in 0..rng.gen_range(0..=3) {
            let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            let lesion = random_inside(rng, liver, 0.012, 0.07);
            out.push(region(
                lesion,
                Tissue::Organ,
                sign * rng.gen_range(1.0..3.0),
            ));
        }
    }
    for _ in 0..rng.gen_range(0..=2) {
        let mass = random_inside(rng, &cavity, 0.03, 0.1);
        out.push(region(mass, Tissue::Organ, rng.gen_range(-2.0..2.0)));
    }
    vertebra(rng, &mut out, &body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn shepp_logan_values() {
        let p = shepp_logan(256);
        assert_eq!(p.size(), [256, 256]);
        let v = |r: i64, c: i64| p.double_value(&[r, c]);
        assert_eq!(v(0, 0), 0.0); // outside the skull
        assert!((v(128, 128) - 0.2).abs() < 1e-6); // brain (between the small ellipses)
        assert!((v(128, 41) - 1.0).abs() < 1e-6); // skull at the left edge
        assert!((p.max().double_value(&[]) - 1.0).abs() < 1e-6);
        assert!(p.min().double_value(&[]) > -1e-6); // 1 − 0.8 − 0.2 rounds to −6e-17
    }

    #[test]
    fn shepp_logan_hu_values() {
        let p = shepp_logan_hu(256);
        assert_eq!(p.size(), [256, 256]);
        assert_eq!(p.kind(), Kind::Float);
        let v = |r: i64, c: i64| p.double_value(&[r, c]);
        assert_eq!(v(0, 0), -1000.0); // air
        assert_eq!(v(128, 128), 20.0); // brain
        assert_eq!(v(128, 41), 1000.0); // skull
        assert_eq!(v(128, 156), 0.0); // right ventricle (x = 0.22)
        assert_eq!(v(83, 128), 30.0); // feature at (0, 0.35)
        assert_eq!(p.max().double_value(&[]), 1000.0);
        assert_eq!(p.min().double_value(&[]), -1000.0);
    }

    #[test]
    fn hu_mu_conversions() {
        let hu = Tensor::from_slice(&[-1000.0f64, 0.0, 1000.0, 40.0]);
        let mu = hu_to_mu(&hu, 0.02);
        let expect = [0.0, 0.02, 0.04, 0.0208];
        for (k, want) in expect.iter().enumerate() {
            assert!((mu.double_value(&[k as i64]) - want).abs() < 1e-15);
        }
        let back = mu_to_hu(&mu, 0.02);
        assert!((back - hu).abs().max().double_value(&[]) < 1e-10);
    }

    #[test]
    fn row_span_matches_pointwise_test() {
        // With one sample per pixel, painting one ellipse marks exactly the pixels
        // that `rasterize` (a per-pixel inside test) marks.
        for el in [
            e(1.0, 0.5, 0.2, 0.1, -0.3, 30.0),
            e(1.0, 0.07, 0.3, -0.6, 0.4, -75.0),
            e(1.0, 0.9, 0.9, 0.0, 0.0, 0.0),
        ] {
            let painted = paint(&[el], 0.0, 97, 1);
            let reference = rasterize(&[el], 97, 1);
            let differ = painted
                .iter()
                .zip(&reference)
                .filter(|(p, r)| **p != **r as f64)
                .count();
            assert_eq!(differ, 0, "{el:?}");
        }
    }

    #[test]
    fn shepp_logan_pixels_are_area_means() {
        let n = 128;
        let pixel_area = (2.0 / n as f64).powi(2);
        let el = e(1.0, 0.5, 0.2, 0.1, -0.3, 30.0);
        let area: f64 = rasterize(&[el], n, 3)
            .iter()
            .map(|&v| f64::from(v))
            .sum::<f64>()
            * pixel_area;
        assert!((area / (PI * 0.5 * 0.2) - 1.0).abs() < 2e-3, "area {area}");
        // The skull's edge pixels lie between air and bone; the brain stays 20 HU.
        let hu: Vec<f32> = Vec::try_from(&shepp_logan_hu(n).flatten(0, -1)).unwrap();
        let partial = hu.iter().filter(|&&v| v > -999.0 && v < 20.0).count();
        assert!(partial > 100, "{partial} partial-volume pixels");
        assert_eq!(hu[64 * n + 64], 20.0);
    }

    #[test]
    fn paint_is_area_weighted_and_ordered() {
        let n = 128;
        let pixel_area = (2.0 / n as f64).powi(2);
        let el = e(1.0, 0.5, 0.2, 0.1, -0.3, 30.0);
        let area: f64 = paint(&[el], 0.0, n, 3).iter().sum::<f64>() * pixel_area;
        let exact = PI * 0.5 * 0.2;
        assert!((area / exact - 1.0).abs() < 2e-3, "{area} vs {exact}");
        // Later ellipses replace earlier ones; partial pixels mix with the background.
        let big = e(5.0, 0.8, 0.8, 0.0, 0.0, 0.0);
        let small = e(2.0, 0.2, 0.2, 0.0, 0.0, 0.0);
        let img = paint(&[big, small], -1.0, n, 3);
        assert_eq!(img[64 * n + 64], 2.0);
        assert_eq!(img[64 * n + 20], 5.0);
        assert_eq!(img[0], -1.0);
        let edge = img[64 * n..65 * n]
            .iter()
            .filter(|v| **v > -1.0 && **v < 5.0);
        assert!(edge.count() >= 2);
    }

    fn stats(img: &Tensor) -> (f64, f64, Vec<f64>) {
        let v: Vec<f64> = Vec::<f32>::try_from(img.flatten(0, -1))
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max, v)
    }

    #[test]
    fn random_ct_phantoms_are_plausible() {
        let n = 64;
        let mut with_bone = 0;
        let mut with_lung = 0;
        for seed in 0..24 {
            let p = random_ellipses(n, seed, PhantomStyle::Ct);
            assert_eq!(p.size(), [n as i64, n as i64]);
            assert_eq!(p.kind(), Kind::Float);
            let (min, max, v) = stats(&p);
            assert_eq!(min, -1000.0, "seed {seed}");
            assert!(max <= 1500.0, "seed {seed}: max {max}");
            for k in [0, n - 1, n * (n - 1), n * n - 1] {
                assert_eq!(v[k], -1000.0, "seed {seed}: corner");
            }
            let frac = |lo: f64, hi: f64| {
                v.iter().filter(|x| **x >= lo && **x <= hi).count() as f64 / v.len() as f64
            };
            let body = frac(-990.0, 2000.0);
            assert!((0.25..0.75).contains(&body), "seed {seed}: body {body}");
            assert!(
                frac(-150.0, 100.0) > 0.15,
                "seed {seed}: too little soft tissue"
            );
            with_bone += usize::from(max > 650.0);
            with_lung += usize::from(frac(-900.0, -700.0) > 0.05);
        }
        assert!(with_bone >= 20, "{with_bone} of 24 with bone");
        assert!(
            (3..=14).contains(&with_lung),
            "{with_lung} of 24 with lungs"
        );
    }

    #[test]
    fn random_mr_phantoms_are_normalised() {
        for seed in 0..12 {
            let p = random_ellipses(48, seed, PhantomStyle::Mr);
            let (min, max, v) = stats(&p);
            assert_eq!(min, 0.0, "seed {seed}");
            assert_eq!(max, 1.0, "seed {seed}");
            assert_eq!(v[0], 0.0);
            let tissue = v.iter().filter(|x| **x > 0.02).count() as f64 / v.len() as f64;
            assert!((0.2..0.85).contains(&tissue), "seed {seed}: {tissue}");
        }
    }

    /// Median value of the body-outline pixels (above −500 HU with a 4-neighbour
    /// of pure air): partial-volume mixes of air and whatever forms the outline.
    fn outline_median(img: &Tensor, n: usize) -> f64 {
        let v = Vec::<f32>::try_from(img.flatten(0, -1)).unwrap();
        let mut edge: Vec<f64> = (1..n - 1)
            .flat_map(|r| (1..n - 1).map(move |c| (r, c)))
            .filter(|&(r, c)| {
                v[r * n + c] > -500.0
                    && [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
                        .iter()
                        .any(|&(i, j)| v[i * n + j] <= -999.0)
            })
            .map(|(r, c)| f64::from(v[r * n + c]))
            .collect();
        edge.sort_by(f64::total_cmp);
        edge[edge.len() / 2]
    }

    #[test]
    fn bare_skull_heads_have_bone_against_air() {
        let n = 128;
        let bare = PhantomFamily {
            style: PhantomStyle::Ct,
            bare_skull: 1.0,
        };
        let mut heads = 0;
        for seed in 0..12 {
            let standard = random_ellipses(n, seed, PhantomStyle::Ct);
            let b = bare.sample(n, seed);
            let is_head = ChaCha8Rng::seed_from_u64(seed).gen_range(0..3) == 0;
            if !is_head {
                // Thorax and abdomen do not change.
                assert!(b.equal(&standard), "seed {seed}");
                continue;
            }
            heads += 1;
            let (with_scalp, without) = (outline_median(&standard, n), outline_median(&b, n));
            assert!(
                with_scalp < 60.0,
                "seed {seed}: scalp outline {with_scalp} HU"
            );
            assert!(without > 150.0, "seed {seed}: bare outline {without} HU");
        }
        assert!(heads >= 3, "{heads} heads in 12 seeds");
        // Probability 0 is the standard family, seed for seed.
        let none = PhantomFamily::of(PhantomStyle::Ct);
        assert!(none
            .sample(64, 3)
            .equal(&random_ellipses(64, 3, PhantomStyle::Ct)));
    }

    #[test]
    fn random_phantoms_are_seeded() {
        let a = random_ellipses(40, 7, PhantomStyle::Ct);
        assert!(a.equal(&random_ellipses(40, 7, PhantomStyle::Ct)));
        assert!(!a.equal(&random_ellipses(40, 8, PhantomStyle::Ct)));
        let m = random_ellipses(40, 7, PhantomStyle::Mr);
        assert!(m.equal(&random_ellipses(40, 7, PhantomStyle::Mr)));
        // The anatomy does not depend on the size: a 3× smaller image is the 3 × 3
        // block mean of the larger one up to the sub-sample grid.
        let big = random_ellipses(120, 7, PhantomStyle::Ct);
        let pooled =
            big.view([1, 1, 120, 120])
                .avg_pool2d([3, 3], [3, 3], [0, 0], false, true, None::<i64>);
        let diff = (pooled.view([40, 40]) - &a)
            .abs()
            .mean(Kind::Double)
            .double_value(&[]);
        assert!(diff < 15.0, "mean |difference| {diff} HU");
    }
}
