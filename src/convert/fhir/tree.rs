//! The JSON tree the resource builders assemble: `serde_json::Value`'s shape, cheaper to build.
//!
//! A Bundle is thousands of small objects built once, touched a little and serialized once.
//! `serde_json::Value` keeps an object in a `BTreeMap<String, Value>`: every key is an
//! allocation, every object at least one B-tree node, every insert a search with string
//! comparisons. Here keys are `&'static str` where the builders write them literally (nearly
//! always), an object is a `Vec` of members in insertion order (a resource reads in the order
//! it is written, `resourceType` first), and a lookup is a scan of a handful of members.
//! [`Value::into_json`] gives a `serde_json::Value` for the callers that inspect a Bundle.

use std::borrow::Cow;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// An object member's name: literal in the builders, owned only when it is computed.
pub(crate) type Key = Cow<'static, str>;

/// A JSON value.
#[derive(Debug, Clone, Default)]
pub(crate) enum Value {
    /// `null` (an element left out when the resource is pruned).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A decimal (always finite: builders turn NaN and infinities into `Null`).
    Float(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object.
    Object(Map),
}

/// A JSON object: members in insertion order, each key once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Map(Vec<(Key, Value)>);

static NULL: Value = Value::Null;

impl Map {
    /// An empty object.
    pub(crate) fn new() -> Map {
        Map(Vec::new())
    }

    /// An empty object with room for `n` members (`fj!` knows how many it may add).
    pub(crate) fn with_capacity(n: usize) -> Map {
        Map(Vec::with_capacity(n))
    }

    /// Sets `k` to `v`, in place when `k` is present (keeping its position); returns the old value.
    pub(crate) fn insert(&mut self, k: impl Into<Key>, v: Value) -> Option<Value> {
        let k = k.into();
        match self.0.iter_mut().find(|(key, _)| *key == k) {
            Some((_, slot)) => Some(std::mem::replace(slot, v)),
            None => {
                self.0.push((k, v));
                None
            }
        }
    }

    /// Sets `k` to `v` as the first member.
    pub(crate) fn insert_first(&mut self, k: &'static str, v: Value) {
        self.0.retain(|(key, _)| key != k);
        self.0.insert(0, (Cow::Borrowed(k), v));
    }

    /// Sets `k` to `v` at position `at` (or last, when the object is shorter).
    pub(crate) fn insert_at(&mut self, at: usize, k: &'static str, v: Value) {
        self.0.retain(|(key, _)| key != k);
        let at = at.min(self.0.len());
        self.0.insert(at, (Cow::Borrowed(k), v));
    }

    /// The member `k`, to fill when absent (like `BTreeMap::entry`).
    pub(crate) fn entry(&mut self, k: impl Into<Key>) -> Entry<'_> {
        Entry {
            map: self,
            key: k.into(),
        }
    }

    /// Appends a member whose key the caller knows is absent (literal keys of one object).
    pub(crate) fn push_new(&mut self, k: &'static str, v: Value) {
        debug_assert!(self.get(k).is_none(), "{k} twice in one object");
        self.0.push((Cow::Borrowed(k), v));
    }

