//! Display masks for the `masked` treatment.
//!
//! Every mask works on `char`s (never byte offsets), never panics, and fails
//! closed: input it does not recognise becomes `***` rather than leaking
//! through. An empty (or all-whitespace) value masks to `""` for every format:
//! there is nothing to hide, and `***` would claim a value exists.

use std::fmt;
use std::str::FromStr;

/// The mask format of a catalog field (`mask = "…"` in `policies/fields.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskFormat {
    /// `jane@example.com` → `j***@example.com` (domain kept).
    Email,
    /// `+44 20 7946 0789` → `+44 ** **** *789`: country code and last 3 digits.
    Phone,
    /// `Jane Doe` → `J. D.`
    Name,
    /// `1984-03-12` → `1984`
    DateToYear,
    /// Shown as stored (e.g. city).
    Keep,
    /// `truncate:N`: keep the first N chars of the first part (the UK outward
    /// code), star the rest: `SW1A 1AA` → `SW1A ***`.
    Truncate(usize),
    /// `***`
    Redact,
}

/// The string is not a known mask format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMask(pub String);

impl fmt::Display for UnknownMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown mask {:?} (expected email, phone, name, date_to_year, keep, redact or truncate:N)",
            self.0
        )
    }
}

impl std::error::Error for UnknownMask {}

impl FromStr for MaskFormat {
    type Err = UnknownMask;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "email" => MaskFormat::Email,
            "phone" => MaskFormat::Phone,
            "name" => MaskFormat::Name,
            "date_to_year" => MaskFormat::DateToYear,
            "keep" => MaskFormat::Keep,
            "redact" => MaskFormat::Redact,
            other => match other.strip_prefix("truncate:").map(str::parse::<usize>) {
                Some(Ok(n)) => MaskFormat::Truncate(n),
                _ => return Err(UnknownMask(other.to_owned())),
            },
        })
    }
}

impl fmt::Display for MaskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskFormat::Email => f.write_str("email"),
            MaskFormat::Phone => f.write_str("phone"),
            MaskFormat::Name => f.write_str("name"),
            MaskFormat::DateToYear => f.write_str("date_to_year"),
            MaskFormat::Keep => f.write_str("keep"),
            MaskFormat::Truncate(n) => write!(f, "truncate:{n}"),
            MaskFormat::Redact => f.write_str("redact"),
        }
    }
}

const STARS: &str = "***";

/// Applies `format` to `value`.
pub fn apply_mask(format: MaskFormat, value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        return String::new();
    }
    match format {
        MaskFormat::Email => mask_email(value),
        MaskFormat::Phone => mask_phone(value),
        MaskFormat::Name => mask_name(value),
        MaskFormat::DateToYear => mask_date_to_year(value),
        MaskFormat::Keep => value.to_owned(),
        MaskFormat::Truncate(n) => mask_truncate(value, n),
        MaskFormat::Redact => STARS.to_owned(),
    }
}

fn mask_email(value: &str) -> String {
    // The last '@' separates the domain (a quoted local part may contain '@').
    let Some((local, domain)) = value.rsplit_once('@') else {
        return STARS.to_owned();
    };
    if domain.is_empty() {
        return STARS.to_owned();
    }
    let mut chars = local.chars();
    let first = chars.next();
    let mut out = String::with_capacity(domain.len() + 8);
    // Keep the first char only if something is left to hide.
    if let (Some(c), Some(_)) = (first, chars.next()) {
        out.push(c);
    }
    out.push_str(STARS);
    out.push('@');
    out.push_str(domain);
    out
}

