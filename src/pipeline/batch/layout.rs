//! Where a series' outputs go, and how they get there atomically.
//!
//! Layout: `OUT/<study>/<series>/` with `manifest.json` and one folder per output
//! series (`dps/`, `uncertainty/`, `<baseline>/`). `<study>` and `<series>` are the
//! input's StudyInstanceUID and SeriesInstanceUID when those are valid UIDs (digits
//! and dots only, so never a path component like `..`); otherwise `x` followed by
//! the first 16 hex digits of the SHA-256 of the value. No other attribute text
//! ever reaches a path.
//!
//! A series is built in `OUT/<study>/.tmp-<series>-<pid>/`, manifest included,
//! and renamed to `OUT/<study>/<series>/` in one step. An existing series folder is
//! first renamed to `.old-<series>-<pid>` and removed after the new one is in
//! place. A run killed at any point leaves only hidden `.tmp-*`/`.old-*` folders
//! beside complete series; [`clean_stale`] (called under the output lock) removes
//! the former and puts back an `.old-*` folder whose series folder is missing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::dicom::uid::is_valid_uid;
use crate::pipeline::preset::sha256_hex;

/// Name of the manifest inside a series folder.
pub const MANIFEST: &str = "manifest.json";

const TEMP_PREFIX: &str = ".tmp-";
const OLD_PREFIX: &str = ".old-";

/// A folder name for a UID: the UID itself when valid, else `x<16 hex digits>`.
pub fn dir_name(uid: &str) -> String {
    if is_valid_uid(uid) {
        uid.to_owned()
    } else {
        format!("x{}", &sha256_hex(uid.as_bytes())[..16])
    }
}

/// The folders of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesDirs {
    /// `OUT/<study>`.
    pub study: PathBuf,
    /// `OUT/<study>/<series>`, the final folder.
    pub fin: PathBuf,
    /// `OUT/<study>/.tmp-<series>-<pid>`, where it is built.
    pub temp: PathBuf,
    /// `OUT/<study>/.old-<series>-<pid>`, where a replaced folder waits for removal.
    pub old: PathBuf,
}

impl SeriesDirs {
    /// The folders of the series `(study_uid, series_uid)` under `out` for this
    /// process.
    pub fn new(out: &Path, study_uid: &str, series_uid: &str) -> Self {
        let study = out.join(dir_name(study_uid));
        let series = dir_name(series_uid);
        let pid = std::process::id();
        Self {
            fin: study.join(&series),
            temp: study.join(format!("{TEMP_PREFIX}{series}-{pid}")),
            old: study.join(format!("{OLD_PREFIX}{series}-{pid}")),
            study,
        }
    }

    /// A fresh, empty build folder (a leftover of the same name is removed).
    pub fn make_temp(&self) -> io::Result<()> {
        if self.temp.exists() {
            fs::remove_dir_all(&self.temp)?;
        }
        fs::create_dir_all(&self.temp)
    }

    /// Moves the build folder into place, replacing the final folder if any.
    pub fn publish(&self) -> io::Result<()> {
        if self.fin.exists() {
            fs::rename(&self.fin, &self.old)?;
            fs::rename(&self.temp, &self.fin)?;
            fs::remove_dir_all(&self.old)?;
        } else {
            fs::rename(&self.temp, &self.fin)?;
        }
        sync_dir(&self.study)
    }

    /// Removes the build folder (after a failure).
    pub fn discard_temp(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// What [`clean_stale`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cleanup {
    /// Build folders of killed runs, removed.
    pub removed: Vec<PathBuf>,
    /// Replaced series folders put back because their replacement never arrived.
    pub restored: Vec<PathBuf>,
}

/// Removes what killed runs left in `out` (only call under the output lock).
pub fn clean_stale(out: &Path) -> io::Result<Cleanup> {
    let mut cleanup = Cleanup::default();
    let studies = match fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(cleanup),
        Err(e) => return Err(e),
    };
    for study in studies {
        let study = study?;
        if !study.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(study.path())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if name.starts_with(TEMP_PREFIX) {
                fs::remove_dir_all(&path)?;
                cleanup.removed.push(path);
            } else if let Some(rest) = name.strip_prefix(OLD_PREFIX) {
                let series = rest.rsplit_once('-').map_or(rest, |(s, _)| s);
                let fin = study.path().join(series);
                if fin.exists() {
                    fs::remove_dir_all(&path)?;
                    cleanup.removed.push(path);
                } else {
                    fs::rename(&path, &fin)?;
                    cleanup.restored.push(fin);
                }
            }
        }
    }
    Ok(cleanup)
}

/// Makes the entries of `dir` durable (renames into it); a no-op where folders
/// cannot be opened as files.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, flushed
/// to disk and renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_uids_or_hashes() {
        assert_eq!(dir_name("1.2.840.10008.1"), "1.2.840.10008.1");
        for hostile in ["..", "../../etc", "a/b", "", "1..2", "1.2.3/"] {
            let name = dir_name(hostile);
            assert_eq!(name.len(), 17, "{hostile}");
            assert!(name.starts_with('x'));
            assert!(name[1..].bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        }
        assert_ne!(dir_name(".."), dir_name("../../etc"));
    }

    #[test]
    fn publish_replaces_and_cleanup_recovers() {
        let out = tempfile::tempdir().unwrap();
        let dirs = SeriesDirs::new(out.path(), "1.2", "1.2.3");
        assert_eq!(dirs.fin, out.path().join("1.2").join("1.2.3"));
        dirs.make_temp().unwrap();
        fs::write(dirs.temp.join("a"), "first").unwrap();
        dirs.publish().unwrap();
        assert_eq!(fs::read_to_string(dirs.fin.join("a")).unwrap(), "first");
        assert!(!dirs.temp.exists());

        dirs.make_temp().unwrap();
        fs::write(dirs.temp.join("a"), "second").unwrap();
        dirs.publish().unwrap();
        assert_eq!(fs::read_to_string(dirs.fin.join("a")).unwrap(), "second");
        assert!(!dirs.old.exists());

        // A run killed between the two renames of a replacement: the old folder is
        // put back, the build folder removed.
        dirs.make_temp().unwrap();
        fs::rename(&dirs.fin, &dirs.old).unwrap();
        let cleanup = clean_stale(out.path()).unwrap();
        assert_eq!(cleanup.removed, vec![dirs.temp.clone()]);
        assert_eq!(cleanup.restored, vec![dirs.fin.clone()]);
        assert_eq!(fs::read_to_string(dirs.fin.join("a")).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(&dirs.study)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["1.2.3"]);
    }

    #[test]
    fn atomic_writes_leave_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST);
        write_atomic(&path, b"{}").unwrap();
        write_atomic(&path, b"{\"a\": 1}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\": 1}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
