//! Reading image series: single- and multi-frame monochrome images in any
//! transfer syntax this build decodes (native, RLE, JPEG baseline, extended and
//! lossless, JPEG-LS, JPEG 2000, deflated), rescaled, with their geometry, and
//! sorted along the slice normal.

use std::cell::Cell;
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;

use super::context::{dot, InstanceContext, Plane};
use super::error::{error_chain, DicomError};
use super::load::{self, Extent, ReadLimits};
use super::values::{f64_array, f64_first, f64s, int, std_name, text};

/// One 2-D image: a single-frame file or one frame of a multi-frame file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFrame {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `[rows, cols]` row-major values after RescaleSlope/Intercept (the
    /// Modality LUT): HU for CT. A single-frame image without a Modality LUT
    /// whose Real World Value Mapping Sequence has linear items (the MR series
    /// dps-recon writes) gets the map of the first whose range of stored
    /// values holds all of the frame's, and an error when none does.
    /// MONOCHROME1 values are not inverted.
    pub pixels: Vec<f32>,
    /// PixelSpacing `[between rows, between columns]`, mm.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Where the frame lies (top level or functional groups).
    pub plane: Option<Plane>,
    /// SliceThickness, mm.
    pub slice_thickness_mm: Option<f64>,
    /// InstanceNumber of the file.
    pub instance_number: Option<i32>,
    /// Index of the frame in its file (0-based).
    pub frame_index: u32,
    /// SOPInstanceUID of the file.
    pub sop_instance_uid: String,
    /// The SOPInstanceUIDs its file's SourceImageSequence names: the images a
    /// derived image was computed from (e.g. the posterior mean slice of an
    /// uncertainty slice `run` writes); empty when it names none. Shared by
    /// the frames of a file.
    pub source_images: Arc<[String]>,
}

/// The frames of one image file with its context.
#[derive(Debug, Clone)]
pub struct ImageFile {
    /// SOPClassUID.
    pub sop_class_uid: String,
    /// Transfer syntax the file was stored in.
    pub transfer_syntax_uid: String,
    /// Patient, study, series, frame of reference and equipment attributes.
    pub context: InstanceContext,
    /// The frames in file order.
    pub frames: Vec<ImageFrame>,
}

/// An image series: frames of one SeriesInstanceUID in slice order.
#[derive(Debug, Clone)]
pub struct ImageSeries {
    /// The context of the first file.
    pub context: InstanceContext,
    /// The frames, sorted.
    pub frames: Vec<ImageFrame>,
    /// `true`: sorted by position along the slice normal (every frame has a
    /// plane, all parallel); `false`: by InstanceNumber, then frame index.
    pub sorted_by_position: bool,
}

/// Reads an image file with its pixel data.
pub fn read_image(path: &Path, limits: ReadLimits) -> Result<ImageFile, DicomError> {
    image_from_object(&load::open(path, limits, Extent::Full)?, limits)
}

/// Reads an image file held in memory.
pub fn image_from_bytes(bytes: &[u8], limits: ReadLimits) -> Result<ImageFile, DicomError> {
    image_from_object(&load::from_bytes(bytes, limits, Extent::Full)?, limits)
}

/// Reads the files of one series and sorts their frames along the slice normal.
/// Fails when the files belong to different series or the frame sizes differ;
/// the error of a file that cannot be read names it ([`DicomError::InFile`]).
pub fn read_series(paths: &[PathBuf], limits: ReadLimits) -> Result<ImageSeries, DicomError> {
    let mut context: Option<InstanceContext> = None;
    let mut frames = Vec::new();
    for path in paths {
        let file = read_image(path, limits).map_err(|e| DicomError::InFile {
            path: path.clone(),
            error: Box::new(e),
        })?;
        if let Some(first) = &context {
            if first.series_instance_uid != file.context.series_instance_uid {
                return Err(DicomError::invalid(
                    std_name(tags::SERIES_INSTANCE_UID),
                    format!(
                        "{} belongs to series {:?}, not {:?}",
                        path.display(),
                        file.context.series_instance_uid,
                        first.series_instance_uid
                    ),
                ));
            }
        } else {
            context = Some(file.context.clone());
        }
        frames.extend(file.frames);
    }
    let context = context.ok_or_else(|| DicomError::Malformed("no image files given".into()))?;
    if let Some(f) = frames
        .iter()
        .find(|f| (f.rows, f.cols) != (frames[0].rows, frames[0].cols))
    {
        return Err(DicomError::invalid(
            std_name(tags::ROWS),
            format!(
                "frames differ in size: {}×{} and {}×{}",
                frames[0].rows, frames[0].cols, f.rows, f.cols
            ),
        ));
    }
    let sorted_by_position = sort_frames(&mut frames);
    Ok(ImageSeries {
        context,
        frames,
        sorted_by_position,
    })
}

