//! Standardization on the way in: every source's values are brought to the
//! one data standard before they are stored or compared.
//!
//! - e-mail: trimmed, case-folded (the whole address: mailbox providers
//!   treat the local part case-insensitively in practice, and a match rule
//!   that splits hairs here misses the same person twice);
//! - phone: E.164 (`+441632960961`) through the `phonenumber` crate (a port
//!   of Google's libphonenumber metadata), with the row's country as the
//!   region for national numbers; numbers the metadata calls invalid are
//!   refused, not guessed;
//! - country: ISO 3166-1 alpha-2 from an alpha-2 or alpha-3 code, the ISO
//!   short name (table of the `isocountry` crate), or a common alias
//!   (`UK`, `USA`, `EIRE`, …);
//! - timestamps: UTC microseconds; a date without a time is midnight UTC,
//!   a time without an offset is read in the mapping's declared zone offset;
//! - amounts: exact decimal to cents (no floating point), with the
//!   mapping's decimal separator; currencies are ISO 4217 codes, explicit
//!   per row or per source.

use isocountry::CountryCode;

/// Trimmed, case-folded e-mail; `None` when it is not an address.
pub fn email(v: &str) -> Option<String> {
    let v = v.trim().to_lowercase();
    let (local, domain) = v.split_once('@')?;
    let valid = v.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then_some(v)
}

/// E.164 form of a phone number; national numbers are read in `country`
/// (alpha-2). `None` when it does not parse or is not a valid number.
pub fn phone_e164(v: &str, country: Option<&str>) -> Option<String> {
    let region = country.and_then(|c| c.parse::<phonenumber::country::Id>().ok());
    let n = phonenumber::parse(region, v.trim()).ok()?;
    if !phonenumber::is_valid(&n) {
        return None;
    }
    Some(n.format().mode(phonenumber::Mode::E164).to_string())
}

/// Common names that are not the ISO short name.
const COUNTRY_ALIASES: &[(&str, &str)] = &[
    ("uk", "GB"),
    ("united kingdom", "GB"),
    ("great britain", "GB"),
    ("britain", "GB"),
    ("england", "GB"),
    ("scotland", "GB"),
    ("wales", "GB"),
    ("northern ireland", "GB"),
    ("usa", "US"),
    ("u.s.a.", "US"),
    ("united states", "US"),
    ("america", "US"),
    ("eire", "IE"),
    ("republic of ireland", "IE"),
    ("rsa", "ZA"),
    ("south africa", "ZA"),
    ("czech republic", "CZ"),
    ("south korea", "KR"),
    ("korea", "KR"),
    ("north korea", "KP"),
    ("russia", "RU"),
    ("iran", "IR"),
    ("syria", "SY"),
    ("vietnam", "VN"),
    ("laos", "LA"),
    ("bolivia", "BO"),
    ("venezuela", "VE"),
    ("tanzania", "TZ"),
    ("moldova", "MD"),
    ("taiwan", "TW"),
    ("holland", "NL"),
    ("the netherlands", "NL"),
    ("netherlands", "NL"),
    ("turkey", "TR"),
    ("ivory coast", "CI"),
    ("macedonia", "MK"),
    ("brunei", "BN"),
    ("cape verde", "CV"),
    ("swaziland", "SZ"),
    ("vatican", "VA"),
    ("palestine", "PS"),
    ("micronesia", "FM"),
    // Names in the country's own language that exports often carry.
    ("deutschland", "DE"),
    ("österreich", "AT"),
    ("schweiz", "CH"),
    ("suisse", "CH"),
    ("españa", "ES"),
    ("italia", "IT"),
    ("nederland", "NL"),
    ("polska", "PL"),
    ("sverige", "SE"),
    ("danmark", "DK"),
    ("norge", "NO"),
    ("suomi", "FI"),
    ("belgique", "BE"),
    ("belgië", "BE"),
    ("česko", "CZ"),
];

