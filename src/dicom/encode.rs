//! Encoding values for writing: decimal strings of at most 16 characters,
//! integer strings, dates and times, cleaned text, and small `put_*` helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use dicom_core::value::C;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;

use super::error::DicomError;
use super::values::std_name;

/// Formats `x` as a DICOM Decimal String (DS) of at most 16 characters: the
/// shortest text that parses back to `x` when it fits, else the closest
/// fixed-point or exponent form that fits.
pub fn format_ds(x: f64) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    let shortest = format!("{x}");
    if shortest.len() <= 16 {
        return Some(shortest);
    }
    let fixed = (0..=15usize)
        .rev()
        .map(|d| format!("{x:.d$}"))
        .find(|s| s.len() <= 16);
    let exponent = (0..=15usize)
        .rev()
        .map(|p| format!("{x:.p$e}"))
        .find(|s| s.len() <= 16);
    let error = |s: &String| s.parse::<f64>().map_or(f64::INFINITY, |y| (y - x).abs());
    match (fixed, exponent) {
        (Some(f), Some(e)) => Some(if error(&f) <= error(&e) { f } else { e }),
        (f, e) => f.or(e),
    }
}

/// The value a reader gets back from [`format_ds`]`(x)`.
pub fn ds_round_trip(x: f64) -> Option<f64> {
    format_ds(x).and_then(|s| s.parse().ok())
}

/// Today's date and the time now, in UTC, as DICOM DA (`YYYYMMDD`) and TM
/// (`HHMMSS.FFFFFF`) strings; written with TimezoneOffsetFromUTC `+0000`.
pub fn now_utc() -> (String, String) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    (
        format!("{y:04}{m:02}{d:02}"),
        format!(
            "{:02}{:02}{:02}.{:06}",
            s / 3600,
            (s / 60) % 60,
            s % 60,
            since.subsec_micros()
        ),
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `text` as one value of a string VR: backslashes (value separators) become
/// `/`, control characters are dropped, and at most `max_chars` characters kept.
pub fn clean_text(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '\\' { '/' } else { c })
        .take(max_chars)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Puts a single-valued string element (empty `value`: a zero-length element).
pub fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    let value = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    obj.put(DataElement::new(tag, vr, value));
}

/// Puts a multi-valued string element.
pub fn put_strs(obj: &mut InMemDicomObject, tag: Tag, vr: VR, values: &[&str]) {
    let values: C<String> = values.iter().map(|s| (*s).to_owned()).collect();
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Strs(values)));
}

/// Puts a DS element with one value per item of `values`, each at most 16
/// characters ([`format_ds`]).
pub fn put_ds(obj: &mut InMemDicomObject, tag: Tag, values: &[f64]) -> Result<(), DicomError> {
    let texts = values
        .iter()
        .map(|&x| {
            format_ds(x).ok_or_else(|| {
                DicomError::Write(format!("{}: {x} is not a finite decimal", std_name(tag)))
            })
        })
        .collect::<Result<C<String>, _>>()?;
    obj.put(DataElement::new(tag, VR::DS, PrimitiveValue::Strs(texts)));
    Ok(())
}

/// Puts an IS element (a signed 32-bit integer as text).
pub fn put_is(obj: &mut InMemDicomObject, tag: Tag, value: i32) {
    put_str(obj, tag, VR::IS, &value.to_string());
}

/// Puts a US element.
pub fn put_us(obj: &mut InMemDicomObject, tag: Tag, value: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// Puts an empty element (type 2 attributes without a known value).
pub fn put_empty(obj: &mut InMemDicomObject, tag: Tag, vr: VR) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_is_at_most_16_characters_and_close() {
        for x in [
            0.0,
            -0.5,
            1.0 / 3.0,
            -123_456.789_012_345,
            1e-12,
            -2.5e-300,
            6.02214076e23,
            std::f64::consts::PI,
            -1234.5678901234567,
        ] {
            let s = format_ds(x).unwrap();
            assert!(s.len() <= 16, "{x} -> {s}");
            let y: f64 = s.parse().unwrap();
            let rel = ((y - x) / x.abs().max(f64::MIN_POSITIVE)).abs();
            assert!(rel < 1e-9 || x == 0.0, "{x} -> {s} (rel {rel})");
        }
        assert_eq!(format_ds(0.25).unwrap(), "0.25");
        assert_eq!(format_ds(-1024.0).unwrap(), "-1024");
        assert_eq!(format_ds(1.0 / 3.0).unwrap(), "0.33333333333333");
        assert_eq!(format_ds(f64::NAN), None);
        assert_eq!(format_ds(f64::INFINITY), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let (da, tm) = now_utc();
        assert_eq!(da.len(), 8);
        assert_eq!(tm.len(), 13);
        assert_eq!(&tm[6..7], ".");
    }

    #[test]
    fn clean_text_removes_separators_and_controls() {
        assert_eq!(clean_text("a\\b\nc", 64), "a/bc");
        assert_eq!(clean_text("../../etc/passwd", 5), "../..");
        assert_eq!(clean_text("ab  ", 64), "ab");
    }
}
