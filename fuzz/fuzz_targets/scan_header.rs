//! The header scanner and the full parser on arbitrary bytes: never a panic,
//! never more memory than the cap, and a file that parses whole also parses up
//! to its Pixel Data.
#![no_main]

use dps_recon_dicom::dicom::{from_bytes, scan_bytes, Extent, ReadLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_bytes: 64 << 20,
    };
    let _ = scan_bytes(data, limits);
    let header = from_bytes(data, limits, Extent::Header);
    if from_bytes(data, limits, Extent::Full).is_ok() {
        assert!(header.is_ok(), "{:?}", header.err());
    }
});
