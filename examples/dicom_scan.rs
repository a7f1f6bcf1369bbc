//! Times the in-process header scan of a folder (`dps_recon::dicom::scan_folder`)
//! for scripts/bench/dicom_scan.sh.
//!
//! Usage: `dicom_scan DIR [RUNS]`; prints `<best seconds> <DICOM files> <errors>`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dps_recon::dicom::{scan_folder, ReadLimits};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: dicom_scan DIR [RUNS]");
        return ExitCode::from(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut best = f64::INFINITY;
    let mut counts = (0, 0);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let report = scan_folder(&dir, ReadLimits::default());
        best = best.min(start.elapsed().as_secs_f64());
        counts = (report.files.len(), report.errors.len());
    }
    println!("{best:.6} {} {}", counts.0, counts.1);
    ExitCode::SUCCESS
}