/// Length of the E.164 country code at the start of `digits` (1-3).
fn country_code_len(digits: &[u8]) -> usize {
    const TWO_DIGIT: &[&[u8; 2]] = &[
        b"20", b"27", b"30", b"31", b"32", b"33", b"34", b"36", b"39", b"40", b"41", b"43", b"44",
        b"45", b"46", b"47", b"48", b"49", b"51", b"52", b"53", b"54", b"55", b"56", b"57", b"58",
        b"60", b"61", b"62", b"63", b"64", b"65", b"66", b"81", b"82", b"84", b"86", b"90", b"91",
        b"92", b"93", b"94", b"95", b"98",
    ];
    match digits {
        [b'1' | b'7', ..] => 1,
        [a, b, ..] if TWO_DIGIT.iter().any(|cc| cc == &&[*a, *b]) => 2,
        _ => 3,
    }
}

fn mask_phone(value: &str) -> String {
    let (plus, rest) = match value.strip_prefix('+') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, value),
    };
    // Groups of ASCII digits; anything else separates groups.
    let groups: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let total: usize = groups.iter().map(|g| g.len()).sum();
    if total == 0 {
        return STARS.to_owned();
    }

    let mut out = String::with_capacity(value.len() + 4);
    let mut national: Vec<&str> = groups.clone();
    if plus {
        let first = groups.first().copied().unwrap_or("");
        let written_cc = first.len() <= 3 && groups.len() > 1;
        let cc_len = if written_cc {
            first.len()
        } else {
            country_code_len(first.as_bytes()).min(first.len())
        };
        let (cc, after) = first.split_at_checked(cc_len).unwrap_or((first, ""));
        out.push('+');
        out.push_str(cc);
        national = std::iter::once(after)
            .chain(groups.iter().skip(1).copied())
            .filter(|g| !g.is_empty())
            .collect();
    }

    let national_digits: usize = national.iter().map(|g| g.len()).sum();
    // Keeping 3 digits of a short number would reveal most of it.
    let keep = if national_digits >= 7 { 3 } else { 0 };
    let hide = national_digits.saturating_sub(keep);
    let mut seen = 0usize;
    for group in national {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in group.chars() {
            out.push(if seen < hide { '*' } else { c });
            seen = seen.saturating_add(1);
        }
    }
    out
}

fn mask_name(value: &str) -> String {
    let initials: Vec<String> = value
        .split_whitespace()
        .filter_map(|word| word.chars().find(|c| c.is_alphabetic()))
        .map(|c| {
            let mut s: String = c.to_uppercase().collect();
            s.push('.');
            s
        })
        .collect();
    if initials.is_empty() {
        STARS.to_owned()
    } else {
        initials.join(" ")
    }
}

fn mask_date_to_year(value: &str) -> String {
    // Stored dates are ISO 8601 (`YYYY`, `YYYY-MM`, `YYYY-MM-DD…`).
    let mut chars = value.chars();
    let year: String = chars.by_ref().take(4).collect();
    let well_formed = year.len() == 4
        && year.chars().all(|c| c.is_ascii_digit())
        && matches!(chars.next(), None | Some('-'));
    if well_formed {
        year
    } else {
        STARS.to_owned()
    }
}

