//! A borrowed JSON tree that keeps strings as written (no number coercion) and object keys
//! sorted, so one pass both extracts fields and yields a canonical fingerprint.
//!
//! `serde_json::Value` would allocate every string and report a mistyped field only as a
//! whole-document error; this tree borrows from the input when it can and sorts keys once, which
//! makes duplicate-key detection and order-independent hashing cheap.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

/// A JSON value: strings and objects kept structurally, everything else as a `Value`.
#[derive(Debug)]
pub(crate) enum Json<'a> {
    Str(Cow<'a, str>),
    /// Entries sorted by key; duplicate keys are refused while parsing.
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
    Other(Value),
}

impl<'a> Json<'a> {
    /// Looks a key up in an object (entries are sorted).
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(entries) => entries.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| &entries[i].1),
            _ => None,
        }
    }

    /// Short description of the JSON type, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Str(_) => "string",
            Json::Obj(_) => "object",
            Json::Other(Value::Null) => "null",
            Json::Other(Value::Bool(_)) => "boolean",
            Json::Other(Value::Number(_)) => "number",
            Json::Other(Value::Array(_)) => "array",
            Json::Other(_) => "value",
        }
    }

    /// Feeds a canonical encoding (sorted keys, length-prefixed strings) into `hasher`.
    pub(crate) fn hash_into(&self, hasher: &mut Xxh3) {
        fn bytes(hasher: &mut Xxh3, tag: u8, data: &[u8]) {
            hasher.update(&[tag]);
            hasher.update(&(data.len() as u64).to_le_bytes());
            hasher.update(data);
        }
        match self {
            Json::Str(s) => bytes(hasher, b's', s.as_bytes()),
            Json::Obj(entries) => {
                hasher.update(b"o");
                hasher.update(&(entries.len() as u64).to_le_bytes());
                for (k, v) in entries {
                    bytes(hasher, b'k', k.as_bytes());
                    v.hash_into(hasher);
                }
            }
            // serde_json's Map is a BTreeMap here, so `to_string` is canonical.
            Json::Other(v) => bytes(hasher, b'x', v.to_string().as_bytes()),
        }
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Other(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Other(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Other(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Json::Other(value))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Json<'de>)> = Vec::with_capacity(12);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<Json<'de>>()?;
            entries.push((key, value));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = entries.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(de::Error::custom(format!("duplicate key `{}`", pair[0].0)));
        }
        Ok(Json::Obj(entries))
    }
}
