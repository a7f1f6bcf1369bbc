//! DICOM UIDs: fresh ones for new instances and series, fixed ones naming dps-recon.

/// The UID root that dps-recon owns: `2.25.` followed by one UUID (drawn once,
/// ITU-T X.667) written as a decimal integer. Sub-arcs name the program.
pub const ROOT: &str = "2.25.276247330437501655401512259541351001116";

/// Implementation Class UID (0002,0012) of every file dps-recon writes.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.276247330437501655401512259541351001116.1";

/// Implementation Version Name (0002,0013): at most 16 characters.
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("DPSRECON_", env!("CARGO_PKG_VERSION"));

/// Creator-Version UID (0008,9123) of this build: [`ROOT`]`.2.` followed by the
/// crate version's major, minor and patch numbers, e.g. `….2.0.1.0` for 0.1.0.
pub fn creator_version_uid() -> String {
    format!(
        "{ROOT}.2.{}.{}.{}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH")
    )
}

/// A fresh UID: `2.25.` followed by a random (version 4) UUID as one decimal
/// number, as PS3.5 B.2 allows. At most 44 characters.
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// Whether `uid` is a valid UID (PS3.5 9.1): 1 to 64 characters, digit
/// components separated by single dots, no leading zero in a multi-digit component.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part.len() == 1 || !part.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uids_are_valid_and_distinct() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        for uid in [&a, &b] {
            assert!(uid.starts_with("2.25."), "{uid}");
            assert!(is_valid_uid(uid), "{uid}");
            assert!(uid.len() <= 44, "{uid}");
        }
    }

    #[test]
    fn fixed_uids_are_valid() {
        assert!(is_valid_uid(ROOT));
        assert!(is_valid_uid(IMPLEMENTATION_CLASS_UID));
        assert!(IMPLEMENTATION_CLASS_UID.starts_with(ROOT));
        let creator = creator_version_uid();
        assert!(is_valid_uid(&creator), "{creator}");
        assert!(creator.starts_with(&format!("{ROOT}.2.")));
        assert!(IMPLEMENTATION_VERSION_NAME.len() <= 16);
    }

    #[test]
    fn invalid_uids_are_refused() {
        for uid in ["", "1..2", "1.02", "1.2.a", ".1", "1.", &"1".repeat(65)] {
            assert!(!is_valid_uid(uid), "{uid}");
        }
        assert!(is_valid_uid("1.2.0.10"));
    }
}
