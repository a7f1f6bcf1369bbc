//! Scanner geometry: image grid, view angles, detector and beam (see the conventions
//! in the [module docs](super)).

use std::f64::consts::FRAC_PI_2;

/// Why a [`CtGeometry`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid CT geometry: {0}")]
pub struct GeometryError(pub String);

/// Beam shape. Distances in mm, measured from the source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BeamGeometry {
    /// Parallel rays, perpendicular to a straight detector.
    Parallel,
    /// Fan beam onto a detector arc of radius `source_to_detector_mm` centred on
    /// the source; detector elements are equally spaced in fan angle (third-generation
    /// clinical scanners). `detector_spacing` is in degrees.
    FanEquiangular {
        source_to_isocenter_mm: f64,
        source_to_detector_mm: f64,
    },
    /// Fan beam onto a flat detector at `source_to_detector_mm` from the source,
    /// perpendicular to the central ray; elements equally spaced in mm on the
    /// detector (`detector_spacing` in mm at the detector, not at the isocentre).
    FanFlat {
        source_to_isocenter_mm: f64,
        source_to_detector_mm: f64,
    },
}

impl BeamGeometry {
    /// `(source_to_isocenter_mm, source_to_detector_mm)` of a fan beam, `None` for
    /// parallel beam.
    pub fn distances_mm(&self) -> Option<(f64, f64)> {
        match *self {
            BeamGeometry::Parallel => None,
            BeamGeometry::FanEquiangular {
                source_to_isocenter_mm,
                source_to_detector_mm,
            }
            | BeamGeometry::FanFlat {
                source_to_isocenter_mm,
                source_to_detector_mm,
            } => Some((source_to_isocenter_mm, source_to_detector_mm)),
        }
    }
}

/// A 2-D CT acquisition: image grid, view angles, detector and beam, with the
/// conventions of the [module docs](super).
///
/// All fields are public so that a reader of raw data can fill them directly;
/// [`CtGeometry::validate`] checks them. Builders (`with_*`) set only the field
/// they name: in particular [`CtGeometry::with_pixel_spacing`] does not rescale
/// the detector.
#[derive(Clone, Debug, PartialEq)]
pub struct CtGeometry {
    /// Image rows `H` (along −y).
    pub rows: usize,
    /// Image columns `W` (along +x).
    pub cols: usize,
    /// Side of the square pixels, mm.
    pub pixel_spacing_mm: f64,
    /// View angles θ in degrees, one per sinogram row, in acquisition order; any
    /// values (sparse-view, limited-angle, unsorted, repeated).
    pub angles_deg: Vec<f64>,
    /// Detector elements per view (sinogram columns).
    pub n_detectors: usize,
    /// Distance between neighbouring detector elements: mm for parallel and flat
    /// fan beam (at the detector), degrees of fan angle for equiangular fan beam.
    pub detector_spacing: f64,
    /// Shift of the detector centre, in elements: the central ray (through the
    /// isocentre) hits element index `(n_detectors − 1) / 2 + detector_offset`.
    pub detector_offset: f64,
    /// Beam shape and distances.
    pub beam: BeamGeometry,
}

/// `n_views` angles in degrees uniformly covering `[0, arc_deg)`:
/// `k · arc_deg / n_views` for `k = 0 .. n_views` (the end point is excluded, so
/// `uniform_angles(n, 360.0)` does not repeat view 0).
pub fn uniform_angles(n_views: usize, arc_deg: f64) -> Vec<f64> {
    (0..n_views)
        .map(|k| k as f64 * arc_deg / n_views as f64)
        .collect()
}

impl CtGeometry {
    /// Parallel beam on an `image_size × image_size` grid with the defaults of
    /// scikit-image `radon(circle=True)`: pixel spacing 1 mm, `image_size` detector
    /// elements spaced 1 mm (one pixel), no offset. The detector then spans the
    /// inscribed circle of the image. (scikit-image rotates about pixel
    /// `image_size / 2`, which for even sizes is half a pixel off the image centre
    /// used here; see the module docs.)
    pub fn parallel(image_size: usize, angles_deg: Vec<f64>) -> CtGeometry {
        CtGeometry {
            rows: image_size,
            cols: image_size,
            pixel_spacing_mm: 1.0,
            angles_deg,
            n_detectors: image_size,
            detector_spacing: 1.0,
            detector_offset: 0.0,
            beam: BeamGeometry::Parallel,
        }
    }

