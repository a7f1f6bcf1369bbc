//! The example writer of docs/dicom-raw-profile.md produces files dps-recon reads.

mod dicom_support;

use dps_recon::dicom::{read_raw, CtDataType, CtGeometry, Measurement, ReadLimits};

use dicom_support::*;

fn example_script() -> String {
    let doc = include_str!("../docs/dicom-raw-profile.md");
    let start = doc
        .find("<!-- BEGIN EXAMPLE -->")
        .expect("example start marker");
    let end = doc
        .find("<!-- END EXAMPLE -->")
        .expect("example end marker");
    let block = &doc[start..end];
    let code_start = block.find("```python\n").expect("python fence") + "```python\n".len();
    let code_end = block[code_start..].find("```").expect("closing fence") + code_start;
    block[code_start..code_end].to_owned()
}

#[test]
fn documented_example_writes_files_dps_recon_reads() {
    let dir = tempfile::tempdir().unwrap();
    let script = example_script();
    if python(&script, &[dir.path().to_str().unwrap()]).is_none() {
        return;
    }
    let mri = read_raw(&dir.path().join("mri.dcm"), ReadLimits::default()).unwrap();
    let Measurement::MriKspace(k) = &mri.data else {
        panic!("not MRI")
    };
    assert_eq!((k.coils, k.ky, k.kx), (4, 64, 64));
    let acquired: usize = k.mask.iter().map(|&m| usize::from(m)).sum();
    assert_eq!(acquired, (32 + 4) * 64);
    assert_eq!(mri.noise_sigma, Some(0.01));
    assert_eq!(mri.recon_size, [64, 64]);
    assert_eq!(mri.plane.position_mm, [-118.125, -118.125, 12.5]);
    assert_eq!(mri.context.modality, "MR");

    let ct = read_raw(&dir.path().join("ct.dcm"), ReadLimits::default()).unwrap();
    let Measurement::CtSinogram(s) = &ct.data else {
        panic!("not CT")
    };
    assert_eq!((s.views, s.detectors), (360, 257));
    assert_eq!(s.geometry, CtGeometry::FanEquiangular);
    assert_eq!(
        s.data_type,
        CtDataType::Counts {
            blank_scan_counts: 1.0e5
        }
    );
    assert_eq!(s.view_angles_deg[90], 90.0);
    assert_eq!(s.data[1000], (1.0e5 * (-2.0f64).exp()) as f32);
    assert_eq!(
        ct.context.study_instance_uid,
        mri.context.study_instance_uid
    );
    assert_eq!(ct.plane.position_mm, [-127.5, -127.5, -40.0]);
}
