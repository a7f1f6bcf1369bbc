//! `dps-recon inspect PATH...`: one line per file saying what it is — a raw MRI
//! k-space or CT sinogram of the profile (validated), a member of an image
//! series, another DICOM object, not DICOM, or the error and its reason.
//! Exit code 1 when any file could not be read.

use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dps_recon::dicom::{
    inspect_file, readable, CtDataType, DicomError, FileKind, FileSummary, Inspection, Measurement,
    RawMeasurement, ReadLimits,
};
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or folders (searched recursively, in name order).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,

    /// Most memory one file may need, in MiB (checked before allocating).
    #[arg(long, default_value_t = ReadLimits::DEFAULT_MAX_BYTES >> 20)]
    pub max_memory_mib: u64,
}

pub fn run(_ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let limits = ReadLimits {
        max_bytes: args.max_memory_mib.saturating_mul(1 << 20),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    for root in &args.paths {
        for (path, inspection) in inspect_tree(root, limits) {
            failed |= matches!(inspection, Inspection::Error(_));
            let line = if args.json {
                json_line(&path, &inspection).to_string()
            } else {
                text_line(&path, &inspection)
            };
            if let Err(e) = writeln!(out, "{line}") {
                if e.kind() == ErrorKind::BrokenPipe {
                    return Ok(exit_code(failed));
                }
                return Err(e.into());
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(exit_code(failed))
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every file under `root` (or `root` itself), inspected lazily in name order;
/// folders that cannot be listed come out as errors.
fn inspect_tree(
    root: &Path,
    limits: ReadLimits,
) -> impl Iterator<Item = (PathBuf, Inspection)> + '_ {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_map(move |entry| match entry {
            Ok(entry) if entry.file_type().is_file() => {
                let path = entry.into_path();
                let inspection = inspect_file(&path, limits);
                Some((path, inspection))
            }
            Ok(_) => None,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                let error = match e.into_io_error() {
                    Some(io) => DicomError::Io(io),
                    None => DicomError::Malformed("file system loop".into()),
                };
                Some((path, Inspection::Error(error)))
            }
        })
}

fn text_line(path: &Path, inspection: &Inspection) -> String {
    let what = match inspection {
        Inspection::NotDicom => "not DICOM".to_owned(),
        Inspection::Error(e) => format!("error: {e}"),
        Inspection::Raw(summary, raw) => format!("{}; {}", describe_raw(raw), where_in(summary)),
        Inspection::Dicom(summary) => match &summary.kind {
            FileKind::Image {
                rows,
                columns,
                frames,
            } => format!(
                "{} image {rows}×{columns}, {frames} frame{}, member of {}",
                if summary.modality.is_empty() {
                    "?"
                } else {
                    &summary.modality
                },
                if *frames == 1 { "" } else { "s" },
                where_in(summary)
            ),
            FileKind::ForeignRawData => format!(
                "DICOM raw data without the DPSRECON 1 block (not readable as a measurement); {}",
                where_in(summary)
            ),
            _ => format!(
                "DICOM object of SOP class {} (not an image); {}",
                summary.sop_class_uid,
                where_in(summary)
            ),
        },
    };
    format!("{}: {what}", path.display())
}

fn where_in(s: &FileSummary) -> String {
    let number = s
        .instance_number
        .map_or_else(|| "?".to_owned(), |n| n.to_string());
    format!(
        "series {}, instance {number}, transfer syntax {}",
        if s.series_instance_uid.is_empty() {
            "?"
        } else {
            &s.series_instance_uid
        },
        s.transfer_syntax_uid
    )
}

fn describe_raw(raw: &RawMeasurement) -> String {
    let [rows, cols] = raw.recon_size;
    let [dr, dc] = raw.recon_pixel_spacing_mm;
    let noise = raw
        .noise_sigma
        .map_or_else(String::new, |s| format!(", noise σ {}", readable(s)));
    let data = match &raw.data {
        Measurement::MriKspace(k) => format!(
            "raw MRI k-space, {} coils × {} ky × {} kx, {:.1}% acquired{}",
            k.coils,
            k.ky,
            k.kx,
            100.0 * acquired_fraction(&k.mask),
            if k.sensitivities.is_some() {
                ", with coil sensitivities"
            } else {
                ""
            }
        ),
        Measurement::CtSinogram(s) => {
            let distances = match (s.source_to_isocenter_mm, s.source_to_detector_mm) {
                (Some(a), Some(b)) => format!(" (source–isocentre {a} mm, source–detector {b} mm)"),
                _ => String::new(),
            };
            let values = match s.data_type {
                CtDataType::LineIntegral => "line integrals".to_owned(),
                CtDataType::Counts { blank_scan_counts } => {
                    format!("counts, I0 {blank_scan_counts}")
                }
            };
            format!(
                "raw CT sinogram, {} views × {} detectors, {}{distances}, {values}",
                s.views,
                s.detectors,
                s.geometry.as_str()
            )
        }
    };
    format!("{data}{noise}; reconstructs {rows}×{cols} at {dr}×{dc} mm")
}

fn acquired_fraction(mask: &[u8]) -> f64 {
    mask.iter().filter(|&&m| m == 1).count() as f64 / mask.len().max(1) as f64
}

fn json_line(path: &Path, inspection: &Inspection) -> Value {
    let path = path.to_string_lossy();
    match inspection {
        Inspection::NotDicom => json!({ "path": path, "status": "not_dicom" }),
        Inspection::Error(e) => json!({
            "path": path,
            "status": "error",
            "error_class": e.class(),
            "reason": e.to_string(),
        }),
        Inspection::Dicom(summary) => {
            let status = match summary.kind {
                FileKind::Image { .. } => "image",
                FileKind::ForeignRawData => "foreign_raw_data",
                _ => "other_dicom",
            };
            json!({ "path": path, "status": status, "summary": summary })
        }
        Inspection::Raw(summary, raw) => {
            let mut details = json!({
                "noise_sigma": raw.noise_sigma,
                "recon_size": raw.recon_size,
                "recon_pixel_spacing_mm": raw.recon_pixel_spacing_mm,
                "sop_instance_uid": raw.sop_instance_uid,
            });
            let status = match &raw.data {
                Measurement::MriKspace(k) => {
                    details["coils"] = json!(k.coils);
                    details["ky"] = json!(k.ky);
                    details["kx"] = json!(k.kx);
                    details["acquired_fraction"] = json!(acquired_fraction(&k.mask));
                    details["sensitivities"] = json!(k.sensitivities.is_some());
                    "raw_mri_kspace"
                }
                Measurement::CtSinogram(s) => {
                    details["views"] = json!(s.views);
                    details["detectors"] = json!(s.detectors);
                    details["geometry"] = json!(s.geometry.as_str());
                    details["data_type"] = json!(s.data_type.as_str());
                    details["source_to_isocenter_mm"] = json!(s.source_to_isocenter_mm);
                    details["source_to_detector_mm"] = json!(s.source_to_detector_mm);
                    "raw_ct_sinogram"
                }
            };
            json!({ "path": path, "status": status, "summary": summary, "raw": details })
        }
    }
}
