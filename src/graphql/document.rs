//! Which operation of a document runs: the one rule every path uses (preparing, compiling,
//! the limits, the usage report, the kind of an ad-hoc request).

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition};

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
