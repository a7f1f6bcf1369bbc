//! 8-bit grayscale PNG rendering of images and montages (for `phantom`, the demo
//! and validation reports).

use std::path::Path;

use anyhow::Context;
use tch::{Kind, Tensor};

/// A display window: `centre ± width/2` maps to 0..255.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub centre: f64,
    pub width: f64,
}

impl Window {
    /// [0, 1] → 0..255.
    pub const UNIT: Window = Window {
        centre: 0.5,
        width: 1.0,
    };
    /// Soft-tissue CT window, W 400 / L 40 HU.
    pub const SOFT_TISSUE: Window = Window {
        centre: 40.0,
        width: 400.0,
    };

    /// The window spanning `[lo, hi]`.
    pub fn span(lo: f64, hi: f64) -> Window {
        Window {
            centre: 0.5 * (lo + hi),
            width: (hi - lo).max(f64::MIN_POSITIVE),
        }
    }

    /// Parses `CENTRE,WIDTH` with WIDTH > 0.
    pub fn parse(s: &str) -> Result<Window, String> {
        let err = || format!("expected CENTRE,WIDTH with WIDTH > 0 (e.g. 40,400), got '{s}'");
        let (c, w) = s.split_once(',').ok_or_else(err)?;
        let centre: f64 = c.trim().parse().map_err(|_| err())?;
        let width: f64 = w.trim().parse().map_err(|_| err())?;
        if !(centre.is_finite() && width.is_finite() && width > 0.0) {
            return Err(err());
        }
        Ok(Window { centre, width })
    }

    /// Maps a `[H, W]` image to 8-bit gray: v ↦ ⌊255·(v − lo)/width + ½⌋ clamped to
    /// 0..=255, with lo = centre − width/2. Returns `[H, W]` uint8.
    pub fn apply(&self, image: &Tensor) -> Tensor {
        let lo = self.centre - 0.5 * self.width;
        ((image.to_kind(Kind::Double) - lo) / self.width * 255.0 + 0.5)
            .floor()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
    }
}

/// Writes a `[H, W]` image as an 8-bit grayscale PNG through `window`.
pub fn write_png(image: &Tensor, window: Window, path: &Path) -> anyhow::Result<()> {
    save_gray(&window.apply(image), path)
}

/// Writes panels side by side (each `[H, W]` with its own window; all the same
/// height) separated by 4 black columns, as one PNG.
pub fn write_montage(panels: &[(Tensor, Window)], path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !panels.is_empty(),
        "cannot write {}: no panels",
        path.display()
    );
    let h = panels[0].0.size()[0];
    let mut parts = Vec::with_capacity(2 * panels.len());
    for (k, (img, window)) in panels.iter().enumerate() {
        anyhow::ensure!(img.size()[0] == h, "montage panels must share their height");
        if k > 0 {
            parts.push(Tensor::zeros([h, 4], (Kind::Uint8, tch::Device::Cpu)));
        }
        parts.push(window.apply(&img.to_device(tch::Device::Cpu)));
    }
    save_gray(&Tensor::cat(&parts, 1), path)
}

fn save_gray(gray: &Tensor, path: &Path) -> anyhow::Result<()> {
    let (h, w) = gray.size2().context("image is not 2-D")?;
    let pixels = Vec::<u8>::try_from(gray.contiguous().flatten(0, -1))?;
    image::GrayImage::from_raw(w as u32, h as u32, pixels)
        .context("pixel buffer does not match the image size")?
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", path.display()))
}
