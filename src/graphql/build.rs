//! Turns the checked [`FacadeSchema`] into an `async_graphql::dynamic::Schema`, which
//! validates documents and answers introspection (`__schema`, `__type`). It executes nothing
//! else: documents run on the compiled engine (`plan.rs`, `exec.rs`, `project.rs`), so its
//! field resolvers are never called (requests to it are introspection-only).

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface, InterfaceField, Object, Scalar,
    Schema, SchemaError, TypeRef, Union,
};
use async_graphql::parser::types::{BaseType, Type};

use super::model::*;

/// Limits applied to every operation at validation time.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_depth: usize,
    /// Keys fetched for a list whose limit argument is null or unset (as the cost counts it).
    pub default_list_size: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self { max_depth: 16, default_list_size: 10 }
    }
}

pub fn build_schema(model: &FacadeSchema, limits: QueryLimits) -> Result<Schema, SchemaError> {
    let mut builder =
        Schema::build(&model.query, model.mutation.as_deref(), None).limit_depth(limits.max_depth);
    for (name, def) in &model.types {
        builder = match def {
            TypeDef::Object { description, fields, implements } => {
                let mut object = Object::new(name);
                if let Some(d) = description {
                    object = object.description(d);
                }
                for i in implements {
                    object = object.implement(i);
                }
                for field in fields {
                    object = object.field(build_field(field));
                }
                builder.register(object)
            }
            TypeDef::Interface { description, fields, .. } => {
                let mut iface = Interface::new(name);
                if let Some(d) = description {
                    iface = iface.description(d);
                }
                for f in fields {
                    let mut field = InterfaceField::new(&*f.name, type_ref(&f.ty));
                    for arg in &f.args {
                        field = field.argument(input_value(arg));
                    }
                    if let Some(d) = &f.description {
                        field = field.description(d);
                    }
                    if let Some(reason) = &f.deprecation {
                        field = field.deprecation(reason.as_deref());
                    }
                    iface = iface.field(field);
                }
                builder.register(iface)
            }
            TypeDef::Union { description, members, .. } => {
                let mut union = Union::new(name);
                if let Some(d) = description {
                    union = union.description(d);
                }
                for m in members {
                    union = union.possible_type(m);
                }
                builder.register(union)
            }
            TypeDef::Enum { description, values } => {
                let mut e = Enum::new(name).items(values.iter().map(String::as_str));
                if let Some(d) = description {
                    e = e.description(d);
                }
                builder.register(e)
            }
            TypeDef::Scalar { description } => {
                let mut s = Scalar::new(name);
                if let Some(d) = description {
                    s = s.description(d);
                }
                builder.register(s)
            }
            TypeDef::Input { description, fields } => {
                let mut input = InputObject::new(name);
                if let Some(d) = description {
                    input = input.description(d);
                }
                for f in fields {
                    input = input.field(input_value(f));
                }
                builder.register(input)
            }
        };
    }
    builder.finish()
}

fn type_ref(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(n) => TypeRef::Named(n.to_string().into()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    if ty.nullable { base } else { TypeRef::NonNull(Box::new(base)) }
}

fn input_value(arg: &ArgDef) -> InputValue {
    let mut v = InputValue::new(&arg.name, type_ref(&arg.ty));
    if let Some(d) = &arg.description {
        v = v.description(d);
    }
    if let Some(default) = &arg.default {
        v = v.default_value(default.clone());
    }
    v
}

/// A field for validation and introspection; requests to this schema are introspection-only,
/// so the resolver never runs (it would answer an error if it did).
fn build_field(def: &FieldDef) -> Field {
    let mut field = Field::new(&*def.name, type_ref(&def.ty), |_| {
        FieldFuture::new(async { Err::<Option<FieldValue<'_>>, _>("executed by the compiled engine".into()) })
    });
    for arg in &def.args {
        field = field.argument(input_value(arg));
    }
    if let Some(d) = &def.description {
        field = field.description(d);
    }
    if let Some(reason) = &def.deprecation {
        field = field.deprecation(reason.as_deref());
    }
    field
}
