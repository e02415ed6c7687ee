//! Turns the checked [`FacadeSchema`] into an `async_graphql::dynamic::Schema` whose
//! resolvers read the parent's JSON or fetch through the request's [`Batcher`].

use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface, InterfaceField, Object,
    ResolverContext, Scalar, Schema, SchemaError, TypeRef, Union,
};
use async_graphql::parser::types::{BaseType, Type};
use async_graphql::{Error as GqlError, ErrorExtensions, Name, Value as GqlValue};
use serde_json::Value;

use super::fetch::{Args, Fetch, bad_value, fetch_error, plan_fetch, preview};
use super::model::*;
use crate::backends::Batcher;
use crate::errors::Code;

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
    let mut builder = Schema::build(&model.query, model.mutation.as_deref(), None)
        .limit_depth(limits.max_depth)
        .extension(super::nulls::NullPropagation);
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
                    object = object.field(build_field(model, name, field, limits.default_list_size as usize));
                }
                builder.register(object)
            }
            TypeDef::Interface { description, fields, .. } => {
                let mut iface = Interface::new(name);
                if let Some(d) = description {
                    iface = iface.description(d);
                }
                for f in fields {
                    let mut field = InterfaceField::new(&f.name, type_ref(&f.ty));
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

/// How a JSON value is turned into a GraphQL output value.
#[derive(Debug, Clone)]
enum Shape {
    List {
        item: Box<Shape>,
        item_nullable: bool,
    },
    Leaf(Leaf),
    Object,
    /// An interface or union: the named JSON field says the object type.
    Abstract(Arc<str>),
}

#[derive(Debug, Clone, Copy)]
enum Leaf {
    Text,
    Int,
    Float,
    Bool,
    Enum,
    Custom,
}

fn shape(model: &FacadeSchema, ty: &Type) -> Shape {
    match &ty.base {
        BaseType::List(inner) => {
            Shape::List { item: Box::new(shape(model, inner)), item_nullable: inner.nullable }
        }
        BaseType::Named(n) => match n.as_str() {
            "String" | "ID" => Shape::Leaf(Leaf::Text),
            "Int" => Shape::Leaf(Leaf::Int),
            "Float" => Shape::Leaf(Leaf::Float),
            "Boolean" => Shape::Leaf(Leaf::Bool),
            other => match model.types.get(other) {
                Some(TypeDef::Enum { .. }) => Shape::Leaf(Leaf::Enum),
                Some(TypeDef::Object { .. }) => Shape::Object,
                Some(TypeDef::Interface { discriminator, .. } | TypeDef::Union { discriminator, .. }) => {
                    Shape::Abstract(discriminator.field.clone())
                }
                _ => Shape::Leaf(Leaf::Custom),
            },
        },
    }
}

/// Everything a field's resolver needs, shared by all its invocations.
struct Plan {
    path: String,
    name: String,
    shape: Shape,
    binding: Binding,
    fallback: Option<Value>,
    /// Keys fetched when the limit argument is null or unset.
    default_list_size: usize,
}

fn build_field(model: &FacadeSchema, owner: &str, def: &FieldDef, default_list_size: usize) -> Field {
    let plan = Arc::new(Plan {
        path: format!("{owner}.{}", def.name),
        name: def.name.clone(),
        shape: shape(model, &def.ty),
        binding: def.binding.clone(),
        fallback: def.fallback.clone(),
        default_list_size,
    });
    let mut field = Field::new(&def.name, type_ref(&def.ty), move |ctx| resolve(plan.clone(), ctx));
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

fn resolve(plan: Arc<Plan>, ctx: ResolverContext<'_>) -> FieldFuture<'_> {
    match &plan.binding {
        Binding::Parent => {
            let value = parent(&ctx).get(&plan.name).cloned().unwrap_or(Value::Null);
            match convert(&plan, value, &plan.shape) {
                Ok(v) => FieldFuture::Value(v),
                Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) }),
            }
        }
        Binding::Js { function } => {
            let function = function.clone();
            FieldFuture::new(async move { resolve_js(&plan, &function, &ctx).await })
        }
        Binding::Http(http) => {
            let http = http.clone();
            FieldFuture::new(async move {
                match (resolve_http(&plan, &http, &ctx).await, &plan.fallback) {
                    // A fallback that does not fit the field's type keeps the fetch's error (and code).
                    (Err(mut error), Some(fallback)) => convert(&plan, fallback.clone(), &plan.shape)
                        .map_err(|bad| {
                            error.message = format!(
                                "{} (and the @fallback value does not fit: {})",
                                error.message, bad.message
                            );
                            error
                        }),
                    (result, _) => result,
                }
            })
        }
    }
}

static NULL: Value = Value::Null;

fn parent<'a>(ctx: &ResolverContext<'a>) -> &'a Value {
    ctx.parent_value.downcast_ref::<Json>().map_or(&NULL, Json::get)
}

fn batcher<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Batcher, GqlError> {
    ctx.data::<Batcher>()
}

/// The field's arguments as JSON (defaults included).
fn args_of(ctx: &ResolverContext<'_>) -> Args {
    ctx.args
        .as_index_map()
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone().into_json().unwrap_or(Value::Null)))
        .collect()
}

/// An object's JSON as resolvers see their parent: owned, or shared with the batch result it
/// came from (so 200 titles are not copied out of their batch).
enum Json {
    Owned(Value),
    Shared(Arc<Value>),
}

impl Json {
    fn get(&self) -> &Value {
        match self {
            Json::Owned(v) => v,
            Json::Shared(v) => v,
        }
    }
}

