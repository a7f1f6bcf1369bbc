//! Ray-driven projector: each ray is sampled every half pixel with bilinear
//! interpolation (`grid_sampler_2d`, zero outside the image) and the samples are
//! summed times the step in mm. The adjoint is the exact transpose of that
//! computation, obtained from the autograd backward of the same sampling.
//!
//! Without gradient tracking both run as products with the same computation
//! written out as a sparse matrix ([`super::matrix`]), built on first use, unless
//! it would exceed [`MATRIX_MAX_NNZ`] entries. Operators of the same geometry on
//! the same device share that matrix while any of them lives ([`shared_matrices`]).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use tch::{Device, Kind, Tensor};

use super::fbp::{filtered_backprojection, FbpFilter};
use super::geometry::{BeamGeometry, CtGeometry};
use super::matrix::RadonMatrix;
use crate::op::{LinearOperator, Operator};

/// Ray samples per pixel side along each ray (step = pixel spacing / 2).
const SAMPLES_PER_PIXEL: f64 = 2.0;

/// Upper bound on the ray samples computed at once: one chunk of views holds a
/// 32 MiB grid and 16 MiB of samples per image channel (`B · C` of them) in `f32`.
const SAMPLES_PER_CHUNK: i64 = 1 << 22;

/// Largest sparse matrix built (nonzero entries): 2²⁷ entries take 2 GiB in `f32`
/// with the transpose, and up to half as much again while they are built (e.g. 7.0 M entries
/// for 180 views at 128², 26 M at 256², about 105 M at 512², 1.2 M for 30 views at
/// 128²). Larger geometries keep sampling the rays, several times slower.
const MATRIX_MAX_NNZ: usize = 1 << 27;

/// The projector as a sparse matrix in `f32` and in `f64`, each built on first use
/// (`None`: too large, see [`MATRIX_MAX_NNZ`]). The mutex makes the matrix
/// shareable between threads (a `Tensor` is `Send` but not `Sync`).
type Matrices = [OnceLock<Option<Mutex<RadonMatrix>>>; 2];

/// The matrices of every geometry and device some [`Radon`] still uses.
static SHARED: Mutex<Vec<(CtGeometry, Device, Weak<Matrices>)>> = Mutex::new(Vec::new());

/// The matrices of `geometry` on `device`: those of a live operator of the same
/// geometry, else new (empty) ones. So the operators that a batch runner builds
/// per slice batch of one acquisition hold one matrix between them, not one each
/// (up to 2 GiB apiece); it is freed with the last of them.
fn shared_matrices(geometry: &CtGeometry, device: Device) -> Arc<Matrices> {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    shared.retain(|(_, _, m)| m.strong_count() > 0);
    let live = shared
        .iter()
        .filter(|(g, d, _)| g == geometry && *d == device)
        .find_map(|(_, _, m)| m.upgrade());
    live.unwrap_or_else(|| {
        let matrices = Arc::new(Matrices::default());
        shared.push((geometry.clone(), device, Arc::downgrade(&matrices)));
        matrices
    })
}

/// `grid_sampler_2d` mode arguments: bilinear interpolation, zero padding.
const BILINEAR: i64 = 0;
const ZEROS: i64 = 0;