/// Sorts by distance along the first frame's normal when every frame has a
/// plane parallel to it (ties by InstanceNumber, frame); else by InstanceNumber
/// and frame. Returns whether positions were used.
fn sort_frames(frames: &mut [ImageFrame]) -> bool {
    let normal = frames.first().and_then(|f| f.plane).map(|p| p.normal());
    let by_position = normal.is_some_and(|n| {
        frames.iter().all(|f| {
            f.plane
                .is_some_and(|p| dot(p.normal(), n).abs() > 1.0 - 1e-4)
        })
    });
    let order = |f: &ImageFrame| (f.instance_number.unwrap_or(i32::MAX), f.frame_index);
    match normal {
        Some(n) if by_position => frames.sort_by(|a, b| {
            let da = a.plane.map_or(0.0, |p| p.distance_along(n));
            let db = b.plane.map_or(0.0, |p| p.distance_along(n));
            da.total_cmp(&db).then(order(a).cmp(&order(b)))
        }),
        _ => frames.sort_by_key(order),
    }
    by_position
}

/// Decodes the frames of a parsed image object.
pub fn image_from_object(
    file: &DefaultDicomObject,
    limits: ReadLimits,
) -> Result<ImageFile, DicomError> {
    let obj: &InMemDicomObject = file;
    let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION);
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(DicomError::Missing(std_name(tags::PIXEL_DATA)));
    }
    if photometric != "MONOCHROME1" && photometric != "MONOCHROME2" {
        return Err(DicomError::Unsupported(format!(
            "PhotometricInterpretation {photometric:?}: only MONOCHROME1/2 images are read"
        )));
    }
    let required = |tag: Tag| -> Result<i64, DicomError> {
        int(obj, tag)?.ok_or(DicomError::Missing(std_name(tag)))
    };
    let samples = required(tags::SAMPLES_PER_PIXEL)?;
    if samples != 1 {
        return Err(DicomError::invalid(
            std_name(tags::SAMPLES_PER_PIXEL),
            format!("is {samples} for a monochrome image"),
        ));
    }
    let rows = required(tags::ROWS)?;
    let cols = required(tags::COLUMNS)?;
    let bits = required(tags::BITS_ALLOCATED)?;
    if !matches!(bits, 8 | 16 | 32) {
        return Err(DicomError::Unsupported(format!(
            "BitsAllocated {bits} (8, 16 or 32 are read)"
        )));
    }
    let frames = int(obj, tags::NUMBER_OF_FRAMES)?.unwrap_or(1);
    if rows < 1 || cols < 1 || frames < 1 || rows > 65535 || cols > 65535 {
        return Err(DicomError::invalid(
            std_name(tags::ROWS),
            format!("{rows} rows × {cols} columns × {frames} frames"),
        ));
    }
    let (rows, cols, frames) = (rows as usize, cols as usize, frames as u64);
    let pixels = (rows * cols) as u64 * frames;
    limits.check(
        || format!("{frames} frames of {rows}×{cols} pixels"),
        pixels * (bits as u64 / 8 + 4),
    )?;
    let ts = file.meta().transfer_syntax().to_owned();
    let decoded = without_panic(|| file.decode_pixel_data())
        .map_err(|_| DicomError::Pixel(format!("the decoder for transfer syntax {ts} failed")))?
        .map_err(|e| DicomError::Pixel(error_chain(&e)))?;
    let expected = rows * cols * bits as usize / 8 * frames as usize;
    if decoded.data().len() < expected {
        return Err(DicomError::Pixel(format!(
            "{} bytes of pixel data for {frames} frames of {rows}×{cols} at {bits} bits ({expected} needed)",
            decoded.data().len()
        )));
    }
    let real_world = real_world_maps(obj)?;
    let geometry = FrameGeometry::read(obj, frames as usize)?;
    let instance_number = int(obj, tags::INSTANCE_NUMBER)?.and_then(|n| i32::try_from(n).ok());
    let sop_instance_uid = text(obj, tags::SOP_INSTANCE_UID);
    let source_images: Arc<[String]> = source_images(obj).into();
    let mut out = Vec::with_capacity(frames as usize);
    for (i, placement) in geometry.per_frame.into_iter().enumerate() {
        let mut values: Vec<f32> = without_panic(|| decoded.to_vec_frame(i as u32))
            .map_err(|_| DicomError::Pixel(format!("frame {i}: conversion failed")))?
            .map_err(|e| DicomError::Pixel(format!("frame {i}: {}", error_chain(&e))))?;
        if !real_world.is_empty() {
            let map = mapping_for(&real_world, &values).map_err(|e| {
                DicomError::invalid(
                    std_name(tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE),
                    format!("frame {i}: {e}"),
                )
            })?;
            for v in &mut values {
                *v = (map.intercept + map.slope * f64::from(*v)) as f32;
            }
        }
        if values.len() != rows * cols {
            return Err(DicomError::Pixel(format!(
                "frame {i}: {} values for {rows}×{cols} pixels",
                values.len()
            )));
        }
        out.push(ImageFrame {
            rows,
            cols,
            pixels: values,
            pixel_spacing_mm: placement.spacing,
            plane: placement.plane,
            slice_thickness_mm: placement.thickness,
            instance_number,
            frame_index: i as u32,
            sop_instance_uid: sop_instance_uid.clone(),
            source_images: Arc::clone(&source_images),
        });
    }
    Ok(ImageFile {
        sop_class_uid: text(obj, tags::SOP_CLASS_UID),
        transfer_syntax_uid: ts,
        context: InstanceContext::from_object(obj)?,
        frames: out,
    })
}

