//! NIfTI-1 reading: voxel order and units of a valid file, and a clear error naming
//! the file for headers that the `nifti` crate's decoder panics on (bitpix against
//! datatype, complex and RGB voxels) or whose voxel sizes cannot be written to DICOM.

use std::path::Path;
use std::process::Command;

use dps_recon::volume::nifti::{read_bytes, read_file};
use dps_recon::volume::Volume;

/// A single-file NIfTI-1 (`.nii`): the 348-byte header, an empty extension flag,
/// then `data` (little endian).
struct Header {
    dims: [u16; 3],
    datatype: i16,
    bitpix: i16,
    pixdim: [f32; 3],
    scl_slope: f32,
}

impl Header {
    fn float32(dims: [u16; 3]) -> Self {
        Self {
            dims,
            datatype: 16,
            bitpix: 32,
            pixdim: [1.0, 1.5, 2.5],
            scl_slope: 1.0,
        }
    }

    /// The file with voxels at 352, after an empty extension flag.
    fn file(&self, data: &[u8]) -> Vec<u8> {
        self.file_with(&[0; 4], data)
    }

    /// The file with `between` (extension flag, extensions, padding) from byte 348
    /// to `vox_offset`, then the voxels.
    fn file_with(&self, between: &[u8], data: &[u8]) -> Vec<u8> {
        self.bytes(b"n+1\0", 348 + between.len(), between, data)
    }

    fn bytes(&self, magic: &[u8; 4], vox_offset: usize, between: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 348];
        h[0..4].copy_from_slice(&348i32.to_le_bytes());
        let dim = [3, self.dims[0], self.dims[1], self.dims[2], 1, 1, 1, 1];
        for (k, d) in dim.iter().enumerate() {
            h[40 + 2 * k..42 + 2 * k].copy_from_slice(&d.to_le_bytes());
        }
        h[70..72].copy_from_slice(&self.datatype.to_le_bytes());
        h[72..74].copy_from_slice(&self.bitpix.to_le_bytes());
        let pixdim = [
            1.0,
            self.pixdim[0],
            self.pixdim[1],
            self.pixdim[2],
            1.0,
            1.0,
            1.0,
            1.0,
        ];
        for (k, p) in pixdim.iter().enumerate() {
            h[76 + 4 * k..80 + 4 * k].copy_from_slice(&p.to_le_bytes());
        }
        h[108..112].copy_from_slice(&(vox_offset as f32).to_le_bytes());
        h[112..116].copy_from_slice(&self.scl_slope.to_le_bytes());
        h[344..348].copy_from_slice(magic);
        h.extend_from_slice(between);
        h.extend_from_slice(data);
        h
    }
}

/// Voxel values x + 10 y + 100 z in file order (x fastest), as f32 bytes.
fn ramp(dims: [u16; 3]) -> Vec<u8> {
    let mut data = Vec::new();
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let v = f32::from(x) + 10.0 * f32::from(y) + 100.0 * f32::from(z);
                data.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    data
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The error of reading `bytes` as `name`, which must name the file.
fn error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = write(dir, name, bytes);
    let err = format!("{:#}", read_file(&path).err().expect("must be refused"));
    assert!(err.contains(name), "{err}");
    err
}

#[test]
fn voxels_keep_their_order_scale_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [4, 3, 2];
    let mut header = Header::float32(dims);
    header.scl_slope = 2.0;
    let bytes = header.file(&ramp(dims));
    let voxels = read_file(&write(dir.path(), "v.nii", &bytes)).unwrap();
    assert_eq!(voxels.dims, [4, 3, 2]);
    assert_eq!(voxels.voxel_mm, [1.0, 1.5, 2.5]);
    // C order [z][y][x], values times scl_slope.
    assert_eq!(voxels.zyx[(3 + 2) * 4 + 1], 2.0 * (1.0 + 20.0 + 100.0));
    assert_eq!(read_bytes(&bytes).unwrap().zyx, voxels.zyx);

    // The axial slice at z: row r is y = ny − 1 − r, column c is x = c.
    let volume = Volume::read(&dir.path().join("v.nii")).unwrap();
    let slice = volume.axial(1);
    assert_eq!(slice.size(), [3, 4]);
    assert_eq!(slice.double_value(&[0, 3]), 2.0 * (3.0 + 20.0 + 100.0));
}

