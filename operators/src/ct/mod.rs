//! CT forward models (parallel and fan beam, 2-D) and filtered backprojection.
//!
//! [`Radon`] maps an image of linear attenuation μ (1/mm) to its sinogram of line
//! integrals `∫ μ dl` (dl in mm) for a [`CtGeometry`]; it is a [`LinearOperator`]
//! with an exact adjoint, and [`Radon::fbp`] inverts it analytically.
//!
//! - image: `[B, C, rows, cols]` (`C = 1`), `f32` (or `f64`), μ in 1/mm;
//! - sinogram: `[B, C, n_views, n_detectors]`: row `v` is the view at
//!   `angles_deg[v]`, column `k` is detector element `k` (views are rows, as in the
//!   project's DICOM raw-data profile).
//!
//! # Coordinates and conventions
//!
//! **Image.** Row 0 is the top, column 0 the left. The `x` axis points right
//! (increasing column), the `y` axis points up (decreasing row), and the origin —
//! the rotation centre (isocentre) — is the centre of the image, i.e. the point at
//! row `(rows − 1) / 2`, column `(cols − 1) / 2` (between pixel centres for even
//! sizes). Pixels are square with side `Δ = pixel_spacing_mm`; the centre of pixel
//! `(r, c)` is at `x = (c − (cols − 1)/2) Δ`, `y = ((rows − 1)/2 − r) Δ`.
//!
//! **View angle.** For a view angle θ (degrees) define the unit vectors
//! `e_s(θ) = (cos θ, sin θ)` (along the detector) and `e_r(θ) = (−sin θ, cos θ)`
//! (the direction in which the central ray travels, from source to detector).
//! - θ = 0: the detector runs along +x (left → right), rays travel along +y
//!   (bottom → top): the source is below the image, the detector above it, and
//!   the parallel projection at θ = 0 is the sum over rows (one value per column).
//! - θ = 90°: the detector runs along +y (bottom → top), rays travel along −x: the
//!   source is on the right, the detector on the left; the projection is the sum
//!   over columns, with detector index increasing from the bottom row to the top row.
//! - Increasing θ turns source and detector counter-clockwise about the isocentre
//!   in the image as displayed (row 0 on top); angles are taken as given (no
//!   reduction modulo 360°).
//!
//! **Detector.** Element `k` (`0 ≤ k < n_detectors`) has the signed coordinate
//! `u_k = (k − k_c) · detector_spacing` with `k_c = (n_detectors − 1)/2 +
//! detector_offset`, the element hit by the central ray through the isocentre.
//! Element 0 lies at the `−e_s` end (θ = 0: the left), and the index increases
//! along `+e_s`. `u` is in mm at the detector (parallel, flat fan) or in degrees of
//! fan angle (equiangular fan).
//!
//! **Parallel beam.** Ray `(θ, k)` is the line `{ u_k e_s(θ) + t e_r(θ) }`, i.e. the
//! points with `x cos θ + y sin θ = u_k`, and
//! `p(θ, u) = ∫ μ(u e_s + t e_r) dt` (Kak & Slaney's convention). This is
//! scikit-image's `radon(image, theta, circle=True)` transposed (its output is
//! `[detector, angle]`), with the same θ in degrees and the same detector
//! direction, when the rotation centres agree: scikit-image rotates about pixel
//! `(N/2, N/2)` (integer division) and puts `u = 0` on detector `N/2`. For odd `N`
//! that is this module's default; for even `N` it corresponds to the image with a
//! zero row appended at the bottom and a zero column at the right (`N + 1` square)
//! and `detector_offset = +0.5`.
//!
//! **Fan beam.** The source sits at `S(θ) = −D_so e_r(θ)` (`D_so =
//! source_to_isocenter_mm`): θ = 0 puts it below the image at `(0, −D_so)`,
//! θ = 90° to the right at `(D_so, 0)`. The detector centre (element `k_c`) is at
//! `S + D_sd e_r` (`D_sd = source_to_detector_mm`), facing the source. Element `k`
//! is seen from the source at fan angle `γ_k` from the central ray, positive toward
//! `+e_s`: equiangular `γ_k = u_k` (degrees; the detector is an arc of radius
//! `D_sd` about the source), flat `γ_k = atan(u_k / D_sd)` (element `k` at
//! `S + D_sd e_r + u_k e_s`). Ray `(θ, k)` starts at `S` with direction
//! `cos γ_k e_r + sin γ_k e_s`; it is the parallel ray of angle `θ − γ_k` at
//! `u = D_so sin γ_k`.
//!
//! **Discretisation and speed.** Each ray is sampled every half pixel with
//! bilinear interpolation of the pixel values. Without gradient tracking the
//! projector and its adjoint are products with that computation written out as a
//! sparse matrix (CSR, built at the first call: 7.0 M entries, 107 MiB with
//! its transpose in `f32`, for 180 views at 128²); with gradient tracking the rays
//! are sampled by `grid_sampler_2d` and the adjoint is its autograd transpose. The
//! two agree to float rounding. Data terms of the DPS sampler take their gradients
//! through the sparse adjoint ([`crate::Operator::gradient_by_adjoint`]).
//!
//! # Filtered backprojection ([`Radon::fbp`])
//!
//! 1. Fan beam only: pre-weight each projection (equiangular `D_so cos γ`, flat
//!    `D_so / √(D_so² + s²)` with `s = u D_so / D_sd` on the virtual detector through
//!    the isocentre), and for a short scan by twice Parker's weight.
//! 2. Filter along the detector by FFT, zero-padded to `max(64, 2^⌈log₂ 2n⌉)`
//!    samples, with the spatially sampled ramp of [`FbpFilter`] (no DC offset; for
//!    the equiangular detector the kernel `h[m]` is multiplied by
//!    `(m Δγ / sin m Δγ)²`), scaled by `1/Δs` (parallel) or `½ · 1/Δs` (fan, with `Δs`
//!    the virtual detector spacing or `Δγ` in radians): the ½ counts each ray
//!    twice in a full turn.
//! 3. Interpolate the filtered projections linearly at each pixel's detector
//!    position, after a 4× band-limited upsampling (zero-padded spectrum), and sum
//!    over views with angular quadrature weights `w_v` (radians, see below), times
//!    `1/L²` (equiangular, `L` = source–pixel distance) or `1/U²` (flat, `U` =
//!    source–pixel distance along the central ray over `D_so`).
//! 4. Set the pixels outside the field of view
//!    ([`CtGeometry::field_of_view_radius_mm`]) to 0.
//!
//! Scaling: `w_v` is half the sum of the angular gaps to the two neighbouring views,
//! angles taken modulo π (parallel: views θ and θ + 180° measure the same lines) or 2π (fan);
//! a gap wider than three median gaps (a missing wedge) counts as one median gap.
//! So `n` parallel views uniform over 180° or over 360° get `π / n` each (the classic
//! `π / n_views` factor), a limited arc of step δ gets δ each (the arc covered, no
//! compensation for the missing wedge), and `n` fan views over 360° get `2π / n`.
//! The fan-beam algorithm is the full-scan weighted FBP (Kak & Slaney §3.4). A
//! short scan (an arc of at least 180° plus the full fan angle, less than a turn)
//! measures some lines twice and others once; its projections are multiplied by
//! Parker's redundancy weights (in Wesarg's form for any arc length), which replace
//! the full turn's ½. A fan-beam arc shorter than 180° plus the fan angle is a
//! limited-angle scan and is reconstructed without compensation.
//!
//! [`LinearOperator`]: crate::op::LinearOperator

mod fbp;
mod geometry;
mod matrix;
mod radon;

pub use fbp::{FbpFilter, SqrtRamp};
pub use geometry::{uniform_angles, BeamGeometry, CtGeometry, GeometryError};
pub use radon::Radon;
