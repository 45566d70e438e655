//! Field checks with AWS-shaped `ValidationException` messages naming the field.

use crate::error::{KmsError, KmsResult};

fn invalid(field: &str, constraint: &str) -> KmsError {
    KmsError::invalid_field(field, constraint)
}

/// A required field was absent.
pub fn required<T>(field: &str, value: Option<T>) -> KmsResult<T> {
    value.ok_or_else(|| invalid(field, "Member must not be null"))
}

/// A string's length in characters, as AWS counts it.
pub fn str_len(field: &str, value: &str, min: usize, max: usize) -> KmsResult<()> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            field,
            &format!("Member must have length between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A blob's length in bytes.
pub fn blob_len(field: &str, value: &[u8], min: usize, max: usize) -> KmsResult<()> {
    if value.len() < min || value.len() > max {
        return Err(invalid(
            field,
            &format!("Member must have length between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A number within a closed range.
pub fn range(field: &str, value: i64, min: i64, max: i64) -> KmsResult<()> {
    if value < min || value > max {
        return Err(invalid(
            field,
            &format!("Member must have value between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A value from a fixed set.
pub fn one_of<'a>(field: &str, value: &'a str, allowed: &[&str]) -> KmsResult<&'a str> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        ))
    }
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
