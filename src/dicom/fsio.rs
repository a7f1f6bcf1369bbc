//! Atomic file writes: a reader never sees a half-written DICOM file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::DicomError;

/// Writes `path` atomically: `write` fills a new temporary file in the same
/// folder (named `.<file name>.<pid>.<nanoseconds>.tmp`), which is flushed to
/// disk and renamed over `path`. On error the temporary file is removed and
/// `path` is left as it was.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), DicomError>,
) -> Result<(), DicomError> {
    let temp = temp_path(path)?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn temp_path(path: &Path) -> Result<PathBuf, DicomError> {
    let name = path
        .file_name()
        .ok_or_else(|| DicomError::Write(format!("{} does not name a file", path.display())))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let temp_name = format!(
        ".{}.{}.{nanos}.tmp",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(temp_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dcm");
        fs::write(&path, b"old").unwrap();
        let err = write_atomic(&path, |f| {
            f.write_all(b"partial")?;
            Err(DicomError::Write("boom".into()))
        })
        .unwrap_err();
        assert!(matches!(err, DicomError::Write(_)));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&path, |f| Ok(f.write_all(b"new")?)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
