//! The NIfTI-1 reader on arbitrary bytes: an error or a volume that keeps the
//! reader's promises (one finite value per voxel, positive voxel sizes), never a
//! panic, and never an allocation larger than the input declares and holds.
#![no_main]

use dps_recon_dicom::nifti_volume::read_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = read_bytes(data) {
        assert_eq!(v.zyx.len(), v.dims.iter().product::<usize>());
        assert!(v.zyx.iter().all(|x| x.is_finite()));
        assert!(v.voxel_mm.iter().all(|m| m.is_finite() && *m > 0.0));
    }
});
