//! NIfTI-1 files (`.nii`, `.nii.gz`, `.hdr`/`.img` pairs) read into voxels. The
//! header is checked before any voxel is read, so that a malformed file gets an
//! error naming the problem instead of reaching the `nifti` crate's decoder
//! (which panics when `bitpix` disagrees with `datatype`, or on complex and RGB
//! voxels read as reals), a large allocation (a short file declaring a huge
//! volume) or the written DICOM (voxel sizes). No tensors here, so the fuzz
//! target (`fuzz/fuzz_targets/nifti_volume.rs`) builds it alone.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{anyhow, ensure, Context};
use flate2::read::GzDecoder;
use nifti::{
    InMemNiftiVolume, IntoNdArray, NiftiError, NiftiHeader, NiftiObject, NiftiType, ReaderOptions,
};

/// The voxels of a 3-D volume (trailing dimensions of size 1 allowed), after the
/// file's `scl_slope`/`scl_inter`.
pub struct Voxels {
    /// Values in C order `[nz][ny][nx]` (x fastest), all finite.
    pub zyx: Vec<f32>,
    /// `[nx, ny, nz]`, each ≥ 1.
    pub dims: [usize; 3],
    /// Voxel sizes along x, y, z in mm (`pixdim[1..=3]`), finite and > 0.
    pub voxel_mm: [f64; 3],
}

/// Reads a NIfTI-1 file; errors name the file and the problem.
pub fn read_file(path: &Path) -> anyhow::Result<Voxels> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let length = file.metadata()?.len();
    let gz = name.ends_with(".gz");
    let mut stream: Box<dyn Read> = match gz {
        true => Box::new(GzDecoder::new(BufReader::new(file))),
        false => Box::new(BufReader::new(file)),
    };
    let header = NiftiHeader::from_reader(&mut stream)
        .map_err(plain)
        .with_context(|| format!("{name}: cannot read NIfTI header"))?;
    let volume = if header.magic == *b"ni1\0" {
        // A .hdr whose voxels are in the .img beside it, which the crate finds.
        check_header(&header, None).with_context(|| name.clone())?;
        ReaderOptions::new()
            .read_file(path)
            .map_err(plain)
            .with_context(|| format!("{name}: cannot read NIfTI volume"))?
            .into_volume()
    } else {
        // Only an uncompressed file tells its voxel bytes by its length.
        let available = (!gz).then(|| length.saturating_sub(voxel_offset(&header)));
        check_header(&header, available).with_context(|| name.clone())?;
        single_file_voxels(stream, &header).with_context(|| name.clone())?
    };
    voxels(volume, &header).with_context(|| name.clone())
}

/// Reads a single-file NIfTI-1 (`.nii`, not compressed) from memory.
pub fn read_bytes(bytes: &[u8]) -> anyhow::Result<Voxels> {
    let mut stream = bytes;
    let header = NiftiHeader::from_reader(&mut stream)
        .map_err(plain)
        .context("cannot read NIfTI header")?;
    ensure!(
        header.magic == *b"n+1\0",
        "a header without voxels (magic \"ni1\", the voxels are in a separate .img)"
    );
    let available = (bytes.len() as u64).saturating_sub(voxel_offset(&header));
    check_header(&header, Some(available))?;
    voxels(single_file_voxels(stream, &header)?, &header)
}

/// The voxels of a single file, from `stream` just past its 348-byte header: what
/// lies before `vox_offset` (extension flag, extensions, padding) is skipped. The
/// crate's own reader starts the voxels after the extensions it parses, which is
/// wrong for a file that pads to its `vox_offset` without extensions.
fn single_file_voxels(
    mut stream: impl Read,
    header: &NiftiHeader,
) -> anyhow::Result<InMemNiftiVolume> {
    let skip = voxel_offset(header) - 348;
    let skipped = std::io::copy(&mut (&mut stream).take(skip), &mut std::io::sink())?;
    ensure!(
        skipped == skip,
        "the file ends before its voxel offset {}",
        voxel_offset(header)
    );
    InMemNiftiVolume::from_reader(stream, header)
        .map_err(plain)
        .context("cannot read NIfTI voxels")
}

/// The crate's error, with its I/O errors said in words (its own display of them
/// is their debug form).
fn plain(err: NiftiError) -> anyhow::Error {
    match err {
        NiftiError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            anyhow!("the file ends early ({e})")
        }
        NiftiError::Io(e) => e.into(),
        e => e.into(),
    }
}

/// Where the voxels start in a single file: `vox_offset`, at least the header and
/// its extension flag.
fn voxel_offset(header: &NiftiHeader) -> u64 {
    (header.vox_offset.max(352.0) as u64).max(352)
}

/// Checks the header: a 3-D volume of real voxels whose size `bitpix` states,
/// positive finite voxel sizes, and (where known) enough bytes for the voxels.
fn check_header(header: &NiftiHeader, available: Option<u64>) -> anyhow::Result<()> {
    let dim = header.dim().map_err(|_| {
        anyhow!(
            "header dim = {:?}: dim[0] must be 1…7 and each of the dim[0] sizes after it ≥ 1",
            header.dim
        )
    })?;
    ensure!(
        dim.len() >= 3 && dim[3..].iter().all(|&d| d == 1),
        "expected a 3-D volume, found dimensions {dim:?}"
    );
    let dims = [dim[0], dim[1], dim[2]].map(usize::from);

    let datatype = header
        .data_type()
        .map_err(|_| anyhow!("unknown NIfTI datatype code {}", header.datatype))?;
    use NiftiType::*;
    ensure!(
        matches!(
            datatype,
            Uint8 | Int8 | Uint16 | Int16 | Uint32 | Int32 | Uint64 | Int64 | Float32 | Float64
        ),
        "NIfTI datatype {datatype:?} is not supported: voxels must be real integers, \
         float32 or float64"
    );
    let bits = 8 * datatype.size_of();
    ensure!(
        usize::try_from(header.bitpix) == Ok(bits),
        "bitpix {} does not match datatype {datatype:?} ({bits} bits)",
        header.bitpix
    );

    let pixdim = &header.pixdim[1..=3];
    ensure!(
        pixdim.iter().all(|v| v.is_finite() && *v > 0.0),
        "voxel sizes pixdim[1..=3] = {pixdim:?} mm: each must be a finite number > 0"
    );

    if let Some(available) = available {
        let needed = dims.iter().map(|&d| d as u64).product::<u64>() * (bits as u64 / 8);
        ensure!(
            available >= needed,
            "the header declares {}×{}×{} voxels of {bits} bits ({needed} bytes), \
             but the file holds {available} bytes after its voxel offset",
            dims[0],
            dims[1],
            dims[2]
        );
    }
    Ok(())
}

fn voxels(volume: InMemNiftiVolume, header: &NiftiHeader) -> anyhow::Result<Voxels> {
    let arr = volume
        .into_ndarray::<f32>()
        .context("cannot decode NIfTI voxels")?;
    let dims = [arr.shape()[0], arr.shape()[1], arr.shape()[2]];
    // [x, y, z, 1…] with axes reversed is [1…, z, y, x]: C order, x fastest.
    let zyx: Vec<f32> = arr.reversed_axes().iter().copied().collect();
    ensure!(
        zyx.iter().all(|v| v.is_finite()),
        "volume contains NaN or infinite voxels"
    );
    Ok(Voxels {
        zyx,
        dims,
        voxel_mm: [1, 2, 3].map(|k| f64::from(header.pixdim[k])),
    })
}