/// ISO 3166-1 alpha-2 code of a country given by code or name; `None` when
/// it names no single country (for example `European Community`).
pub fn country(v: &str) -> Option<&'static str> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if v.len() == 2 {
        if let Ok(c) = CountryCode::for_alpha2_caseless(v) {
            return Some(c.alpha2());
        }
        if v.eq_ignore_ascii_case("uk") {
            return Some("GB");
        }
    }
    if v.len() == 3 {
        if let Ok(c) = CountryCode::for_alpha3_caseless(v) {
            return Some(c.alpha2());
        }
    }
    let folded = v.to_lowercase();
    if let Some((_, code)) = COUNTRY_ALIASES.iter().find(|(name, _)| *name == folded) {
        return Some(code);
    }
    // The ISO name in full, or its part before a comma or parenthesis
    // ("Korea (Republic of)", "Bolivia (Plurinational State of)").
    CountryCode::iter()
        .find(|c| {
            let name = c.name().to_lowercase();
            let short = name
                .split(['(', ','])
                .next()
                .unwrap_or(&name)
                .trim()
                .to_owned();
            name == folded || short == folded
        })
        .map(|c| c.alpha2())
}

/// ISO 4217 codes accepted as currencies (the ones in use; an unknown code
/// is refused rather than stored).
pub const CURRENCIES: &[&str] = &[
    "AED", "ARS", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EGP",
    "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KES", "KRW", "MAD", "MXN",
    "MYR", "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "SAR", "SEK",
    "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
];

/// Upper-cased ISO 4217 code, if accepted.
pub fn currency(v: &str) -> Option<&'static str> {
    let v = v.trim();
    CURRENCIES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(v))
        .copied()
}

/// An exact decimal amount in cents: `12.5` → 1250, `-3` → -300, `1,99`
/// with `decimal = ','` → 199. Thousands separators (`,` when the decimal
/// separator is `.`, and `.` or a space otherwise) are accepted between
/// digit groups. More than two decimals round half away from zero.
pub fn parse_decimal_cents(s: &str, decimal: char) -> Option<i64> {
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac_part) = match digits.split_once(decimal) {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let thousands = if decimal == '.' { ',' } else { '.' };
    let int_clean: String = int_part
        .chars()
        .filter(|c| *c != thousands && *c != ' ' && *c != '\u{a0}')
        .collect();
    if int_clean.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_clean.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || int_clean.len() > 15
    {
        return None;
    }
    let whole: i64 = if int_clean.is_empty() {
        0
    } else {
        int_clean.parse().ok()?
    };
    let frac = frac_part.as_bytes();
    let digit = |i: usize| frac.get(i).map_or(0, |b| i64::from(b - b'0'));
    let mut cents = whole
        .checked_mul(100)?
        .checked_add(digit(0) * 10 + digit(1))?;
    if digit(2) >= 5 {
        cents = cents.checked_add(1)?;
    }
    Some(if negative { -cents } else { cents })
}

/// `1997-01-01` or `19970101` → (midnight UTC in microseconds, `19970101`).
pub fn parse_date_ymd(s: &str) -> Option<(i64, String)> {
    let s = s.trim();
    let compact: String = if s.len() == 10 {
        let b = s.as_bytes();
        if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        s.chars().filter(|c| *c != '-').collect()
    } else {
        s.to_owned()
    };
    if compact.len() != 8 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = compact.get(0..4)?.parse().ok()?;
    let month: u8 = compact.get(4..6)?.parse().ok()?;
    let day: u8 = compact.get(6..8)?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let micros = date.midnight().assume_utc().unix_timestamp() * 1_000_000;
    Some((micros, compact))
}

/// A timestamp by a `time` format description (for example
/// `[year]-[month]-[day] [hour]:[minute]`), or `rfc3339`, or `date`
/// (`[year]-[month]-[day]`), to UTC microseconds. Values without an offset
/// are read at `offset_minutes` east of UTC.
pub fn parse_timestamp(s: &str, format: &TimeFormat, offset_minutes: i32) -> Option<i64> {
    let s = s.trim();
    let offset = time::UtcOffset::from_whole_seconds(offset_minutes.checked_mul(60)?).ok()?;
    let dt = match format {
        TimeFormat::Rfc3339 => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?
        }
        TimeFormat::Custom(items) => {
            let parsed = time::parsing::Parsed::new();
            let mut parsed = parsed;
            let rest = parsed.parse_items(s.as_bytes(), items).ok()?;
            if !rest.is_empty() {
                return None;
            }
            match time::PrimitiveDateTime::try_from(parsed) {
                Ok(p) => p.assume_offset(offset),
                Err(_) => {
                    let date = time::Date::try_from(parsed).ok()?;
                    date.midnight().assume_offset(offset)
                }
            }
        }
    };
    let micros = dt.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).ok()
}

