//! `fj!`: `serde_json::json!`'s syntax for building resources, without its copies.
//!
//! `json!` serializes every value it embeds (`to_value(&expr)`), so a resource assembled from
//! smaller `Value`s was copied once per level, and every element FHIR forbids empty (a null, an
//! empty string, array or object) was inserted only for [`super::prune`] to take it out again.
//! Without them the Bundle step runs 1.56× fewer instructions on the Microsoft samples
//! (docs/fhir.md). `fj!` builds the builders' own [`Value`] tree (`super::tree`): it moves
//! owned values (`Value`, `String`, their `Option`s and `Vec`s) into place, copies borrowed
//! text and numbers ([`IntoTree`]), and leaves empty elements out of objects as it builds them.
//! A place behind a reference (`c.code`) is written `&c.code` so that it is copied, not moved.

use super::tree::{Map, Value};

/// What an `fj!` expression may be: owned values move into the tree, borrowed text and plain
/// numbers are copied into it.
pub(crate) trait IntoTree {
    /// The value as a tree node.
    fn into_tree(self) -> Value;
}

impl IntoTree for Value {
    fn into_tree(self) -> Value {
        self
    }
}

impl IntoTree for Map {
    fn into_tree(self) -> Value {
        Value::Object(self)
    }
}

impl IntoTree for String {
    fn into_tree(self) -> Value {
        Value::String(self)
    }
}

impl IntoTree for &String {
    fn into_tree(self) -> Value {
        Value::String(self.clone())
    }
}

impl IntoTree for &str {
    fn into_tree(self) -> Value {
        Value::String(self.to_owned())
    }
}

impl IntoTree for &&str {
    fn into_tree(self) -> Value {
        Value::String((*self).to_owned())
    }
}

impl IntoTree for bool {
    fn into_tree(self) -> Value {
        Value::Bool(self)
    }
}

impl IntoTree for f64 {
    fn into_tree(self) -> Value {
        Value::float(self)
    }
}

impl IntoTree for &f64 {
    fn into_tree(self) -> Value {
        Value::float(*self)
    }
}

impl IntoTree for i64 {
    fn into_tree(self) -> Value {
        Value::Int(self)
    }
}

impl IntoTree for &i64 {
    fn into_tree(self) -> Value {
        Value::Int(*self)
    }
}

impl IntoTree for i32 {
    fn into_tree(self) -> Value {
        Value::Int(self.into())
    }
}

impl IntoTree for u32 {
    fn into_tree(self) -> Value {
        Value::Int(self.into())
    }
}

impl IntoTree for &u32 {
    fn into_tree(self) -> Value {
        Value::Int((*self).into())
    }
}

impl IntoTree for usize {
    fn into_tree(self) -> Value {
        // A count (ranks, sequence numbers): never beyond i64 in practice; saturates if so.
        Value::Int(i64::try_from(self).unwrap_or(i64::MAX))
    }
}

impl<T: IntoTree> IntoTree for Option<T> {
    fn into_tree(self) -> Value {
        self.map_or(Value::Null, IntoTree::into_tree)
    }
}

impl<'x, T> IntoTree for &'x Option<T>
where
    &'x T: IntoTree,
{
    fn into_tree(self) -> Value {
        self.as_ref().map_or(Value::Null, IntoTree::into_tree)
    }
}

impl<T: IntoTree> IntoTree for Vec<T> {
    fn into_tree(self) -> Value {
        Value::Array(self.into_iter().map(IntoTree::into_tree).collect())
    }
}

impl<'x, T> IntoTree for &'x Vec<T>
where
    &'x T: IntoTree,
{
    fn into_tree(self) -> Value {
        Value::Array(self.iter().map(IntoTree::into_tree).collect())
    }
}

impl<'x, T> IntoTree for &'x [T]
where
    &'x T: IntoTree,
{
    fn into_tree(self) -> Value {
        Value::Array(self.iter().map(IntoTree::into_tree).collect())
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

/// An empty array for `fj!` to fill, with room for its `n` items.
pub(crate) fn new_array(n: usize) -> Vec<Value> {
    Vec::with_capacity(n)
}

/// Adds `v` under the literal key `k` unless it is empty.
pub(crate) fn put(m: &mut Map, k: &'static str, v: Value) {
    if !is_empty(&v) {
        m.push_new(k, v);
    }
}

/// Builds a [`Value`] tree with `json!`'s syntax (literal keys), moving owned values and
/// leaving empty elements out of objects; see the module documentation.
macro_rules! fj {
    (null) => { $crate::convert::fhir::tree::Value::Null };
    ([]) => { $crate::convert::fhir::tree::Value::Array(::std::vec::Vec::new()) };
    ([ $($tt:tt)+ ]) => {{
        // Items are pushed one by one (each is `{...}`, `[...]`, `null` or an expression), which
        // `vec![]` cannot take; a function call keeps clippy's vec_init_then_push quiet.
        #[allow(unused_mut)]
        let mut a = $crate::convert::fhir::fj::new_array($crate::convert::fhir::fj::fj_count_array!($($tt)+));
        $crate::convert::fhir::fj::fj_array!(a; $($tt)+);
        $crate::convert::fhir::tree::Value::Array(a)
    }};
    ({}) => { $crate::convert::fhir::tree::Value::Object($crate::convert::fhir::tree::Map::new()) };
    ({ $($tt:tt)+ }) => {{
        // Sized up front: growing each object member by member was ~7 % of a Bundle's cost.
        let mut m = $crate::convert::fhir::tree::Map::with_capacity(
            $crate::convert::fhir::fj::fj_count_object!($($tt)+),
        );
        $crate::convert::fhir::fj::fj_object!(m; $($tt)+);
        $crate::convert::fhir::tree::Value::Object(m)
    }};
    ($e:expr) => {
        $crate::convert::fhir::fj::IntoTree::into_tree($e)
    };
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
        $a.push($crate::convert::fhir::tree::Value::Null);
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

/// How many members an `fj!` object may have (its entries other than literal `null`s).
macro_rules! fj_count_object {
    () => { 0usize };
    ($k:literal : null $(, $($rest:tt)*)?) => {
        $crate::convert::fhir::fj::fj_count_object!($($($rest)*)?)
    };
    ($k:literal : { $($v:tt)* } $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_object!($($($rest)*)?)
    };
    ($k:literal : [ $($v:tt)* ] $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_object!($($($rest)*)?)
    };
    ($k:literal : $v:expr $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_object!($($($rest)*)?)
    };
}

/// How many items an `fj!` array has.
macro_rules! fj_count_array {
    () => { 0usize };
    (null $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_array!($($($rest)*)?)
    };
    ({ $($v:tt)* } $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_array!($($($rest)*)?)
    };
    ([ $($v:tt)* ] $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_array!($($($rest)*)?)
    };
    ($v:expr $(, $($rest:tt)*)?) => {
        1usize + $crate::convert::fhir::fj::fj_count_array!($($($rest)*)?)
    };
}

pub(crate) use {fj, fj_array, fj_count_array, fj_count_object, fj_object};

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn builds_what_json_builds_without_the_empty_elements() {
        let inner = fj!({"code": "x"});
        let list = vec![fj!(1i64), fj!("two")];
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
            v.into_json(),
            json!({
                "inner": {"code": "x"},
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