    /// The value of `k`.
    pub(crate) fn get(&self, k: &str) -> Option<&Value> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }

    /// The value of `k`, to change.
    pub(crate) fn get_mut(&mut self, k: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(key, _)| key == k).map(|(_, v)| v)
    }

    /// True when `k` is a member.
    pub(crate) fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// Takes `k` out.
    pub(crate) fn remove(&mut self, k: &str) -> Option<Value> {
        let at = self.0.iter().position(|(key, _)| key == k)?;
        Some(self.0.remove(at).1)
    }

    /// The value of `k`, set to `f()` first when `k` is absent.
    pub(crate) fn or_insert_with(
        &mut self,
        k: impl Into<Key>,
        f: impl FnOnce() -> Value,
    ) -> &mut Value {
        let k = k.into();
        let at = match self.0.iter().position(|(key, _)| *key == k) {
            Some(at) => at,
            None => {
                self.0.push((k, f()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// Keeps the members `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// The values, to change.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// The members.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Number of members.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the object has no members.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A member of a [`Map`] that may be absent; see [`Map::entry`].
pub(crate) struct Entry<'m> {
    map: &'m mut Map,
    key: Key,
}

impl<'m> Entry<'m> {
    /// The member's value, set to `v` first when absent.
    pub(crate) fn or_insert(self, v: Value) -> &'m mut Value {
        self.map.or_insert_with(self.key, || v)
    }

    /// The member's value, set to `f()` first when absent.
    pub(crate) fn or_insert_with(self, f: impl FnOnce() -> Value) -> &'m mut Value {
        self.map.or_insert_with(self.key, f)
    }
}

impl Extend<(Key, Value)> for Map {
    fn extend<I: IntoIterator<Item = (Key, Value)>>(&mut self, items: I) {
        for (k, v) in items {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Map {
    type Item = (Key, Value);
    type IntoIter = std::vec::IntoIter<(Key, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Objects are equal when they have the same members, in any order (as JSON means).
impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            // serde_json compares numbers by value too: 1 == 1.0 is false there as well,
            // but no builder compares a count with a measurement.
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl Value {
    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub(crate) fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub(crate) fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The object, to change, if this is one.
    pub(crate) fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// True for `null`.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The member `k` of an object; `None` for anything else or a missing member.
    pub(crate) fn get(&self, k: &str) -> Option<&Value> {
        self.as_object()?.get(k)
    }

    /// The member `k` of an object, to change.
    pub(crate) fn get_mut(&mut self, k: &str) -> Option<&mut Value> {
        self.as_object_mut()?.get_mut(k)
    }

    /// A decimal; `null` when it is not finite (JSON has no NaN or infinity).
    pub(crate) fn float(f: f64) -> Value {
        if f.is_finite() {
            Value::Float(f)
        } else {
            Value::Null
        }
    }

    /// The same value as a `serde_json::Value`.
    pub(crate) fn into_json(self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Int(n) => serde_json::Value::from(n),
            Value::Float(f) => serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => serde_json::Value::String(s),
            Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(Value::into_json).collect())
            }
            Value::Object(o) => serde_json::Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_json()))
                    .collect(),
            ),
        }
    }

    /// Appends the value as compact JSON, byte for byte what `serde_json::to_writer` writes.
    ///
    /// The Bundle a route sends is mostly short plain strings: those are copied as they are,
    /// and only strings that need escaping, and numbers, go through `serde_json`, so the
    /// output stays exactly its dialect while skipping its per-value `Serializer` calls.
    pub(crate) fn write_compact(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Int(n) => write_scalar(out, n),
            Value::Float(f) => write_scalar(out, f),
            Value::String(s) => write_str(out, s),
            Value::Array(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_compact(out);
                }
                out.push(b']');
            }
            Value::Object(o) => {
                out.push(b'{');
                for (i, (k, v)) in o.0.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    v.write_compact(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// The bytes JSON writes escaped: control characters, `"` and `\`.
static ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// True when `b` holds a byte JSON escapes. Eight bytes at a time (a byte below 0x20, a quote
/// or a backslash in the word), the tail through the table: the byte-by-byte scan was the largest
/// single cost of writing a Bundle (~5 % of a conversion's instructions).
fn needs_escape(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let Ok(w) = <[u8; 8]>::try_from(w) else {
            return true;
        };
        let x = u64::from_le_bytes(w);
        // Any byte below 0x20, any quote, any backslash (exact as a yes/no per word).
        let control = x.wrapping_sub(LO * 0x20) & !x & HI;
        let q = x ^ (LO * u64::from(b'"'));
        let quote = q.wrapping_sub(LO) & !q & HI;
        let bs = x ^ (LO * u64::from(b'\\'));
        let backslash = bs.wrapping_sub(LO) & !bs & HI;
        if control | quote | backslash != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&c| ESCAPED[usize::from(c)])
}

/// A JSON string: copied when nothing in it needs escaping, else escaped by `serde_json`.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let plain = !needs_escape(s.as_bytes());
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_scalar(out, s);
    }
}

/// A scalar written by `serde_json` (numbers, and strings that need escaping).
fn write_scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing a number or a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `v["k"]`: the member, or `null` (like `serde_json`).
impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, k: &str) -> &Value {
        self.get(k).unwrap_or(&NULL)
    }
}

/// `v[i]`: the item, or `null`.
impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL)
    }
}

