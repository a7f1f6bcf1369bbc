//! `dps-recon phantom` run as a process: files written, pixel values, exit codes.

use std::path::Path;
use std::process::{Command, Output};

use dps_recon::phantom::{random_ellipses, shepp_logan, shepp_logan_hu, PhantomStyle};
use tch::Tensor;

fn phantom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .arg("phantom")
        .args(args)
        .output()
        .expect("run dps-recon")
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn gray(path: &Path) -> image::GrayImage {
    image::open(path).unwrap().into_luma8()
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

fn assert_same_pixels(img: &image::GrayImage, expect: &[u8]) {
    assert_eq!(img.as_raw().len(), expect.len());
    let differ: Vec<(usize, u8, u8)> = img
        .as_raw()
        .iter()
        .zip(expect)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(k, (a, b))| (k, *a, *b))
        .collect();
    assert!(
        differ.is_empty(),
        "{} pixels differ, first (index, got, want): {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
}

#[test]
fn shepp_logan_png_maps_unit_range_to_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shepp.png");
    let out = phantom(&["--size", "64", "-o", arg(&png)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = gray(&png);
    assert_eq!(img.dimensions(), (64, 64));
    assert_eq!(img.get_pixel(0, 0).0, [0]); // air
    assert_eq!(img.get_pixel(32, 32).0, [51]); // brain 0.2 → 51
    let expect: Vec<u8> = values(&shepp_logan(64))
        .iter()
        .map(|&v| (f64::from(v) * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8)
        .collect();
    assert_same_pixels(&img, &expect);
}

#[test]
fn hu_png_uses_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("default.png");
    let brain = dir.path().join("brain.png");
    let out = phantom(&[
        "--size",
        "256",
        "--kind",
        "shepp-logan-hu",
        "-o",
        arg(&default),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = phantom(&[
        "--size",
        "256",
        "--kind",
        "shepp-logan-hu",
        "--window",
        "20,80",
        "-o",
        arg(&brain),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Default W 400 / L 40: −1000 → 0, 0 → 102, 20 → 115, +1000 → 255.
    let (d, b) = (gray(&default), gray(&brain));
    assert_eq!(d.get_pixel(0, 0).0, [0]);
    assert_eq!(d.get_pixel(156, 128).0, [102]); // ventricle, 0 HU
    assert_eq!(d.get_pixel(128, 128).0, [115]); // brain, 20 HU
    assert_eq!(d.get_pixel(41, 128).0, [255]); // skull
                                               // W 80 / L 20: 0 → 64, 20 → 128, 30 → 159.
    assert_eq!(b.get_pixel(156, 128).0, [64]);
    assert_eq!(b.get_pixel(128, 128).0, [128]);
    assert_eq!(b.get_pixel(128, 83).0, [159]);
    let expect: Vec<u8> = values(&shepp_logan_hu(256))
        .iter()
        .map(|&v| {
            ((f64::from(v) + 160.0) / 400.0 * 255.0 + 0.5)
                .floor()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    assert_same_pixels(&d, &expect);
}

#[test]
fn npy_holds_the_raw_values() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("ct.NPY");
    let out = phantom(&[
        "--size",
        "48",
        "--kind",
        "ellipses-ct",
        "--seed",
        "11",
        "-o",
        arg(&npy),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = Tensor::read_npy(&npy).unwrap();
    assert_eq!(read.size(), [48, 48]);
    assert!(read.equal(&random_ellipses(48, 11, PhantomStyle::Ct)));
    assert_eq!(read.double_value(&[0, 0]), -1000.0);
}

#[test]
fn bad_arguments_exit_with_2_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    let out = phantom(&["--size", "0", "-o", arg(&png)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
    assert!(!png.exists());

    let jpg = dir.path().join("x.jpg");
    let out = phantom(&["--size", "16", "-o", arg(&jpg)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(arg(&jpg)) && err.contains(".png or .npy"),
        "{err}"
    );

    let missing = dir.path().join("no/such/dir/x.png");
    let out = phantom(&["--size", "16", "-o", arg(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot write {}", arg(&missing))),
        "{err}"
    );

    let out = phantom(&["--size", "16", "--kind", "shepp", "-o", arg(&png)]);
    assert_eq!(out.status.code(), Some(2));
    let out = phantom(&["--size", "16", "--window", "40,-1", "-o", arg(&png)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!png.exists());
}
