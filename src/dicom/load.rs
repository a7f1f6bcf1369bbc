//! Reading one DICOM Part 10 file into a dicom-rs object under a memory cap.
//!
//! The bytes are loaded, walked by [`super::guard`] (every declared length checked
//! against the bytes present), and only then handed to dicom-rs, so malformed or
//! hostile files end in a [`DicomError`] instead of a huge allocation or a panic.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::uids;
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntaxIndex};
use dicom_encoding::TransferSyntax;
use dicom_object::meta::FileMetaTable;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::error::{error_chain, DicomError};
use super::guard::{self, Encoding};
use super::source::Source;

/// Memory cap for reading one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most bytes one read may hold at once: the file (or the part of it a header
    /// scan needs), an inflated data set, or the arrays decoded from it. Checked
    /// before allocating.
    pub max_bytes: u64,
}

impl ReadLimits {
    /// The default cap: 4 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

impl ReadLimits {
    /// Fails with [`DicomError::TooLarge`] when `bytes` exceed the cap.
    pub fn check(&self, what: impl FnOnce() -> String, bytes: u64) -> Result<(), DicomError> {
        if bytes > self.max_bytes {
            return Err(DicomError::TooLarge {
                what: what(),
                bytes,
                cap: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// How much of a file to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Everything before group 7FE0 (Pixel Data and the elements after it).
    Header,
    /// The whole file.
    Full,
}

/// First tag not read by an [`Extent::Header`] read.
const HEADER_STOP: Tag = Tag(0x7FE0, 0x0000);

/// Reads the file at `path`.
pub fn open(
    path: &Path,
    limits: ReadLimits,
    extent: Extent,
) -> Result<DefaultDicomObject, DicomError> {
    let mut file = File::open(path)?;
    let total = file.metadata()?.len();
    read_stream(&mut file, total, limits, extent)
}

/// Reads a file held in memory.
pub fn from_bytes(
    bytes: &[u8],
    limits: ReadLimits,
    extent: Extent,
) -> Result<DefaultDicomObject, DicomError> {
    let mut reader = bytes;
    read_stream(&mut reader, bytes.len() as u64, limits, extent)
}

fn read_stream(
    reader: &mut dyn Read,
    total: u64,
    limits: ReadLimits,
    extent: Extent,
) -> Result<DefaultDicomObject, DicomError> {
    let stop = match extent {
        Extent::Header => Some(HEADER_STOP),
        Extent::Full => {
            limits.check(|| "the file".into(), total)?;
            None
        }
    };
    let mut src = Source::from_reader(reader, total).with_cap(limits.max_bytes);
    let magic_at = find_magic(&mut src)?;
    let dataset_start = guard::walk_meta(&mut src, magic_at + 4)?;
    let meta = FileMetaTable::from_reader(&src.loaded()[magic_at as usize..dataset_start as usize])
        .map_err(|e| {
            DicomError::Malformed(format!("file meta information: {}", error_chain(&e)))
        })?;
    let ts_uid = meta.transfer_syntax().to_owned();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| DicomError::Unsupported(format!("unknown transfer syntax {ts_uid:?}")))?;

    if ts.uid() == uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN {
        limits.check(|| "the deflated file".into(), total)?;
        src.load_to(total)?;
        let inflated = inflate(&src.loaded()[dataset_start as usize..], limits)?;
        let mut inner = Source::from_bytes(inflated);
        let end = guard::walk_dataset(&mut inner, 0, Encoding::EXPLICIT_LE, stop)?;
        let explicit = TransferSyntaxRegistry
            .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .ok_or_else(|| DicomError::Unsupported("Explicit VR Little Endian".into()))?;
        return parse(&inner.loaded()[..end as usize], explicit, meta);
    }
    if let Codec::Dataset(_) = ts.codec() {
        return Err(DicomError::Unsupported(format!(
            "transfer syntax {} ({}) needs a data set codec this build lacks",
            ts.name(),
            ts.uid()
        )));
    }
    let encoding = Encoding {
        little_endian: ts.endianness() == Endianness::Little,
        explicit_vr: !IMPLICIT_VR_UIDS.contains(&ts.uid()),
    };
    let end = guard::walk_dataset(&mut src, dataset_start, encoding, stop)?;
    parse(
        &src.loaded()[dataset_start as usize..end as usize],
        ts,
        meta,
    )
}

/// Transfer syntaxes without VR in the element headers.
const IMPLICIT_VR_UIDS: [&str; 2] = [uids::IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.20"];

/// Offset of `DICM`: 128 after a preamble, or 0 without one.
fn find_magic(src: &mut Source<'_>) -> Result<u64, DicomError> {
    if src.total() >= 132 && src.get(128, 4)? == b"DICM" {
        return Ok(128);
    }
    if src.total() >= 4 && src.get(0, 4)? == b"DICM" {
        return Ok(0);
    }
    Err(DicomError::NotDicom)
}

/// Inflates a raw-deflate data set (PS3.5 A.5) to at most the cap.
fn inflate(compressed: &[u8], limits: ReadLimits) -> Result<Vec<u8>, DicomError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(compressed)
        .take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DicomError::Malformed(format!("deflated data set: {e}")))?;
    limits.check(|| "the inflated data set".into(), out.len() as u64)?;
    Ok(out)
}

fn parse(
    bytes: &[u8],
    ts: &TransferSyntax,
    meta: FileMetaTable,
) -> Result<DefaultDicomObject, DicomError> {
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| DicomError::Malformed(error_chain(&e)))?;
    Ok(obj.with_exact_meta(meta))
}