/// `v["k"] = x`: the member, added as `null` when missing. A value that is not an object
/// becomes an empty one first (`serde_json` panics there; the builders only index objects
/// they made, so at worst a builder bug loses one element, never the message).
impl std::ops::IndexMut<&str> for Value {
    fn index_mut(&mut self, k: &str) -> &mut Value {
        if !matches!(self, Value::Object(_)) {
            *self = Value::Object(Map::new());
        }
        match self {
            Value::Object(o) => {
                let at = match o.0.iter().position(|(key, _)| key == k) {
                    Some(at) => at,
                    None => {
                        o.0.push((Key::Owned(k.to_owned()), Value::Null));
                        o.0.len() - 1
                    }
                };
                &mut o.0[at].1
            }
            _ => unreachable!("made an object just above"),
        }
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(n) => s.serialize_i64(*n),
            Value::Float(f) => s.serialize_f64(*f),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(o) => o.serialize(s),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_escape_check_agrees_with_the_table() {
        // Every byte value at every position of strings from 1 to 19 bytes long, among plain
        // ASCII and among non-ASCII bytes (whose high bit must not be taken for a control).
        for fill in [b'a', 0xC3, 0x7F, 0x20, 0x80] {
            for len in 1..20 {
                for at in 0..len {
                    for c in 0..=255u8 {
                        let mut b = vec![fill; len];
                        b[at] = c;
                        let want = b.iter().any(|&x| ESCAPED[usize::from(x)]);
                        assert_eq!(needs_escape(&b), want, "{b:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn objects_keep_insertion_order_and_one_member_per_key() {
        let mut m = Map::new();
        m.insert("b", Value::from("1"));
        m.insert("a", Value::Int(2));
        assert_eq!(m.insert("b", Value::Bool(true)), Some(Value::from("1")));
        m.insert_first("resourceType", Value::from("Patient"));
        let v = Value::Object(m);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"resourceType":"Patient","b":true,"a":2}"#
        );
        assert_eq!(
            v.clone().into_json(),
            serde_json::json!({"a": 2, "b": true, "resourceType": "Patient"})
        );
        let mut same = Map::new();
        same.insert("a", Value::Int(2));
        same.insert("resourceType", Value::from("Patient"));
        same.insert("b", Value::Bool(true));
        assert_eq!(
            v,
            Value::Object(same),
            "member order does not matter for equality"
        );
    }

    #[test]
    fn indexing_reads_null_for_what_is_missing_and_assigning_creates_members() {
        let mut v = Value::Null;
        v["system"] = Value::from("urn:x");
        assert_eq!(v["system"], "urn:x");
        assert!(v["missing"].is_null());
        assert!(v[3].is_null());
        let mut s = Value::from("text");
        s["k"] = Value::Int(1);
        assert_eq!(
            s["k"],
            Value::Int(1),
            "a non-object is replaced, not a panic"
        );
        assert!(Value::float(f64::NAN).is_null());
        assert_eq!(
            serde_json::to_string(&Value::float(1.0)).unwrap(),
            serde_json::to_string(&serde_json::json!(1.0)).unwrap(),
            "decimals are written as serde_json writes them"
        );
    }

    #[test]
    fn compact_writing_is_byte_for_byte_serde_json() {
        let mut inner = Map::new();
        inner.insert("plain", Value::from("Smith^John"));
        inner.insert("quote", Value::from("say \"hi\" \\ back"));
        inner.insert("control", Value::from("line\rbreak\ttab\u{1}\u{7f}"));
        inner.insert("unicode", Value::from("Müller 日本 \u{2028}"));
        inner.insert(Key::Owned("computed \"key\"".into()), Value::Int(-42));
        let mut v = Map::new();
        v.insert("resourceType", Value::from("Bundle"));
        v.insert("n", Value::Int(i64::MAX));
        v.insert("f", Value::float(1.0));
        v.insert("g", Value::float(0.1 + 0.2));
        v.insert("h", Value::float(-1.5e-300));
        v.insert("t", Value::Bool(true));
        v.insert("nothing", Value::Null);
        v.insert("empty", Value::Array(vec![]));
        v.insert(
            "list",
            Value::Array(vec![Value::Object(inner), Value::Bool(false)]),
        );
        v.insert("none", Value::Object(Map::new()));
        let v = Value::Object(v);
        let mut ours = Vec::new();
        v.write_compact(&mut ours);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
    }
}