#[test]
fn voxels_start_at_vox_offset_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [4, 3, 2];
    let (header, data) = (Header::float32(dims), ramp(dims));
    let expected = read_bytes(&header.file(&data)).unwrap().zyx;
    assert_eq!(expected[1], 1.0);

    // Padding to vox_offset 368 without extensions (the crate's own reader starts
    // the voxels at 352 there), and one 16-byte extension (code 6, a comment).
    let mut padding = vec![0; 4];
    padding.extend_from_slice(&[0xAB; 16]);
    let padded = header.file_with(&padding, &data);
    let mut extension = vec![1, 0, 0, 0];
    extension.extend_from_slice(&16i32.to_le_bytes());
    extension.extend_from_slice(&6i32.to_le_bytes());
    extension.extend_from_slice(b"comment\0");
    let extended = header.file_with(&extension, &data);
    for (name, bytes) in [("padded.nii", &padded), ("extended.nii", &extended)] {
        assert_eq!(read_bytes(bytes).unwrap().zyx, expected, "{name}");
        let path = write(dir.path(), name, bytes);
        assert_eq!(read_file(&path).unwrap().zyx, expected, "{name}");
    }

    // Compressed, and a .hdr/.img pair (voxels at offset 0 of the .img).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &padded).unwrap();
    let path = write(dir.path(), "padded.nii.gz", &gz.finish().unwrap());
    assert_eq!(read_file(&path).unwrap().zyx, expected);
    let hdr = write(dir.path(), "pair.hdr", &header.bytes(b"ni1\0", 0, &[], &[]));
    write(dir.path(), "pair.img", &data);
    assert_eq!(read_file(&hdr).unwrap().zyx, expected);
    // A header of a pair alone, in memory, has no voxels.
    let err = read_bytes(&header.bytes(b"ni1\0", 0, &[], &data))
        .err()
        .unwrap();
    assert!(err.to_string().contains("magic \"ni1\""), "{err}");
}

#[test]
fn headers_the_decoder_cannot_take_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [4, 3, 2];
    let data = ramp(dims);

    let mut bitpix = Header::float32(dims);
    bitpix.bitpix = 8;
    let err = error(dir.path(), "bitpix.nii", &bitpix.file(&data));
    assert!(
        err.contains("bitpix 8 does not match datatype Float32 (32 bits)"),
        "{err}"
    );

    // Complex64 (code 32, 64 bits) and RGB24 (code 128, 24 bits): sizes that
    // match the data, so only the voxel type is wrong.
    let mut complex = Header::float32([2, 3, 2]);
    (complex.datatype, complex.bitpix) = (32, 64);
    let err = error(dir.path(), "complex.nii", &complex.file(&data[..96]));
    assert!(err.contains("datatype Complex64 is not supported"), "{err}");
    let mut rgb = Header::float32([4, 2, 2]);
    (rgb.datatype, rgb.bitpix) = (128, 24);
    let err = error(dir.path(), "rgb.nii", &rgb.file(&data[..48]));
    assert!(err.contains("datatype Rgb24 is not supported"), "{err}");

    let mut unknown = Header::float32(dims);
    unknown.datatype = 3;
    let err = error(dir.path(), "unknown.nii", &unknown.file(&data));
    assert!(err.contains("unknown NIfTI datatype code 3"), "{err}");
}

#[test]
fn a_file_shorter_than_its_header_declares_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let data = ramp([4, 3, 2]);
    let err = error(
        dir.path(),
        "short.nii",
        &Header::float32([4, 3, 2]).file(&data[..10]),
    );
    assert!(
        err.contains("declares 4×3×2 voxels of 32 bits (96 bytes), but the file holds 10 bytes"),
        "{err}"
    );
    // 4·10¹³ bytes declared: refused from the header, nothing is allocated.
    let err = error(
        dir.path(),
        "huge.nii",
        &Header::float32([30000, 30000, 30000]).file(&data),
    );
    assert!(err.contains("(108000000000000 bytes)"), "{err}");
    let err = format!(
        "{:#}",
        read_bytes(&Header::float32([4, 3, 2]).file(&data[..95]))
            .err()
            .unwrap()
    );
    assert!(err.contains("holds 95 bytes"), "{err}");
}

#[test]
fn voxel_sizes_must_be_positive_and_finite() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [4, 3, 2];
    for (name, pixdim) in [
        ("zero.nii", [1.0, 0.0, 1.0]),
        ("negative.nii", [-1.0, 1.0, 1.0]),
        ("nan.nii", [1.0, 1.0, f32::NAN]),
        ("inf.nii", [f32::INFINITY, 1.0, 1.0]),
    ] {
        let mut header = Header::float32(dims);
        header.pixdim = pixdim;
        let err = error(dir.path(), name, &header.file(&ramp(dims)));
        assert!(
            err.contains("voxel sizes pixdim[1..=3]") && err.contains("finite number > 0"),
            "{err}"
        );
    }
}

#[test]
fn simulate_names_the_volume_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = Header::float32([16, 16, 2]);
    header.bitpix = 16;
    let path = write(dir.path(), "bad.nii", &header.file(&ramp([16, 16, 2])));
    let out = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args([
            "--threads",
            "1",
            "simulate",
            "--modality",
            "mr",
            "--size",
            "16",
        ])
        .arg("--source")
        .arg(format!("nifti:{}:0", path.display()))
        .arg("--out")
        .arg(dir.path().join("case"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.nii: bitpix 16"), "{stderr}");
    assert!(!dir.path().join("case").join("raw").exists());
}
