//! dps-recon's DICOM layer, compiled on its own for the fuzz targets.

#[path = "../../src/dicom/mod.rs"]
pub mod dicom;
