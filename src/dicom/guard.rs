//! A byte-level walk over the element headers of a DICOM stream that checks every
//! declared length against the bytes really present, before dicom-rs parses it.
//!
//! dicom-rs reserves a value's declared length before reading it, so a 200-byte
//! file declaring a 4 GiB element would make it allocate (and zero) 4 GiB. After
//! this walk has accepted a stream, every allocation the parser makes is bounded by
//! the size of the stream, which [`super::load`] has already bounded by
//! [`super::ReadLimits`]. The walk follows the parser's structure rules (explicit or
//! implicit VR, sequences of defined or undefined length, encapsulated pixel data)
//! and rejects what the parser would misread: elements overrunning their item,
//! nesting deeper than [`MAX_DEPTH`], item tags out of place.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::error::DicomError;
use super::source::Source;

/// Deepest sequence nesting accepted (the parser recurses once per level).
pub const MAX_DEPTH: u32 = 32;

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// How the data set is encoded (from its transfer syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Little endian byte order (all but the retired Explicit VR Big Endian).
    pub little_endian: bool,
    /// VR written in each element header.
    pub explicit_vr: bool,
}

impl Encoding {
    /// Explicit VR Little Endian, the encoding of the file meta group.
    pub const EXPLICIT_LE: Self = Self {
        little_endian: true,
        explicit_vr: true,
    };
}

#[derive(Debug, Clone, Copy)]
struct Header {
    tag: Tag,
    /// The VR as the parser will resolve it.
    vr: VR,
    len: u32,
    /// Offset of the first byte of the header.
    start: u64,
}

/// Walks the file meta group that starts at `at` (just after `DICM`), as dicom-rs
/// reads it: a (0002,0000) group length first, then elements until that many bytes
/// were consumed. Returns the offset where the data set starts.
pub fn walk_meta(src: &mut Source<'_>, at: u64) -> Result<u64, DicomError> {
    let mut walker = Walker {
        src,
        pos: at,
        enc: Encoding::EXPLICIT_LE,
    };
    let first = walker
        .header()?
        .ok_or_else(|| malformed("file meta information is empty"))?;
    if first.tag != Tag(0x0002, 0x0000) || first.len != 4 {
        return Err(malformed(format!(
            "file meta information must start with (0002,0000) group length, found {} with length {}",
            first.tag, first.len
        )));
    }
    let group_length = walker.u32_at(walker.pos)?;
    walker.pos += 4;
    let mut consumed: u64 = 0;
    while consumed < u64::from(group_length) {
        let h = walker
            .header()?
            .ok_or_else(|| malformed("file meta information ends early"))?;
        if h.len == UNDEFINED {
            return Err(malformed(format!(
                "file meta element {} has undefined length",
                h.tag
            )));
        }
        walker.skip_value(&h, None)?;
        consumed = walker.pos - at - 12;
    }
    Ok(walker.pos)
}

/// Walks the data set from `at` to the end of the stream, or to the first
/// top-level element whose tag is `stop_at` or greater (its header is not
/// checked). Returns the offset where the walk ended; the bytes before it are
/// loaded in `src`.
pub fn walk_dataset(
    src: &mut Source<'_>,
    at: u64,
    enc: Encoding,
    stop_at: Option<Tag>,
) -> Result<u64, DicomError> {
    let mut walker = Walker { src, pos: at, enc };
    walker.elements(None, 0, stop_at)
}

struct Walker<'s, 'r> {
    src: &'s mut Source<'r>,
    pos: u64,
    enc: Encoding,
}

impl Walker<'_, '_> {
    fn remaining(&self) -> u64 {
        self.src.total().saturating_sub(self.pos)
    }