/// The CT forward projection (Radon or fan-beam X-ray transform) of a
/// [`CtGeometry`], with its exact adjoint and filtered backprojection.
///
/// - image `x`: `[B, C, H, W]` (`C = 1` for CT; each channel is projected on its
///   own), `f32` or `f64`, linear attenuation μ in 1/mm, `H = rows`, `W = cols`;
/// - sinogram `y`: `[B, C, n_views, n_detectors]`, line integrals `∫ μ dl` along
///   the rays with `dl` in mm (dimensionless), row `v` for view `angles_deg[v]`,
///   column `k` for detector element `k`.
///
/// Discretisation: `μ` is the bilinear interpolant of the pixel values (zero
/// beyond the outer pixel centres' half-pixel border); each ray is sampled every
/// half pixel over the full chord of the image's circumscribed circle. The forward
/// model is differentiable (autograd); `adjoint` is its exact transpose
/// (dot-product test at float precision) and works with or without gradient
/// tracking.
#[derive(Debug)]
pub struct Radon {
    geometry: CtGeometry,
    device: Device,
    /// `[n_views, n_detectors, 4]` `f64` on `device`: for each ray, its point closest
    /// to the isocentre `(gx, gy)` and its direction per mm of path `(dgx, dgy)`,
    /// in `grid_sampler_2d` coordinates (`gx` from −1 at the left image edge to +1
    /// at the right edge, `gy` from −1 at the top edge to +1 at the bottom edge).
    rays: Tensor,
    /// Ray samples `K` per ray, at `(j − (K − 1) / 2) · step_mm` from the closest point.
    n_samples: i64,
    /// Distance between ray samples, mm.
    step_mm: f64,
    /// The projector as sparse matrices, shared with the other operators of the
    /// same geometry on the same device.
    matrices: Arc<Matrices>,
}

impl Radon {
    /// Builds the projector of `geometry`, its ray table stored on `device`
    /// (`n_views · n_detectors · 4` doubles; the sampling grids are generated per
    /// chunk of views at each call).
    ///
    /// # Panics
    /// If [`CtGeometry::validate`] fails.
    pub fn new(geometry: &CtGeometry, device: Device) -> Radon {
        if let Err(e) = geometry.validate() {
            panic!("Radon: {e}");
        }
        let step_mm = geometry.pixel_spacing_mm / SAMPLES_PER_PIXEL;
        let half = (geometry.image_radius_mm() / step_mm).ceil() as i64;
        let table = ray_table(geometry);
        let rays = Tensor::from_slice(&table)
            .reshape([geometry.n_views() as i64, geometry.n_detectors as i64, 4])
            .to_device(device);
        Radon {
            geometry: geometry.clone(),
            device,
            rays,
            n_samples: 2 * half + 1,
            step_mm,
            matrices: shared_matrices(geometry, device),
        }
    }

    /// The acquisition geometry.
    pub fn geometry(&self) -> &CtGeometry {
        &self.geometry
    }

    /// The device the operator was built on (inputs must live there).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The same operator on `device`.
    pub fn to_device(&self, device: Device) -> Radon {
        Radon {
            geometry: self.geometry.clone(),
            device,
            rays: self.rays().to_device(device),
            n_samples: self.n_samples,
            step_mm: self.step_mm,
            matrices: shared_matrices(&self.geometry, device),
        }
    }

    /// Filtered backprojection of `sinogram` `[B, C, n_views, n_detectors]` into an
    /// image `[B, C, rows, cols]` (μ in 1/mm), on the sinogram's device, in its
    /// precision. See [`FbpFilter`] and the [module docs](super) for the
    /// algorithm, its scaling and its assumptions on the view angles.
    pub fn fbp(&self, sinogram: &Tensor, filter: FbpFilter) -> Tensor {
        self.check_sinogram(sinogram);
        filtered_backprojection(&self.geometry, sinogram, filter)
    }

    fn rays(&self) -> Tensor {
        self.rays.shallow_clone()
    }

    /// `(first view, number of views)` of each chunk.
    fn chunks(&self) -> Vec<(i64, i64)> {
        let views = self.geometry.n_views() as i64;
        let per_view = self.n_samples * self.geometry.n_detectors as i64;
        let len = (SAMPLES_PER_CHUNK / per_view).max(1);
        (0..views)
            .step_by(len as usize)
            .map(|v0| (v0, len.min(views - v0)))
            .collect()
    }

    /// Sampling grid `[len, n_detectors, K, 2]` of views `v0 .. v0 + len`: one batch
    /// element per view, since libtorch's CPU kernels (the backward in particular)
    /// run the batch elements of `grid_sampler_2d` in parallel.
    fn grid(&self, rays: &Tensor, v0: i64, len: i64, kind: Kind) -> Tensor {
        let chunk = rays.narrow(0, v0, len).to_kind(kind).unsqueeze(2);
        let origin = chunk.narrow(3, 0, 2);
        let direction = chunk.narrow(3, 2, 2);
        let centre = (self.n_samples - 1) as f64 / 2.0;
        let t = ((Tensor::arange(self.n_samples, (kind, rays.device())) - centre) * self.step_mm)
            .reshape([1, 1, self.n_samples, 1]);
        origin.addcmul(&t, &direction)
    }

