//! `dps-recon phantom`: writes a phantom as an 8-bit grayscale PNG (windowed) or
//! as a float32 `.npy` array `[size, size]` (raw values: [0, 1] or HU).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use dps_recon::phantom::{self, PhantomStyle};
use dps_recon::render::{self, Window};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output file: `.png` (8-bit grayscale through the display window) or `.npy`
    /// (float32 values, row 0 at the top).
    #[arg(short, long)]
    output: PathBuf,

    /// Image side length in pixels.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    size: u32,

    /// Which phantom to write.
    #[arg(long, value_enum, default_value_t = PhantomKind::SheppLogan)]
    kind: PhantomKind,

    /// Seed of the random-ellipse phantoms (ignored by the Shepp–Logan ones).
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Display window for PNG output as CENTRE,WIDTH in the image's units:
    /// values from centre − width/2 to centre + width/2 map linearly to 0..255.
    /// Default 0.5,1 for [0, 1] phantoms and 40,400 (soft tissue) for HU ones.
    #[arg(long, value_name = "CENTRE,WIDTH", value_parser = Window::parse)]
    window: Option<Window>,
}

/// The phantoms the command can write.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PhantomKind {
    /// Modified Shepp–Logan (Toft), values in [0, 1].
    SheppLogan,
    /// Original Shepp–Logan in HU: air −1000, skull +1000, brain 20.
    SheppLoganHu,
    /// Random CT-like ellipses (head, thorax or abdomen) in HU, from --seed.
    EllipsesCt,
    /// Random MR-like ellipses in [0, 1], from --seed.
    EllipsesMr,
}

enum Format {
    Png,
    Npy,
}

/// Generates the phantom on the CPU and writes it; errors name the output path.
pub fn run(_ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let format = match args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Format::Png,
        Some("npy") => Format::Npy,
        _ => bail!(
            "cannot write {}: unknown output format, use a .png or .npy file name",
            args.output.display()
        ),
    };
    let n = args.size as usize;
    let (image, default_window) = match args.kind {
        PhantomKind::SheppLogan => (phantom::shepp_logan(n), Window::UNIT),
        PhantomKind::SheppLoganHu => (phantom::shepp_logan_hu(n), Window::SOFT_TISSUE),
        PhantomKind::EllipsesCt => (
            phantom::random_ellipses(n, args.seed, PhantomStyle::Ct),
            Window::SOFT_TISSUE,
        ),
        PhantomKind::EllipsesMr => (
            phantom::random_ellipses(n, args.seed, PhantomStyle::Mr),
            Window::UNIT,
        ),
    };
    match format {
        Format::Png => {
            render::write_png(&image, args.window.unwrap_or(default_window), &args.output)?
        }
        Format::Npy => image
            .write_npy(&args.output)
            .with_context(|| format!("cannot write {}", args.output.display()))?,
    }
    tracing::info!(kind = ?args.kind, size = n, path = %args.output.display(), "phantom written");
    Ok(ExitCode::SUCCESS)
}
