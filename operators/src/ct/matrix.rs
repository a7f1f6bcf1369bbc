//! The ray-driven projector of [`super::Radon`] as an explicit sparse matrix.
//!
//! Sampling each ray every half pixel with bilinear interpolation is linear in the
//! image, so the whole projection is a sparse matrix `A` with one row per ray
//! (`view · n_detectors + detector`) and one column per pixel (`row · cols +
//! col`): entry `(ray, pixel)` is the sample step in mm times the sum of the
//! bilinear weights that the ray's samples give the pixel (zero padding: weights
//! on pixels outside the image are dropped, as `grid_sampler_2d` drops them).
//! Stored in CSR form together with its transpose, `A x` and `Aᵀ y` are two sparse
//! matrix products: on a CPU several times faster than the sampling and its
//! autograd transpose (docs/BENCHMARKS.md), and equal to them up to float rounding
//! (the weights are computed in double precision here).

use std::sync::Once;

use tch::{Device, Kind, Tensor};

/// `A` and `Aᵀ` in CSR form (32-bit indices), in one precision, on one device.
#[derive(Debug)]
pub(super) struct RadonMatrix {
    /// `[n_rays, rows · cols]`.
    a: Tensor,
    /// `[rows · cols, n_rays]`.
    at: Tensor,
}