fn mask_truncate(value: &str, keep: usize) -> String {
    let outward_len = value
        .split_whitespace()
        .next()
        .map_or(0, |w| w.chars().count());
    let keep = keep.min(outward_len);
    let mut out = String::with_capacity(value.len());
    let mut last_space = false;
    for (i, c) in value.chars().enumerate() {
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
            continue;
        }
        last_space = false;
        out.push(if i < keep { c } else { '*' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(format: &str, value: &str) -> String {
        apply_mask(format.parse().unwrap(), value)
    }

    #[test]
    fn parse_and_display_roundtrip() {
        for s in [
            "email",
            "phone",
            "name",
            "date_to_year",
            "keep",
            "redact",
            "truncate:4",
        ] {
            assert_eq!(s.parse::<MaskFormat>().unwrap().to_string(), s);
        }
        for bad in [
            "",
            "Email",
            "truncate",
            "truncate:",
            "truncate:-1",
            "truncate:x",
            "hash",
        ] {
            assert!(bad.parse::<MaskFormat>().is_err(), "{bad}");
        }
    }

    #[test]
    fn email() {
        assert_eq!(m("email", "jane.doe@example.com"), "j***@example.com");
        assert_eq!(m("email", "jo@example.com"), "j***@example.com");
        assert_eq!(m("email", "j@example.com"), "***@example.com");
        assert_eq!(m("email", "@example.com"), "***@example.com");
        assert_eq!(m("email", "élodie@exemple.fr"), "é***@exemple.fr");
        assert_eq!(m("email", "\"a@b\"@example.com"), "\"***@example.com");
        assert_eq!(m("email", "no-at-sign"), "***");
        assert_eq!(m("email", "jane@"), "***");
        assert_eq!(m("email", ""), "");
        assert_eq!(m("email", "   "), "");
    }

    #[test]
    fn phone() {
        assert_eq!(m("phone", "+44 20 7946 0789"), "+44 ** **** *789");
        assert_eq!(m("phone", "+447700900789"), "+44 *******789");
        assert_eq!(m("phone", "+1 (415) 555-0123"), "+1 *** *** *123");
        assert_eq!(m("phone", "+14155550123"), "+1 *******123");
        assert_eq!(m("phone", "+353 1 234 5678"), "+353 * *** *678");
        assert_eq!(m("phone", "+3531234567"), "+353 ****567");
        assert_eq!(m("phone", "020 7946 0789"), "*** **** *789");
        // Short numbers are fully hidden.
        assert_eq!(m("phone", "112"), "***");
        assert_eq!(m("phone", "+44 123"), "+44 ***");
        assert_eq!(m("phone", "+44"), "+44");
        assert_eq!(m("phone", "+"), "***");
        assert_eq!(m("phone", "n/a"), "***");
        assert_eq!(m("phone", "٠١٢٣"), "***");
        assert_eq!(m("phone", ""), "");
    }

    #[test]
    fn name() {
        assert_eq!(m("name", "Jane Doe"), "J. D.");
        assert_eq!(m("name", "  jane   van der doe "), "J. V. D. D.");
        assert_eq!(m("name", "Łukasz Żółw"), "Ł. Ż.");
        assert_eq!(m("name", "Jean-Luc"), "J.");
        assert_eq!(m("name", "(Bob) Smith"), "B. S.");
        assert_eq!(m("name", "X"), "X.");
        assert_eq!(m("name", "42 !!"), "***");
        assert_eq!(m("name", ""), "");
    }

    #[test]
    fn date_to_year() {
        assert_eq!(m("date_to_year", "1984-03-12"), "1984");
        assert_eq!(m("date_to_year", "1984"), "1984");
        assert_eq!(m("date_to_year", "1984-03"), "1984");
        assert_eq!(m("date_to_year", "12/03/1984"), "***");
        assert_eq!(m("date_to_year", "198"), "***");
        assert_eq!(m("date_to_year", "19841"), "***");
        assert_eq!(m("date_to_year", "١٩٨٤-03-12"), "***");
        assert_eq!(m("date_to_year", ""), "");
    }

    #[test]
    fn truncate() {
        assert_eq!(m("truncate:4", "SW1A 1AA"), "SW1A ***");
        assert_eq!(m("truncate:4", "N1 9GU"), "N1 ***");
        assert_eq!(m("truncate:3", "SW1A  1AA"), "SW1* ***");
        assert_eq!(m("truncate:2", "75008"), "75***");
        assert_eq!(m("truncate:0", "75008"), "*****");
        assert_eq!(m("truncate:9", "Ünïcödé"), "Ünïcödé");
        assert_eq!(m("truncate:2", "Ünïcödé x"), "Ün***** *");
        assert_eq!(m("truncate:4", ""), "");
    }

    #[test]
    fn keep_and_redact() {
        assert_eq!(m("keep", " London "), "London");
        assert_eq!(m("redact", "anything"), "***");
        assert_eq!(m("redact", ""), "");
    }
}
