//! Forward models on `tch` tensors for diffusion posterior sampling and the classical
//! baselines it is compared against.
//!
//! Conventions shared by every operator in this crate:
//! - Images are batched `[B, C, H, W]` tensors, `f32` (real) or `complex64` (MRI);
//!   row index `H` runs top to bottom, column index `W` left to right.
//! - Operators hold their tensors (masks, sensitivities, sampling grids) on the device
//!   given to their constructor; inputs must be on that device. Nothing is moved
//!   behind your back.
//! - Linear operators implement [`LinearOperator`], whose adjoint is exact to float
//!   precision (tested by the dot-product test in [`op::adjoint_mismatch`]).
//! - Nonlinear operators implement only [`Operator`]; gradients come from autograd.
//! - Random masks and kernels come from seeded generators ([`masks`], [`kernels`]),
//!   kept apart from the operators that use them.

pub mod op;

pub mod coils;
pub mod fft;
pub mod masks;
pub mod mri;

pub mod ct;

pub mod blur;
pub mod inpainting;
pub mod kernels;
pub mod phase_retrieval;
pub mod super_resolution;

pub mod noise;

pub mod solvers;

pub use op::{LinearOperator, Operator};
