//! The private elements of the profile and typed access to their values.
//!
//! Values are accepted with their documented VR or as UN (what an Implicit VR
//! file or a program without the private dictionary yields), then decoded as
//! little endian.

use dicom_core::value::Value;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;

use super::super::error::{DicomError, ElementName};
use super::super::values::trim;

/// Group of the private block.
pub const PRIVATE_GROUP: u16 = 0x0071;
/// Private Creator of the block, in (0071,0010) when written by dps-recon.
pub const PRIVATE_CREATOR: &str = "DPSRECON 1";
/// Block reserved by the writer: elements are (0071,10xx).
pub const WRITE_BLOCK: u8 = 0x10;

/// One element of the private block: its low byte, VR and keyword.
#[derive(Debug, Clone, Copy)]
pub struct PrivateElement {
    /// Low byte `xx` of (0071,bbxx).
    pub offset: u8,
    /// Documented VR.
    pub vr: VR,
    /// Keyword, as in docs/dicom-raw-profile.md.
    pub keyword: &'static str,
}

const fn el(offset: u8, vr: VR, keyword: &'static str) -> PrivateElement {
    PrivateElement {
        offset,
        vr,
        keyword,
    }
}

pub const MEASUREMENT_KIND: PrivateElement = el(0x01, VR::CS, "MeasurementKind");
pub const DIMENSIONS: PrivateElement = el(0x02, VR::UL, "Dimensions");
pub const DATA: PrivateElement = el(0x03, VR::OF, "Data");
pub const SAMPLING_MASK: PrivateElement = el(0x04, VR::OB, "SamplingMask");
pub const NOISE_SIGMA: PrivateElement = el(0x05, VR::FD, "NoiseSigma");
pub const COIL_SENSITIVITIES: PrivateElement = el(0x06, VR::OF, "CoilSensitivities");
pub const GEOMETRY: PrivateElement = el(0x10, VR::CS, "Geometry");
pub const VIEW_ANGLES: PrivateElement = el(0x11, VR::FD, "ViewAngles");
pub const DETECTOR_SPACING: PrivateElement = el(0x12, VR::FD, "DetectorSpacing");
pub const SOURCE_TO_ISOCENTER: PrivateElement = el(0x13, VR::FD, "SourceToIsocenter");
pub const SOURCE_TO_DETECTOR: PrivateElement = el(0x14, VR::FD, "SourceToDetector");
pub const DETECTOR_OFFSET: PrivateElement = el(0x15, VR::FD, "DetectorOffset");
pub const DATA_TYPE: PrivateElement = el(0x16, VR::CS, "DataType");
pub const BLANK_SCAN_COUNTS: PrivateElement = el(0x17, VR::FD, "BlankScanCounts");
pub const WATER_ATTENUATION: PrivateElement = el(0x18, VR::FD, "WaterAttenuation");
pub const RECON_SIZE: PrivateElement = el(0x20, VR::UL, "ReconSize");
pub const RECON_PIXEL_SPACING: PrivateElement = el(0x21, VR::FD, "ReconPixelSpacing");

impl PrivateElement {
    /// The tag in block `block`.
    pub fn tag(&self, block: u8) -> Tag {
        Tag(
            PRIVATE_GROUP,
            (u16::from(block) << 8) | u16::from(self.offset),
        )
    }

    /// The element named for messages, in block `block`.
    pub fn name(&self, block: u8) -> ElementName {
        let tag = self.tag(block);
        ElementName::new(tag.group(), tag.element(), self.keyword)
    }
}

/// The block whose Private Creator (0071,00bb) is [`PRIVATE_CREATOR`].
pub fn find_block(obj: &InMemDicomObject) -> Option<u8> {
    (0x10..=0xFFu16).find_map(|b| {
        let value = obj.get(Tag(PRIVATE_GROUP, b))?.value().to_str().ok()?;
        (trim(&value) == PRIVATE_CREATOR).then_some(b as u8)
    })
}

/// The private block of one object, for typed reads.
pub struct Block<'o> {
    pub obj: &'o InMemDicomObject,
    pub block: u8,
}

