//! dps-recon: reconstruction of undersampled MRI k-space and CT sinograms stored in
//! DICOM with Diffusion Posterior Sampling (Chung et al., ICLR 2023).
//!
//! Data flow: raw DICOM ([`dicom`]) → a measurement → an operator from
//! `dps_operators` with a likelihood → the DPS sampler with a diffusion prior →
//! a reconstruction → a DICOM series. [`phantom`] and [`metrics`] serve simulation
//! and validation.

pub mod device;
pub mod dicom;
pub mod memory;
pub mod metrics;
pub mod phantom;
pub mod pipeline;
pub mod prior;
pub mod render;
pub mod sampler;
pub mod volume;