    /// The sparse matrix of the projector in precision `kind` (f32 or f64), built on
    /// first use; `None` when it would be too large.
    fn matrix(&self, kind: Kind) -> Option<MutexGuard<'_, RadonMatrix>> {
        let slot = &self.matrices[usize::from(kind == Kind::Double)];
        slot.get_or_init(|| {
            let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
            self.build_matrix(kind, (MATRIX_MAX_NNZ, threads))
                .map(Mutex::new)
        })
        .as_ref()
        .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The sparse matrix in precision `kind` on the operator's device, unless it
    /// would have more than `max_nnz` entries, built on up to `threads` threads.
    fn build_matrix(&self, kind: Kind, (max_nnz, threads): (usize, usize)) -> Option<RadonMatrix> {
        let g = &self.geometry;
        RadonMatrix::build(
            &ray_table(g),
            g.n_detectors,
            (self.n_samples as usize, self.step_mm),
            (g.rows, g.cols),
            (kind, self.device),
            (max_nnz, threads),
        )
    }

    /// `(B, C)` of an image batch, checked against the geometry.
    fn check_image(&self, x: &Tensor) -> (i64, i64) {
        let size = x.size();
        let (h, w) = (self.geometry.rows as i64, self.geometry.cols as i64);
        assert!(
            size.len() == 4 && size[2] == h && size[3] == w,
            "Radon: expected an image [B, C, {h}, {w}], got {size:?}"
        );
        assert_real_float("image", x.kind());
        (size[0], size[1])
    }

    /// `(B, C)` of a sinogram batch, checked against the geometry.
    fn check_sinogram(&self, y: &Tensor) -> (i64, i64) {
        let size = y.size();
        let (v, d) = (
            self.geometry.n_views() as i64,
            self.geometry.n_detectors as i64,
        );
        assert!(
            size.len() == 4 && size[2] == v && size[3] == d,
            "Radon: expected a sinogram [B, C, {v}, {d}], got {size:?}"
        );
        assert_real_float("sinogram", y.kind());
        (size[0], size[1])
    }
}

fn assert_real_float(what: &str, kind: Kind) {
    assert!(
        matches!(kind, Kind::Float | Kind::Double),
        "Radon: the {what} must be f32 or f64, got {kind:?}"
    );
}

impl Operator for Radon {
    /// `[B, C, rows, cols]` → `[B, C, n_views, n_detectors]`: line integrals in mm.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c) = self.check_image(x);
        let (h, w) = (self.geometry.rows as i64, self.geometry.cols as i64);
        let (views, dets) = (
            self.geometry.n_views() as i64,
            self.geometry.n_detectors as i64,
        );
        if !x.requires_grad() {
            if let Some(m) = self.matrix(x.kind()) {
                return m.forward(x).reshape([b, c, views, dets]);
            }
        }
        // Batch and channels become channels of one grid-sampler input, which each
        // view of a chunk (a batch element of the grid) reads without a copy.
        let input = x.reshape([1, b * c, h, w]);
        let rays = self.rays();
        let parts: Vec<Tensor> = self
            .chunks()
            .into_iter()
            .map(|(v0, len)| {
                let grid = self.grid(&rays, v0, len, x.kind());
                // [len, B·C, dets, K] → [B·C, len, dets]
                (input
                    .expand([len, b * c, h, w], false)
                    .grid_sampler_2d(&grid, BILINEAR, ZEROS, false)
                    .sum_dim_intlist(-1, false, x.kind())
                    * self.step_mm)
                    .permute([1, 0, 2])
            })
            .collect();
        Tensor::cat(&parts, 1).reshape([b, c, views, dets])
    }

    /// Data terms take their gradients through the sparse adjoint, not through
    /// the autograd of the ray sampling (several times slower on a CPU).
    fn gradient_by_adjoint(&self) -> Option<&dyn LinearOperator> {
        Some(self)
    }
}

