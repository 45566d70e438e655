//! Field checks with AWS-shaped `ValidationException` messages naming the field.

use crate::error::{KmsError, KmsResult};

fn invalid(field: &str, constraint: &str) -> KmsError {
    KmsError::invalid_field(field, constraint)
}

/// A required field was absent: `Value null at '<field>' ... Member must not be null`.
pub fn required<T>(field: &str, value: Option<T>) -> KmsResult<T> {
    value.ok_or_else(|| KmsError::invalid_value(field, "null", "Member must not be null"))
}

/// AWS's words for a length outside `min..=max`: it names the bound that was crossed.
fn length_constraint(n: usize, min: usize, max: usize) -> Option<String> {
    if n < min {
        Some(format!("Member must have length greater than or equal to {min}"))
    } else if n > max {
        Some(format!("Member must have length less than or equal to {max}"))
    } else {
        None
    }
}

/// A string's length in characters, as AWS counts it. The value is not repeated (it may be
/// long, or a token).
pub fn str_len(field: &str, value: &str, min: usize, max: usize) -> KmsResult<()> {
    match length_constraint(value.chars().count(), min, max) {
        Some(constraint) => Err(invalid(field, &constraint)),
        None => Ok(()),
    }
}

/// A blob's length in bytes (never repeated: plaintexts, ciphertexts).
pub fn blob_len(field: &str, value: &[u8], min: usize, max: usize) -> KmsResult<()> {
    match length_constraint(value.len(), min, max) {
        Some(constraint) => Err(invalid(field, &constraint)),
        None => Ok(()),
    }
}

/// A number within a closed range, named in the message as AWS does (`Value '0' at
/// 'numberOfBytes' ... Member must have value greater than or equal to 1`).
pub fn range(field: &str, value: i64, min: i64, max: i64) -> KmsResult<()> {
    let constraint = if value < min {
        format!("Member must have value greater than or equal to {min}")
    } else if value > max {
        format!("Member must have value less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(KmsError::invalid_value(
        field,
        format_args!("'{value}'"),
        constraint,
    ))
}

/// A value from a fixed set, named in the message as AWS does.
pub fn one_of<'a>(field: &str, value: &'a str, allowed: &[&str]) -> KmsResult<&'a str> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(KmsError::invalid_value(
            field,
            format_args!("'{value}'"),
            format_args!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        ))
    }
}

/// A `KeyMaterialId` (AWS `BackingKeyIdType`): 64 characters matching `^[a-f0-9]+$`.
pub fn key_material_id(field: &str, value: &str) -> KmsResult<crate::keys::MaterialId> {
    str_len(field, value, 64, 64)?;
    if !value.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9')) {
        return Err(invalid(
            field,
            "Member must satisfy regular expression pattern: ^[a-f0-9]+$",
        ));
    }
    crate::keys::MaterialId::parse_hex(value)
        .ok_or_else(|| invalid(field, "Member must satisfy regular expression pattern: ^[a-f0-9]+$"))
}

/// A `KeyMaterialDescription` (AWS `KeyMaterialDescriptionType`): at most 256 characters
/// matching `^[a-zA-Z0-9:/_\s.-]+$` (`\s` as Java reads it: space, tab, line feed, vertical
/// tab, form feed, carriage return).
pub fn key_material_description(field: &str, value: &str) -> KmsResult<()> {
    str_len(field, value, 0, 256)?;
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, ':' | '/' | '_' | '.' | '-' | ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
    };
    if value.is_empty() || !value.chars().all(allowed) {
        return Err(invalid(
            field,
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_\\s.-]+$",
        ));
    }
    Ok(())
}

/// A list of at most `max` items.
pub fn count<T>(field: &str, items: &[T], max: usize) -> KmsResult<()> {
    if items.len() > max {
        return Err(invalid(
            field,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// AWS's own words, as recorded from AWS KMS (LocalStack's AWS-validated snapshots of
    /// Encrypt with 4097 bytes and GenerateRandom with 0 and 1025 bytes).
    #[test]
    fn messages_are_worded_as_aws_words_them() {
        let message = |e: KmsError| e.to_string();
        assert_eq!(
            message(blob_len("plaintext", &[0u8; 4097], 1, 4096).unwrap_err()),
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: \
             Member must have length less than or equal to 4096"
        );
        assert_eq!(
            message(range("numberOfBytes", 0, 1, 1024).unwrap_err()),
            "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy \
             constraint: Member must have value greater than or equal to 1"
        );
        assert_eq!(
            message(range("numberOfBytes", 1025, 1, 1024).unwrap_err()),
            "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy \
             constraint: Member must have value less than or equal to 1024"
        );
        assert_eq!(
            message(one_of("macAlgorithm", "INVALID", &["HMAC_SHA_256"]).unwrap_err()),
            "1 validation error detected: Value 'INVALID' at 'macAlgorithm' failed to satisfy \
             constraint: Member must satisfy enum value set: [HMAC_SHA_256]"
        );
        assert_eq!(
            message(required::<()>("keyId", None).unwrap_err()),
            "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: \
             Member must not be null"
        );
        assert_eq!(
            message(str_len("description", "", 1, 8192).unwrap_err()),
            "1 validation error detected: Value at 'description' failed to satisfy constraint: \
             Member must have length greater than or equal to 1"
        );
        assert!(blob_len("plaintext", &[0u8; 4096], 1, 4096).is_ok());
        assert!(range("numberOfBytes", 1024, 1, 1024).is_ok());
    }
}
