//! Everything that touches async-graphql's dynamic schema: the checked [`FacadeSchema`] turned
//! into an `async_graphql::dynamic::Schema`, which validates documents and answers
//! introspection (`__schema`, `__type`). It executes nothing
//! else: documents run on the compiled engine (`plan.rs`, `exec.rs`, `project.rs`), so its
//! field resolvers are never called (requests to it are introspection-only).

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface, InterfaceField, Object, Scalar,
    Schema, SchemaError, TypeRef, Union,
};
use async_graphql::parser::types::{BaseType, ExecutableDocument, Type};
use async_graphql::{Request, ServerError, Variables};
use serde_json::{Map, Value};

use super::model::*;
use super::plan;

fn build_schema(model: &FacadeSchema, max_depth: usize) -> Result<Schema, SchemaError> {
    let mut builder = Schema::build(&model.query, model.mutation.as_deref(), None).limit_depth(max_depth);
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
/// async-graphql's dynamic schema of one facade schema: validation and introspection only.
pub struct Validator {
    schema: Schema,
}

impl Validator {
    /// The dynamic schema of `model`, refusing selections nested deeper than `max_depth`.
    pub fn new(model: &FacadeSchema, max_depth: usize) -> Result<Self, SchemaError> {
        Ok(Self { schema: build_schema(model, max_depth)? })
    }

    /// The schema as SDL, without Facade's directives.
    pub fn sdl(&self) -> String {
        self.schema.sdl()
    }

    /// Validates a parsed document against this schema without running it (in
    /// introspection-only mode no resolver runs). Errors that depend on variable values are
    /// left to the request (variables are coerced per request).
    pub async fn validate(
        &self,
        text: &str,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
    ) -> Vec<ServerError> {
        let mut request = Request::new(text).only_introspection();
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        request.set_parsed_query(document.clone());
        let response = self.schema.execute(request).await;
        response
            .errors
            .into_iter()
            .filter(|e| {
                // Validation runs without variables; introspection run there reads them.
                let unset_variable = e.message.starts_with("Variable ")
                    && e.message.ends_with(" is not defined.")
                    && !e.message.contains('"');
                !e.message.contains("is not provided")
                    && !e.message.starts_with("Invalid value for argument")
                    && !unset_variable
            })
            .collect()
    }

    /// The answers of the operation's `__schema` and `__type` fields, from async-graphql's
    /// introspection (which resolves nothing else), by response key.
    pub async fn introspect(
        &self,
        op: &plan::Operation,
        plan: &plan::Plan,
        variables: &Map<String, Value>,
    ) -> Option<Map<String, Value>> {
        if !plan.introspection {
            return None;
        }
        let mut request = Request::new(op.text.clone().unwrap_or_default())
            .only_introspection()
            .variables(Variables::from_json(Value::Object(variables.clone())));
        if let Some(name) = &op.operation_name {
            request = request.operation_name(name);
        }
        request.set_parsed_query(ExecutableDocument::clone(&op.document));
        match self.schema.execute(request).await.data.into_json() {
            Ok(Value::Object(map)) => Some(map),
            _ => Some(Map::new()),
        }
    }
}
