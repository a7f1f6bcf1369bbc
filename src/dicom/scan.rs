//! Folder scans: which files are DICOM, what each holds (raw measurement, image,
//! other), grouped by study and series, from headers only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use serde::Serialize;

use super::error::DicomError;
use super::load::{self, Extent, ReadLimits};
use super::raw::{self, RawMeasurement, RAW_DATA_STORAGE};
use super::values::{int, text};

/// What a file holds, from its header.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileKind {
    /// Raw Data Storage with the dps-recon private block (not yet validated).
    RawMeasurement {
        /// (0071,1001) MeasurementKind, e.g. `MRI_KSPACE`.
        measurement: String,
        /// (0071,1002) Dimensions.
        dimensions: Vec<u32>,
        /// (0071,1010) Geometry (CT only).
        geometry: Option<String>,
    },
    /// Raw Data Storage without the dps-recon private block.
    ForeignRawData,
    /// An image: Rows, Columns and NumberOfFrames present.
    Image {
        /// Rows.
        rows: u32,
        /// Columns.
        columns: u32,
        /// NumberOfFrames (1 when absent).
        frames: u32,
    },
    /// Any other DICOM object (report, RT plan, DICOMDIR, …).
    Other,
}

/// The header facts of one DICOM file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSummary {
    /// SOPClassUID (or MediaStorageSOPClassUID when absent).
    pub sop_class_uid: String,
    /// SOPInstanceUID.
    pub sop_instance_uid: String,
    /// StudyInstanceUID.
    pub study_instance_uid: String,
    /// SeriesInstanceUID.
    pub series_instance_uid: String,
    /// Modality.
    pub modality: String,
    /// TransferSyntaxUID of the file.
    pub transfer_syntax_uid: String,
    /// InstanceNumber.
    pub instance_number: Option<i64>,
    /// What it holds.
    pub kind: FileKind,
}

