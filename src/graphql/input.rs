//! Input coercion: a request's variables checked against the operation's definitions
//! (defaults filled in, every problem named), argument values checked against their input
//! types (the compiler calls this for literal arguments), and a query-string parameter read
//! as the variable it names. Recursion is bounded by [`MAX_INPUT_DEPTH`].

use async_graphql::parser::types::{BaseType, OperationDefinition, Type};
use serde_json::{Map, Value};

use super::model::{FacadeSchema, TypeDef};

/// How a variable's value is read from a query-string parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    Int,
    Float,
    Boolean,
    /// String, ID, enums and custom scalars: the text as it is.
    Text,
    /// Lists and input objects: the text is JSON.
    Json,
}

impl VarKind {
    /// How a variable of type `ty` is read from text.
    pub fn of(ty: &Type, schema: &FacadeSchema) -> Self {
        match &ty.base {
            BaseType::List(_) => VarKind::Json,
            BaseType::Named(n) => match (n.as_str(), schema.types.get(n.as_str())) {
                ("Int", _) => VarKind::Int,
                ("Float", _) => VarKind::Float,
                ("Boolean", _) => VarKind::Boolean,
                (_, Some(TypeDef::Input { .. })) => VarKind::Json,
                _ => VarKind::Text,
            },
        }
    }

    /// A query-string parameter as the JSON value of a variable of this kind: numbers and
    /// booleans parsed, a text that is not one kept as a string (coercion then names it).
    pub fn read(self, raw: &str) -> Value {
        match self {
            VarKind::Int => {
                raw.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned()))
            }
            VarKind::Float => {
                raw.parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned()))
            }
            VarKind::Boolean => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => Value::String(other.to_owned()),
            },
            VarKind::Text => Value::String(raw.to_owned()),
            VarKind::Json => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
        }
    }
}

/// Coerces the request's variables against the operation's definitions: defaults filled in,
/// a nullable variable without a value set to null, and each value checked against its type.
/// Every problem is returned, naming the variable.
pub fn coerce_variables(
    op: &OperationDefinition,
    schema: &FacadeSchema,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut out = Map::new();
    let mut problems = Vec::new();
    for def in &op.variable_definitions {
        let name = def.node.name.node.as_str();
        let ty = &def.node.var_type.node;
        match given.get(name) {
            Some(v) => match check_input(schema, ty, v, 0) {
                Ok(()) => {
                    out.insert(name.to_owned(), v.clone());
                }
                Err(why) => problems.push(format!("variable ${name} ({ty}): {why}")),
            },
            None => match &def.node.default_value {
                Some(d) => {
                    out.insert(name.to_owned(), d.node.clone().into_json().unwrap_or(Value::Null));
                }
                None if ty.nullable => {
                    out.insert(name.to_owned(), Value::Null);
                }
                None => problems.push(format!("variable ${name} of required type {ty} was not provided")),
            },
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Most nesting of lists and input objects in one variable's value.
const MAX_INPUT_DEPTH: usize = 32;

/// Whether `value` is a valid input of type `ty`; `Err` says why.
pub fn check_input(schema: &FacadeSchema, ty: &Type, value: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_INPUT_DEPTH {
        return Err(format!("nested deeper than {MAX_INPUT_DEPTH}"));
    }
    if value.is_null() {
        return if ty.nullable { Ok(()) } else { Err("null for a non-null type".to_owned()) };
    }
    match &ty.base {
        BaseType::List(inner) => match value {
            Value::Array(items) => items.iter().try_for_each(|v| check_input(schema, inner, v, depth + 1)),
            // A single value stands for a list of one.
            v => check_input(schema, inner, v, depth + 1),
        },
        BaseType::Named(name) => {
            let ok = match (name.as_str(), value) {
                ("Int", Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                ("Float", Value::Number(_)) => true,
                ("String", Value::String(_)) => true,
                ("ID", Value::String(_)) => true,
                ("ID", Value::Number(n)) => n.is_i64() || n.is_u64(),
                ("Boolean", Value::Bool(_)) => true,
                ("Int" | "Float" | "String" | "ID" | "Boolean", _) => false,
                (other, v) => match schema.types.get(other) {
                    Some(TypeDef::Enum { values, .. }) => {
                        v.as_str().is_some_and(|s| values.iter().any(|e| e == s))
                    }
                    Some(TypeDef::Input { fields, .. }) => {
                        let Value::Object(map) = v else {
                            return Err(format!("expected an object for {other}"));
                        };
                        if let Some(unknown) = map.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
                            return Err(format!("{other} has no field {unknown}"));
                        }
                        for f in fields {
                            match map.get(&f.name) {
                                Some(v) => check_input(schema, &f.ty, v, depth + 1)
                                    .map_err(|e| format!("{other}.{}: {e}", f.name))?,
                                None if !f.ty.nullable && f.default.is_none() => {
                                    return Err(format!("{other}.{} is required", f.name));
                                }
                                None => {}
                            }
                        }
                        true
                    }
                    _ => true,
                },
            };
            if ok { Ok(()) } else { Err(format!("expected {name}, got {}", super::fetch::preview(value))) }
        }
    }
}