impl LinearOperator for Radon {
    /// `[B, C, n_views, n_detectors]` → `[B, C, rows, cols]`: the transpose of
    /// [`Operator::forward`] (ray-driven backprojection with bilinear splatting).
    /// Differentiable with respect to `y` when `y` requires grad.
    fn adjoint(&self, y: &Tensor) -> Tensor {
        let (b, c) = self.check_sinogram(y);
        let (h, w) = (self.geometry.rows as i64, self.geometry.cols as i64);
        let dets = self.geometry.n_detectors as i64;
        let kind = y.kind();
        if !y.requires_grad() {
            if let Some(m) = self.matrix(kind) {
                return m.adjoint(y).reshape([b, c, h, w]);
            }
        }
        // [len, B·C, dets, 1] for the views v0 .. v0 + len.
        let values = y.reshape([b * c, -1, dets]) * self.step_mm;
        let weights =
            |v0: i64, len: i64| values.narrow(1, v0, len).permute([1, 0, 2]).unsqueeze(-1);
        let create_graph = y.requires_grad();
        let rays = self.rays();
        // The transpose of the bilinear sampling is its gradient with respect to the
        // sampled image: ∂/∂x Σ (A_chunk x) · y_chunk = A_chunkᵀ y_chunk.
        let image = tch::with_grad(|| {
            self.chunks()
                .into_iter()
                .map(|(v0, len)| {
                    let x0 =
                        Tensor::zeros([1, b * c, h, w], (kind, y.device())).set_requires_grad(true);
                    let grid = self.grid(&rays, v0, len, kind);
                    let samples = x0
                        .expand([len, b * c, h, w], false)
                        .grid_sampler_2d(&grid, BILINEAR, ZEROS, false);
                    let loss = (samples * weights(v0, len)).sum(kind);
                    Tensor::run_backward(&[loss], &[&x0], false, create_graph)
                        .pop()
                        .expect("one gradient per input")
                })
                .reduce(|acc, g| acc + g)
                .expect("at least one view")
        });
        image.reshape([b, c, h, w])
    }
}

/// Ray table of the geometry, row-major `[n_views, n_detectors, 4]`: closest point
/// to the isocentre and direction per mm, in `grid_sampler_2d` coordinates.
fn ray_table(g: &CtGeometry) -> Vec<f64> {
    // mm (x right, y up) → grid_sampler coordinates (gx right, gy down).
    let sx = 2.0 / (g.cols as f64 * g.pixel_spacing_mm);
    let sy = -2.0 / (g.rows as f64 * g.pixel_spacing_mm);
    let centre = g.detector_center();
    let mut table = Vec::with_capacity(g.n_views() * g.n_detectors * 4);
    for &angle in &g.angles_deg {
        let (sin, cos) = angle.to_radians().sin_cos();
        let e_s = [cos, sin];
        let e_r = [-sin, cos];
        for k in 0..g.n_detectors {
            let u = (k as f64 - centre) * g.detector_spacing;
            let (point, dir) = match g.beam {
                BeamGeometry::Parallel => ([u * e_s[0], u * e_s[1]], e_r),
                BeamGeometry::FanEquiangular {
                    source_to_isocenter_mm,
                    ..
                } => fan_ray(source_to_isocenter_mm, u.to_radians(), e_s, e_r),
                BeamGeometry::FanFlat {
                    source_to_isocenter_mm,
                    source_to_detector_mm,
                } => fan_ray(
                    source_to_isocenter_mm,
                    (u / source_to_detector_mm).atan(),
                    e_s,
                    e_r,
                ),
            };
            table.extend_from_slice(&[point[0] * sx, point[1] * sy, dir[0] * sx, dir[1] * sy]);
        }
    }
    table
}

