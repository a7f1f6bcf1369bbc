//! The one error type of the DICOM layer.

use std::fmt;

/// Why a DICOM file could not be read, validated or written.
///
/// Every variant renders as one sentence that names the offending element or
/// limit, so that `dps-recon inspect` can print it as the reason.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// The operating system refused a read, write, rename or directory walk.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// No `DICM` marker after a 128-byte preamble nor at the very start.
    #[error("not a DICOM file (no \"DICM\" marker at byte 128 or 0)")]
    NotDicom,
    /// The byte stream breaks the DICOM encoding rules (PS3.5).
    #[error("malformed DICOM: {0}")]
    Malformed(String),
    /// A transfer syntax or pixel format this build cannot decode.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Reading would need more memory than the configured cap.
    #[error("{what} needs {bytes} bytes, more than the cap of {cap} bytes")]
    TooLarge {
        /// What would have been allocated.
        what: String,
        /// Bytes it would need.
        bytes: u64,
        /// The cap in force ([`crate::dicom::ReadLimits::max_bytes`]).
        cap: u64,
    },
    /// A required element is absent or empty.
    #[error("missing required element {0}")]
    Missing(ElementName),
    /// An element is present but its value breaks the contract.
    #[error("invalid {element}: {reason}")]
    Invalid {
        /// The element.
        element: ElementName,
        /// What is wrong with it.
        reason: String,
    },
    /// Pixel data could not be decoded.
    #[error("cannot decode pixel data: {0}")]
    Pixel(String),
    /// A data set could not be encoded or a file could not be written.
    #[error("cannot write DICOM: {0}")]
    Write(String),
    /// The error of one file among several (e.g. of a series).
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        error: Box<DicomError>,
    },
}

/// An element named for messages: tag and keyword, e.g. `(0071,1002) Dimensions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementName {
    /// Group number.
    pub group: u16,
    /// Element number.
    pub element: u16,
    /// Keyword (standard or from docs/dicom-raw-profile.md).
    pub keyword: &'static str,
}

impl ElementName {
    /// Names element `(group,element)` with `keyword`.
    pub const fn new(group: u16, element: u16, keyword: &'static str) -> Self {
        Self {
            group,
            element,
            keyword,
        }
    }
}

impl fmt::Display for ElementName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({:04X},{:04X}) {}",
            self.group, self.element, self.keyword
        )
    }
}

impl DicomError {
    /// An [`DicomError::Invalid`] for `element` with `reason`.
    pub fn invalid(element: ElementName, reason: impl Into<String>) -> Self {
        Self::Invalid {
            element,
            reason: reason.into(),
        }
    }

    /// A short machine-readable class of the error, used by `inspect --json`:
    /// `io`, `not_dicom`, `malformed`, `unsupported`, `too_large`, `missing`,
    /// `invalid`, `pixel` or `write` (for [`DicomError::InFile`], its file's).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::NotDicom => "not_dicom",
            Self::Malformed(_) => "malformed",
            Self::Unsupported(_) => "unsupported",
            Self::TooLarge { .. } => "too_large",
            Self::Missing(_) => "missing",
            Self::Invalid { .. } => "invalid",
            Self::Pixel(_) => "pixel",
            Self::Write(_) => "write",
            Self::InFile { error, .. } => error.class(),
        }
    }
}

/// `error` and its sources joined by `": "` (dicom-rs errors keep the useful
/// part of their message in the source chain).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}