/// The ReferencedSOPInstanceUIDs of the SourceImageSequence's items.
fn source_images(obj: &InMemDicomObject) -> Vec<String> {
    let items = obj
        .get(tags::SOURCE_IMAGE_SEQUENCE)
        .and_then(|seq| seq.items())
        .unwrap_or_default();
    items
        .iter()
        .map(|item| text(item, tags::REFERENCED_SOP_INSTANCE_UID))
        .filter(|uid| !uid.is_empty())
        .collect()
}

/// A linear item of the Real World Value Mapping Sequence: stored value `v`
/// in `[first, last]` maps to `intercept + slope · v`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RealWorldMap {
    slope: f64,
    intercept: f64,
    /// RealWorldValueFirst/LastValueMapped (or their DoubleFloat forms);
    /// `None` when the item gives no range.
    range: Option<[f64; 2]>,
}

/// The linear Real World Value Mappings of an image that has no Modality LUT:
/// the items of the Real World Value Mapping Sequence with RealWorldValueSlope
/// and RealWorldValueIntercept, in order. Empty when RescaleSlope or
/// RescaleIntercept is present, or functional groups (enhanced images, whose
/// frames carry their own maps), or no such item.
fn real_world_maps(obj: &InMemDicomObject) -> Result<Vec<RealWorldMap>, DicomError> {
    let has_modality_lut = [
        tags::RESCALE_SLOPE,
        tags::RESCALE_INTERCEPT,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
    ]
    .iter()
    .any(|&tag| obj.get(tag).is_some());
    let items = match obj.get(tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE) {
        Some(seq) if !has_modality_lut => seq.items().unwrap_or_default(),
        _ => return Ok(Vec::new()),
    };
    let mut maps = Vec::new();
    for item in items {
        let slope = f64_first(item, tags::REAL_WORLD_VALUE_SLOPE)?;
        let intercept = f64_first(item, tags::REAL_WORLD_VALUE_INTERCEPT)?;
        let (Some(slope), Some(intercept)) = (slope, intercept) else {
            continue;
        };
        let bound = |double, integer| -> Result<Option<f64>, DicomError> {
            Ok(f64_first(item, double)?.or(f64_first(item, integer)?))
        };
        let first = bound(
            tags::DOUBLE_FLOAT_REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
            tags::REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
        )?;
        let last = bound(
            tags::DOUBLE_FLOAT_REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
            tags::REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
        )?;
        maps.push(RealWorldMap {
            slope,
            intercept,
            range: first.zip(last).map(|(a, b)| [a, b]),
        });
    }
    Ok(maps)
}

