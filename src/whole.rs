//! Integers in request bodies as JSON Schema counts them: `5` and `5.0`
//! alike. The OpenAPI document says `type: integer`, which admits a number
//! with a zero fraction, and tools that generate or re-encode JSON write
//! either; serde's integer types refuse the second. Fields that take an
//! integer from a body use these with `deserialize_with`. A fraction, or a
//! value outside the field's type, is still refused.

use serde::de::{self, Deserializer, Visitor};
use std::marker::PhantomData;

/// A required integer field.
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    d.deserialize_any(Whole(PhantomData))
}

/// An optional integer field (use with `#[serde(default)]`).
pub fn opt_whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    d.deserialize_option(OptWhole(PhantomData))
}

struct Whole<T>(PhantomData<T>);

impl<T: TryFrom<i64>> Whole<T> {
    fn fit<E: de::Error>(v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom("invalid value: out of range, expected an integer"))
    }
}

impl<T: TryFrom<i64>> Visitor<'_> for Whole<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::fit(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        let v = i64::try_from(v)
            .map_err(|_| E::invalid_type(de::Unexpected::Other("a large integer"), &self))?;
        Self::fit(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // Whole and well inside i64, so the conversion is exact.
        if v.fract() == 0.0 && (-9.0e18..=9.0e18).contains(&v) {
            #[allow(clippy::cast_possible_truncation)]
            return Self::fit(v as i64);
        }
        Err(E::invalid_type(de::Unexpected::Other("a fraction"), &self))
    }
}

struct OptWhole<T>(PhantomData<T>);

impl<'de, T: TryFrom<i64>> Visitor<'de> for OptWhole<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        whole(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(deserialize_with = "super::whole")]
        n: i64,
        #[serde(default, deserialize_with = "super::opt_whole")]
        m: Option<u32>,
    }

    fn parse(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn whole_floats_are_integers_fractions_are_not() {
        let b = parse(r#"{"n": 268.0, "m": 5.0}"#).unwrap();
        assert_eq!((b.n, b.m), (268, Some(5)));
        let b = parse(r#"{"n": -3}"#).unwrap();
        assert_eq!((b.n, b.m), (-3, None));
        assert_eq!(parse(r#"{"n": 1, "m": null}"#).unwrap().m, None);
        for bad in [
            r#"{"n": 2.5}"#,
            r#"{"n": "2"}"#,
            r#"{"n": 1e30}"#,
            r#"{"n": 18446744073709551615}"#,
            r#"{"n": 1, "m": -1}"#,
            r#"{"n": 1, "m": 4294967296}"#,
            r#"{"n": 1, "n": 2}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
