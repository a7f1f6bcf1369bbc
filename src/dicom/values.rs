//! Reading standard attributes from a parsed object, with errors that name the
//! element.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

use super::error::{DicomError, ElementName};

/// `tag` named with its keyword from the standard dictionary.
pub fn std_name(tag: Tag) -> ElementName {
    let keyword = StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.alias())
        .unwrap_or("(unknown)");
    ElementName::new(tag.group(), tag.element(), keyword)
}

/// The primitive value of `tag` (`None` when absent, empty, or a sequence).
pub fn primitive(obj: &InMemDicomObject, tag: Tag) -> Option<&PrimitiveValue> {
    element_primitive(obj.get(tag)?)
}

/// The primitive value of `element` (`None` when empty or a sequence).
pub fn element_primitive(element: &InMemElement) -> Option<&PrimitiveValue> {
    match element.value().primitive()? {
        PrimitiveValue::Empty => None,
        value => Some(value),
    }
}

/// The text of `tag`, values joined by `\`, trimmed of spaces and NULs; empty
/// when absent or not text.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    primitive(obj, tag)
        .map(|v| trim(&v.to_str()).to_owned())
        .unwrap_or_default()
}

/// `s` without leading and trailing spaces and NULs.
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\0')
}

/// `x` for messages: a plain decimal from 1e-4 to 1e15 (and 0), else in
/// exponent form, which a plain decimal far from 1 would spell in tens or
/// hundreds of digits.
pub fn readable(x: f64) -> String {
    match x.abs() {
        a if a == 0.0 || (1e-4..1e15).contains(&a) => format!("{x}"),
        _ => format!("{x:e}"),
    }
}

/// The numeric values of `tag` (DS, FD, FL, IS or binary integers), `None` when
/// absent or empty; an error when present but not numbers.
pub fn f64s(obj: &InMemDicomObject, tag: Tag) -> Result<Option<Vec<f64>>, DicomError> {
    let Some(value) = primitive(obj, tag) else {
        return Ok(None);
    };
    match value.to_multi_float64() {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(DicomError::invalid(std_name(tag), e.to_string())),
    }
}

/// Exactly `N` finite numbers from `tag`, `None` when absent.
pub fn f64_array<const N: usize>(
    obj: &InMemDicomObject,
    tag: Tag,
) -> Result<Option<[f64; N]>, DicomError> {
    let Some(values) = f64s(obj, tag)? else {
        return Ok(None);
    };
    let array: [f64; N] = values.as_slice().try_into().map_err(|_| {
        DicomError::invalid(
            std_name(tag),
            format!("expected {N} values, found {}", values.len()),
        )
    })?;
    if array.iter().any(|x| !x.is_finite()) {
        return Err(DicomError::invalid(std_name(tag), "not a finite number"));
    }
    Ok(Some(array))
}

/// The first number of `tag`, `None` when absent.
pub fn f64_first(obj: &InMemDicomObject, tag: Tag) -> Result<Option<f64>, DicomError> {
    match f64s(obj, tag)? {
        Some(v) if v[0].is_finite() => Ok(Some(v[0])),
        Some(_) => Err(DicomError::invalid(std_name(tag), "not a finite number")),
        None => Ok(None),
    }
}

/// The first value of `tag` as an integer, `None` when absent.
pub fn int(obj: &InMemDicomObject, tag: Tag) -> Result<Option<i64>, DicomError> {
    let Some(value) = primitive(obj, tag) else {
        return Ok(None);
    };
    value
        .to_int::<i64>()
        .map(Some)
        .map_err(|e| DicomError::invalid(std_name(tag), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn numbers_far_from_one_are_shown_in_exponent_form() {
        assert_eq!(readable(0.005), "0.005");
        assert_eq!(readable(0.0), "0");
        assert_eq!(readable(1e30), "1e30");
        assert_eq!(readable(-2.5e-300), "-2.5e-300");
    }
}