/// The first of `maps` whose range holds every stored value of a frame (an
/// item without a range holds all).
fn mapping_for(maps: &[RealWorldMap], stored: &[f32]) -> Result<RealWorldMap, String> {
    let (lo, hi) = stored
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(f64::from(v)), hi.max(f64::from(v)))
        });
    maps.iter()
        .copied()
        .find(|m| {
            m.range
                .is_none_or(|[first, last]| first <= lo && hi <= last)
        })
        .ok_or_else(|| {
            let ranges: Vec<String> = maps
                .iter()
                .filter_map(|m| m.range.map(|[a, b]| format!("{a}..{b}")))
                .collect();
            format!(
                "stored values {lo}..{hi} are not all inside the range of one linear Real \
                 World Value Mapping item ({}), so their real-world values are unknown",
                ranges.join(", ")
            )
        })
}

thread_local! {
    /// Set while [`without_panic`] runs on this thread.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Runs a pixel decoder, turning a panic (the decoders of dicom-rs index out of
/// bounds on some corrupt data) into `Err(())`. Its message is not printed: the
/// caller reports the file's error instead. Other panics, on any thread, go to
/// the panic hook as before.
fn without_panic<T>(decode: impl FnOnce() -> T) -> Result<T, ()> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let before = CATCHING.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(decode)).map_err(|_| ());
    CATCHING.with(|c| c.set(before));
    result
}

/// Where one frame lies and how its pixels are spaced.
struct FramePlacement {
    plane: Option<Plane>,
    spacing: Option<[f64; 2]>,
    thickness: Option<f64>,
}

/// The placement of each frame.
struct FrameGeometry {
    per_frame: Vec<FramePlacement>,
}

/// The first item of sequence `tag` in `obj`.
fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

impl FrameGeometry {
    /// From the per-frame and shared functional groups (enhanced multi-frame
    /// objects), else the top level; frames of a classic multi-frame object with
    /// GridFrameOffsetVector (3004,000C) are offset along the normal.
    fn read(obj: &InMemDicomObject, frames: usize) -> Result<Self, DicomError> {
        let top_plane = Plane::from_object(obj)?;
        let top_spacing = f64_array::<2>(obj, tags::PIXEL_SPACING)?;
        let top_thickness = f64_first(obj, tags::SLICE_THICKNESS)?;
        let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        let per_frame = obj
            .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|e| e.items())
            .filter(|items| items.len() == frames);
        let offsets = match f64s(obj, tags::GRID_FRAME_OFFSET_VECTOR)? {
            Some(v) if v.len() == frames && per_frame.is_none() => Some(v),
            _ => None,
        };
        let mut out = Vec::with_capacity(frames);
        for i in 0..frames {
            let groups: Vec<&InMemDicomObject> = per_frame
                .map(|items| &items[i])
                .into_iter()
                .chain(shared)
                .collect();
            let from_groups = |seq: Tag, attr: Tag| {
                groups
                    .iter()
                    .find_map(|g| first_item(g, seq).filter(|item| item.get(attr).is_some()))
            };
            let position =
                match from_groups(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT) {
                    Some(item) => f64_array::<3>(item, tags::IMAGE_POSITION_PATIENT)?,
                    None => top_plane.map(|p| p.position_mm),
                };
            let orientation = match from_groups(
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
            ) {
                Some(item) => f64_array::<6>(item, tags::IMAGE_ORIENTATION_PATIENT)?,
                None => top_plane.map(|p| p.orientation),
            };
            let mut plane = match (position, orientation) {
                (Some(position_mm), Some(orientation)) => {
                    let plane = Plane {
                        position_mm,
                        orientation,
                    };
                    plane.check().map_err(|reason| {
                        DicomError::invalid(std_name(tags::IMAGE_ORIENTATION_PATIENT), reason)
                    })?;
                    Some(plane)
                }
                _ => None,
            };
            if let (Some(p), Some(offsets)) = (plane.as_mut(), &offsets) {
                let n = p.normal();
                for (axis, component) in n.iter().enumerate() {
                    p.position_mm[axis] += offsets[i] * component;
                }
            }
            let measures = from_groups(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING);
            let spacing = match measures {
                Some(item) => f64_array::<2>(item, tags::PIXEL_SPACING)?,
                None => top_spacing,
            };
            let thickness = match from_groups(tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS)
            {
                Some(item) => f64_first(item, tags::SLICE_THICKNESS)?,
                None => top_thickness,
            };
            out.push(FramePlacement {
                plane,
                spacing,
                thickness,
            });
        }
        Ok(Self { per_frame: out })
    }
}