/// Reads the header of `path` (everything before Pixel Data) and summarizes it.
/// `Ok(None)`: not a DICOM file.
pub fn scan_file(path: &Path, limits: ReadLimits) -> Result<Option<FileSummary>, DicomError> {
    match load::open(path, limits, Extent::Header) {
        Ok(obj) => summarize(&obj).map(Some),
        Err(DicomError::NotDicom) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Summarizes a header held in memory (a whole or truncated Part 10 file).
pub fn scan_bytes(bytes: &[u8], limits: ReadLimits) -> Result<Option<FileSummary>, DicomError> {
    match load::from_bytes(bytes, limits, Extent::Header) {
        Ok(obj) => summarize(&obj).map(Some),
        Err(DicomError::NotDicom) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Summarizes a parsed object (its pixel data is not needed).
pub fn summarize(obj: &DefaultDicomObject) -> Result<FileSummary, DicomError> {
    let mut sop_class_uid = text(obj, tags::SOP_CLASS_UID);
    if sop_class_uid.is_empty() {
        sop_class_uid = obj
            .meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_owned();
    }
    let kind = if sop_class_uid == RAW_DATA_STORAGE {
        raw::peek(obj)?.unwrap_or(FileKind::ForeignRawData)
    } else {
        match (int(obj, tags::ROWS), int(obj, tags::COLUMNS)) {
            (Ok(Some(rows)), Ok(Some(columns))) => FileKind::Image {
                rows: u32::try_from(rows).unwrap_or(0),
                columns: u32::try_from(columns).unwrap_or(0),
                frames: int(obj, tags::NUMBER_OF_FRAMES)?
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(1),
            },
            _ => FileKind::Other,
        }
    };
    Ok(FileSummary {
        sop_class_uid,
        sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID),
        study_instance_uid: text(obj, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID),
        modality: text(obj, tags::MODALITY),
        transfer_syntax_uid: obj.meta().transfer_syntax().to_owned(),
        instance_number: int(obj, tags::INSTANCE_NUMBER).ok().flatten(),
        kind,
    })
}

/// What a file is, in full: a header summary, and for raw measurements the
/// validated measurement (or why it breaks the profile).
#[derive(Debug)]
pub enum Inspection {
    /// Not a DICOM Part 10 file.
    NotDicom,
    /// A valid raw measurement.
    Raw(FileSummary, Box<RawMeasurement>),
    /// Any other DICOM file (image, foreign raw data, other object).
    Dicom(FileSummary),
    /// Unreadable, malformed, or a raw measurement breaking the profile.
    Error(DicomError),
}

/// Inspects `path`: the header of any DICOM file; raw measurements of the
/// profile are read whole and validated (they hold no Pixel Data, so the header
/// read already holds them).
pub fn inspect_file(path: &Path, limits: ReadLimits) -> Inspection {
    let obj = match load::open(path, limits, Extent::Header) {
        Ok(obj) => obj,
        Err(DicomError::NotDicom) => return Inspection::NotDicom,
        Err(e) => return Inspection::Error(e),
    };
    let summary = match summarize(&obj) {
        Ok(s) => s,
        Err(e) => return Inspection::Error(e),
    };
    if !matches!(summary.kind, FileKind::RawMeasurement { .. }) {
        return Inspection::Dicom(summary);
    }
    match RawMeasurement::from_object(obj, limits) {
        Ok(raw) => Inspection::Raw(summary, Box::new(raw)),
        Err(e) => Inspection::Error(e),
    }
}

/// A file that could not be read, and why.
#[derive(Debug)]
pub struct ScanError {
    /// The file (or folder, for walk errors).
    pub path: PathBuf,
    /// Why.
    pub error: DicomError,
}

/// The outcome of [`scan_folder`].
#[derive(Debug, Default)]
pub struct ScanReport {
    /// DICOM files with their summaries, in path order.
    pub files: Vec<(PathBuf, FileSummary)>,
    /// Files without the DICOM Part 10 marker, skipped.
    pub not_dicom: Vec<PathBuf>,
    /// Files (or folders) that could not be read.
    pub errors: Vec<ScanError>,
}

/// The files of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesGroup {
    /// StudyInstanceUID.
    pub study_instance_uid: String,
    /// SeriesInstanceUID.
    pub series_instance_uid: String,
    /// Modality of the first file.
    pub modality: String,
    /// Files with their header summaries, by InstanceNumber (absent last), then path.
    pub files: Vec<(PathBuf, FileSummary)>,
}

impl SeriesGroup {
    /// The files' paths, in the group's order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// A file left out of its series because an earlier file of the same series has
/// its SOPInstanceUID.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub path: PathBuf,
    /// The file kept.
    pub first: PathBuf,
    pub sop_instance_uid: String,
}

/// Files grouped into series by [`group_series`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesGrouping {
    /// By (StudyInstanceUID, SeriesInstanceUID).
    pub series: Vec<SeriesGroup>,
    /// Files left out as duplicates, in input order.
    pub duplicates: Vec<Duplicate>,
}

/// Groups `files` by (StudyInstanceUID, SeriesInstanceUID), in UID order, with
/// each series' files by InstanceNumber (absent last), then path. A file with the
/// SOPInstanceUID of an earlier file (in input order) of its series is left out
/// and listed as a duplicate.
pub fn group_series(files: impl IntoIterator<Item = (PathBuf, FileSummary)>) -> SeriesGrouping {
    let mut groups: BTreeMap<(String, String), Vec<(PathBuf, FileSummary)>> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for (path, summary) in files {
        let key = (
            summary.study_instance_uid.clone(),
            summary.series_instance_uid.clone(),
        );
        let members = groups.entry(key).or_default();
        if let Some((first, _)) = members
            .iter()
            .find(|(_, s)| s.sop_instance_uid == summary.sop_instance_uid)
        {
            duplicates.push(Duplicate {
                first: first.clone(),
                path,
                sop_instance_uid: summary.sop_instance_uid,
            });
            continue;
        }
        members.push((path, summary));
    }
    let series = groups
        .into_iter()
        .map(|((study, series), mut files)| {
            files.sort_by(|a, b| {
                let ka = (a.1.instance_number.unwrap_or(i64::MAX), &a.0);
                let kb = (b.1.instance_number.unwrap_or(i64::MAX), &b.0);
                ka.cmp(&kb)
            });
            SeriesGroup {
                study_instance_uid: study,
                series_instance_uid: series,
                modality: files[0].1.modality.clone(),
                files,
            }
        })
        .collect();
    SeriesGrouping { series, duplicates }
}

/// Scans `root` recursively (symbolic links are not followed), reading headers
/// only; non-DICOM files are skipped, unreadable ones reported, and the scan
/// goes on.
pub fn scan_folder(root: &Path, limits: ReadLimits) -> ScanReport {
    let mut report = ScanReport::default();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                let error = e
                    .into_io_error()
                    .map(DicomError::Io)
                    .unwrap_or_else(|| DicomError::Malformed("file system loop".into()));
                report.errors.push(ScanError { path, error });
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.into_path();
        match scan_file(&path, limits) {
            Ok(Some(summary)) => report.files.push((path, summary)),
            Ok(None) => report.not_dicom.push(path),
            Err(error) => report.errors.push(ScanError { path, error }),
        }
    }
    report
}

impl ScanReport {
    /// The DICOM files grouped into series, see [`group_series`].
    pub fn series(&self) -> SeriesGrouping {
        group_series(self.files.iter().cloned())
    }
}
