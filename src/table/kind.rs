//! What the values at one place of the records have in common (`Kind`), how a kind widens to
//! cover more values, and the Arrow field that holds them. Inference widens kinds one value at
//! a time, unification one page's kinds at a time: both by the same rules, here.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields};
use indexmap::IndexMap;

/// Field metadata marking a column of JSON text. Not the `arrow.json` extension type: pyarrow's
/// pandas conversion and older polars stumble on extension types; a plain string column does not.
pub const JSON_TEXT_KEY: &str = "soket_transcribe.json";

/// True for a column of JSON text.
pub fn is_json(field: &Field) -> bool {
    field.metadata().get(JSON_TEXT_KEY).is_some_and(|v| v == "true")
}

pub(super) fn json_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(JSON_TEXT_KEY.to_owned(), "true".to_owned())]))
}

/// What the values seen at one place of the records have in common.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Kind {
    /// Only nulls (or nothing) seen.
    #[default]
    Null,
    Bool,
    /// `beyond_f64`: some value is not exact as a double (matters once floats show up).
    Int {
        beyond_f64: bool,
    },
    Float {
        beyond_f64: bool,
    },
    Str,
    List(Box<Kind>),
    Object(IndexMap<String, Kind>),
    /// Values disagree: the column holds JSON text. `quoted`: some value is a string, list or
    /// object, whose text must be written for the decoder (numbers and booleans it writes itself).
    Json {
        quoted: bool,
    },
}

impl Kind {
    pub(super) fn quoted(&self) -> bool {
        match self {
            Kind::Str | Kind::List(_) | Kind::Object(_) => true,
            Kind::Json { quoted } => *quoted,
            Kind::Null | Kind::Bool | Kind::Int { .. } | Kind::Float { .. } => false,
        }
    }

    /// True where the column holds each value's JSON text.
    pub(super) fn is_text(&self) -> bool {
        match self {
            Kind::Float { beyond_f64 } => *beyond_f64,
            Kind::Object(fields) => fields.is_empty(),
            Kind::Json { .. } => true,
            Kind::Null | Kind::Bool | Kind::Int { .. } | Kind::Str | Kind::List(_) => false,
        }
    }

    /// Values of `self` and of `other` together, where they cannot share a type.
    pub(super) fn conflict(&self, other_quoted: bool) -> Kind {
        Kind::Json { quoted: self.quoted() || other_quoted }
    }

    /// Widens `self` to also cover the values of `other`, as reading them after its own would
    /// (the least kind covering both): a value's kind while inferring, a page's when unifying.
    pub(super) fn widen(&mut self, other: &Kind) {
        match (&mut *self, other) {
            (_, Kind::Null) | (Kind::Bool, Kind::Bool) | (Kind::Str, Kind::Str) => {}
            (Kind::Null, other) => *self = other.clone(),
            (Kind::Json { quoted }, other) => *quoted |= other.quoted(),
            (Kind::Int { beyond_f64: a }, Kind::Int { beyond_f64: b }) => *a |= *b,
            (
                Kind::Int { beyond_f64: a } | Kind::Float { beyond_f64: a },
                Kind::Int { beyond_f64: b } | Kind::Float { beyond_f64: b },
            ) => *self = Kind::Float { beyond_f64: *a || *b },
            (Kind::List(element), Kind::List(other)) => element.widen(other),
            (Kind::Object(fields), Kind::Object(other)) => widen_members(fields, other),
            (kind, other) => *kind = kind.conflict(other.quoted()),
        }
    }

    /// The kinds a given schema's fields stand for, as far as rewriting needs them: its JSON text
    /// columns take any value (an empty struct takes nothing, as arrow-json ignores it).
    pub(super) fn of_fields(fields: &Fields) -> IndexMap<String, Kind> {
        fields.iter().map(|f| (f.name().clone(), Kind::of_field(f))).collect()
    }

