//! dps-recon's DICOM layer and NIfTI reader, compiled on their own for the fuzz
//! targets.

#[path = "../../src/dicom/mod.rs"]
pub mod dicom;

#[path = "../../src/volume/nifti.rs"]
pub mod nifti_volume;
