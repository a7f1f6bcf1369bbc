//! `dps-recon train --data dicom:DIR` trains on the image series under DIR (raw
//! data beside them is skipped) and records what it used in the model card.

use std::path::Path;
use std::process::Command;

use dps_recon::prior::ModelCard;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dps-recon"))
}

/// Simulates a case with `simulate` (source and size arguments) in `dir/case`,
/// trains a tiny prior on its image series for two steps in `dir/prior` (with
/// `train_args` added), and returns the model card.
fn train_on_simulated(dir: &Path, simulate: &[&str], train_args: &[&str]) -> ModelCard {
    let case = dir.join("case");
    let status = bin()
        .args(["--device", "cpu", "-q", "simulate"])
        .args(simulate)
        .arg("-o")
        .arg(&case)
        .status()
        .unwrap();
    assert!(status.success(), "simulate failed");
    let out = dir.join("prior");
    let status = bin()
        .args([
            "--device", "cpu", "-q", "train", "--arch", "tiny", "--size", "16",
        ])
        .args([
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--log-every",
            "1",
            "--name",
            "t",
        ])
        .args(train_args)
        .arg(format!("--data=dicom:{}", case.display()))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "train failed");
    ModelCard::read(&out.join("t.json")).unwrap()
}

#[test]
fn trains_on_a_dicom_image_series_and_skips_raw_data() {
    let dir = tempfile::tempdir().unwrap();
    let card = train_on_simulated(
        dir.path(),
        &[
            "--source",
            "shepp-logan-hu",
            "--modality",
            "ct",
            "--size",
            "32",
            "--views",
            "8",
        ],
        &[],
    );
    assert_eq!(card.intensity.unit, "HU");
    assert_eq!(
        (card.intensity.physical_min, card.intensity.physical_max),
        (-1000.0, 1500.0)
    );
    assert_eq!(card.intensity.reference_p999, None, "measured for MR only");
    let record = card.training.unwrap();
    assert!(
        record.data.contains("1 frames of 1 CT image series"),
        "{}",
        record.data
    );
    assert_eq!(record.steps, 2);
    assert!(record.command.starts_with("dps-recon ") && record.command.contains("dicom:"));

    // A folder with no image series is a clear error.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = bin()
        .args([
            "--device", "cpu", "train", "--arch", "tiny", "--size", "16", "--name", "t",
        ])
        .arg(format!("--data=dicom:{}", empty.display()))
        .arg("--out")
        .arg(dir.path().join("p2"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("no CT or MR image series found"), "{err}");
}

/// An MR series is scaled so that its 99.9th percentile is 0.8; with one frame
/// that is also the median the card records as `reference_p999`.
#[test]
fn records_the_reference_percentile_of_mr_training_images() {
    let dir = tempfile::tempdir().unwrap();
    let card = train_on_simulated(
        dir.path(),
        &["--source", "shepp-logan", "--size", "32", "--coils", "2"],
        &[],
    );
    assert_eq!(card.intensity.unit, "MR");
    let r = card
        .intensity
        .reference_p999
        .expect("MR cards carry reference_p999");
    assert!((r - 0.8).abs() < 1e-5, "reference_p999 {r}");
}

/// Values that cannot train are refused when parsed, before any file is written
/// (before, --size 0 and --batch-size 0 panicked inside libtorch, --checkpoint-every
/// 0 divided by zero, and --steps 0 or --lr nan wrote a model card with a null
/// loss that no command could read).
#[test]
fn options_that_cannot_train_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prior");
    for (option, value, message) in [
        ("--size", "0", "0 is not in 8..=4096"),
        ("--batch-size", "0", "must be an integer ≥ 1, got 0"),
        ("--steps", "0", "must be an integer ≥ 1, got 0"),
        ("--checkpoint-every", "0", "must be an integer ≥ 1, got 0"),
        ("--log-every", "0", "must be an integer ≥ 1, got 0"),
        ("--lr", "nan", "must be a finite number > 0, got nan"),
        ("--lr", "-1e-3", "must be a finite number > 0, got -1e-3"),
        ("--ema", "1", "must be a number in [0, 1), got 1"),
        ("--nifti-scale", "0", "must be a finite number > 0, got 0"),
        ("--min-foreground", "2", "must be a number in [0, 1], got 2"),
        (
            "--precision",
            "fp16",
            "unknown precision 'fp16': expected f32 or bf16",
        ),
    ] {
        let result = bin()
            .args(["train", "--data", "phantoms:mr", "--name", "t", "-o"])
            .arg(&out)
            .arg(format!("{option}={value}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{option}"))
                && stderr.contains(message),
            "{option} {value}: {stderr}"
        );
        assert!(!out.exists(), "{option} {value}");
    }
}