    fn u16_at(&mut self, at: u64) -> Result<u16, DicomError> {
        let b = self.src.get(at, 2)?;
        let b = [b[0], b[1]];
        Ok(if self.enc.little_endian {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32_at(&mut self, at: u64) -> Result<u32, DicomError> {
        let b = self.src.get(at, 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.enc.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    /// Reads the element header at the cursor and moves past it; `None` when fewer
    /// than 4 bytes are left (the parser's graceful end of a data set).
    fn header(&mut self) -> Result<Option<Header>, DicomError> {
        let start = self.pos;
        if self.remaining() < 4 {
            return Ok(None);
        }
        let tag = Tag(self.u16_at(start)?, self.u16_at(start + 2)?);
        let truncated = || malformed(format!("element header {tag} at byte {start} is truncated"));
        if tag.group() == 0xFFFE || !self.enc.explicit_vr {
            if self.remaining() < 8 {
                return Err(truncated());
            }
            let len = self.u32_at(start + 4)?;
            self.pos = start + 8;
            let vr = if tag.group() == 0xFFFE {
                VR::UN
            } else {
                implicit_vr(tag)
            };
            return Ok(Some(Header {
                tag,
                vr,
                len,
                start,
            }));
        }
        if self.remaining() < 8 {
            return Err(truncated());
        }
        let code = self.src.get(start + 4, 2)?;
        let vr = VR::from_binary([code[0], code[1]]).unwrap_or(VR::UN);
        let (len, header_len) = if has_short_length(vr) {
            (u32::from(self.u16_at(start + 6)?), 8)
        } else {
            if self.remaining() < 12 {
                return Err(truncated());
            }
            (self.u32_at(start + 8)?, 12)
        };
        self.pos = start + header_len;
        Ok(Some(Header {
            tag,
            vr,
            len,
            start,
        }))
    }

    /// Moves past a defined-length value after checking that it lies inside the
    /// stream and inside `end` (the enclosing item's end), loading its bytes,
    /// and that it holds a whole number of values of its VR (the parser reads
    /// only whole values and would lose its place).
    fn skip_value(&mut self, h: &Header, end: Option<u64>) -> Result<(), DicomError> {
        let len = u64::from(h.len);
        let unit = value_size(h.vr);
        if len % unit != 0 {
            return Err(malformed(format!(
                "element {} at byte {} has length {len}, not a multiple of {unit} as VR {} needs",
                h.tag, h.start, h.vr
            )));
        }
        if len > self.remaining() {
            return Err(malformed(format!(
                "element {} at byte {} declares {} bytes but only {} remain (truncated or corrupt file)",
                h.tag,
                h.start,
                len,
                self.remaining()
            )));
        }
        let value_end = self.pos + len;
        if let Some(end) = end {
            if value_end > end {
                return Err(malformed(format!(
                    "element {} at byte {} overruns its sequence item",
                    h.tag, h.start
                )));
            }
        }
        self.src.load_to(value_end)?;
        self.pos = value_end;
        Ok(())
    }

    /// Walks the elements of a data set (`depth` 0) or of an item. `end` is the
    /// item's end for a defined-length item, `None` for the top level or an
    /// undefined-length item (which ends at its item delimiter).
    fn elements(
        &mut self,
        end: Option<u64>,
        depth: u32,
        stop_at: Option<Tag>,
    ) -> Result<u64, DicomError> {
        loop {
            if let Some(end) = end {
                if self.pos >= end {
                    return Ok(self.pos);
                }
            }
            let Some(h) = self.header()? else {
                if depth == 0 {
                    return Ok(self.pos);
                }
                return Err(malformed(
                    "sequence item not closed before the end of the file",
                ));
            };
            if depth == 0 && stop_at.is_some_and(|stop| h.tag >= stop) {
                return Ok(h.start);
            }
            match h.tag {
                ITEM_DELIMITER if depth == 0 => {}
                ITEM_DELIMITER if end.is_none() => return Ok(self.pos),
                ITEM | ITEM_DELIMITER | SEQUENCE_DELIMITER => {
                    return Err(malformed(format!(
                        "unexpected item tag {} at byte {}",
                        h.tag, h.start
                    )))
                }
                PIXEL_DATA if h.len == UNDEFINED => self.fragments()?,
                _ if h.vr == VR::SQ || h.len == UNDEFINED => {
                    self.sequence(&h, end, depth + 1)?;
                }
                _ => self.skip_value(&h, end)?,
            }
        }
    }

    /// Walks the items of a sequence whose header `h` was just read.
    fn sequence(
        &mut self,
        h: &Header,
        outer_end: Option<u64>,
        depth: u32,
    ) -> Result<(), DicomError> {
        if depth > MAX_DEPTH {
            return Err(malformed(format!(
                "sequence {} at byte {} is nested deeper than {MAX_DEPTH} levels",
                h.tag, h.start
            )));
        }
        let end = if h.len == UNDEFINED {
            None
        } else {
            let start = self.pos;
            self.skip_value(h, outer_end)?;
            self.pos = start;
            Some(start + u64::from(h.len))
        };
        loop {
            if let Some(end) = end {
                if self.pos == end {
                    return Ok(());
                }
                if self.pos > end {
                    return Err(malformed(format!(
                        "an item of sequence {} overruns the sequence",
                        h.tag
                    )));
                }
            }
            let item = self.header()?.ok_or_else(|| {
                malformed(format!(
                    "sequence {} not closed before the end of the file",
                    h.tag
                ))
            })?;
            match item.tag {
                SEQUENCE_DELIMITER if end.is_none() => return Ok(()),
                ITEM if item.len == UNDEFINED => {
                    self.elements(None, depth, None)?;
                }
                ITEM => {
                    let item_start = self.pos;
                    self.skip_value(&item, end)?;
                    self.pos = item_start;
                    let item_end = item_start + u64::from(item.len);
                    self.elements(Some(item_end), depth, None)?;
                    if self.pos != item_end {
                        return Err(malformed(format!(
                            "an element overruns item {} of sequence {}",
                            item.start, h.tag
                        )));
                    }
                }
                other => {
                    return Err(malformed(format!(
                        "expected an item in sequence {}, found {} at byte {}",
                        h.tag, other, item.start
                    )))
                }
            }
        }
    }

    /// Walks the fragments of encapsulated pixel data. Like the parser, a stream
    /// that ends inside the fragments ends the data set.
    fn fragments(&mut self) -> Result<(), DicomError> {
        loop {
            if self.remaining() < 8 {
                self.pos = self.src.total();
                self.src.load_to(self.pos)?;
                return Ok(());
            }
            let item = self
                .header()?
                .ok_or_else(|| malformed("pixel data ends early"))?;
            match item.tag {
                SEQUENCE_DELIMITER => return Ok(()),
                ITEM if item.len != UNDEFINED => self.skip_value(&item, None)?,
                other => {
                    return Err(malformed(format!(
                        "expected a pixel data fragment, found {} with length {:#x} at byte {}",
                        other, item.len, item.start
                    )))
                }
            }
        }
    }
}

/// The VR the implicit-VR parser gives `tag`: from the standard dictionary, OW
/// for pixel and overlay data, UN when unknown.
fn implicit_vr(tag: Tag) -> VR {
    if tag == PIXEL_DATA || (tag.group() >> 8 == 0x60 && tag.element() == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// Bytes per value of the binary VRs (1 for text and byte VRs).
fn value_size(vr: VR) -> u64 {
    use VR::*;
    match vr {
        US | SS | OW => 2,
        AT | FL | OF | SL | UL | OL => 4,
        FD | OD | SV | UV | OV => 8,
        _ => 1,
    }
}

/// VRs whose explicit header holds a 16-bit length (PS3.5 7.1.2).
fn has_short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

fn malformed(msg: impl Into<String>) -> DicomError {
    DicomError::Malformed(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(bytes: Vec<u8>, enc: Encoding) -> Result<u64, DicomError> {
        let mut src = Source::from_bytes(bytes);
        walk_dataset(&mut src, 0, enc, None)
    }

    const IMPLICIT: Encoding = Encoding {
        little_endian: true,
        explicit_vr: false,
    };

    /// An implicit VR element header.
    fn implicit(group: u16, element: u16, len: u32) -> Vec<u8> {
        [group.to_le_bytes(), element.to_le_bytes()]
            .concat()
            .into_iter()
            .chain(len.to_le_bytes())
            .collect()
    }

    #[test]
    fn implicit_sequences_are_entered_through_the_dictionary() {
        // (0008,1115) ReferencedSeriesSequence, defined length 16: one item of 8
        // bytes holding an element that claims 1 GiB.
        let mut bytes = implicit(0x0008, 0x1115, 16);
        bytes.extend(implicit(0xFFFE, 0xE000, 8));
        bytes.extend(implicit(0x0020, 0x000E, 1 << 30));
        let err = walk(bytes, IMPLICIT).unwrap_err().to_string();
        assert!(
            err.contains("element (0020,000E) at byte 16 declares 1073741824 bytes"),
            "{err}"
        );
    }

    #[test]
    fn elements_overrunning_their_item_are_refused() {
        // Item of 10 bytes holding an element of 8 + 4 bytes.
        let mut bytes = implicit(0x0008, 0x1115, 0xFFFF_FFFF);
        bytes.extend(implicit(0xFFFE, 0xE000, 10));
        bytes.extend(implicit(0x0020, 0x000E, 4));
        bytes.extend([b'1', b'.', b'2', 0]);
        bytes.extend(implicit(0xFFFE, 0xE0DD, 0));
        let err = walk(bytes, IMPLICIT).unwrap_err().to_string();
        assert!(err.contains("overruns its sequence item"), "{err}");
    }

    #[test]
    fn well_formed_sets_walk_to_the_end_or_the_stop_tag() {
        let mut bytes = implicit(0x0008, 0x1115, 0xFFFF_FFFF);
        bytes.extend(implicit(0xFFFE, 0xE000, 12));
        bytes.extend(implicit(0x0020, 0x000E, 4));
        bytes.extend([b'1', b'.', b'2', 0]);
        bytes.extend(implicit(0xFFFE, 0xE0DD, 0));
        let pixel_at = bytes.len() as u64;
        bytes.extend(implicit(0x7FE0, 0x0010, 4));
        bytes.extend([1, 2, 3, 4]);
        let total = bytes.len() as u64;
        assert_eq!(walk(bytes.clone(), IMPLICIT).unwrap(), total);
        let mut src = Source::from_bytes(bytes);
        let stop = walk_dataset(&mut src, 0, IMPLICIT, Some(Tag(0x7FE0, 0))).unwrap();
        assert_eq!(stop, pixel_at);
    }
}
