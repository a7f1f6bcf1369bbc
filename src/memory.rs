//! Host memory: how much a process may still take, and whether a sampling or
//! training batch fits in it.
//!
//! On Linux an allocation that overcommits memory does not fail: the kernel kills
//! the process later, in the middle of a batch run, and every series after the
//! one being sampled is lost. So the largest demand, the network's activations
//! kept for the gradient, is checked against the memory available before a batch
//! starts, where a refusal costs only the series (or, for training, nothing).

use std::fmt;

use tch::Device;

/// Bytes the process may still allocate without the kernel reclaiming memory by
/// force: the system's available memory (`MemAvailable` on Linux: free memory and
/// caches it can drop), lowered to the room left under the memory limit of the
/// process's control group when one is set (a container's limit). `None` where
/// the system does not say.
pub fn available_bytes() -> Option<u64> {
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_memory();
    let available = Some(system.available_memory()).filter(|&b| b > 0);
    let pid = sysinfo::get_current_pid().ok()?;
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), false);
    let in_cgroup = system
        .process(pid)
        .and_then(|p| p.cgroup_limits())
        .map(|limits| limits.free_memory);
    match (available, in_cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// The memory that tensors on `device` may still take: [`available_bytes`] for
/// the CPU; `None` for a GPU, whose running out is an error libtorch reports
/// (not a kill), and whose free memory tch does not expose.
pub fn available_on(device: Device) -> Option<u64> {
    match device {
        Device::Cpu => available_bytes(),
        _ => None,
    }
}

/// A byte count for messages: whole MiB below 1 GiB, GiB to one decimal below
/// 10⁵ GiB, GiB in exponent form beyond (absurd requests stay short).
pub struct Bytes(pub u128);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.0 as f64 / (1u64 << 20) as f64;
        let gib = mib / 1024.0;
        if mib < 1024.0 {
            write!(f, "{mib:.0} MiB")
        } else if gib < 1e5 {
            write!(f, "{gib:.1} GiB")
        } else {
            write!(f, "{gib:.2e} GiB")
        }
    }
}

/// The memory that advice on what fits plans for: two thirds of `available`,
/// leaving a third to the rest of the process and to the spread of the estimates
/// (lower bounds, measured up to 1.45× short).
fn advice_room(available: u64) -> u64 {
    available / 3 * 2
}

/// Fails, with the batch size that would fit, when a training batch of `batch`
/// images of `per_image` bytes each needs more than `available` bytes.
pub fn ensure_training_fits(batch: i64, per_image: u64, available: u64) -> Result<(), String> {
    let bytes = u128::from(per_image) * batch as u128;
    if bytes <= available.into() {
        return Ok(());
    }
    let k = advice_room(available) / per_image.max(1);
    let advice = if k >= 1 {
        format!("train on at most {k} images per batch (--batch-size {k})")
    } else {
        format!(
            "one image alone needs {} of the {}; train on smaller crops (--size) or on a \
             machine with more memory",
            Bytes(per_image.into()),
            Bytes(available.into())
        )
    };
    Err(format!(
        "a training batch of {batch} images needs at least {} for the network's activations \
         ({} per image), but {} of memory is available: {advice}",
        Bytes(bytes),
        Bytes(per_image.into()),
        Bytes(available.into())
    ))
}

/// One sampling batch: `slices` slices × `samples` samples × `parts` real images
/// per sample (2 for complex MR images), each needing `per_image` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplingBatch {
    pub slices: i64,
    pub samples: i64,
    pub parts: i64,
    pub per_image: u64,
}

impl SamplingBatch {
    /// Real images through the network at once (u128: `--samples` may be up
    /// to 2⁶³ − 1, times the slices and parts).
    pub fn images(&self) -> u128 {
        self.slices as u128 * self.samples as u128 * self.parts as u128
    }

    /// Bytes of the whole batch.
    pub fn bytes(&self) -> u128 {
        self.per_image as u128 * self.images()
    }

