//! Micro-measurements of QuickJS itself for the scripts scenario: a fresh runtime per call,
//! and the two ways data can cross into JavaScript. Runs on a blocking thread.

use std::time::Instant;

use rquickjs::{Array, Context, Ctx, Function, Module, Object, Runtime, Value as JsValue};
use serde_json::Value;

fn to_js<'js>(ctx: &Ctx<'js>, v: &Value) -> rquickjs::Result<JsValue<'js>> {
    Ok(match v {
        Value::Null => JsValue::new_null(ctx.clone()),
        Value::Bool(b) => JsValue::new_bool(ctx.clone(), *b),
        Value::Number(n) => JsValue::new_float(ctx.clone(), n.as_f64().unwrap_or(0.0)),
        Value::String(s) => rquickjs::String::from_str(ctx.clone(), s)?.into_value(),
        Value::Array(items) => {
            let a = Array::new(ctx.clone())?;
            for (i, item) in items.iter().enumerate() {
                a.set(i, to_js(ctx, item)?)?;
            }
            a.into_value()
        }
        Value::Object(map) => {
            let o = Object::new(ctx.clone())?;
            for (k, item) in map {
                o.set(k.as_str(), to_js(ctx, item)?)?;
            }
            o.into_value()
        }
    })
}

fn from_js(v: &JsValue<'_>) -> Value {
    if let Some(o) = v.as_object() {
        if let Some(a) = o.as_array() {
            return Value::Array(a.iter::<JsValue>().filter_map(Result::ok).map(|x| from_js(&x)).collect());
        }
        let mut map = serde_json::Map::new();
        for (k, x) in o.props::<String, JsValue>().flatten() {
            map.insert(k, from_js(&x));
        }
        return Value::Object(map);
    }
    if let Some(s) = v.as_string() {
        return Value::String(s.to_string().unwrap_or_default());
    }
    if let Some(b) = v.as_bool() {
        return Value::Bool(b);
    }
    if let Some(n) = v.as_number() {
        return serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number);
    }
    Value::Null
}

fn transform<'js>(ctx: &Ctx<'js>, source: &str) -> rquickjs::Result<Function<'js>> {
    let (module, promise) = Module::declare(ctx.clone(), "home.js", source)?.eval()?;
    promise.finish::<()>()?;
    module.get("default")
}

fn run_text<'js>(ctx: &Ctx<'js>, f: &Function<'js>, data: &str, ctx_json: &str) -> rquickjs::Result<String> {
    let d = ctx.json_parse(data.to_owned())?;
    let c = ctx.json_parse(ctx_json.to_owned())?;
    let out: JsValue = f.call((d, c))?;
    Ok(ctx.json_stringify(out)?.map(|s| s.to_string().unwrap_or_default()).unwrap_or_default())
}

/// Microseconds per call of the tv/home transform, each way of running it.
pub struct Micro {
    /// A fresh runtime, context and compile per call.
    pub fresh_runtime: f64,
    /// One runtime; a fresh context and compile per call (what the pool does: no state
    /// survives a call).
    pub fresh_realm: f64,
    /// A context with every built-in (`Context::full`).
    pub context_only: f64,
    /// Of which: making the context alone, with the built-ins the pool gives a realm.
    pub lean_context: f64,
    /// Of which: compiling and evaluating the module in a fresh context, context included.
    pub context_and_compile: f64,
    /// One runtime and one shared context, module compiled once, data as JSON text (the
    /// shared realm the pool used before isolation).
    pub shared_text: f64,
    /// The same, data converted value by value.
    pub shared_values: f64,
}

/// The built-ins the pool gives a realm.
type Lean = facade::scripts::Intrinsics;

pub fn measure(data: &str, ctx_json: &str, source: &str, n: u32) -> anyhow::Result<Micro> {
    let per_call = |t0: Instant| t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let rt = Runtime::new()?;
        let context = Context::full(&rt)?;
        context.with(|ctx| -> rquickjs::Result<()> {
            let f = transform(&ctx, source)?;
            run_text(&ctx, &f, data, ctx_json)?;
            Ok(())
        })?;
    }
    let fresh_runtime = per_call(t0);

    let rt = Runtime::new()?;
    let t0 = Instant::now();
    for _ in 0..n {
        let context = Context::custom::<Lean>(&rt)?;
        context.with(|ctx| -> rquickjs::Result<()> {
            let f = transform(&ctx, source)?;
            run_text(&ctx, &f, data, ctx_json)?;
            Ok(())
        })?;
        drop(context);
        rt.run_gc();
    }
    let fresh_realm = per_call(t0);
    let t0 = Instant::now();
    for _ in 0..n {
        drop(Context::full(&rt)?);
    }
    let context_only = per_call(t0);
    let t0 = Instant::now();
    for _ in 0..n {
        drop(Context::custom::<Lean>(&rt)?);
    }
    let lean_context = per_call(t0);
    let t0 = Instant::now();
    for _ in 0..n {
        let context = Context::custom::<Lean>(&rt)?;
        context.with(|ctx| transform(&ctx, source).map(|_| ()))?;
    }
    let context_and_compile = per_call(t0);

    let context = Context::full(&rt)?;
    let parsed_data: Value = serde_json::from_str(data)?;
    let parsed_ctx: Value = serde_json::from_str(ctx_json)?;
    let (shared_text, shared_values) = context.with(|ctx| -> anyhow::Result<(f64, f64)> {
        let f = transform(&ctx, source)?;
        run_text(&ctx, &f, data, ctx_json)?;
        let t0 = Instant::now();
        for _ in 0..n {
            run_text(&ctx, &f, data, ctx_json)?;
        }
        let text = per_call(t0);
        let t0 = Instant::now();
        for _ in 0..n {
            let out: JsValue = f.call((to_js(&ctx, &parsed_data)?, to_js(&ctx, &parsed_ctx)?))?;
            let _ = serde_json::to_string(&from_js(&out))?;
        }
        Ok((text, per_call(t0)))
    })?;
    Ok(Micro {
        fresh_runtime,
        fresh_realm,
        context_only,
        lean_context,
        context_and_compile,
        shared_text,
        shared_values,
    })
}
