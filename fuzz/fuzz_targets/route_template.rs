//! Route templates: the first line is a template, the next lines the values of its
//! arguments. Whatever they hold, a route that renders stays under the backend's base and
//! keeps the template's fixed segments.
#![no_main]

use facade::graphql::model::Part;
use facade::graphql::route::{confined, render};
use facade::graphql::sdl::parse_template;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let Some(template) = lines.next() else { return };
    let Ok(template) = parse_template("batch", template) else { return };
    let values: Vec<&str> = lines.collect();
    let mut args = Map::new();
    let mut parent = Map::new();
    for (i, part) in template.parts.iter().enumerate() {
        let value = Value::String(values.get(i % values.len().max(1)).copied().unwrap_or("").to_owned());
        match part {
            Part::Arg(a) => {
                args.insert(a.clone(), value);
            }
            Part::Parent(p) => {
                parent.insert(p.to_string(), value);
            }
            _ => {}
        }
    }
    let parent = facade::backends::json::tape::Tape::from_json(&Value::Object(parent));
    if let Ok(rendered) = render(&template.parts, &args, parent.root()) {
        if let Err(e) = confined("http://backend.internal:7101/api", &template.parts, &rendered) {
            panic!("{e}");
        }
    }
});
