//! What is read off a parsed document before it is compiled: which operation runs (the one
//! rule every path uses: preparing, compiling, the usage report, the kind of an ad-hoc
//! request) and whether it asks for introspection.

use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};

/// The operation a document runs: with one operation, that one when no name is given (a name
/// given for an unnamed operation is refused); with several, the one the name picks.
pub fn pick<'a>(doc: &'a ExecutableDocument, name: Option<&str>) -> Result<&'a OperationDefinition, String> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => Ok(&op.node),
        (DocumentOperations::Single(_), Some(name)) => {
            Err(format!("operation {name:?} is not in the document (it has one unnamed operation)"))
        }
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name).map(|o| &o.node).ok_or_else(|| format!("operation {name:?} is not in the document"))
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            Ok(&ops.values().next().expect("one").node)
        }
        (DocumentOperations::Multiple(_), None) => {
            Err("the document has several operations: give operationName".to_owned())
        }
    }
}

/// Whether any operation asks `__schema` or `__type`, at any depth (fragments included).
/// The document must have passed [`super::limits::analyze`], which bounds the walk.
pub fn uses_introspection(doc: &ExecutableDocument) -> bool {
    fn any(doc: &ExecutableDocument, set: &Positioned<SelectionSet>, depth: usize) -> bool {
        depth < 128
            && set.node.items.iter().any(|s| match &s.node {
                Selection::Field(f) => {
                    matches!(f.node.name.node.as_str(), "__schema" | "__type")
                        || any(doc, &f.node.selection_set, depth + 1)
                }
                Selection::InlineFragment(i) => any(doc, &i.node.selection_set, depth + 1),
                Selection::FragmentSpread(sp) => doc
                    .fragments
                    .get(&sp.node.fragment_name.node)
                    .is_some_and(|f| any(doc, &f.node.selection_set, depth + 1)),
            })
    }
    doc.operations.iter().any(|(_, op)| any(doc, &op.node.selection_set, 0))
}