    /// Fails, with what would fit, when the batch needs more than `available`
    /// bytes. `sample_option` and `slice_option` name the settings that bound
    /// the samples and the slices drawn together (`None`: the caller cannot
    /// change it).
    pub fn ensure_fits(
        &self,
        available: u64,
        sample_option: &str,
        slice_option: Option<&str>,
    ) -> Result<(), String> {
        if self.bytes() <= available as u128 {
            return Ok(());
        }
        let what = if self.parts > 1 {
            format!(
                "{} slice(s) × {} sample(s) × {} parts (real and imaginary)",
                self.slices, self.samples, self.parts
            )
        } else {
            format!("{} slice(s) × {} sample(s)", self.slices, self.samples)
        };
        let per_sample = self
            .per_image
            .saturating_mul(self.slices.saturating_mul(self.parts) as u64);
        let per_slice_sample = self.per_image.saturating_mul(self.parts as u64);
        let room = advice_room(available);
        let advice = if room >= per_sample {
            let k = room / per_sample;
            format!("draw at most {k} sample(s) together ({sample_option} {k})")
        } else if let (Some(slices), true) = (slice_option, room >= per_slice_sample) {
            let n = room / per_slice_sample;
            if self.samples > 1 {
                format!(
                    "reconstruct at most {n} slice(s) together, one sample at a time \
                     ({slices} {n} {sample_option} 1)"
                )
            } else {
                format!("reconstruct at most {n} slice(s) together ({slices} {n})")
            }
        } else {
            let (whom, needs) = match slice_option {
                Some(_) => ("one slice", per_slice_sample),
                None => ("these slices", per_sample),
            };
            format!(
                "one sample of {whom} alone needs {} of the {}; free memory or use a \
                 machine with more",
                Bytes(needs.into()),
                Bytes(available.into())
            )
        };
        Err(format!(
            "sampling {what} = {} images together needs at least {} for the prior \
             network's activations ({} per image), but {} of memory is available: {advice}",
            self.images(),
            Bytes(self.bytes()),
            Bytes(self.per_image.into()),
            Bytes(available.into()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn batch(slices: i64, samples: i64, parts: i64) -> SamplingBatch {
        SamplingBatch {
            slices,
            samples,
            parts,
            per_image: 100 * MIB,
        }
    }

    #[test]
    fn a_batch_that_fits_passes() {
        assert_eq!(batch(4, 2, 2).bytes(), u128::from(1600 * MIB));
        assert!(batch(4, 2, 2)
            .ensure_fits(1600 * MIB, "--sample-batch", None)
            .is_ok());
    }

    #[test]
    fn too_many_samples_are_told_how_many_fit() {
        // 4 slices × 16 samples × 2 parts = 128 images = 12.5 GiB; two thirds
        // of 2 GiB hold 13 images: 1 sample of 4 slices × 2 parts takes 8.
        let e = batch(4, 16, 2)
            .ensure_fits(2048 * MIB, "--sample-batch", Some("--batch-slices"))
            .unwrap_err();
        assert!(
            e.contains("4 slice(s) × 16 sample(s) × 2 parts (real and imaginary) = 128 images"),
            "{e}"
        );
        assert!(e.contains("at least 12.5 GiB"), "{e}");
        assert!(e.contains("(100 MiB per image), but 2.0 GiB"), "{e}");
        assert!(
            e.ends_with("draw at most 1 sample(s) together (--sample-batch 1)"),
            "{e}"
        );
    }

    #[test]
    fn too_many_slices_are_told_how_many_fit() {
        let e = batch(4, 2, 1)
            .ensure_fits(400 * MIB, "--sample-batch", Some("--batch-slices"))
            .unwrap_err();
        assert!(
            e.ends_with(
                "reconstruct at most 2 slice(s) together, one sample at a time \
                 (--batch-slices 2 --sample-batch 1)"
            ),
            "{e}"
        );
        let e = batch(4, 1, 1)
            .ensure_fits(300 * MIB, "--sample-batch", Some("--batch-slices"))
            .unwrap_err();
        assert!(
            e.ends_with("reconstruct at most 2 slice(s) together (--batch-slices 2)"),
            "{e}"
        );
        // Without a slice option (validate samples one slice at a time).
        let e = batch(4, 2, 1)
            .ensure_fits(400 * MIB, "--sample-batch", None)
            .unwrap_err();
        assert!(
            e.ends_with(
                "one sample of these slices alone needs 400 MiB of the 400 MiB; free memory \
                 or use a machine with more"
            ),
            "{e}"
        );
    }

    #[test]
    fn one_image_too_large_is_said_so() {
        let e = batch(1, 1, 2)
            .ensure_fits(150 * MIB, "--sample-batch", Some("--batch-slices"))
            .unwrap_err();
        assert!(
            e.contains("one sample of one slice alone needs 200 MiB"),
            "{e}"
        );
    }

    #[test]
    fn a_training_batch_is_told_its_size() {
        assert!(ensure_training_fits(8, 100 * MIB, 800 * MIB).is_ok());
        let e = ensure_training_fits(64, 100 * MIB, 3000 * MIB).unwrap_err();
        assert_eq!(
            e,
            "a training batch of 64 images needs at least 6.2 GiB for the network's \
             activations (100 MiB per image), but 2.9 GiB of memory is available: train on \
             at most 20 images per batch (--batch-size 20)"
        );
        let e = ensure_training_fits(2, 100 * MIB, 120 * MIB).unwrap_err();
        assert!(
            e.ends_with("one image alone needs 100 MiB of the 120 MiB; train on smaller crops (--size) or on a machine with more memory"),
            "{e}"
        );
    }

    /// `--samples` up to 2⁶³ − 1 times slices and parts overflows 64 bits.
    #[test]
    fn huge_requests_are_counted_and_shown_without_overflow() {
        let huge = SamplingBatch {
            slices: 4,
            samples: i64::MAX,
            parts: 2,
            per_image: 100 * MIB,
        };
        assert_eq!(huge.images(), 8 * i64::MAX as u128);
        let e = huge
            .ensure_fits(2048 * MIB, "--sample-batch", Some("--batch-slices"))
            .unwrap_err();
        assert!(
            e.contains("= 73786976294838206456 images together needs at least 7.21e18 GiB"),
            "{e}"
        );
        assert_eq!(Bytes(1023 * MIB as u128).to_string(), "1023 MiB");
        assert_eq!(Bytes(1536 * MIB as u128).to_string(), "1.5 GiB");
    }

    #[test]
    fn this_machine_reports_its_memory() {
        // Linux always has MemAvailable; the tests run on Linux.
        let b = available_bytes().expect("available memory");
        assert!(b > 64 * MIB, "{b}");
    }
}
