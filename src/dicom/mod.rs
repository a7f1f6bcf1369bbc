//! DICOM input and output, free of tensor types: plain `Vec`s and numbers in,
//! files out. Nothing here knows about diffusion or forward operators.
//!
//! - Reading ([`open`], [`from_bytes`]): any DICOM Part 10 file, header only
//!   ([`Extent::Header`], everything before group 7FE0) or whole, under a memory
//!   cap ([`ReadLimits`]). Every declared length is checked against the bytes
//!   present before dicom-rs allocates (module `guard`), so hostile files end in a
//!   [`DicomError`], never in a huge allocation or a panic.
//! - Raw measurements ([`raw`], docs/dicom-raw-profile.md): [`read_raw`] and
//!   [`write_raw`] for [`RawMeasurement`]s (MRI k-space, CT sinograms) in Raw Data
//!   Storage objects with the private block `DPSRECON 1`.
//! - Image series in ([`read_image`], [`read_series`]): single- and multi-frame
//!   monochrome images in every transfer syntax this build decodes, rescaled
//!   (Modality LUT, or a linear Real World Value Mapping where there is none),
//!   with their geometry, sorted along the slice normal.
//! - Folder scans ([`scan_folder`], [`inspect_file`]): recursive, header only,
//!   grouped by study and series; non-DICOM files skipped, unreadable ones
//!   reported with their reason.
//! - Reconstructed series out ([`write_series`]): MR or CT Image Storage, one file
//!   per slice, 16-bit pixels with RescaleSlope/Intercept (CT) or a Real World
//!   Value Mapping (MR), new `2.25.` UIDs
//!   ([`uid`]), provenance, atomic writes, file names that never come from
//!   attribute text.
//!
//! Units: lengths in mm, angles in degrees, patient coordinates in DICOM LPS.

mod common;
mod context;
mod encode;
mod error;
mod fsio;
mod guard;
mod image;
mod load;
mod output;
pub mod raw;
mod scan;
mod source;
pub mod uid;
mod values;

pub use context::{InstanceContext, Plane};
pub use error::{DicomError, ElementName};
pub use image::{image_from_bytes, read_image, read_series, ImageFile, ImageFrame, ImageSeries};
pub use load::{from_bytes, open, Extent, ReadLimits};
pub use output::{
    write_series, ImageModality, ImageRole, InstanceRef, OutputSlice, SeriesSpec, Window,
    WrittenSeries,
};
pub use raw::{
    raw_from_bytes, read_raw, write_raw, CtDataType, CtGeometry, CtSinogram, Measurement,
    MriKspace, RawMeasurement, MAX_VIEWS, POSITIVE_RANGE,
};
pub use scan::{
    group_series, inspect_file, scan_bytes, scan_file, scan_folder, summarize, Duplicate, FileKind,
    FileSummary, Inspection, ScanError, ScanReport, SeriesGroup, SeriesGrouping,
};
pub use values::readable;