    /// Equiangular fan beam on an `image_size × image_size` grid of 1 mm pixels.
    /// Default detector: elements spaced by the fan angle under which one pixel is
    /// seen at the isocentre (`Δγ = 1 mm / source_to_isocenter_mm` rad, in degrees),
    /// an odd number of them so that the fan covers the whole image (its
    /// circumscribed circle), centred (offset 0).
    ///
    /// # Panics
    /// Unless `image half-diagonal < source_to_isocenter_mm < source_to_detector_mm`.
    pub fn fan_equiangular(
        image_size: usize,
        angles_deg: Vec<f64>,
        source_to_isocenter_mm: f64,
        source_to_detector_mm: f64,
    ) -> CtGeometry {
        let gamma_max = half_fan_angle(image_size, source_to_isocenter_mm, source_to_detector_mm);
        let spacing = 1.0 / source_to_isocenter_mm;
        CtGeometry {
            rows: image_size,
            cols: image_size,
            pixel_spacing_mm: 1.0,
            angles_deg,
            n_detectors: 2 * (gamma_max / spacing).ceil() as usize + 1,
            detector_spacing: spacing.to_degrees(),
            detector_offset: 0.0,
            beam: BeamGeometry::FanEquiangular {
                source_to_isocenter_mm,
                source_to_detector_mm,
            },
        }
    }

    /// Flat-detector fan beam on an `image_size × image_size` grid of 1 mm pixels.
    /// Default detector: elements spaced by one pixel magnified onto the detector
    /// (`source_to_detector_mm / source_to_isocenter_mm` mm), an odd number of them
    /// so that the fan covers the whole image (its circumscribed circle), centred.
    ///
    /// # Panics
    /// Unless `image half-diagonal < source_to_isocenter_mm < source_to_detector_mm`.
    pub fn fan_flat(
        image_size: usize,
        angles_deg: Vec<f64>,
        source_to_isocenter_mm: f64,
        source_to_detector_mm: f64,
    ) -> CtGeometry {
        let gamma_max = half_fan_angle(image_size, source_to_isocenter_mm, source_to_detector_mm);
        let spacing = source_to_detector_mm / source_to_isocenter_mm;
        let half_width = source_to_detector_mm * gamma_max.tan();
        CtGeometry {
            rows: image_size,
            cols: image_size,
            pixel_spacing_mm: 1.0,
            angles_deg,
            n_detectors: 2 * (half_width / spacing).ceil() as usize + 1,
            detector_spacing: spacing,
            detector_offset: 0.0,
            beam: BeamGeometry::FanFlat {
                source_to_isocenter_mm,
                source_to_detector_mm,
            },
        }
    }

    /// Sets the image grid to `rows × cols` (nothing else changes).
    pub fn with_image_shape(mut self, rows: usize, cols: usize) -> CtGeometry {
        self.rows = rows;
        self.cols = cols;
        self
    }

    /// Sets the pixel spacing in mm (the detector is left as it is).
    pub fn with_pixel_spacing(mut self, pixel_spacing_mm: f64) -> CtGeometry {
        self.pixel_spacing_mm = pixel_spacing_mm;
        self
    }

    /// Sets the number of detector elements and their spacing (mm for parallel and
    /// flat fan beam, degrees for equiangular fan beam).
    pub fn with_detectors(mut self, n_detectors: usize, detector_spacing: f64) -> CtGeometry {
        self.n_detectors = n_detectors;
        self.detector_spacing = detector_spacing;
        self
    }

    /// Sets the detector offset in elements (see [`CtGeometry::detector_offset`]).
    pub fn with_detector_offset(mut self, detector_offset: f64) -> CtGeometry {
        self.detector_offset = detector_offset;
        self
    }

    /// Number of views (sinogram rows).
    pub fn n_views(&self) -> usize {
        self.angles_deg.len()
    }

