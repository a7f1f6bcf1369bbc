//! From command-line inputs (files and folders) to series of raw measurements:
//! header scans, classification of every file, grouping by study and series.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::dicom::{group_series, scan_file, FileKind, FileSummary, ReadLimits, SeriesGroup};

/// A file that is not reconstructed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileIssue {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything found in the inputs.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Series of raw measurements of the profile, by (study, series) UID.
    pub series: Vec<SeriesGroup>,
    /// Files that are not raw measurements (not DICOM, images, other objects,
    /// raw data of another program, duplicates): reported, not an error.
    pub skipped: Vec<FileIssue>,
    /// Files or folders that could not be read: errors.
    pub failed: Vec<FileIssue>,
}

/// Scans `inputs` (files, or folders searched recursively in name order without
/// following symbolic links), leaving out the folder `exclude` (the output
/// folder) and reading each file once even when inputs overlap.
pub fn collect(inputs: &[PathBuf], exclude: Option<&Path>, limits: ReadLimits) -> Inventory {
    let exclude = exclude.and_then(|p| p.canonicalize().ok());
    let mut seen = HashSet::new();
    let mut inventory = Inventory::default();
    let mut raw: Vec<(PathBuf, FileSummary)> = Vec::new();
    for root in inputs {
        let walker = walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                !(e.file_type().is_dir()
                    && exclude.is_some()
                    && e.path().canonicalize().ok() == exclude)
            });
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    inventory.failed.push(FileIssue {
                        path: e.path().unwrap_or(root).to_path_buf(),
                        reason: e
                            .io_error()
                            .map_or_else(|| e.to_string(), |io| format!("cannot read: {io}")),
                    });
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.into_path();
            if !seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone())) {
                continue;
            }
            let skip = |reason: String| FileIssue {
                path: path.clone(),
                reason,
            };
            match scan_file(&path, limits) {
                Ok(None) => inventory.skipped.push(skip("not a DICOM file".into())),
                Err(e) => inventory.failed.push(skip(e.to_string())),
                Ok(Some(summary)) => match &summary.kind {
                    FileKind::RawMeasurement { .. } => raw.push((path, summary)),
                    FileKind::ForeignRawData => inventory.skipped.push(skip(
                        "Raw Data Storage without the DPSRECON 1 block (not raw data of the \
                         dps-recon profile)"
                            .into(),
                    )),
                    FileKind::Image { rows, columns, .. } => inventory.skipped.push(skip(format!(
                        "{} image {rows}×{columns} (an image, not raw data)",
                        if summary.modality.is_empty() {
                            "DICOM"
                        } else {
                            &summary.modality
                        }
                    ))),
                    FileKind::Other => inventory.skipped.push(skip(format!(
                        "DICOM object of SOP class {} (not raw data)",
                        summary.sop_class_uid
                    ))),
                },
            }
        }
    }
    let grouping = group_series(raw);
    inventory.series = grouping.series;
    inventory
        .skipped
        .extend(grouping.duplicates.into_iter().map(|d| FileIssue {
            reason: format!(
                "duplicate of {} (same SOPInstanceUID {})",
                d.first.display(),
                d.sop_instance_uid
            ),
            path: d.path,
        }));
    inventory
}

/// How long before `now` the file at `path` was last modified: zero when its
/// time lies after `now` (another clock) or cannot be read (the file is gone or
/// being replaced), which both count as a change just now.
pub fn age(path: &Path, now: SystemTime) -> Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| now.duration_since(modified).ok())
        .unwrap_or(Duration::ZERO)
}
