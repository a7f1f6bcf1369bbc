//! `dps-recon phantom`: writes a phantom as an 8-bit grayscale PNG (windowed) or
//! as a float32 `.npy` array `[size, size]` (raw values: [0, 1] or HU).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use dps_recon::phantom::{self, PhantomStyle};
use tch::{Kind, Tensor};

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
    #[arg(long, value_name = "CENTRE,WIDTH", value_parser = parse_window)]
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

/// A display window: `centre ± width/2` maps to 0..255.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    centre: f64,
    width: f64,
}

fn parse_window(s: &str) -> Result<Window, String> {
    let err = || format!("expected CENTRE,WIDTH with WIDTH > 0 (e.g. 40,400), got '{s}'");
    let (c, w) = s.split_once(',').ok_or_else(err)?;
    let centre: f64 = c.trim().parse().map_err(|_| err())?;
    let width: f64 = w.trim().parse().map_err(|_| err())?;
    if !(centre.is_finite() && width.is_finite() && width > 0.0) {
        return Err(err());
    }
    Ok(Window { centre, width })
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
        PhantomKind::SheppLogan => (phantom::shepp_logan(n), UNIT_WINDOW),
        PhantomKind::SheppLoganHu => (phantom::shepp_logan_hu(n), SOFT_TISSUE_WINDOW),
        PhantomKind::EllipsesCt => (
            phantom::random_ellipses(n, args.seed, PhantomStyle::Ct),
            SOFT_TISSUE_WINDOW,
        ),
        PhantomKind::EllipsesMr => (
            phantom::random_ellipses(n, args.seed, PhantomStyle::Mr),
            UNIT_WINDOW,
        ),
    };
    match format {
        Format::Png => write_png(&image, args.window.unwrap_or(default_window), &args.output)?,
        Format::Npy => image
            .write_npy(&args.output)
            .with_context(|| format!("cannot write {}", args.output.display()))?,
    }
    tracing::info!(kind = ?args.kind, size = n, path = %args.output.display(), "phantom written");
    Ok(ExitCode::SUCCESS)
}

const UNIT_WINDOW: Window = Window {
    centre: 0.5,
    width: 1.0,
};

const SOFT_TISSUE_WINDOW: Window = Window {
    centre: 40.0,
    width: 400.0,
};

/// Writes a `[H, W]` image as 8-bit grayscale: v ↦ ⌊255·(v − lo)/width + ½⌋
/// clamped to 0..=255, with lo = centre − width/2.
fn write_png(image: &Tensor, window: Window, path: &Path) -> anyhow::Result<()> {
    let (h, w) = image.size2().context("phantom image is not 2-D")?;
    let lo = window.centre - 0.5 * window.width;
    let gray = ((image.to_kind(Kind::Double) - lo) / window.width * 255.0 + 0.5)
        .floor()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .contiguous();
    let pixels = Vec::<u8>::try_from(gray.flatten(0, -1))?;
    image::GrayImage::from_raw(w as u32, h as u32, pixels)
        .context("pixel buffer does not match the image size")?
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", path.display()))
}