/// A batch whose activations exceed the memory available is refused before any
/// file is written, with the batch size that fits, instead of being killed by the
/// kernel at the first step: 2048² crops take at least 20 GiB each in the
/// shipped priors' network, so 1000 of them fit no machine.
#[test]
fn a_batch_larger_than_memory_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prior");
    let result = bin()
        .args([
            "train",
            "--data",
            "phantoms:ct",
            "--name",
            "t",
            "--size",
            "2048",
        ])
        .args(["--batch-size", "1000", "--steps", "1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a training batch of 1000 images needs at least")
            && stderr.contains("GiB per image), but"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// `--val-images` on a NIfTI volume holds slices out, spread along the volume
/// after `--exclude-z`, names their z in the card and scores them per checkpoint.
#[test]
fn nifti_validation_slices_are_named_in_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.nii");
    let mut vol = ndarray::Array3::<f32>::zeros((24, 24, 20));
    for ((x, y, z), v) in vol.indexed_iter_mut() {
        if (4..20).contains(&x) && (4..20).contains(&y) {
            *v = 100.0 + 10.0 * z as f32;
        }
    }
    nifti::writer::WriterOptions::new(&path)
        .write_nifti(&vol)
        .unwrap();
    let out = dir.path().join("prior");
    let result = bin()
        .args([
            "--device", "cpu", "-q", "train", "--arch", "tiny", "--size", "16",
        ])
        .args(["--steps", "2", "--batch-size", "2", "--name", "t"])
        .args(["--exclude-z", "5-9", "--val-images", "3"])
        .arg(format!("--data=nifti:{}", path.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let training = ModelCard::read(&out.join("t.json"))
        .unwrap()
        .training
        .unwrap();
    // 15 slices left (z = 0…4, 10…19); positions 2, 7, 12 of them.
    assert!(
        training
            .data
            .contains("validation slices z = 2, 12, 17, held out of training"),
        "{}",
        training.data
    );
    let validation = training.validation.unwrap();
    assert_eq!(validation.held_out, [2, 7, 12]);
    let log = std::fs::read_to_string(out.join("val_loss.csv")).unwrap();
    assert!(log.starts_with("step,val_loss\n2,"), "{log}");
    let shown = format!("validation {:.4}, ", validation.loss);
    assert!(stderr.contains(&shown), "{stderr}");

    // Holding out every slice is refused, naming the volume.
    let result = bin()
        .args([
            "--device", "cpu", "-q", "train", "--arch", "tiny", "--size", "16",
        ])
        .args(["--steps", "2", "--name", "t", "--exclude-z", "0-15"])
        .args(["--val-images", "4"])
        .arg(format!("--data=nifti:{}", path.display()))
        .arg("--out")
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("vol.nii: cannot hold out 4 of 4 training images"),
        "{stderr}"
    );
    assert!(!dir.path().join("none").exists());
}

/// With DICOM data, `--val-images` names the held-out images by SOPInstanceUID.
#[test]
fn dicom_validation_images_are_named_by_uid() {
    let dir = tempfile::tempdir().unwrap();
    let simulate = ["--modality", "ct", "--source", "ellipses-ct:1,2,3,4"];
    let simulate = [&simulate[..], &["--size", "32", "--views", "8"]].concat();
    let card = train_on_simulated(dir.path(), &simulate, &["--val-images", "2"]);
    let case = dir.path().join("case");
    let training = card.training.unwrap();
    assert_eq!(training.validation.unwrap().held_out, [1, 3]);
    // Frames are in slice order: the 2nd and 4th of the image series.
    let report = dps_recon::dicom::scan_folder(&case, Default::default());
    let uid = |n: i64| {
        report
            .files
            .iter()
            .find(|(_, f)| {
                f.modality == "CT"
                    && f.instance_number == Some(n)
                    && f.sop_class_uid.ends_with(".2")
            })
            .map(|(_, f)| f.sop_instance_uid.clone())
            .unwrap()
    };
    let expected = format!(
        "validation images (SOPInstanceUID[#frame]) held out of training: {}, {}",
        uid(2),
        uid(4)
    );
    assert!(
        training.data.ends_with(&expected),
        "{}\n{expected}",
        training.data
    );
}
