//! JSON read strictly: a key given twice in one object is an error, not "the last one
//! wins".
//!
//! A config or a seccomp profile with a repeated key reads one way to a checker that keeps
//! the first and another way to a reader that keeps the last; crabcan refuses it, so what
//! it applies is what any reader of the file sees. Everything else is plain JSON
//! (`serde_json`'s nesting limit included).

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a text was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// The path of the object or value at fault (`linux.seccomp.syscalls[0]`); empty at the
    /// top or for a syntax error.
    pub path: String,
    /// What is wrong, without the text's line and column.
    pub why: String,
    /// The text is not JSON at all (as opposed to JSON with a repeated key).
    pub syntax: bool,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.why)
        } else {
            write!(f, "{}: {}", self.path, self.why)
        }
    }
}

/// Parses `text` as one JSON value, refusing a key repeated in any object.
pub fn parse_strict(text: &str) -> Result<Value, JsonError> {
    let plain = |e: serde_json::Error, path: String| {
        let syntax = e.is_syntax() || e.is_eof();
        JsonError {
            path: if syntax || path == "." {
                String::new()
            } else {
                path
            },
            why: e.to_string(),
            syntax,
        }
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let Strict(value) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        plain(e.into_inner(), path)
    })?;
    // Nothing but white space may follow the value.
    de.end().map_err(|e| plain(e, String::new()))?;
    Ok(value)
}

/// A JSON value whose objects have no repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} is given twice"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_repeated_key_is_named_with_its_object() {
        let e = parse_strict(r#"{"a": {"b": [{"x": 1, "y": 2, "x": 3}]}}"#).unwrap_err();
        assert_eq!(e.path, "a.b[0]", "{e:?}");
        assert!(e.why.contains(r#""x" is given twice"#), "{e:?}");
        assert!(!e.syntax);
        let e = parse_strict(r#"{"k": 1, "k": 1}"#).unwrap_err();
        assert_eq!((e.path.as_str(), e.syntax), ("", false), "{e:?}");
    }

    #[test]
    fn syntax_errors_are_syntax_errors() {
        for text in ["", "{", "{\"a\" 1}", "[1,]", "1 2", "{\"a\": 1} x"] {
            let e = parse_strict(text).unwrap_err();
            assert!(e.syntax, "{text}: {e:?}");
            assert!(e.path.is_empty(), "{text}: {e:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        assert!(parse_strict(&text).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<u64>().prop_map(|n| Value::Number(n.into())),
            (-1e300f64..1e300).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Without repeated keys, it reads exactly what serde_json reads.
        #[test]
        fn it_reads_what_serde_json_reads(v in json_value()) {
            let text = v.to_string();
            let plain: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(parse_strict(&text).unwrap(), plain);
        }

        /// Any text: the same verdict as serde_json, but for a repeated key.
        #[test]
        fn any_text_is_read_or_refused_as_serde_json_would(text in ".{0,40}") {
            let plain = serde_json::from_str::<Value>(&text);
            match parse_strict(&text) {
                Ok(v) => prop_assert_eq!(Some(v), plain.ok()),
                Err(e) if e.syntax => prop_assert!(plain.is_err()),
                Err(_) => {}
            }
        }
    }
}