    fn of_field(field: &Field) -> Kind {
        if is_json(field) {
            return Kind::Json { quoted: true };
        }
        match field.data_type() {
            DataType::Struct(fields) if !fields.is_empty() => Kind::Object(Kind::of_fields(fields)),
            DataType::List(element) | DataType::LargeList(element) => Kind::List(Box::new(Kind::of_field(element))),
            DataType::Boolean => Kind::Bool,
            DataType::Utf8 | DataType::LargeUtf8 => Kind::Str,
            t if t.is_integer() => Kind::Int { beyond_f64: false },
            t if t.is_floating() => Kind::Float { beyond_f64: false },
            _ => Kind::Null,
        }
    }

    /// The Arrow field named `name` holding the values of this kind.
    pub(super) fn field(&self, name: &str) -> Field {
        if self.is_text() {
            return json_field(name);
        }
        let data_type = match self {
            Kind::Null => DataType::Null,
            Kind::Bool => DataType::Boolean,
            Kind::Int { .. } => DataType::Int64,
            Kind::Float { .. } => DataType::Float64,
            Kind::Str => DataType::Utf8,
            Kind::List(element) => DataType::List(Arc::new(element.field("item"))),
            Kind::Object(fields) => DataType::Struct(fields.iter().map(|(name, kind)| kind.field(name)).collect()),
            Kind::Json { .. } => DataType::Utf8,
        };
        Field::new(name, data_type, true)
    }
}

/// Members of `other` widened into `fields`; new ones go last, in `other`'s order.
pub(super) fn widen_members(fields: &mut IndexMap<String, Kind>, other: &IndexMap<String, Kind>) {
    for (name, kind) in other {
        match fields.get_mut(name) {
            Some(known) => known.widen(kind),
            None => {
                fields.insert(name.clone(), kind.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INT: Kind = Kind::Int { beyond_f64: false };
    const BIG: Kind = Kind::Int { beyond_f64: true };
    const FLOAT: Kind = Kind::Float { beyond_f64: false };

    fn widened(kind: &Kind, other: &Kind) -> Kind {
        let mut kind = kind.clone();
        kind.widen(other);
        kind
    }

    fn object(members: &[(&str, Kind)]) -> Kind {
        Kind::Object(members.iter().map(|(name, kind)| (name.to_string(), kind.clone())).collect())
    }

    #[test]
    fn widening_gives_the_least_kind_covering_both() {
        let list = |k: Kind| Kind::List(Box::new(k));
        let cases = [
            (Kind::Null, Kind::Str, Kind::Str),
            (Kind::Bool, Kind::Null, Kind::Bool),
            (INT, BIG, BIG),
            (INT, FLOAT, FLOAT),
            (BIG, FLOAT, Kind::Float { beyond_f64: true }),
            (Kind::Str, INT, Kind::Json { quoted: true }),
            (Kind::Bool, INT, Kind::Json { quoted: false }),
            (Kind::Json { quoted: false }, Kind::Str, Kind::Json { quoted: true }),
            (Kind::Json { quoted: false }, FLOAT, Kind::Json { quoted: false }),
            (list(INT), list(FLOAT), list(FLOAT)),
            (list(INT), object(&[("a", INT)]), Kind::Json { quoted: true }),
        ];
        for (kind, other, expected) in cases {
            assert_eq!(widened(&kind, &other), expected, "{kind:?} widened by {other:?}");
        }
    }

    #[test]
    fn objects_widen_member_by_member_new_ones_last() {
        let kind = object(&[("a", INT), ("b", Kind::Str)]);
        let other = object(&[("c", Kind::Bool), ("a", FLOAT), ("b", Kind::Null)]);
        assert_eq!(widened(&kind, &other), object(&[("a", FLOAT), ("b", Kind::Str), ("c", Kind::Bool)]));
    }

    #[test]
    fn a_kind_read_back_from_its_field_is_the_same_kind() {
        let kind = object(&[("a", Kind::List(Box::new(FLOAT))), ("t", Kind::Json { quoted: true }), ("s", Kind::Str)]);
        let Kind::Object(members) = &kind else { unreachable!() };
        let DataType::Struct(fields) = kind.field("x").data_type().clone() else { panic!("a struct") };
        assert_eq!(&Kind::of_fields(&fields), members);
    }
}