/// A parsed timestamp format.
#[derive(Clone, Debug)]
pub enum TimeFormat {
    Rfc3339,
    Custom(Vec<time::format_description::OwnedFormatItem>),
}

impl TimeFormat {
    /// `rfc3339`, `date`, or a `time` crate format description.
    pub fn parse(spec: &str) -> Result<Self, String> {
        match spec {
            "rfc3339" => Ok(Self::Rfc3339),
            "date" => Self::parse("[year]-[month]-[day]"),
            other => time::format_description::parse_owned::<2>(other)
                .map(|f| Self::Custom(vec![f]))
                .map_err(|e| format!("bad date format: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_folded() {
        assert_eq!(
            email("  Ada.Lovelace@Example.COM ").as_deref(),
            Some("ada.lovelace@example.com")
        );
        assert_eq!(email("not an address"), None);
        assert_eq!(email("a@b"), None);
        assert_eq!(email("a@@b.com"), None);
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            phone_e164("020 7946 0958", Some("GB")).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            phone_e164("+44 20 7946 0958", None).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            phone_e164("(201) 555-0123", Some("US")).as_deref(),
            Some("+12015550123")
        );
        assert_eq!(phone_e164("12", Some("GB")), None);
        assert_eq!(phone_e164("call me", None), None);
    }

    #[test]
    fn countries_become_iso_alpha2() {
        assert_eq!(country("United Kingdom"), Some("GB"));
        assert_eq!(country("EIRE"), Some("IE"));
        assert_eq!(country("fra"), Some("FR"));
        assert_eq!(country("de"), Some("DE"));
        assert_eq!(country("Germany"), Some("DE"));
        assert_eq!(country("Korea (Republic of)"), Some("KR"));
        assert_eq!(country("RSA"), Some("ZA"));
        assert_eq!(country("European Community"), None);
        assert_eq!(country("Unspecified"), None);
        assert_eq!(country(""), None);
    }

    #[test]
    fn amounts_are_exact_cents() {
        assert_eq!(parse_decimal_cents("11.77", '.'), Some(1177));
        assert_eq!(parse_decimal_cents("12", '.'), Some(1200));
        assert_eq!(parse_decimal_cents("0.5", '.'), Some(50));
        assert_eq!(parse_decimal_cents("-3.395", '.'), Some(-340));
        assert_eq!(parse_decimal_cents("1.234,56", ','), Some(123_456));
        assert_eq!(parse_decimal_cents("1,99", ','), Some(199));
        assert_eq!(parse_decimal_cents("1,234.5", '.'), Some(123_450));
        assert_eq!(parse_decimal_cents("", '.'), None);
        assert_eq!(parse_decimal_cents("12a", '.'), None);
        assert_eq!(parse_decimal_cents("1e5", '.'), None);
    }

    #[test]
    fn dates_and_timestamps_are_utc() {
        assert_eq!(
            parse_date_ymd("1997-01-01"),
            Some((852_076_800_000_000, "19970101".to_owned()))
        );
        assert_eq!(
            parse_date_ymd("19970101").map(|d| d.0),
            Some(852_076_800_000_000)
        );
        assert_eq!(parse_date_ymd("1997-02-30"), None);
        assert_eq!(parse_date_ymd("97-1-1"), None);
        let f = TimeFormat::parse("[day].[month].[year] [hour]:[minute]").unwrap();
        // 01:00 at UTC+1 is midnight UTC.
        assert_eq!(
            parse_timestamp("01.01.1997 01:00", &f, 60),
            Some(852_076_800_000_000)
        );
        let d = TimeFormat::parse("date").unwrap();
        assert_eq!(
            parse_timestamp("1997-01-01", &d, 0),
            Some(852_076_800_000_000)
        );
        let r = TimeFormat::parse("rfc3339").unwrap();
        assert_eq!(
            parse_timestamp("1997-01-01T02:00:00+02:00", &r, 0),
            Some(852_076_800_000_000)
        );
        assert!(TimeFormat::parse("[nonsense").is_err());
    }
}