impl Block<'_> {
    fn value(&self, e: &PrivateElement) -> Result<Option<&PrimitiveValue>, DicomError> {
        let Some(element) = self.obj.get(e.tag(self.block)) else {
            return Ok(None);
        };
        let vr = element.vr();
        if vr != e.vr && vr != VR::UN {
            return Err(DicomError::invalid(
                e.name(self.block),
                format!("has VR {vr}, expected {}", e.vr),
            ));
        }
        match element.value() {
            Value::Primitive(PrimitiveValue::Empty) => Ok(None),
            Value::Primitive(p) => Ok(Some(p)),
            _ => Err(DicomError::invalid(
                e.name(self.block),
                "is not a primitive value",
            )),
        }
    }

    /// A CS value, upper case trimmed.
    pub fn code(&self, e: &PrivateElement) -> Result<Option<String>, DicomError> {
        let Some(value) = self.value(e)? else {
            return Ok(None);
        };
        let text = match value {
            PrimitiveValue::U8(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            other => other.to_str().into_owned(),
        };
        let text = trim(&text);
        Ok((!text.is_empty()).then(|| text.to_owned()))
    }

    /// A required CS value.
    pub fn required_code(&self, e: &PrivateElement) -> Result<String, DicomError> {
        self.code(e)?.ok_or(DicomError::Missing(e.name(self.block)))
    }

    /// UL values.
    pub fn u32s(&self, e: &PrivateElement) -> Result<Option<Vec<u32>>, DicomError> {
        let Some(value) = self.value(e)? else {
            return Ok(None);
        };
        match value {
            PrimitiveValue::U32(v) => Ok(Some(v.to_vec())),
            PrimitiveValue::U8(bytes) => le_chunks::<4>(bytes, e, self.block)
                .map(|c| Some(c.map(u32::from_le_bytes).collect())),
            _ => Err(self.wrong_type(e)),
        }
    }

    /// Required UL values.
    pub fn required_u32s(&self, e: &PrivateElement) -> Result<Vec<u32>, DicomError> {
        self.u32s(e)?.ok_or(DicomError::Missing(e.name(self.block)))
    }

    /// FD values.
    pub fn f64s(&self, e: &PrivateElement) -> Result<Option<Vec<f64>>, DicomError> {
        let Some(value) = self.value(e)? else {
            return Ok(None);
        };
        match value {
            PrimitiveValue::F64(v) => Ok(Some(v.to_vec())),
            PrimitiveValue::U8(bytes) => le_chunks::<8>(bytes, e, self.block)
                .map(|c| Some(c.map(f64::from_le_bytes).collect())),
            _ => Err(self.wrong_type(e)),
        }
    }

    /// Required FD values.
    pub fn required_f64s(&self, e: &PrivateElement) -> Result<Vec<f64>, DicomError> {
        self.f64s(e)?.ok_or(DicomError::Missing(e.name(self.block)))
    }

    /// Exactly one FD value.
    pub fn f64_single(&self, e: &PrivateElement) -> Result<Option<f64>, DicomError> {
        match self.f64s(e)? {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(v) => Err(DicomError::invalid(
                e.name(self.block),
                format!("expected 1 value, found {}", v.len()),
            )),
        }
    }

    /// Exactly one required FD value.
    pub fn required_f64(&self, e: &PrivateElement) -> Result<f64, DicomError> {
        self.f64_single(e)?
            .ok_or(DicomError::Missing(e.name(self.block)))
    }

    /// The number of bytes of an element's value as stored (0 when absent).
    pub fn byte_len(&self, e: &PrivateElement) -> Result<usize, DicomError> {
        Ok(self.value(e)?.map_or(0, |v| v.calculate_byte_len()))
    }

    fn wrong_type(&self, e: &PrivateElement) -> DicomError {
        DicomError::invalid(e.name(self.block), format!("is not stored as {}", e.vr))
    }
}

/// Takes the OF value of `e` out of `obj` as `f32`s (moved when stored as OF).
pub fn take_f32s(
    obj: &mut InMemDicomObject,
    block: u8,
    e: &PrivateElement,
) -> Result<Option<Vec<f32>>, DicomError> {
    let Some(element) = obj.take(e.tag(block)) else {
        return Ok(None);
    };
    let vr = element.vr();
    if vr != e.vr && vr != VR::UN {
        return Err(DicomError::invalid(
            e.name(block),
            format!("has VR {vr}, expected {}", e.vr),
        ));
    }
    match element.into_value() {
        Value::Primitive(PrimitiveValue::Empty) => Ok(None),
        Value::Primitive(PrimitiveValue::F32(v)) => Ok(Some(v.into_vec())),
        Value::Primitive(PrimitiveValue::U8(bytes)) => {
            le_chunks::<4>(&bytes, e, block).map(|c| Some(c.map(f32::from_le_bytes).collect()))
        }
        _ => Err(DicomError::invalid(
            e.name(block),
            format!("is not stored as {}", e.vr),
        )),
    }
}

/// Takes the OB value of `e` out of `obj`.
pub fn take_bytes(
    obj: &mut InMemDicomObject,
    block: u8,
    e: &PrivateElement,
) -> Result<Option<Vec<u8>>, DicomError> {
    let Some(element) = obj.take(e.tag(block)) else {
        return Ok(None);
    };
    let vr = element.vr();
    if vr != e.vr && vr != VR::UN {
        return Err(DicomError::invalid(
            e.name(block),
            format!("has VR {vr}, expected {}", e.vr),
        ));
    }
    match element.into_value() {
        Value::Primitive(PrimitiveValue::Empty) => Ok(None),
        Value::Primitive(PrimitiveValue::U8(bytes)) => Ok(Some(bytes.into_vec())),
        _ => Err(DicomError::invalid(
            e.name(block),
            format!("is not stored as {}", e.vr),
        )),
    }
}

fn le_chunks<'b, const N: usize>(
    bytes: &'b [u8],
    e: &PrivateElement,
    block: u8,
) -> Result<impl Iterator<Item = [u8; N]> + 'b, DicomError> {
    if !bytes.len().is_multiple_of(N) {
        return Err(DicomError::invalid(
            e.name(block),
            format!("holds {} bytes, not a multiple of {N}", bytes.len()),
        ));
    }
    Ok(bytes.chunks_exact(N).map(|c| {
        let mut array = [0; N];
        array.copy_from_slice(c);
        array
    }))
}

/// Puts element `e` in the writer's block.
pub fn put(obj: &mut InMemDicomObject, e: &PrivateElement, value: PrimitiveValue) {
    obj.put(DataElement::new(e.tag(WRITE_BLOCK), e.vr, value));
}

/// Puts the Private Creator of the writer's block.
pub fn put_creator(obj: &mut InMemDicomObject) {
    obj.put(DataElement::new(
        Tag(PRIVATE_GROUP, u16::from(WRITE_BLOCK)),
        VR::LO,
        PrimitiveValue::from(PRIVATE_CREATOR),
    ));
}
