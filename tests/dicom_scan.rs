//! Folder scans (header only, grouping, skipped and unreadable files), hostile
//! inputs, and every file of pydicom's test data read or rejected cleanly.

mod dicom_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use dps_recon::dicom::{
    from_bytes, inspect_file, read_image, scan_file, scan_folder, write_raw, write_series,
    DicomError, Extent, FileKind, ImageModality, ImageRole, Inspection, OutputSlice, ReadLimits,
    SeriesSpec,
};

use dicom_support::*;

fn image_series(
    dir: &Path,
    n: usize,
    ctx_from: &dps_recon::dicom::InstanceContext,
) -> Vec<std::path::PathBuf> {
    let slices: Vec<OutputSlice> = (0..n)
        .map(|k| OutputSlice {
            rows: 8,
            cols: 6,
            pixels: floats(48, k as u64)
                .into_iter()
                .map(|x| (x * 100.0).round())
                .collect(),
            pixel_spacing_mm: [1.0, 1.0],
            plane: axial_plane(k as f64, 8, 6, 1.0),
            slice_location_mm: Some(k as f64),
            slice_thickness_mm: Some(1.0),
            source_raw: Vec::new(),
            source_images: Vec::new(),
        })
        .collect();
    let spec = SeriesSpec {
        modality: ImageModality::Ct,
        role: ImageRole::Reconstruction,
        context: ctx_from.clone(),
        series_number: 2,
        series_description: "test".into(),
        derivation_description: "test".into(),
        window: None,
    };
    write_series(dir, &spec, &slices).unwrap().files
}

/// The header of a valid file (cut before Pixel Data)
fn header_of(valid: &[u8]) -> Vec<u8> {
    let pixel_at = valid
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .unwrap();
    valid[..pixel_at].to_vec()
}

/// The header of a valid file followed by an element (0011,1001) OB declaring
/// `len` bytes of which only 4 are present.
fn with_hostile_tail(valid: &[u8], len: u32) -> Vec<u8> {
    let mut bytes = header_of(valid);
    bytes.extend_from_slice(&[0x11, 0x00, 0x01, 0x10, b'O', b'B', 0, 0]);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    bytes
}

