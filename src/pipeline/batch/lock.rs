//! The output folder's lock: one run at a time writes into an output folder.
//!
//! The lock is an exclusive advisory lock (`flock` on Unix, `LockFileEx` on
//! Windows) on `OUT/.dps-recon.lock`, which holds the holder's process id for
//! messages. The operating system drops the lock when its holder exits in any way
//! (including SIGKILL), so a lock file left by a killed run is simply locked again
//! by the next run: there are no stale locks to detect. The file itself stays;
//! deleting it while another run could open it would let two runs lock two
//! different files. Advisory locks on network file systems are only as reliable as
//! the file system's lock service.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the output folder.
pub const LOCK_FILE: &str = ".dps-recon.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{path}: another dps-recon run ({holder}) is writing into this output folder; \
         wait for it to finish or choose another output folder",
        path = .path.display()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder, e.g. `pid 1234`.
        holder: String,
    },
    /// The folder or the lock file could not be created or locked.
    #[error("{path}: cannot lock the output folder: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Creates `out` when missing and takes its lock without waiting.
    pub fn acquire(out: &Path) -> Result<Self, LockError> {
        let path = out.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(out).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim();
                return Err(LockError::Held {
                    holder: if holder.is_empty() {
                        "process unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                    path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "pid {}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let first = OutputLock::acquire(&out).unwrap();
        assert_eq!(first.path(), out.join(LOCK_FILE));
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text, format!("pid {}\n", std::process::id()));
        match OutputLock::acquire(&out) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()))
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = OutputLock::acquire(&out).unwrap();
        assert!(again.path().is_file());
    }

    #[test]
    fn a_lock_file_left_behind_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "pid 999999999\n").unwrap();
        let lock = OutputLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text, format!("pid {}\n", std::process::id()));
    }
}
