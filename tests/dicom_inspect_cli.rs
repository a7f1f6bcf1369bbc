//! `dps-recon inspect`: one line per file, `--json`, exit codes.

mod dicom_support;

use std::fs;
use std::process::Command;

use dps_recon::dicom::write_raw;

use dicom_support::*;

fn inspect(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn inspect_describes_each_file_and_fails_on_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_raw(&root.join("a_mri.dcm"), &mri(8, 16, 12)).unwrap();
    write_raw(&root.join("b_ct.dcm"), &ct_fan_counts(30, 20)).unwrap();
    fs::write(root.join("c_notes.txt"), "hello").unwrap();
    let mri_bytes = fs::read(root.join("a_mri.dcm")).unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(
        root.join("sub/d_cut.dcm"),
        &mri_bytes[..mri_bytes.len() - 100],
    )
    .unwrap();

    let (code, text) = inspect(&[root.as_os_str()]);
    assert_eq!(code, 1, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let p = |name: &str| root.join(name).display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "{}: raw MRI k-space, 8 coils × 16 ky × 12 kx, ",
            p("a_mri.dcm")
        )) && lines[0].contains(
            "with coil sensitivities, noise σ 0.0125; reconstructs 16×12 at 0.9375×0.9375 mm"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}: raw CT sinogram, 30 views × 20 detectors, FAN_EQUIANGULAR (source–isocentre 595 mm, source–detector 1085.6 mm), counts, I0 100000; reconstructs 256×256 at 0.75×0.75 mm",
            p("b_ct.dcm")
        )),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], format!("{}: not DICOM", p("c_notes.txt")));
    assert!(
        lines[3].starts_with(&format!(
            "{}: error: malformed DICOM: element (0071,1006)",
            p("sub/d_cut.dcm")
        )),
        "{}",
        lines[3]
    );

    let (code, json) = inspect(&["--json".as_ref(), root.as_os_str()]);
    assert_eq!(code, 1);
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<&str> = objects
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["raw_mri_kspace", "raw_ct_sinogram", "not_dicom", "error"]
    );
    assert_eq!(objects[0]["raw"]["coils"], 8);
    assert_eq!(objects[0]["summary"]["modality"], "MR");
    assert_eq!(objects[1]["raw"]["geometry"], "FAN_EQUIANGULAR");
    assert_eq!(objects[1]["raw"]["data_type"], "COUNTS");
    assert_eq!(objects[3]["error_class"], "malformed");

    let (code, text) = inspect(&[
        root.join("a_mri.dcm").as_os_str(),
        root.join("c_notes.txt").as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.lines().count(), 2);

    let (code, text) = inspect(&[
        "--max-memory-mib".as_ref(),
        "0".as_ref(),
        root.join("a_mri.dcm").as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert!(text.contains("more than the cap of 0 bytes"), "{text}");
}

#[test]
fn inspect_names_image_series_members() {
    let Some(dir) = pydicom_test_files() else {
        assert!(
            skip_external(),
            "pydicom's test files are needed; set DPS_SKIP_EXTERNAL=1 to skip"
        );
        return;
    };
    let (code, text) = inspect(&[dir.join("CT_small.dcm").as_os_str()]);
    assert_eq!(code, 0);
    assert!(
        text.trim_end().ends_with(
            "CT image 128×128, 1 frame, member of series 1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322, instance 1, transfer syntax 1.2.840.10008.1.2.1"
        ),
        "{text}"
    );
}