    /// Fractional detector index hit by the central ray, `(n − 1) / 2 + offset`.
    pub fn detector_center(&self) -> f64 {
        (self.n_detectors as f64 - 1.0) / 2.0 + self.detector_offset
    }

    /// Radius in mm of the image's circumscribed circle about the isocentre.
    pub fn image_radius_mm(&self) -> f64 {
        0.5 * self.pixel_spacing_mm * (self.rows as f64).hypot(self.cols as f64)
    }

    /// Radius in mm of the field of view: the disc about the isocentre that every
    /// view sees whole, bounded by the outer edges of the first and last detector
    /// elements (the nearer one).
    pub fn field_of_view_radius_mm(&self) -> f64 {
        let c = self.detector_center();
        let edge = (c + 0.5).min(self.n_detectors as f64 - 0.5 - c).max(0.0);
        match self.beam {
            BeamGeometry::Parallel => edge * self.detector_spacing,
            BeamGeometry::FanEquiangular {
                source_to_isocenter_mm,
                ..
            } => {
                let gamma = (edge * self.detector_spacing).to_radians().min(FRAC_PI_2);
                source_to_isocenter_mm * gamma.sin()
            }
            BeamGeometry::FanFlat {
                source_to_isocenter_mm,
                source_to_detector_mm,
            } => {
                let gamma = (edge * self.detector_spacing / source_to_detector_mm).atan();
                source_to_isocenter_mm * gamma.sin()
            }
        }
    }

    /// Checks that the geometry describes a usable acquisition: non-empty image
    /// and detector, positive finite spacings, finite angles and offset, and for
    /// fan beam `image half-diagonal < source_to_isocenter < source_to_detector`
    /// (the source outside the image) and, for the equiangular detector, a total
    /// fan angle below 180°.
    pub fn validate(&self) -> Result<(), GeometryError> {
        let fail = |msg: String| Err(GeometryError(msg));
        if self.rows == 0 || self.cols == 0 {
            return fail(format!("empty image {} × {}", self.rows, self.cols));
        }
        if !(self.pixel_spacing_mm.is_finite() && self.pixel_spacing_mm > 0.0) {
            return fail(format!("pixel spacing {} mm", self.pixel_spacing_mm));
        }
        if self.angles_deg.is_empty() {
            return fail("no view angles".into());
        }
        if let Some(a) = self.angles_deg.iter().find(|a| !a.is_finite()) {
            return fail(format!("view angle {a}"));
        }
        if self.n_detectors == 0 {
            return fail("no detector elements".into());
        }
        if !(self.detector_spacing.is_finite() && self.detector_spacing > 0.0) {
            return fail(format!("detector spacing {}", self.detector_spacing));
        }
        if !self.detector_offset.is_finite() {
            return fail(format!("detector offset {}", self.detector_offset));
        }
        if let Some((dso, dsd)) = self.beam.distances_mm() {
            let radius = self.image_radius_mm();
            if !(dso.is_finite() && dsd.is_finite() && radius < dso && dso < dsd) {
                return fail(format!(
                    "need image half-diagonal ({radius} mm) < source to isocentre ({dso} mm) \
                     < source to detector ({dsd} mm)"
                ));
            }
        }
        if let BeamGeometry::FanEquiangular { .. } = self.beam {
            let fan = self.n_detectors as f64 * self.detector_spacing;
            if fan >= 180.0 {
                return fail(format!("equiangular fan of {fan}° (must be below 180°)"));
            }
        }
        Ok(())
    }
}

/// Half fan angle (rad) that covers the circumscribed circle of an
/// `image_size²` grid of 1 mm pixels.
fn half_fan_angle(
    image_size: usize,
    source_to_isocenter_mm: f64,
    source_to_detector_mm: f64,
) -> f64 {
    let radius = image_size as f64 / std::f64::consts::SQRT_2;
    assert!(
        radius < source_to_isocenter_mm && source_to_isocenter_mm < source_to_detector_mm,
        "CtGeometry: need image half-diagonal ({radius} mm) < source to isocentre \
         ({source_to_isocenter_mm} mm) < source to detector ({source_to_detector_mm} mm)"
    );
    (radius / source_to_isocenter_mm).asin()
}
