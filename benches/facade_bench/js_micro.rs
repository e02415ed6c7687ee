//! Micro-measurements of QuickJS itself for the scripts scenario: the ways data can cross into
//! a realm and back out, and what a realm and a compile cost. Each call gets a fresh realm with
//! the pool's built-ins, as a worker gives it, and compiles the module (loading bytecode is
//! measured through the pool, whose workers do it: no second `unsafe` here). Runs on a
//! blocking thread.

use std::time::Instant;

use facade::scripts::crossing;
use rquickjs::{Context, Ctx, Function, Module, Runtime, Value};

/// The built-ins the pool gives a realm.
type Lean = facade::scripts::Intrinsics;

/// Microseconds per call.
pub struct Micro {
    /// `JSON.parse` in, `JSON.stringify` out (the crossing before script workers).
    pub text_text: f64,
    /// serde_json building QuickJS values in, `JSON.stringify` out.
    pub built_text: f64,
    /// `JSON.parse` in, the Rust walk out.
    pub text_walked: f64,
    /// serde_json in, the Rust walk out (what workers do).
    pub built_walked: f64,
    /// Of a call: a fresh realm alone.
    pub realm: f64,
    /// Of a call: compiling the module from source and evaluating it.
    pub compile: f64,
}

fn module<'js>(ctx: &Ctx<'js>, source: &str) -> rquickjs::Result<Function<'js>> {
    // The sample is TypeScript: its types stripped to spaces first, as a publish does.
    let source = facade::scripts::typescript::strip("home.ts", source)
        .map_err(|e| rquickjs::Error::new_from_js_message("typescript", "javascript", e))?;
    let (module, promise) = Module::declare(ctx.clone(), "home.ts", source)?.eval()?;
    promise.finish::<()>()?;
    module.get("default")
}

#[derive(Clone, Copy)]
enum Way {
    Text,
    Built,
}

fn call(
    rt: &Runtime,
    source: &str,
    data: &str,
    ctx_json: &str,
    into: Way,
    out: Way,
) -> anyhow::Result<usize> {
    let context = Context::custom::<Lean>(rt)?;
    let n = context.with(|ctx| -> anyhow::Result<usize> {
        let f = module(&ctx, source)?;
        let parse = |text: &str| -> anyhow::Result<Value> {
            Ok(match into {
                Way::Text => ctx.json_parse(text)?,
                Way::Built => crossing::to_js(&ctx, text.as_bytes()).map_err(anyhow::Error::msg)?,
            })
        };
        let result: Value = f.call((parse(data)?, parse(ctx_json)?))?;
        Ok(match out {
            Way::Text => {
                ctx.json_stringify(result)?.map(|s| s.to_string().unwrap_or_default().len()).unwrap_or(0)
            }
            Way::Built => {
                let mut buf = Vec::with_capacity(32 * 1024);
                crossing::write_json(&ctx, &result, &mut buf).map_err(anyhow::Error::msg)?;
                buf.len()
            }
        })
    })?;
    drop(context);
    rt.run_gc();
    Ok(n)
}

pub fn measure(data: &str, ctx_json: &str, source: &str, n: u32) -> anyhow::Result<Micro> {
    let per_call = |t0: Instant| t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let rt = Runtime::new()?;
    rt.set_memory_limit(64 * 1024 * 1024);
    let mut ways = [0.0; 4];
    // Interleaved rounds, so that the machine's drift spreads over all four ways alike.
    let combos =
        [(Way::Text, Way::Text), (Way::Built, Way::Text), (Way::Text, Way::Built), (Way::Built, Way::Built)];
    let rounds = 5;
    let sizes: Vec<usize> =
        combos.iter().map(|&(i, o)| call(&rt, source, data, ctx_json, i, o)).collect::<Result<_, _>>()?;
    anyhow::ensure!(
        sizes.windows(2).all(|w| w[0] == w[1]),
        "the four ways wrote different lengths: {sizes:?}"
    );
    for _ in 0..rounds {
        for (k, &(i, o)) in combos.iter().enumerate() {
            let t0 = Instant::now();
            for _ in 0..n / rounds {
                call(&rt, source, data, ctx_json, i, o)?;
            }
            ways[k] += t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        }
    }
    let t0 = Instant::now();
    for _ in 0..n {
        drop(Context::custom::<Lean>(&rt)?);
    }
    let realm = per_call(t0);
    let t0 = Instant::now();
    for _ in 0..n {
        let context = Context::custom::<Lean>(&rt)?;
        context.with(|ctx| module(&ctx, source).map(|_| ()))?;
    }
    let compile = per_call(t0) - realm;
    Ok(Micro {
        text_text: ways[0],
        built_text: ways[1],
        text_walked: ways[2],
        built_walked: ways[3],
        realm,
        compile,
    })
}
