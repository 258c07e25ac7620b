//! The reference parser: a borrowed JSON tree that keeps strings as written, numbers as their
//! literal text (never through a float, so a fingerprint cannot change with a dependency's
//! number formatting) and object keys in a canonical order, so one pass both extracts fields and
//! yields a canonical fingerprint.
//!
//! It takes any JSON; the fast decoder (`scan.rs`) takes only the common shape and must agree
//! with it on every message it takes. `serde_json::Value` would allocate every string and report
//! a mistyped field only as a whole-document error; this tree borrows from the input when it
//! can and files each key into a fixed slot, which makes lookups, duplicate-key detection and
//! order-independent hashing cheap.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use xxhash_rust::xxh3::xxh3_128;

/// Deepest nesting of objects and arrays accepted in a message. Each level of the tree parses
/// its own values again, so the depth bounds that work (the schema itself needs two levels).
pub(crate) const MAX_DEPTH: usize = 8;

/// Field names of the schema (top level and payee). Each has a fixed slot, so a lookup is an
/// array index and the canonical order of known fields is the slot order.
pub(super) const KEYS: [&str; 15] = [
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

pub(super) fn slot(key: &str) -> Option<usize> {
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

/// A JSON value: strings and objects kept structurally, anything else as its canonical encoding.
#[derive(Debug)]
pub(crate) enum Json<'a> {
    Str(Cow<'a, str>),
    Obj(Box<Object<'a>>),
    /// A number, boolean, null or array: its JSON type and its canonical encoding (a scalar's
    /// literal text; an array's elements, each canonical).
    Other {
        kind: &'static str,
        canonical: Vec<u8>,
    },
}

impl<'a> Json<'a> {
    /// The value in slot `i` of an object.
    pub(crate) fn get_slot(&self, i: usize) -> Option<&Json<'a>> {
        match self {
            Json::Obj(object) => object.slots.get(i).and_then(Option::as_ref),
            _ => None,
        }
    }

    /// Short description of the JSON type, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Str(_) => "string",
            Json::Obj(_) => "object",
            Json::Other { kind, .. } => kind,
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
        match self {
            Json::Str(s) => canonical_bytes(out, b's', s.as_bytes()),
            Json::Obj(object) => {
                out.push(b'o');
                let known = object.slots.iter().zip(KEYS).filter_map(|(v, k)| v.as_ref().map(|v| (k, v)));
                let extra = object.extra.iter().map(|(k, v)| (k.as_ref(), v));
                for (k, v) in known.chain(extra) {
                    canonical_bytes(out, b'k', k.as_bytes());
                    v.canonical(out);
                }
                out.push(b'e');
            }
            Json::Other { canonical, .. } => out.extend_from_slice(canonical),
        }
    }

    /// A value from its raw text (already checked to be JSON by the parser that cut it out).
    fn from_raw(raw: &'a RawValue) -> Result<Json<'a>, serde_json::Error> {
        let text = raw.get();
        let scalar = |kind| {
            let mut canonical = Vec::with_capacity(text.len() + 5);
            canonical_bytes(&mut canonical, b'x', text.as_bytes());
            Ok(Json::Other { kind, canonical })
        };
        match text.as_bytes().first() {
            Some(b'"') => Ok(Json::Str(serde_json::from_str::<Key<'a>>(text)?.0)),
            Some(b'{') => serde_json::from_str(text),
            Some(b'[') => {
                let mut canonical = vec![b'a'];
                for element in serde_json::from_str::<Vec<&'a RawValue>>(text)? {
                    Json::from_raw(element)?.canonical(&mut canonical);
                }
                canonical.push(b'e');
                Ok(Json::Other { kind: "array", canonical })
            }
            Some(b't' | b'f') => scalar("boolean"),
            Some(b'n') => scalar("null"),
            _ => scalar("number"),
        }
    }
}

/// Appends `data` to a canonical encoding: a tag byte, its length, the bytes.
pub(super) fn canonical_bytes(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// How deep objects and arrays nest in `bytes` (brackets inside strings not counted). Run before
/// the tree parser, which would otherwise parse a deep message once per level.
pub(crate) fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Other { kind: "boolean", canonical: Vec::new() })
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Json::Other { kind: "number", canonical: Vec::new() })
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Json::Other { kind: "number", canonical: Vec::new() })
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Json::Other { kind: "number", canonical: Vec::new() })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Other { kind: "null", canonical: Vec::new() })
    }
    // Scalars and arrays reach the visitor only as a whole message, which is refused for not
    // being an object: their canonical form is never used. Inside an object every value is
    // taken raw (`visit_map`), so that numbers keep their text.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Json::Other { kind: "array", canonical: Vec::new() })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = Box::new(Object { slots: std::array::from_fn(|_| None), extra: Vec::new() });
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let raw = map.next_value::<&'de RawValue>()?;
            let value = Json::from_raw(raw).map_err(de::Error::custom)?;
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
