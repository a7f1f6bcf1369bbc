//! The bytes of one file (or inflated data set), loaded from the front on demand.

use std::io::Read;

use super::error::DicomError;

/// Bytes read so far are kept in one buffer; a header scan thus reads only the
/// front of a file, in chunks of at least [`Source::CHUNK`] bytes.
pub struct Source<'r> {
    buf: Vec<u8>,
    total: u64,
    cap: u64,
    reader: Option<&'r mut dyn Read>,
}

impl<'r> Source<'r> {
    /// Smallest read from the underlying reader (bytes).
    pub const CHUNK: usize = 16 * 1024;

    /// A source over bytes already in memory.
    pub fn from_bytes(buf: Vec<u8>) -> Self {
        let total = buf.len() as u64;
        Self {
            buf,
            total,
            cap: u64::MAX,
            reader: None,
        }
    }

    /// A source over `reader`, which holds exactly `total` bytes.
    pub fn from_reader(reader: &'r mut dyn Read, total: u64) -> Self {
        Self {
            buf: Vec::new(),
            total,
            cap: u64::MAX,
            reader: Some(reader),
        }
    }

    /// Refuses to load more than `cap` bytes ([`DicomError::TooLarge`]).
    pub fn with_cap(mut self, cap: u64) -> Self {
        self.cap = cap;
        self
    }

    /// Length of the whole stream (bytes).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The bytes loaded so far.
    pub fn loaded(&self) -> &[u8] {
        &self.buf
    }

    /// `len` bytes from offset `at`, loading them first.
    pub fn get(&mut self, at: u64, len: usize) -> Result<&[u8], DicomError> {
        let end = at + len as u64;
        self.load_to(end)?;
        let (start, end) = (at as usize, end as usize);
        Ok(&self.buf[start..end])
    }

    /// Ensures the bytes before offset `end` are loaded (`end` ≤ [`Self::total`]).
    pub fn load_to(&mut self, end: u64) -> Result<(), DicomError> {
        if end > self.total {
            return Err(DicomError::Malformed(format!(
                "needs byte {end} of a {}-byte stream",
                self.total
            )));
        }
        let have = self.buf.len() as u64;
        if end <= have {
            return Ok(());
        }
        if end > self.cap {
            return Err(DicomError::TooLarge {
                what: "the part of the file read".into(),
                bytes: end,
                cap: self.cap,
            });
        }
        let Some(reader) = self.reader.as_mut() else {
            return Err(DicomError::Malformed(format!(
                "needs byte {end} of {have} loaded bytes"
            )));
        };
        let target = end
            .max(have.saturating_mul(2))
            .max(Self::CHUNK as u64)
            .min(self.total)
            .min(self.cap);
        let add = (target - have) as usize;
        let old = self.buf.len();
        self.buf.resize(old + add, 0);
        reader.read_exact(&mut self.buf[old..]).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                DicomError::Malformed("the file became shorter while it was read".into())
            } else {
                DicomError::Io(e)
            }
        })
    }
}