/// Like [`convert`], keeping a shared object shared.
fn convert_json(plan: &Plan, json: Json, shape: &Shape) -> Result<Option<FieldValue<'static>>, GqlError> {
    match json {
        Json::Shared(v) if matches!(shape, Shape::Object) && v.is_object() => {
            Ok(Some(FieldValue::owned_any(Json::Shared(v))))
        }
        Json::Shared(v) => convert(plan, Value::clone(&v), shape),
        Json::Owned(v) => convert(plan, v, shape),
    }
}

async fn resolve_http<'a>(
    plan: &Plan,
    http: &HttpBinding,
    ctx: &ResolverContext<'a>,
) -> Result<Option<FieldValue<'a>>, GqlError> {
    let selected = |v: Arc<Value>| match &http.select {
        Some(key) => Json::Owned(v.get(key).cloned().unwrap_or(Value::Null)),
        None => Json::Shared(v),
    };
    let batcher = batcher(ctx)?;
    let one = match plan_fetch(&plan.path, http, &args_of(ctx), parent(ctx), plan.default_list_size, None)? {
        Fetch::Nothing => return Ok(None),
        Fetch::Single(request) => selected(batcher.load_one(request).await.map_err(|e| fetch_error(&e))?),
        Fetch::Batch(route, keys) if http.batch.as_ref().is_some_and(|b| b.keys_are_list) => {
            let Shape::List { item, item_nullable } = &plan.shape else {
                return Err(bad_value(&plan.path, "a list of keys needs a list field".to_owned()));
            };
            let mut items: Vec<Option<Json>> = Vec::new();
            for result in batcher.load_many(route, keys).await {
                match result {
                    Ok(Some(v)) => items.push(Some(selected(v))),
                    // A key the backend did not return: null where items may be null, else left out.
                    Ok(None) if *item_nullable => items.push(None),
                    Ok(None) => {}
                    Err(e) => return Err(fetch_error(&e)),
                }
            }
            let values = items
                .into_iter()
                .map(|j| {
                    Ok(j.map(|j| convert_json(plan, j, item))
                        .transpose()?
                        .flatten()
                        .unwrap_or(FieldValue::NULL))
                })
                .collect::<Result<Vec<_>, GqlError>>()?;
            return Ok(Some(FieldValue::list(values)));
        }
        Fetch::Batch(route, keys) => match batcher.load_many(route, keys).await.pop() {
            Some(Ok(Some(v))) => selected(v),
            Some(Err(e)) => return Err(fetch_error(&e)),
            _ => return Ok(None),
        },
    };
    convert_json(plan, one, &plan.shape)
}

async fn resolve_js<'a>(
    plan: &Plan,
    function: &Arc<str>,
    ctx: &ResolverContext<'a>,
) -> Result<Option<FieldValue<'a>>, GqlError> {
    let js = ctx.data::<super::js::JsFunctions>()?;
    let batch = ctx.data::<super::js::JsBatch>()?;
    let args = Value::Object(args_of(ctx)).to_string();
    let out = batch.call(js, function, parent(ctx).to_string(), args).await.map_err(|e| {
        GqlError::new(format!("{}: {e}", plan.path))
            .extend_with(|_, ext| ext.set("code", Code::ScriptError.as_str()))
    })?;
    let value: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    convert(plan, value, &plan.shape)
}

/// JSON to a GraphQL output value of the given shape; `None` for null.
fn convert(plan: &Plan, value: Value, shape: &Shape) -> Result<Option<FieldValue<'static>>, GqlError> {
    if value.is_null() {
        return Ok(None);
    }
    match shape {
        Shape::Object if value.is_object() => Ok(Some(FieldValue::owned_any(Json::Owned(value)))),
        Shape::Object => Err(bad_value(&plan.path, format!("expected an object, got {}", preview(&value)))),
        Shape::Abstract(field) => match value.get(&**field).and_then(Value::as_str).map(str::to_owned) {
            Some(ty) if value.is_object() => {
                Ok(Some(FieldValue::owned_any(Json::Owned(value)).with_type(ty)))
            }
            _ => {
                Err(bad_value(&plan.path, format!("cannot tell the type of {}: no {field}", preview(&value))))
            }
        },
        Shape::List { item, .. } => match value {
            Value::Array(items) => {
                let items = items
                    .into_iter()
                    .map(|v| Ok(convert(plan, v, item)?.unwrap_or(FieldValue::NULL)))
                    .collect::<Result<Vec<_>, GqlError>>()?;
                Ok(Some(FieldValue::list(items)))
            }
            other => Err(bad_value(&plan.path, format!("expected a list, got {}", preview(&other)))),
        },
        Shape::Leaf(leaf) => leaf_value(*leaf, value)
            .map(|v| Some(FieldValue::value(v)))
            .map_err(|expected| bad_value(&plan.path, format!("expected {expected}"))),
    }
}

fn leaf_value(leaf: Leaf, value: Value) -> Result<GqlValue, String> {
    match (leaf, value) {
        (Leaf::Text, Value::String(s)) => Ok(GqlValue::String(s)),
        (Leaf::Text, v @ (Value::Number(_) | Value::Bool(_))) => Ok(GqlValue::String(v.to_string())),
        (Leaf::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(GqlValue::Number(n)),
        (Leaf::Float, Value::Number(n)) if n.is_f64() => Ok(GqlValue::Number(n)),
        (Leaf::Float, Value::Number(n)) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(GqlValue::Number)
            .ok_or_else(|| format!("Float, got {n}")),
        (Leaf::Bool, Value::Bool(b)) => Ok(GqlValue::Boolean(b)),
        (Leaf::Enum, Value::String(s)) => Ok(GqlValue::Enum(Name::new(s))),
        (Leaf::Custom, v) => GqlValue::from_json(v).map_err(|e| e.to_string()),
        (leaf, v) => Err(format!("{leaf:?}, got {}", preview(&v))),
    }
}
