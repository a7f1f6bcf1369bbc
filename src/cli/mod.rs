//! The `dps-recon` command line: global options, logging, and one module per verb.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dps_recon::device::DeviceChoice;

mod inspect;
mod phantom;
mod run;
mod score;
mod simulate;
mod train;
mod validate;

/// Reconstruct undersampled MRI k-space and CT sinograms stored in DICOM with
/// Diffusion Posterior Sampling.
#[derive(Parser, Debug)]
#[command(name = "dps-recon", version, about, propagate_version = true)]
pub struct Cli {
    /// Compute device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceChoice,

    /// Number of CPU threads for libtorch (0 = libtorch's default; at most 1024).
    #[arg(long, global = true, default_value_t = 0, value_parser = threads)]
    pub threads: i32,

    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a phantom image (modified Shepp–Logan or random ellipses) as PNG.
    Phantom(phantom::Args),
    /// Say what each DICOM file is (raw k-space, sinogram, image series member) or why it can't be read.
    Inspect(inspect::Args),
    /// Reconstruct folders of raw DICOM (k-space, sinograms) with a pipeline preset.
    Run(run::Args),
    /// Make raw DICOM measurements (and the ground truth series) from a phantom,
    /// an image series or a NIfTI volume.
    Simulate(simulate::Args),
    /// Train a UNet diffusion prior on NIfTI volumes, DICOM image folders or phantoms.
    Train(train::Args),
    /// Simulate, reconstruct with DPS and the baselines, and report PSNR/SSIM/NMSE.
    Validate(Box<validate::Args>),
    /// Score image series (e.g. a run's outputs) against a ground-truth series, and
    /// check posterior std series against their error.
    Score(score::Args),
}

/// Parses the command line, sets up logging and threads, and runs the verb.
/// Exit codes: 0 success, 1 a run that partly failed, 2 usage or configuration error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    if cli.threads > 0 {
        tch::set_num_threads(cli.threads);
    }
    let ctx = Context {
        device_choice: cli.device,
    };
    let result = match cli.command {
        Command::Phantom(args) => phantom::run(&ctx, args),
        Command::Inspect(args) => inspect::run(&ctx, args),
        Command::Run(args) => run::run(&ctx, args),
        Command::Simulate(args) => simulate::run(&ctx, args),
        Command::Train(args) => train::run(&ctx, args),
        Command::Validate(args) => validate::run(&ctx, *args),
        Command::Score(args) => score::run(&ctx, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// A command-line count: an integer ≥ 1 (clap's ranged parser would say
/// "not in 1..9223372036854775807").
fn count<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(format!("must be an integer ≥ 1, got {text}")),
    }
}

/// A thread count in 0 … 1024 (0: libtorch's default). Far more threads than
/// any machine has cores failed to spawn and panicked (100 000 threads).
fn threads(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(n) if (0..=1024).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer in 0 … 1024, got {text}")),
    }
}

/// A finite number > 0.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("must be a finite number > 0, got {text}")),
    }
}

/// A number in [0, 1].
fn unit_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("must be a number in [0, 1], got {text}")),
    }
}

/// Writes `text` to standard output; a reader that has gone away (`| head`) is not
/// an error, since the work is already done and written.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// What every verb gets from the global options.
pub struct Context {
    pub device_choice: DeviceChoice,
}

impl Context {
    /// The `tch::Device` to compute on, from `--device`.
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        let device = self.device_choice.resolve().map_err(anyhow::Error::msg)?;
        tracing::info!(?device, "compute device");
        Ok(device)
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
