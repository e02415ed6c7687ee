//! Limits on what one operation may ask, checked before execution: aliases, root fields and an
//! estimated cost. (Depth is enforced by async-graphql at validation.) The cost counts every
//! field once per item of the lists above it; a list is as long as its `first` argument, or
//! `default_list_size` when it has none.

use async_graphql::Value as GqlValue;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use serde_json::{Map, Value};

use super::model::{FacadeSchema, TypeDef};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperationLimits {
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_cost: u64,
    pub default_list_size: u64,
}

impl Default for OperationLimits {
    fn default() -> Self {
        Self { max_aliases: 30, max_root_fields: 20, max_cost: 50_000, default_list_size: 10 }
    }
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    schema: &'a FacadeSchema,
    variables: &'a Map<String, Value>,
    limits: OperationLimits,
    aliases: usize,
}

/// Checks the operation that will run; `Err` names the limit and the figure.
pub fn check(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    schema: &FacadeSchema,
    variables: &Map<String, Value>,
    limits: OperationLimits,
) -> Result<(), String> {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return Ok(()), // async-graphql reports the unknown operation
        },
        (DocumentOperations::Multiple(ops), None) => match ops.values().next() {
            Some(op) if ops.len() == 1 => op,
            _ => return Ok(()),
        },
    };
    let root = match operation.node.ty {
        async_graphql::parser::types::OperationType::Mutation => {
            schema.mutation.as_deref().unwrap_or("Mutation")
        }
        _ => schema.query.as_str(),
    };
    let mut walk = Walk { doc, schema, variables, limits, aliases: 0 };
    let mut roots = 0;
    walk.fields(&operation.node.selection_set, &mut |_| roots += 1);
    if roots > limits.max_root_fields {
        return Err(format!(
            "the operation selects {roots} root fields; the limit is {}",
            limits.max_root_fields
        ));
    }
    let cost = walk.cost(&operation.node.selection_set, root, 0);
    if walk.aliases > limits.max_aliases {
        return Err(format!(
            "the operation uses {} aliases; the limit is {}",
            walk.aliases, limits.max_aliases
        ));
    }
    if cost > limits.max_cost {
        return Err(format!(
            "the operation's estimated cost is {cost}; the limit is {} (each field counts once per item of the \
             lists above it; a list counts its `first` argument, or {} without one)",
            limits.max_cost, limits.default_list_size
        ));
    }
    Ok(())
}

impl Walk<'_> {
    /// Calls `f` for each field of the selection set, fragments expanded.
    fn fields<'s>(
        &self,
        set: &'s Positioned<SelectionSet>,
        f: &mut dyn FnMut(&'s async_graphql::parser::types::Field),
    ) where
        Self: 's,
    {
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => f(&field.node),
                Selection::InlineFragment(inline) => self.fields(&inline.node.selection_set, f),
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.doc.fragments.get(&spread.node.fragment_name.node) {
                        self.fields(&fragment.node.selection_set, f);
                    }
                }
            }
        }
    }

    fn cost(&mut self, set: &Positioned<SelectionSet>, type_name: &str, depth: usize) -> u64 {
        if depth > 64 {
            return 0; // async-graphql's depth limit refuses such a query anyway
        }
        let mut fields = Vec::new();
        self.fields(set, &mut |field| fields.push(field));
        let mut total: u64 = 0;
        for field in fields {
            if field.alias.is_some() {
                self.aliases += 1;
            }
            let def = match self.schema.types.get(type_name) {
                Some(TypeDef::Object { fields, .. }) => {
                    fields.iter().find(|f| f.name == field.name.node.as_str())
                }
                _ => None,
            };
            let Some(def) = def else {
                total = total.saturating_add(1);
                continue;
            };
            let is_list = matches!(def.ty.base, async_graphql::parser::types::BaseType::List(_));
            let size = if is_list { self.list_size(field) } else { 1 };
            let child_type = named(&def.ty);
            let children = if field.selection_set.node.items.is_empty() {
                0
            } else {
                self.cost(&field.selection_set, child_type, depth + 1)
            };
            total = total.saturating_add(size.saturating_mul(1 + children));
        }
        total
    }

    fn list_size(&self, field: &async_graphql::parser::types::Field) -> u64 {
        let Some((_, value)) = field.arguments.iter().find(|(n, _)| n.node == "first") else {
            return self.limits.default_list_size;
        };
        let resolved = value.node.clone().into_const_with(|name| {
            let v = self.variables.get(name.as_str()).cloned().unwrap_or(Value::Null);
            GqlValue::from_json(v).map_err(|_| ())
        });
        match resolved {
            Ok(GqlValue::Number(n)) => n.as_u64().unwrap_or(self.limits.default_list_size),
            _ => self.limits.default_list_size,
        }
    }
}

fn named(ty: &async_graphql::parser::types::Type) -> &str {
    match &ty.base {
        async_graphql::parser::types::BaseType::Named(n) => n.as_str(),
        async_graphql::parser::types::BaseType::List(inner) => named(inner),
    }
}

/// Whether any operation asks `__schema` or `__type` at its root (fragments included).
pub fn uses_introspection(doc: &ExecutableDocument) -> bool {
    fn root(doc: &ExecutableDocument, set: &Positioned<SelectionSet>, depth: usize) -> bool {
        depth < 16
            && set.node.items.iter().any(|s| match &s.node {
                Selection::Field(f) => matches!(f.node.name.node.as_str(), "__schema" | "__type"),
                Selection::InlineFragment(i) => root(doc, &i.node.selection_set, depth + 1),
                Selection::FragmentSpread(sp) => doc
                    .fragments
                    .get(&sp.node.fragment_name.node)
                    .is_some_and(|f| root(doc, &f.node.selection_set, depth + 1)),
            })
    }
    doc.operations.iter().any(|(_, op)| root(doc, &op.node.selection_set, 0))
}
