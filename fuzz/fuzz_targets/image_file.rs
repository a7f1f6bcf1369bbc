//! The image reader (what `train --data dicom:…` and `simulate --source dicom:…`
//! read) on arbitrary bytes: header parse, pixel decoding in every transfer
//! syntax the build has, rescale and geometry. Never a panic, never more memory
//! than the cap; every frame it returns has `rows · cols` values.
//!
//! A decoder that panics is caught by the reader and reported as an error
//! (`image_from_object` wraps decoding in `catch_unwind`); libfuzzer-sys's panic
//! hook would abort on it anyway, so the target puts the default hook back. A
//! panic the reader does not catch still aborts the run.
#![no_main]

use std::sync::Once;

use dps_recon_dicom::dicom::{image_from_bytes, ReadLimits};
use libfuzzer_sys::fuzz_target;

static DEFAULT_PANIC_HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_PANIC_HOOK.call_once(|| drop(std::panic::take_hook()));
    let limits = ReadLimits {
        max_bytes: 64 << 20,
    };
    if let Ok(image) = image_from_bytes(data, limits) {
        assert!(!image.frames.is_empty(), "an accepted image has frames");
        for frame in &image.frames {
            assert!(frame.rows > 0 && frame.cols > 0, "{}×{}", frame.rows, frame.cols);
            assert_eq!(frame.pixels.len(), frame.rows * frame.cols);
        }
    }
});
