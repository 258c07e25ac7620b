//! A borrowed JSON tree that keeps strings as written (no number coercion) and object keys in
//! a canonical order, so one pass both extracts fields and yields a canonical fingerprint.
//!
//! `serde_json::Value` would allocate every string and report a mistyped field only as a
//! whole-document error; this tree borrows from the input when it can and files each key into a
//! fixed slot, which makes lookups, duplicate-key detection and order-independent hashing cheap.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_128;

/// Field names of the schema (top level and payee). Each has a fixed slot, so a lookup is an
/// array index and the canonical order of known fields is the slot order.
const KEYS: [&str; 15] = [
    "id",
    "type",
    "merchant_id",
    "amount",
    "currency",
    "event_time",
    "fee",
    "original_transaction_id",
    "original_amount",
    "original_time",
    "payee",
    "reverses",
    "name",
    "account",
    "bank",
];

fn slot(key: &str) -> Option<usize> {
    let i = match key {
        "id" => 0,
        "type" => 1,
        "merchant_id" => 2,
        "amount" => 3,
        "currency" => 4,
        "event_time" => 5,
        "fee" => 6,
        "original_transaction_id" => 7,
        "original_amount" => 8,
        "original_time" => 9,
        "payee" => 10,
        "reverses" => 11,
        "name" => 12,
        "account" => 13,
        "bank" => 14,
        _ => return None,
    };
    debug_assert_eq!(KEYS[i], key);
    Some(i)
}

/// An object: schema fields in their slots, anything else (forward-compatible extras) sorted
/// by key. Duplicate keys are refused while parsing.
#[derive(Debug)]
pub(crate) struct Object<'a> {
    slots: [Option<Json<'a>>; KEYS.len()],
    extra: Vec<(Cow<'a, str>, Json<'a>)>,
}

/// A JSON value: strings and objects kept structurally, everything else as a `Value`.
#[derive(Debug)]
pub(crate) enum Json<'a> {
    Str(Cow<'a, str>),
    Obj(Box<Object<'a>>),
    Other(Value),
}

impl<'a> Json<'a> {
    /// Looks a schema field up in an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(object) => slot(key).and_then(|i| object.slots[i].as_ref()),
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

    /// 128-bit hash of the canonical encoding.
    pub(crate) fn fingerprint(&self) -> u128 {
        let mut canonical = Vec::with_capacity(512);
        self.canonical(&mut canonical);
        xxh3_128(&canonical)
    }

    /// Appends a canonical encoding (slot order, then sorted extra keys; length-prefixed
    /// strings) to `out`.
    fn canonical(&self, out: &mut Vec<u8>) {
        fn bytes(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
            out.push(tag);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        match self {
            Json::Str(s) => bytes(out, b's', s.as_bytes()),
            Json::Obj(object) => {
                out.push(b'o');
                let known = object.slots.iter().zip(KEYS).filter_map(|(v, k)| v.as_ref().map(|v| (k, v)));
                let extra = object.extra.iter().map(|(k, v)| (k.as_ref(), v));
                for (k, v) in known.chain(extra) {
                    bytes(out, b'k', k.as_bytes());
                    v.canonical(out);
                }
            }
            // serde_json's Map is a BTreeMap here, so `to_string` is canonical.
            Json::Other(v) => bytes(out, b'x', v.to_string().as_bytes()),
        }
        if let Json::Obj(_) = self {
            out.push(b'e');
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
        let mut object = Box::new(Object { slots: std::array::from_fn(|_| None), extra: Vec::new() });
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<Json<'de>>()?;
            match slot(&key) {
                Some(i) if object.slots[i].is_some() => {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")))
                }
                Some(i) => object.slots[i] = Some(value),
                None => object.extra.push((key, value)),
            }
        }
        object.extra.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = object.extra.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(de::Error::custom(format!("duplicate key `{}`", pair[0].0)));
        }
        Ok(Json::Obj(object))
    }
}
