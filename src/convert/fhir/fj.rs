//! `fj!`: `serde_json::json!`'s syntax for building resources, without its copies.
//!
//! `json!` serializes every value it embeds (`to_value(&expr)`), so a resource assembled from
//! smaller `Value`s was copied once per level, and every element FHIR forbids empty (a null, an
//! empty string, array or object) was inserted only for [`super::prune`] to take it out again.
//! Without them the Bundle step runs 1.56× fewer instructions on the Microsoft samples
//! (docs/fhir.md). `fj!` moves owned values (`Value`, `String`, their `Option`s and
//! `Vec`s) into place, serializes anything else like `json!` does, and leaves empty elements
//! out of objects as it builds them. A place behind a reference (`c.code`) is written `&c.code`
//! so that it is serialized, not moved.

use serde::Serialize;
use serde_json::{Map, Value};

/// A value on its way into an `fj!` tree; which trait's `fj` method applies decides how.
pub(crate) struct Fj<T>(pub T);

/// Owned values that move into the tree (method resolution tries these first: by value).
pub(crate) trait FjMove {
    /// The value as a `Value`, without copying.
    fn fj(self) -> Value;
}

/// Anything serializable, copied into the tree like `json!` does (reached through autoref
/// only when no [`FjMove`] impl applies).
pub(crate) trait FjSerialize {
    /// The value serialized into a `Value`.
    fn fj(self) -> Value;
}

impl FjMove for Fj<Value> {
    fn fj(self) -> Value {
        self.0
    }
}

impl FjMove for Fj<Option<Value>> {
    fn fj(self) -> Value {
        self.0.unwrap_or(Value::Null)
    }
}

impl FjMove for Fj<Vec<Value>> {
    fn fj(self) -> Value {
        Value::Array(self.0)
    }
}

impl FjMove for Fj<Map<String, Value>> {
    fn fj(self) -> Value {
        Value::Object(self.0)
    }
}

impl FjMove for Fj<String> {
    fn fj(self) -> Value {
        Value::String(self.0)
    }
}

impl FjMove for Fj<Option<String>> {
    fn fj(self) -> Value {
        self.0.map_or(Value::Null, Value::String)
    }
}

impl<T: Serialize> FjSerialize for &Fj<T> {
    fn fj(self) -> Value {
        // Serializing plain data into a Value cannot fail (no maps with non-string keys are
        // embedded); were it to, the element is left out like any empty one.
        serde_json::to_value(&self.0).unwrap_or(Value::Null)
    }
}

/// True for what FHIR forbids as an element and [`super::prune`] removes: null, a blank
/// string, an empty array or object.
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Inserts `v` under `k` unless it is empty.
pub(crate) fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    if !is_empty(&v) {
        m.insert(k.to_owned(), v);
    }
}

/// Builds a `serde_json::Value` with `json!`'s syntax (literal keys), moving owned values and
/// leaving empty elements out of objects; see the module documentation.
macro_rules! fj {
    (null) => { ::serde_json::Value::Null };
    ([]) => { ::serde_json::Value::Array(::std::vec::Vec::new()) };
    ([ $($tt:tt)+ ]) => {{
        #[allow(unused_mut)]
        let mut a: ::std::vec::Vec<::serde_json::Value> = ::std::vec::Vec::new();
        $crate::convert::fhir::fj::fj_array!(a; $($tt)+);
        ::serde_json::Value::Array(a)
    }};
    ({}) => { ::serde_json::Value::Object(::serde_json::Map::new()) };
    ({ $($tt:tt)+ }) => {{
        let mut m = ::serde_json::Map::new();
        $crate::convert::fhir::fj::fj_object!(m; $($tt)+);
        ::serde_json::Value::Object(m)
    }};
    ($e:expr) => {{
        #[allow(unused_imports)]
        use $crate::convert::fhir::fj::{FjMove as _, FjSerialize as _};
        $crate::convert::fhir::fj::Fj($e).fj()
    }};
}

/// The entries of an `fj!` object: `"key": value` pairs, a value being `{...}`, `[...]`,
/// `null` or an expression.
macro_rules! fj_object {
    ($m:ident;) => {};
    ($m:ident; $k:literal : null $(, $($rest:tt)*)?) => {
        $crate::convert::fhir::fj::fj_object!($m; $($($rest)*)?);
    };
    ($m:ident; $k:literal : { $($v:tt)* } $(, $($rest:tt)*)?) => {
        $crate::convert::fhir::fj::put(&mut $m, $k, $crate::convert::fhir::fj::fj!({ $($v)* }));
        $crate::convert::fhir::fj::fj_object!($m; $($($rest)*)?);
    };
    ($m:ident; $k:literal : [ $($v:tt)* ] $(, $($rest:tt)*)?) => {
        $crate::convert::fhir::fj::put(&mut $m, $k, $crate::convert::fhir::fj::fj!([ $($v)* ]));
        $crate::convert::fhir::fj::fj_object!($m; $($($rest)*)?);
    };
    ($m:ident; $k:literal : $v:expr $(, $($rest:tt)*)?) => {
        $crate::convert::fhir::fj::put(&mut $m, $k, $crate::convert::fhir::fj::fj!($v));
        $crate::convert::fhir::fj::fj_object!($m; $($($rest)*)?);
    };
}

/// The items of an `fj!` array, each `{...}`, `[...]`, `null` or an expression. Arrays keep
/// every item as written (like `json!`); `prune` clears empty ones.
macro_rules! fj_array {
    ($a:ident;) => {};
    ($a:ident; null $(, $($rest:tt)*)?) => {
        $a.push(::serde_json::Value::Null);
        $crate::convert::fhir::fj::fj_array!($a; $($($rest)*)?);
    };
    ($a:ident; { $($v:tt)* } $(, $($rest:tt)*)?) => {
        $a.push($crate::convert::fhir::fj::fj!({ $($v)* }));
        $crate::convert::fhir::fj::fj_array!($a; $($($rest)*)?);
    };
    ($a:ident; [ $($v:tt)* ] $(, $($rest:tt)*)?) => {
        $a.push($crate::convert::fhir::fj::fj!([ $($v)* ]));
        $crate::convert::fhir::fj::fj_array!($a; $($($rest)*)?);
    };
    ($a:ident; $v:expr $(, $($rest:tt)*)?) => {
        $a.push($crate::convert::fhir::fj::fj!($v));
        $crate::convert::fhir::fj::fj_array!($a; $($($rest)*)?);
    };
}

pub(crate) use {fj, fj_array, fj_object};

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn builds_what_json_builds_without_the_empty_elements() {
        let inner = json!({"code": "x", "display": null});
        let list = vec![json!(1), json!("two")];
        let name = Some("n".to_string());
        let none: Option<String> = None;
        let borrowed = String::from("b");
        let v = fj!({
            "inner": inner,
            "list": list,
            "name": name,
            "none": none,
            "blank": " ",
            "empty": [],
            "nested": {"gone": null, "also": {}},
            "borrowed": &borrowed,
            "number": 1.5,
            "flag": false,
            "call": format!("{}-{}", 1, 2),
            "array": [{"a": 1}, null, "s"],
        });
        assert_eq!(
            v,
            json!({
                "inner": {"code": "x", "display": null},
                "list": [1, "two"],
                "name": "n",
                "borrowed": "b",
                "number": 1.5,
                "flag": false,
                "call": "1-2",
                "array": [{"a": 1}, null, "s"],
            })
        );
    }
}