/// The fan ray at fan angle `gamma` (rad, positive toward `e_s`) from the source
/// `−dso · e_r`: its point closest to the isocentre and its unit direction (mm).
fn fan_ray(dso: f64, gamma: f64, e_s: [f64; 2], e_r: [f64; 2]) -> ([f64; 2], [f64; 2]) {
    let (sin_g, cos_g) = gamma.sin_cos();
    let dir = [
        cos_g * e_r[0] + sin_g * e_s[0],
        cos_g * e_r[1] + sin_g * e_s[1],
    ];
    let source = [-dso * e_r[0], -dso * e_r[1]];
    let along = -(source[0] * dir[0] + source[1] * dir[1]);
    (
        [source[0] + along * dir[0], source[1] + along * dir[1]],
        dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct::uniform_angles;

    /// The matrix is built only within its size limit (above it the projector
    /// keeps sampling the rays; `tests/ct.rs` checks that both agree).
    #[test]
    fn matrix_is_refused_above_its_size_limit() {
        let op = Radon::new(
            &CtGeometry::parallel(16, uniform_angles(8, 180.0)),
            Device::Cpu,
        );
        let nnz = op
            .build_matrix(Kind::Float, (usize::MAX, 1))
            .expect("no limit")
            .nnz();
        // 8 views × 16 rays, each crossing at most 16 columns of two or three pixels.
        assert!(nnz > 8 * 16 * 8 && nnz < 8 * 16 * 16 * 3, "{nnz} entries");
        for threads in [1, 3] {
            assert!(op
                .build_matrix(Kind::Float, (nnz as usize, threads))
                .is_some());
            assert!(op
                .build_matrix(Kind::Float, (nnz as usize - 1, threads))
                .is_none());
        }
    }

    /// The matrix is the same whatever the number of threads that build it (blocks
    /// of views, one of them shorter: 7 views on 1, 2 and 3 threads).
    #[test]
    fn matrix_does_not_depend_on_the_threads_building_it() {
        let op = Radon::new(
            &CtGeometry::parallel(20, uniform_angles(7, 180.0)),
            Device::Cpu,
        );
        let x = Tensor::rand([2, 1, 20, 20], (Kind::Double, Device::Cpu));
        let y = Tensor::rand(
            [2, 1, 7, op.geometry().n_detectors as i64],
            (Kind::Double, Device::Cpu),
        );
        let build = |threads| {
            op.build_matrix(Kind::Double, (usize::MAX, threads))
                .unwrap()
        };
        let one = build(1);
        for threads in [2, 3] {
            let m = build(threads);
            assert_eq!(m.nnz(), one.nnz());
            assert!(
                m.forward(&x).equal(&one.forward(&x)),
                "forward, {threads} threads"
            );
            assert!(
                m.adjoint(&y).equal(&one.adjoint(&y)),
                "adjoint, {threads} threads"
            );
        }
    }

    /// Operators of one geometry on one device share their matrices while any of
    /// them lives (a geometry no other test uses, as tests run in parallel).
    #[test]
    fn operators_of_one_geometry_share_the_matrix() {
        let geometry = CtGeometry::parallel(12, uniform_angles(5, 180.0));
        let a = Radon::new(&geometry, Device::Cpu);
        let b = Radon::new(&geometry, Device::Cpu);
        assert!(Arc::ptr_eq(&a.matrices, &b.matrices));
        let _ = a.forward(&Tensor::ones([1, 1, 12, 12], (Kind::Float, Device::Cpu)));
        assert!(b.matrices[0].get().is_some(), "b holds the matrix a built");
        let other = Radon::new(
            &CtGeometry::parallel(12, uniform_angles(6, 180.0)),
            Device::Cpu,
        );
        assert!(!Arc::ptr_eq(&a.matrices, &other.matrices));
        let matrices = Arc::downgrade(&a.matrices);
        drop((a, b));
        assert!(matrices.upgrade().is_none(), "freed with the last operator");
        let c = Radon::new(&geometry, Device::Cpu);
        assert!(c.matrices[0].get().is_none(), "a new operator starts empty");
    }
}
