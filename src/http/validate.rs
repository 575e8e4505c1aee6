//! Input validation at the edge: values are checked once, here, with
//! messages that name the field and never echo personal data back.

use crate::error::ApiError;

fn bad(field: &str, what: &str) -> ApiError {
    ApiError::unprocessable(format!("{field}: {what}"))
}

/// Identifiers we put in URLs and logs: `[A-Za-z0-9._-]{1,64}`.
pub fn external_id(v: &str) -> Result<(), ApiError> {
    identifier("external_id", v)
}

pub fn identifier(field: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(bad(field, "must be 1-64 characters of A-Za-z0-9._-"));
    }
    Ok(())
}

/// A non-negative integer spelled canonically: ASCII digits only, no sign
/// (`-0` and `+5` are refused, not read as 0 and 5), at most 18 digits.
pub fn non_negative_int(field: &str, v: &str) -> Result<i64, ApiError> {
    let canonical = !v.is_empty()
        && v.len() <= 18
        && v.bytes().all(|b| b.is_ascii_digit())
        && (v == "0" || !v.starts_with('0'));
    if !canonical {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("{field}: must be a non-negative integer (digits only)"),
        ));
    }
    v.parse::<i64>().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("{field}: must be a non-negative integer (digits only)"),
        )
    })
}

pub fn email(v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    let valid = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(bad("email", "not an e-mail address"));
    }
    Ok(v.to_owned())
}

pub fn phone(v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let valid = (6..=15).contains(&digits)
        && v.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    if !valid {
        return Err(bad(
            "phone",
            "not a phone number (6-15 digits, + - ( ) . and spaces)",
        ));
    }
    Ok(v.to_owned())
}

pub fn date(v: &str) -> Result<String, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v.trim(), &format)
        .map_err(|_| bad("birth_date", "must be a date YYYY-MM-DD"))?;
    Ok(v.trim().to_owned())
}

/// Free text with a length cap and no control characters.
pub fn text(field: &str, v: &str, max_chars: usize) -> Result<String, ApiError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max_chars || v.chars().any(char::is_control) {
        return Err(bad(
            field,
            &format!("must be 1-{max_chars} characters without control characters"),
        ));
    }
    Ok(v.to_owned())
}

/// An RFC 3339 timestamp, not more than five minutes in the future.
pub fn timestamp(field: &str, v: &str, now: i64) -> Result<i64, ApiError> {
    let t = crate::clock::parse_rfc3339(v)
        .ok_or_else(|| bad(field, "must be an RFC 3339 timestamp"))?;
    if t > now + 300_000_000 {
        return Err(bad(field, "must not be in the future"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_values_without_echoing_them() {
        let e = email("not-an-email secret@x").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert!(phone("12").is_err());
        assert!(date("1990-02-30").is_err());
        assert!(external_id("../etc").is_err());
        assert!(external_id("C-123_x.y").is_ok());
        assert_eq!(email(" a@b.co ").unwrap(), "a@b.co");
        assert!(text("name", "a\u{0}b", 10).is_err());
        for bad in ["-0", "+1", "01", "", " 1", "1e3", "9999999999999999999"] {
            assert!(non_negative_int("n", bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative_int("n", "0").unwrap(), 0);
        assert_eq!(non_negative_int("n", "42").unwrap(), 42);
    }
}