impl RadonMatrix {
    /// Builds the matrix of the rays in `rays` (`[n_rays × 4]`, row-major: each
    /// ray's point closest to the isocentre and its direction per mm, in
    /// `grid_sampler_2d` coordinates with `align_corners = false`), each sampled
    /// `n_samples` times, `step_mm` apart, centred on that point, on an image of
    /// `(rows, cols)` pixels. `None` when the matrix would have more than
    /// `max_nnz` entries (the caller then keeps sampling); a build far above that
    /// stops after its first views. The rows are computed in up to `threads`
    /// blocks of whole views at once; the result does not depend on `threads`.
    pub(super) fn build(
        rays: &[f64],
        rays_per_view: usize,
        (n_samples, step_mm): (usize, f64),
        (rows, cols): (usize, usize),
        (kind, device): (Kind, Device),
        (max_nnz, threads): (usize, usize),
    ) -> Option<RadonMatrix> {
        let n_rays = rays.len() / 4;
        let n_pixels = rows * cols;
        // Pixel and ray indices, and row offsets, are stored as 32-bit integers.
        i32::try_from(n_pixels.max(n_rays)).ok()?;
        let n_views = n_rays.div_ceil(rays_per_view).max(1);
        let views_per_block = n_views.div_ceil(threads.clamp(1, n_views));
        let sampling = RaySampling {
            n_samples,
            step_mm,
            rows,
            cols,
        };
        let blocks: Vec<Option<Rows>> = std::thread::scope(|scope| {
            let workers: Vec<_> = rays
                .chunks(views_per_block * rays_per_view * 4)
                .map(|block| {
                    scope.spawn(move || sampling.rows(block, rays_per_view, n_rays, max_nnz))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a sparse-matrix build thread panicked"))
                .collect()
        });
        let blocks = blocks.into_iter().collect::<Option<Vec<Rows>>>()?;
        let nnz = blocks.iter().map(|b| b.col.len()).sum::<usize>();
        if nnz > max_nnz.min(i32::MAX as usize) {
            return None;
        }
        let shape = (n_rays, n_pixels);
        Some(match kind {
            Kind::Double => assemble(blocks, nnz, shape, |v| v, device),
            _ => assemble(blocks, nnz, shape, |v| v as f32, device),
        })
    }

    /// Number of stored entries of `A`.
    #[cfg(test)]
    pub(super) fn nnz(&self) -> i64 {
        self.a.values().size()[0]
    }

    /// `A x` for images `x` `[B, C, rows, cols]`: `[B, C, n_rays]`.
    pub(super) fn forward(&self, x: &Tensor) -> Tensor {
        apply(&self.a, x)
    }

    /// `Aᵀ y` for sinograms `y` `[B, C, …]` of `n_rays` values each:
    /// `[B, C, rows · cols]`.
    pub(super) fn adjoint(&self, y: &Tensor) -> Tensor {
        apply(&self.at, y)
    }
}

/// The matrix of the rows in `blocks` (`nnz` entries in all) and its transpose, of
/// `shape` `(n_rays, n_pixels)`, with values `to_value(weight)`, as CSR tensors on
/// `device`. Each set of host vectors is dropped once its tensors exist, so memory
/// peaks at about 24 bytes per entry in f32 (the matrix keeps 16).
fn assemble<T: tch::kind::Element + Copy>(
    blocks: Vec<Rows>,
    nnz: usize,
    (n_rays, n_pixels): (usize, usize),
    to_value: impl Fn(f64) -> T,
    device: Device,
) -> RadonMatrix {
    let mut crow = Vec::with_capacity(n_rays + 1);
    crow.push(0usize);
    let (mut col, mut val) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    for block in blocks {
        let offset = col.len();
        crow.extend(block.ends.iter().map(|&end| offset + end));
        col.extend(block.col);
        val.extend(block.val.into_iter().map(&to_value));
    }
    // Aᵀ by a counting sort on the pixel; rays stay in order within a pixel.
    let mut t_crow = vec![0usize; n_pixels + 1];
    for &p in &col {
        t_crow[p as usize + 1] += 1;
    }
    for p in 0..n_pixels {
        t_crow[p + 1] += t_crow[p];
    }
    let mut next = t_crow.clone();
    let (mut t_col, mut t_val) = (vec![0i32; nnz], vec![to_value(0.0); nnz]);
    for r in 0..n_rays {
        for k in crow[r]..crow[r + 1] {
            let slot = &mut next[col[k] as usize];
            t_col[*slot] = r as i32;
            t_val[*slot] = val[k];
            *slot += 1;
        }
    }
    drop(next);
    let a = csr(crow, col, val, [n_rays, n_pixels], device);
    let at = csr(t_crow, t_col, t_val, [n_pixels, n_rays], device);
    RadonMatrix { a, at }
}

/// How each ray is sampled, on an image of `rows × cols` pixels: `n_samples`
/// points `step_mm` apart, centred on the ray's point closest to the isocentre.
#[derive(Clone, Copy)]
struct RaySampling {
    n_samples: usize,
    step_mm: f64,
    rows: usize,
    cols: usize,
}

/// Consecutive CSR rows: the end of each row in `col` / `val`, and the entries
/// (pixel `row · cols + col`, weight in mm) in row order.
struct Rows {
    ends: Vec<usize>,
    col: Vec<i32>,
    val: Vec<f64>,
}

impl RaySampling {
    /// The rows of the rays in `rays` (whole views of `rays_per_view` rays, out
    /// of `n_rays` in all), or `None` as soon as these views, extrapolated to
    /// all `n_rays`, would give more than twice `max_nnz` entries (views differ
    /// in their number of entries by far less than that).
    fn rows(
        &self,
        rays: &[f64],
        rays_per_view: usize,
        n_rays: usize,
        max_nnz: usize,
    ) -> Option<Rows> {
        let (rows, cols) = (self.rows, self.cols);
        let centre = (self.n_samples - 1) as f64 / 2.0;
        // Each ray's weights are summed per pixel in `scratch` (zero between
        // rays), remembering which pixels they touched.
        let mut scratch = vec![0f64; rows * cols];
        let mut touched = Vec::new();
        let mut block = Rows {
            ends: Vec::with_capacity(rays.len() / 4),
            col: Vec::new(),
            val: Vec::new(),
        };
        for (r, ray) in rays.chunks_exact(4).enumerate() {
            for j in 0..self.n_samples {
                let t = (j as f64 - centre) * self.step_mm;
                // grid_sampler_2d: gx = −1 is the left edge of the image, so the
                // pixel coordinate is ((gx + 1) · cols − 1) / 2.
                let ix = ((ray[0] + t * ray[2] + 1.0) * cols as f64 - 1.0) / 2.0;
                let iy = ((ray[1] + t * ray[3] + 1.0) * rows as f64 - 1.0) / 2.0;
                let (x0, y0) = (ix.floor(), iy.floor());
                let (fx, fy) = (ix - x0, iy - y0);
                for (dx, dy, w) in [
                    (0, 0, (1.0 - fx) * (1.0 - fy)),
                    (1, 0, fx * (1.0 - fy)),
                    (0, 1, (1.0 - fx) * fy),
                    (1, 1, fx * fy),
                ] {
                    let (x, y) = (x0 as i64 + dx, y0 as i64 + dy);
                    // Zero padding: pixels outside the image are dropped.
                    if w > 0.0 && (0..cols as i64).contains(&x) && (0..rows as i64).contains(&y) {
                        let p = y as usize * cols + x as usize;
                        if scratch[p] == 0.0 {
                            touched.push(p);
                        }
                        scratch[p] += w;
                    }
                }
            }
            touched.sort_unstable();
            for &p in &touched {
                block.col.push(p as i32);
                block.val.push(scratch[p] * self.step_mm);
                scratch[p] = 0.0;
            }
            touched.clear();
            block.ends.push(block.col.len());
            if (r + 1) % rays_per_view == 0 {
                let len = block.col.len();
                if len * n_rays / (r + 1) > max_nnz.saturating_mul(2) {
                    return None;
                }
                if r + 1 == rays_per_view {
                    // Room for the block's entries as the first view extrapolates
                    // them, with 1/8 to spare, instead of doubling as it grows.
                    let estimate = len * (rays.len() / 4) / rays_per_view * 9 / 8;
                    block.col.reserve(estimate.saturating_sub(len));
                    block.val.reserve(estimate.saturating_sub(len));
                }
            }
        }
        Some(block)
    }
}

/// `m v` for each of the `B · C` vectors of `v` `[B, C, …]`: `[B, C, rows of m]`.
/// One vector goes through the sparse matrix-vector product: on a CPU (MKL, two
/// threads, 180 views at 128²) 1.5 ms against 3.4 ms for the matrix product with
/// one column. From two vectors on, the matrix product is as fast or faster.
fn apply(m: &Tensor, v: &Tensor) -> Tensor {
    let size = v.size();
    if size[0] * size[1] == 1 {
        return m.mv(&v.reshape([-1])).reshape([1, 1, -1]);
    }
    let columns = v
        .reshape([size[0] * size[1], -1])
        .transpose(0, 1)
        .contiguous();
    m.mm(&columns)
        .transpose(0, 1)
        .reshape([size[0], size[1], -1])
}

/// The CSR tensor (32-bit indices, on `device`) of the given row offsets, column
/// indices and values, which it consumes (freeing them once copied).
fn csr<T: tch::kind::Element>(
    crow: Vec<usize>,
    col: Vec<i32>,
    val: Vec<T>,
    shape: [usize; 2],
    device: Device,
) -> Tensor {
    consume_csr_beta_warning();
    /// The tensor of `v`, which is freed once copied.
    fn tensor<T: tch::kind::Element>(v: Vec<T>) -> Tensor {
        Tensor::from_slice(&v)
    }
    let crow = tensor(
        crow.into_iter()
            .map(|i| i32::try_from(i).expect("row offsets within i32 (checked by the build)"))
            .collect::<Vec<i32>>(),
    );
    let col = tensor(col);
    let val = tensor(val);
    Tensor::sparse_csr_tensor_crow_col_value_size(
        &crow,
        &col,
        &val,
        [shape[0] as i64, shape[1] as i64],
        (val.kind(), Device::Cpu),
    )
    .to_device(device)
}

/// libtorch prints "Sparse CSR tensor support is in beta state…" on stderr at the
/// first CSR tensor of a process (a one-time warning; the operations used here,
/// construction, transfer and the product with a dense matrix, are stable). Users
/// would take it for a fault of theirs, so the first CSR tensor is made here, a
/// 1 × 1 one, with stderr pointed at /dev/null for the moment it takes.
fn consume_csr_beta_warning() {
    static FIRST: Once = Once::new();
    FIRST.call_once(|| {
        let make = || {
            let _ = Tensor::sparse_csr_tensor_crow_col_value_size(
                &Tensor::from_slice(&[0i32, 1]),
                &Tensor::from_slice(&[0i32]),
                &Tensor::from_slice(&[1f64]),
                [1, 1],
                (Kind::Double, Device::Cpu),
            );
        };
        #[cfg(unix)]
        // SAFETY: plain POSIX calls on file descriptors this function owns (the
        // copy of stderr and /dev/null); stderr is restored before returning.
        unsafe {
            let saved = libc::dup(libc::STDERR_FILENO);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved >= 0 && null >= 0 && libc::dup2(null, libc::STDERR_FILENO) >= 0 {
                make();
                libc::dup2(saved, libc::STDERR_FILENO);
            } else {
                make();
            }
            for fd in [saved, null] {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
        }
        #[cfg(not(unix))]
        make();
    });
}