#[test]
fn folder_scan_groups_series_and_reports_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("raw")).unwrap();
    let mri_raw = mri(2, 8, 8);
    write_raw(&root.join("raw/mri.dcm"), &mri_raw).unwrap();
    write_raw(&root.join("raw/ct.dcm"), &ct_fan_counts(6, 4)).unwrap();
    let series_a = image_series(&root.join("images/a"), 3, &mri_raw.context);
    let series_b = image_series(&root.join("images/b"), 1, &mri_raw.context);
    fs::write(root.join("notes.txt"), "not dicom").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    let valid = fs::read(&series_b[0]).unwrap();
    fs::write(root.join("images/truncated.dcm"), &valid[..200]).unwrap();
    fs::write(
        root.join("hostile.dcm"),
        with_hostile_tail(&valid, 0xFFFF_FFF0),
    )
    .unwrap();

    let report = scan_folder(root, ReadLimits::default());
    assert_eq!(report.files.len(), 6, "{:?}", report.files);
    let mut not_dicom: Vec<_> = report
        .not_dicom
        .iter()
        .map(|p| p.strip_prefix(root).unwrap())
        .collect();
    not_dicom.sort();
    assert_eq!(not_dicom, [Path::new("empty"), Path::new("notes.txt")]);
    let errors: BTreeMap<_, _> = report
        .errors
        .iter()
        .map(|e| {
            (
                e.path.strip_prefix(root).unwrap().to_path_buf(),
                e.error.to_string(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[Path::new("hostile.dcm")].contains("element (0011,1001) at byte ")
            && errors[Path::new("hostile.dcm")]
                .contains("declares 4294967280 bytes but only 4 remain"),
        "{errors:?}"
    );
    assert!(
        errors[Path::new("images/truncated.dcm")].starts_with("malformed DICOM:"),
        "{errors:?}"
    );

    let grouping = report.series();
    assert!(grouping.duplicates.is_empty(), "{:?}", grouping.duplicates);
    let groups = grouping.series;
    assert_eq!(groups.len(), 4);
    let a = groups
        .iter()
        .find(|g| g.paths().first() == series_a.first())
        .expect("series a");
    assert_eq!(a.paths(), series_a);
    assert_eq!(a.modality, "CT");
    assert_eq!(a.study_instance_uid, mri_raw.context.study_instance_uid);
    let raw = groups
        .iter()
        .find(|g| g.series_instance_uid == mri_raw.context.series_instance_uid)
        .expect("raw MRI series");
    assert_eq!(raw.paths(), [root.join("raw/mri.dcm")]);
    assert_eq!(raw.modality, "MR");

    let summary = scan_file(&root.join("raw/ct.dcm"), ReadLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.kind,
        FileKind::RawMeasurement {
            measurement: "CT_SINOGRAM".into(),
            dimensions: vec![6, 4],
            geometry: Some("FAN_EQUIANGULAR".into()),
        }
    );
    let summary = scan_file(&series_a[1], ReadLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.kind,
        FileKind::Image {
            rows: 8,
            columns: 6,
            frames: 1
        }
    );
    assert_eq!(summary.instance_number, Some(2));
}

#[test]
fn header_scan_stops_before_pixel_data() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("CT");
    let files = image_series(dir.path(), 1, &ctx);
    let bytes = fs::read(&files[0]).unwrap();
    let cut = dir.path().join("cut.dcm");
    fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let summary = scan_file(&cut, ReadLimits::default()).unwrap().unwrap();
    assert_eq!(summary.study_instance_uid, ctx.study_instance_uid);
    assert_eq!(
        summary.kind,
        FileKind::Image {
            rows: 8,
            columns: 6,
            frames: 1
        }
    );
    let err = read_image(&cut, ReadLimits::default()).unwrap_err();
    assert!(
        err.to_string().contains("element (7FE0,0010)") && err.to_string().contains("truncated"),
        "{err}"
    );
    // A header scan needs only the bytes before Pixel Data: a cap smaller than
    // the file but larger than the header is enough.
    let limits = ReadLimits {
        max_bytes: (bytes.len() - 96) as u64,
    };
    assert!(scan_file(&files[0], limits).unwrap().is_some());
    assert!(matches!(
        read_image(&files[0], limits).unwrap_err(),
        DicomError::TooLarge { .. }
    ));
}

#[test]
fn hostile_lengths_and_nesting_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let files = image_series(dir.path(), 1, &context("CT"));
    let valid = fs::read(&files[0]).unwrap();
    let start = std::time::Instant::now();
    for len in [0xFFFF_FFF0u32, 0x8000_0000, 1 << 20] {
        let err = from_bytes(
            &with_hostile_tail(&valid, len),
            ReadLimits::default(),
            Extent::Full,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("declares {len} bytes but only 4 remain")),
            "{err}"
        );
    }
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());

    // 40 nested sequences of undefined length in the data set.
    let mut nested = header_of(&valid);
    for _ in 0..40 {
        nested.extend_from_slice(&[
            0x11, 0x00, 0x02, 0x10, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        nested.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    let err = from_bytes(&nested, ReadLimits::default(), Extent::Full).unwrap_err();
    assert!(
        err.to_string().contains("nested deeper than 32 levels"),
        "{err}"
    );
}

/// What happened to one file of pydicom's test data.
fn outcome(path: &Path) -> String {
    match inspect_file(path, ReadLimits::default()) {
        Inspection::NotDicom => "not DICOM".into(),
        Inspection::Error(e) => format!("rejected: {e}"),
        Inspection::Raw(..) => "raw".into(),
        Inspection::Dicom(summary) => match summary.kind {
            FileKind::Image { .. } => match read_image(path, ReadLimits::default()) {
                Ok(file) => format!("image, {} frame(s)", file.frames.len()),
                Err(e) => format!("rejected: {e}"),
            },
            _ => "read (not an image)".into(),
        },
    }
}

#[test]
fn every_pydicom_test_file_is_read_or_rejected_clearly() {
    let Some(root) = pydicom_test_files() else {
        assert!(
            skip_external(),
            "pydicom's test files are needed; set DPS_SKIP_EXTERNAL=1 to skip"
        );
        return;
    };
    let mut outcomes = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let name = entry
                .path()
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            outcomes.insert(name, outcome(entry.path()));
        }
    }
    for (name, what) in &outcomes {
        if let Some(reason) = what.strip_prefix("rejected: ") {
            assert!(reason.len() > 20, "{name}: unclear reason {reason:?}");
        }
    }
    let expect = |name: &str, prefix: &str| {
        let what = &outcomes[name];
        assert!(what.starts_with(prefix), "{name}: {what}");
    };
    for name in [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "JPEG2000.dcm",
        "JPEGLSNearLossless_16.dcm",
        "693_J2KI.dcm",
        "image_dfl.dcm",
        "dicomdirtests/77654033/CT2/17106",
    ] {
        expect(name, "image, 1 frame(s)");
    }
    for name in [
        "rtplan.dcm",
        "test-SR.dcm",
        "dicomdirtests/DICOMDIR",
        "waveform_ecg.dcm",
    ] {
        expect(name, "read (not an image)");
    }
    for name in [
        "README.txt",
        "no_meta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "zipMR.gz",
    ] {
        expect(name, "not DICOM");
    }
    expect("MR_truncated.dcm", "rejected: malformed DICOM: element (7FE0,0010) at byte 1488 declares 8192 bytes but only 8130 remain");
    expect(
        "rtplan_truncated.dcm",
        "rejected: malformed DICOM: element (300A,00B0)",
    );
    expect(
        "meta_missing_tsyntax.dcm",
        "rejected: malformed DICOM: file meta information: Missing data element `TransferSyntax`",
    );
    expect(
        "SC_rgb_rle.dcm",
        "rejected: unsupported: PhotometricInterpretation \"RGB\"",
    );
    expect("JPGExtended.dcm", "rejected: cannot decode pixel data:");

    let count = |prefix: &str| outcomes.values().filter(|w| w.starts_with(prefix)).count();
    // pydicom 3.0.2 (pinned in requirements-dev.txt) ships 86 entries: 85 files and
    // dicomdirtests/, 176 files in all.
    let top_level = fs::read_dir(&root).unwrap().count();
    assert_eq!(
        (top_level, outcomes.len()),
        (86, 176),
        "pydicom's test files are not those of pydicom 3.0.2 (requirements-dev.txt)"
    );
    let counts = [
        count("image"),
        count("read (not an image)"),
        count("not DICOM"),
        count("rejected"),
    ];
    assert_eq!(
        counts,
        [47, 65, 13, 51],
        "image, other, not DICOM, rejected: {outcomes:#?}"
    );
}
