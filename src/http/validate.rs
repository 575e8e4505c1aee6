//! Input validation at the edge: values are checked once, here, with
//! messages that name the field and never echo personal data back.

use crate::error::ApiError;

// The same rules as JSON Schema patterns, for the OpenAPI document, so that
// what the document calls valid is what the server accepts. They are
// exercised against the checks below in this module's tests.

/// [`identifier`] as a pattern.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";
/// A subset of what [`email`] accepts (with `maxLength` 254).
pub const EMAIL_PATTERN: &str =
    r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,3}$";
/// A subset of what [`phone`] accepts.
pub const PHONE_PATTERN: &str = r"^\+?[0-9]{6,15}$";
/// [`text`]: no control characters once surrounding white space is trimmed
/// (with `maxLength` for the limit).
pub const TEXT_PATTERN: &str = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$";
/// [`timestamp`] for times the server accepts whatever the clock says
/// (years 1900-2025; with `format: date-time`); later times are accepted
/// until five minutes from now.
pub const PAST_TIMESTAMP_PATTERN: &str = r"^(19[0-9]{2}|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$";

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

/// The largest page any list route returns; `max_page_size` may lower it.
/// The OpenAPI document states it as the `limit` parameters' `maximum`.
pub const PAGE_LIMIT_MAX: u32 = 1000;

/// A `limit` query parameter: absent means `default`; out of `1..=max` is a
/// 400 `invalid_query` (never silently clamped: a client asking for 5,000
/// rows must not believe that 1,000 were all there is).
pub fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<i64, ApiError> {
    let max = max.min(PAGE_LIMIT_MAX);
    match limit {
        None => Ok(i64::from(default.min(max))),
        Some(l) if (1..=max).contains(&l) => Ok(i64::from(l)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit: must be between 1 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_patterns_agree_with_the_checks() {
        // Samples the patterns describe are accepted by the checks.
        assert!(external_id("A.b_c-9").is_ok());
        assert!(email("a.b+c@shop-1.example.co").is_ok());
        assert!(phone("+4420794609").is_ok());
        assert!(text("name", "Zoë  O'Brien", 200).is_ok());
        let now = 1_780_000_000_000_000;
        assert!(timestamp("t", "2025-12-28T23:59:59.123456-13:59", now).is_ok());
        assert!(timestamp("t", "1900-01-01T00:00:00Z", now).is_ok());
        // What the text pattern leaves out, the check refuses.
        assert!(text("name", " \t", 200).is_err());
        assert!(text("name", "a\u{85}b", 200).is_err());
    }

    #[test]
    fn page_limit_refuses_out_of_range() {
        assert_eq!(page_limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(page_limit(Some(1000), 100, 1000).unwrap(), 1000);
        assert!(page_limit(Some(0), 100, 1000).is_err());
        assert!(page_limit(Some(1001), 100, 1000).is_err());
        assert!(page_limit(Some(60), 100, 50).is_err());
        assert_eq!(page_limit(None, 100, 50).unwrap(), 50);
    }

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
