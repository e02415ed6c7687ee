//! What a stored operation uses of the schema, as schema coordinates: `Type`, `Type.field`,
//! `Type.field(arg:)`, `Input.field` and `Enum.VALUE`. Schema diffs (`diff.rs`) name the
//! coordinate each change touches, so the endpoint versions a change affects are exactly
//! those whose usage holds it.

use std::collections::{BTreeSet, HashSet};

use async_graphql::Name;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet, Type};
use async_graphql_value::Value;

use super::model::{FacadeSchema, TypeDef, named_type};

/// How deep a literal argument value is followed (the parser bounds documents; this bounds
/// the walk on its own).
const MAX_VALUE_DEPTH: usize = 64;

/// The coordinates one operation of `doc` uses. Each (fragment, parent type) pair is walked
/// once, so the work is linear in the document, whatever its fragments spread.
pub fn of(doc: &ExecutableDocument, operation_name: Option<&str>, model: &FacadeSchema) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let Ok(op) = super::document::pick(doc, operation_name) else { return used };
    let root = match op.ty {
        async_graphql::parser::types::OperationType::Mutation => model.mutation.clone(),
        _ => Some(model.query.clone()),
    };
    let Some(root) = root else { return used };
    used.insert(root.clone());
    for var in &op.variable_definitions {
        // A variable's value arrives per request: every part of its type may be used.
        input_type(named_type(&var.node.var_type.node), model, &mut used);
    }
    let mut seen_fragments: HashSet<(&Name, &str)> = HashSet::new();
    let mut stack: Vec<(&Positioned<SelectionSet>, String)> = vec![(&op.selection_set, root)];
    while let Some((set, parent)) = stack.pop() {
        for item in &set.node.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if name.starts_with("__") {
                        continue;
                    }
                    let Some(def) = model.field_of(&parent, name) else { continue };
                    used.insert(format!("{parent}.{name}"));
                    // A field asked on an interface is resolved on each implementation.
                    for concrete in model.possible_types(&parent) {
                        if concrete != parent && model.field_of(concrete, name).is_some() {
                            used.insert(format!("{concrete}.{name}"));
                        }
                    }
                    for (arg, value) in &field.arguments {
                        let arg = arg.node.as_str();
                        used.insert(format!("{parent}.{name}({arg}:)"));
                        if let Some(a) = def.args.iter().find(|a| a.name == arg) {
                            literal(&value.node, &a.ty, model, &mut used, 0);
                        }
                    }
                    let ty = named_type(&def.ty).to_owned();
                    used.insert(ty.clone());
                    if !field.selection_set.node.items.is_empty() {
                        stack.push((&field.selection_set, ty));
                    }
                }
                Selection::InlineFragment(inline) => {
                    let on = inline.node.type_condition.as_ref().map(|c| c.node.on.node.to_string());
                    if let Some(on) = &on {
                        used.insert(on.clone());
                    }
                    stack.push((&inline.node.selection_set, on.unwrap_or_else(|| parent.clone())));
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let Some(fragment) = doc.fragments.get(name) else { continue };
                    let on = fragment.node.type_condition.node.on.node.as_str();
                    if seen_fragments.insert((name, on)) {
                        used.insert(on.to_owned());
                        stack.push((&fragment.node.selection_set, on.to_owned()));
                    }
                }
            }
        }
    }
    used
}

/// Every part of an input type a variable of it may carry: the type, an input object's
/// fields (and theirs), an enum's values. Each type is expanded once (input types may refer
/// to themselves).
fn input_type(name: &str, model: &FacadeSchema, used: &mut BTreeSet<String>) {
    let mut expanded = HashSet::new();
    let mut stack = vec![name.to_owned()];
    while let Some(name) = stack.pop() {
        if !expanded.insert(name.clone()) {
            continue;
        }
        used.insert(name.clone());
        match model.types.get(&name) {
            Some(TypeDef::Input { fields, .. }) => {
                for f in fields {
                    used.insert(format!("{name}.{}", f.name));
                    stack.push(named_type(&f.ty).to_owned());
                }
            }
            Some(TypeDef::Enum { values, .. }) => {
                used.extend(values.iter().map(|v| format!("{name}.{v}")));
            }
            _ => {}
        }
    }
}

/// The coordinates a stored document's operation uses, from its text (`facade schema diff`).
pub fn of_text(
    text: &str,
    operation_name: Option<&str>,
    model: &FacadeSchema,
) -> Result<BTreeSet<String>, String> {
    let doc = async_graphql::parser::parse_query(text).map_err(|e| e.to_string())?;
    super::limits::analyze(&doc, &crate::config::Limits::default()).map_err(|e| e.message)?;
    Ok(of(&doc, operation_name, model))
}

/// What a literal argument value uses: enum values by name, input object fields by key.
fn literal(value: &Value, ty: &Type, model: &FacadeSchema, used: &mut BTreeSet<String>, depth: usize) {
    if depth > MAX_VALUE_DEPTH {
        return;
    }
    match (value, &ty.base) {
        (Value::List(items), async_graphql::parser::types::BaseType::List(inner)) => {
            for item in items {
                literal(item, inner, model, used, depth + 1);
            }
        }
        (Value::Variable(_), _) => {}
        (value, _) => {
            let name = named_type(ty);
            used.insert(name.to_owned());
            match (value, model.types.get(name)) {
                (Value::Enum(v), Some(TypeDef::Enum { .. })) => {
                    used.insert(format!("{name}.{v}"));
                }
                (Value::Object(map), Some(TypeDef::Input { fields, .. })) => {
                    for (key, v) in map {
                        used.insert(format!("{name}.{key}"));
                        if let Some(f) = fields.iter().find(|f| f.name == key.as_str()) {
                            literal(v, &f.ty, model, used, depth + 1);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(text: &str) -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let model = crate::graphql::check_dir(&dir).unwrap();
        let doc = async_graphql::parser::parse_query(text).unwrap();
        of(&doc, None, &model)
    }

    #[test]
    fn fields_arguments_fragments_and_variables_are_named() {
        let used = usage(
            "query($input: BookmarkInput!) { title(id: 1) { ...T } video(id: \"s1\") { name } }
             fragment T on Title { name artwork(size: LARGE) { url } }",
        );
        for c in ["Query.title", "Query.title(id:)", "Title", "Title.name", "Title.artwork(size:)"] {
            assert!(used.contains(c), "{c} in {used:?}");
        }
        assert!(used.iter().any(|c| c.ends_with(".LARGE")), "{used:?}");
        // On an interface: the interface's field and each implementation's.
        assert!(used.contains("Video.name") && used.contains("Show.name"), "{used:?}");
        // A variable's input type, every field of it.
        assert!(used.iter().any(|c| c.starts_with("BookmarkInput.")), "{used:?}");
        assert!(!used.contains("Title.rating"), "{used:?}");
    }
}
