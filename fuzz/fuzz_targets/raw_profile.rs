//! The raw-profile reader on arbitrary bytes: never a panic, never more memory
//! than the cap; whatever it accepts, the writer accepts and reads back equal.
#![no_main]

use dps_recon_dicom::dicom::{raw_from_bytes, ReadLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_bytes: 64 << 20,
    };
    if let Ok(raw) = raw_from_bytes(data, limits) {
        let file = raw
            .to_object()
            .expect("the writer accepts what the reader accepts");
        let mut bytes = Vec::new();
        file.write_all(&mut bytes)
            .expect("an accepted measurement encodes");
        let back = raw_from_bytes(&bytes, limits).expect("a written measurement reads back");
        assert_eq!(back.data, raw.data);
    }
});
