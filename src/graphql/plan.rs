//! The compiler: a validated document and one of its operations become an immutable [`Plan`]
//! of output fields (response key bytes, output type, where the value comes from) and steps
//! (one per `@http` or `@js` field occurrence, with the step whose objects are its parents).
//!
//! Normalisation: fragments are inlined (the facade has only object types, so every type
//! condition that passed validation applies), fields with the same response key are merged
//! (their sub-selections united, first occurrence's position kept), keys stay in selection
//! order, and `@skip`/`@include` are folded. A condition on a variable is folded too: an
//! [`Operation`] holds one plan per assignment of its condition variables, compiled on first
//! use (there are at most [`MAX_CONDITION_PLANS`] of them kept).
//!
//! Recursion here follows the document's selection sets and fragments, which
//! `limits::analyze` (no cycles, bounded spread depth and size) and validation (depth limit)
//! have bounded before a document gets here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::Pos;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    BaseType, Directive, ExecutableDocument, Field as DocField, OperationDefinition, Selection, SelectionSet,
    Type,
};
use async_graphql_value::Value as DocValue;
use serde_json::Value;

use super::model::{Binding, FacadeSchema, FieldDef, HttpBinding, Part, TypeDef};
use crate::backends::json::keep::{Keep, KeepRef};

mod federate;
pub use federate::{SubgraphCall, SubgraphStep};

/// Most plans kept per operation, one per assignment of its `@skip`/`@include` variables.
pub const MAX_CONDITION_PLANS: usize = 16;

/// A leaf's type, checked when the value is written.
#[derive(Debug, Clone)]
pub enum Leaf {
    /// `String` and `ID`: a string; a number or boolean is written as its text.
    Text,
    /// A JSON integer within 32 bits.
    Int,
    /// A finite JSON number.
    Float,
    Bool,
    /// A string naming one of the values.
    Enum(Arc<[String]>),
    /// A custom scalar: any JSON.
    Custom,
}

/// What a field's innermost type is.
#[derive(Debug, Clone)]
pub enum Base {
    Leaf(Leaf),
    Object,
    /// An interface or union: this JSON field of the value names its object type.
    Abstract(Arc<str>),
}

/// A field's output type: nullability of the field and of each list level's items (`[[T!]]!`
/// gives `[false, true, false]`), and the innermost type.
#[derive(Debug, Clone)]
pub struct Out {
    pub nullable: Vec<bool>,
    pub base: Base,
}

impl Out {
    /// How many list levels wrap the base type.
    pub fn list_depth(&self) -> usize {
        self.nullable.len() - 1
    }
}

/// Where an output field's value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `__typename`: the JSON text of the type's name.
    Typename(Box<[u8]>),
    /// The same-named key of the parent object.
    Parent,
    /// The result of this step for the parent object.
    Step(usize),
    /// Read from a subgraph's answer: the object these subgraph steps give, one after
    /// another, starting from the parent object (a root fetch's `data`, an entity), holds the
    /// value at the field's `name` (the key its document asked it under).
    /// `report`: this field writes the errors the last step's subgraph gave for the object
    /// (one field per object and step does).
    Fetched { chain: Box<[usize]>, report: bool },
    /// `__schema` or `__type` at the query root: async-graphql's introspection answers it.
    Introspection,
}

/// A response key as written, `"key":`, escaped once. A short one (most are) is also kept in
/// a 16-byte array, written with one fixed-size copy and then cut to length: no call to
/// `memcpy` per field.
#[derive(Debug, Clone)]
pub struct KeyJson {
    bytes: Box<[u8]>,
    padded: [u8; 16],
}

impl KeyJson {
    fn new(key: &str) -> Self {
        let bytes: Box<[u8]> = serde_json::to_vec(key).expect("a string").into_iter().chain(*b":").collect();
        let mut padded = [0u8; 16];
        if let Some(head) = padded.get_mut(..bytes.len()) {
            head.copy_from_slice(&bytes);
        }
        Self { bytes, padded }
    }

    pub fn write(&self, buf: &mut Vec<u8>) {
        if self.bytes.len() <= self.padded.len() {
            let end = buf.len() + self.bytes.len();
            buf.extend_from_slice(&self.padded);
            buf.truncate(end);
        } else {
            buf.extend_from_slice(&self.bytes);
        }
    }
}

/// One field of the response, as written.
#[derive(Debug, Clone)]
pub struct Field {
    /// The response key (alias or name).
    pub key: Arc<str>,
    /// `"key":`, escaped once.
    pub key_json: KeyJson,
    /// The schema field's name (the parent JSON key for [`Source::Parent`]).
    pub name: Arc<str>,
    /// `Type.field`, for error messages.
    pub path_name: Arc<str>,
    pub pos: Pos,
    pub source: Source,
    pub out: Out,
    /// The selected fields of an object type, in selection order.
    pub children: Vec<Field>,
    /// For an interface or union: the selected fields per possible object type.
    pub by_type: Vec<(Arc<str>, Vec<Field>)>,
    /// How many items the operation's cost counts this field as (`limits::check`).
    pub count: Count,
    /// Under `@skip`/`@include` on a variable everywhere it is selected: present in this plan,
    /// absent in another's (its TypeScript type makes it optional).
    pub conditional: bool,
}

/// How many items a field counts as in the operation's estimated cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Count {
    /// Not a list.
    One,
    /// A list whose limit argument is this literal, or whose argument's declared default it is.
    Fixed(u64),
    /// A list whose limit argument is null, not a count, or not given and without a default:
    /// `default_list_size`.
    Default,
    /// A list whose limit argument is this variable: its value, or `default_list_size` when
    /// the request leaves it null or unset (as the fetch does).
    Variable(Arc<str>),
}

impl Count {
    /// The count of a field of this definition as the document writes it.
    fn of(def: &FieldDef, field: &DocField) -> Self {
        if !matches!(def.ty.base, BaseType::List(_)) {
            return Self::One;
        }
        let arg = limit_argument(def);
        let count = |n: Option<u64>| n.map_or(Self::Default, Self::Fixed);
        match field.arguments.iter().find(|(n, _)| n.node == arg).map(|(_, v)| &v.node) {
            Some(DocValue::Variable(name)) => Self::Variable(Arc::from(name.as_str())),
            Some(DocValue::Number(n)) => count(n.as_u64()),
            Some(_) => Self::Default,
            None => match def.args.iter().find(|a| a.name == arg).and_then(|a| a.default.as_ref()) {
                Some(async_graphql::Value::Number(n)) => count(n.as_u64()),
                _ => Self::Default,
            },
        }
    }
}

/// The argument that caps a list field's length: the one its `@http(limit:)` names, else
/// `first`.
fn limit_argument(def: &FieldDef) -> &str {
    match &def.binding {
        Binding::Http(http) => http.limit_arg.as_deref().unwrap_or("first"),
        _ => "first",
    }
}

/// Which parents a step runs for, under an interface or union: the object reached after
/// `hop` hops of the step's `via` must name `type_name` in its `field`.
#[derive(Debug, Clone)]
pub struct TypeCondition {
    pub hop: usize,
    pub field: Arc<str>,
    pub type_name: Arc<str>,
}

/// How a step computes its field.
#[derive(Debug, Clone)]
pub enum StepKind {
    Http(Arc<HttpBinding>),
    Js(Arc<str>),
    /// A fetch from a subgraph: a root fetch or an `_entities` fetch, one part of a
    /// [`SubgraphCall`].
    Subgraph(SubgraphStep),
}

/// One argument as written in the document (variables resolved per request).
#[derive(Debug, Clone)]
pub enum ArgValue {
    /// No variable inside: its JSON, computed once.
    Const(Value),
    /// Holds variables.
    Dynamic(DocValue),
}

/// One field occurrence that fetches (`@http`) or computes (`@js`) its value, per parent.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: StepKind,
    /// Arguments given in the document, in document order, then the schema's defaults of the
    /// others, in declaration order (as async-graphql hands them to a resolver).
    pub args: Vec<(String, ArgValue)>,
    /// The step whose results hold this step's parents; `None` for the root object.
    pub producer: Option<usize>,
    /// Parent-bound object fields between the producer's value and this step's parents,
    /// each with its list depth.
    pub via: Vec<(Arc<str>, usize)>,
    /// Type checks on the way to the parents (empty without interfaces or unions).
    pub guards: Vec<TypeCondition>,
    pub path_name: Arc<str>,
    pub out: Out,
    pub fallback: Option<Arc<crate::backends::json::tape::Tape>>,
    /// Steps whose parents this step's results hold.
    pub children: Vec<usize>,
    /// A mutation's root field: its call changes something, so it is made exactly once per
    /// occurrence (never shared with an identical call, never retried).
    pub write: bool,
    /// The fields of the backend's answer that anything reads (see [`keep_of`]); shared by
    /// every step of the same binding in the plan, so their fetches still meet.
    pub keep: Option<KeepRef>,
}

/// A compiled operation for one assignment of its condition variables.
#[derive(Debug)]
pub struct Plan {
    pub root: Vec<Field>,
    pub steps: Vec<Step>,
    /// Steps whose parent is the root object.
    pub roots: Vec<usize>,
    /// A mutation: root steps run one after another, each with everything below it.
    pub serial: bool,
    /// Whether the root asks `__schema` or `__type`.
    pub introspection: bool,
    /// Variables used where a value is required (`@skip(if:)`, a non-null argument), with
    /// the place: such a variable may not be null in a request.
    pub required: Vec<(String, String)>,
    /// The subgraph calls: each serves the subgraph steps of one wave to one subgraph.
    pub calls: Vec<SubgraphCall>,
}

/// A validated operation, ready to run: its variables and its plans.
pub struct Operation {
    /// The document's text, when it came as text (the ad-hoc cache checks it on a hit).
    pub text: Option<String>,
    pub document: Arc<ExecutableDocument>,
    pub operation_name: Option<String>,
    /// Whether the document asks `__schema` or `__type` anywhere (a request may not be
    /// allowed to).
    pub uses_introspection: bool,
    schema: Arc<FacadeSchema>,
    root_type: String,
    serial: bool,
    /// The Boolean variables that `@skip`/`@include` read, in first-use order.
    condition_vars: Vec<String>,
    plans: Mutex<HashMap<u64, Arc<Plan>>>,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation").field("operation_name", &self.operation_name).finish_non_exhaustive()
    }
}

impl Operation {
    /// Prepares the operation `operation_name` picks (the document passed validation).
    pub fn new(
        document: Arc<ExecutableDocument>,
        operation_name: Option<String>,
        schema: Arc<FacadeSchema>,
    ) -> Result<Self, String> {
        let op = super::document::pick(&document, operation_name.as_deref())?;
        let serial = op.ty == async_graphql::parser::types::OperationType::Mutation;
        let root_type = match op.ty {
            async_graphql::parser::types::OperationType::Query => schema.query.clone(),
            async_graphql::parser::types::OperationType::Mutation => {
                schema.mutation.clone().ok_or("the schema has no mutations")?
            }
            async_graphql::parser::types::OperationType::Subscription => {
                return Err("subscriptions are not supported".to_owned());
            }
        };
        let mut condition_vars = Vec::new();
        condition_variables(&document, &op.selection_set, &mut condition_vars, 0);
        Ok(Self {
            text: None,
            uses_introspection: super::document::uses_introspection(&document),
            document: document.clone(),
            operation_name,
            schema,
            root_type,
            serial,
            condition_vars,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The operation's definition.
    pub fn definition(&self) -> &OperationDefinition {
        super::document::pick(&self.document, self.operation_name.as_deref()).expect("checked in new")
    }

    /// Most plans this operation keeps (one per assignment of its condition variables).
    pub fn max_plans(&self) -> usize {
        1usize.checked_shl(self.condition_vars.len() as u32).unwrap_or(usize::MAX).min(MAX_CONDITION_PLANS)
    }

    /// The plan with every condition variable true (all conditioned fields in): compiled
    /// before any request runs, so that fields which cannot be merged are refused then, and
    /// what the limits judge when an endpoint is published.
    pub fn widest_plan(&self) -> Result<Arc<Plan>, Vec<String>> {
        let all: serde_json::Map<String, Value> =
            self.condition_vars.iter().map(|v| (v.clone(), Value::Bool(true))).collect();
        self.plan(&all)
    }

    /// The plan for these (coerced) variables; `Err` lists fields that cannot be merged and
    /// literal arguments that do not fit.
    pub fn plan(&self, variables: &serde_json::Map<String, Value>) -> Result<Arc<Plan>, Vec<String>> {
        let mut bits = 0u64;
        for (i, name) in self.condition_vars.iter().enumerate().take(64) {
            if variables.get(name).and_then(Value::as_bool).unwrap_or(false) {
                bits |= 1 << i;
            }
        }
        let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(plan) = plans.get(&bits) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(self.compile(variables)?);
        if plans.len() < MAX_CONDITION_PLANS && self.condition_vars.len() <= 64 {
            plans.insert(bits, plan.clone());
        }
        Ok(plan)
    }

    /// The plan with every field a variable's `@skip`/`@include` may keep kept (as if each
    /// such condition held): the shape of every answer at once, for typing it
    /// (`typescript.rs`, which marks those fields optional). Not for running; not cached.
    pub fn fullest_plan(&self) -> Result<Plan, Vec<String>> {
        self.compile_with(&serde_json::Map::new(), true)
    }

    fn compile(&self, variables: &serde_json::Map<String, Value>) -> Result<Plan, Vec<String>> {
        self.compile_with(variables, false)
    }

    fn compile_with(
        &self,
        variables: &serde_json::Map<String, Value>,
        everything: bool,
    ) -> Result<Plan, Vec<String>> {
        let mut c = Compiler {
            doc: &self.document,
            schema: &self.schema,
            everything,
            variables,
            steps: Vec::new(),
            required: std::cell::RefCell::new(Vec::new()),
            conflicts: std::cell::RefCell::new(Vec::new()),
            serial: self.serial,
            subdocs: HashMap::new(),
        };
        let op = self.definition();
        let mut root = Vec::new();
        c.fields(&self.root_type, &[&op.selection_set], None, &[], &[], None, &mut root);
        let roots =
            c.steps.iter().enumerate().filter(|(_, s)| s.producer.is_none()).map(|(i, _)| i).collect();
        let conflicts = c.conflicts.into_inner();
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        let subdocs = std::mem::take(&mut c.subdocs);
        let mut steps = c.steps;
        let calls = federate::calls(&mut steps, subdocs, op, self.serial);
        share_keeps(&root, &mut steps);
        let introspection = root.iter().any(|f| matches!(f.source, Source::Introspection));
        Ok(Plan {
            root,
            steps,
            roots,
            serial: self.serial,
            introspection,
            required: c.required.into_inner(),
            calls,
        })
    }
}

/// Whether `@skip`/`@include` among these directives reads a variable.
fn on_variable(directives: &[Positioned<Directive>]) -> bool {
    directives.iter().any(|d| {
        matches!(d.node.name.node.as_str(), "skip" | "include")
            && matches!(d.node.get_argument("if").map(|v| &v.node), Some(DocValue::Variable(_)))
    })
}

/// The variables `@skip(if: $v)` / `@include(if: $v)` read, anywhere under `set`.
fn condition_variables(
    doc: &ExecutableDocument,
    set: &Positioned<SelectionSet>,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 256 {
        return;
    }
    for item in &set.node.items {
        let (directives, inner) = match &item.node {
            Selection::Field(f) => (&f.node.directives, Some(&f.node.selection_set)),
            Selection::InlineFragment(i) => (&i.node.directives, Some(&i.node.selection_set)),
            Selection::FragmentSpread(s) => (
                &s.node.directives,
                doc.fragments.get(&s.node.fragment_name.node).map(|f| &f.node.selection_set),
            ),
        };
        for d in directives {
            if matches!(d.node.name.node.as_str(), "skip" | "include")
                && let Some(DocValue::Variable(v)) = d.node.get_argument("if").map(|v| &v.node)
                && !out.iter().any(|o| o == v.as_str())
            {
                out.push(v.to_string());
            }
        }
        if let Some(inner) = inner {
            condition_variables(doc, inner, out, depth + 1);
        }
    }
}

/// The output type of a schema type reference.
pub fn out_type(schema: &FacadeSchema, ty: &Type) -> Out {
    let mut nullable = vec![ty.nullable];
    let mut t = ty;
    while let BaseType::List(inner) = &t.base {
        nullable.push(inner.nullable);
        t = inner;
    }
    let BaseType::Named(name) = &t.base else { unreachable!("the loop ends on a name") };
    let base = match name.as_str() {
        "String" | "ID" => Base::Leaf(Leaf::Text),
        "Int" => Base::Leaf(Leaf::Int),
        "Float" => Base::Leaf(Leaf::Float),
        "Boolean" => Base::Leaf(Leaf::Bool),
        other => match schema.types.get(other) {
            Some(TypeDef::Enum { values, .. }) => Base::Leaf(Leaf::Enum(values.clone().into())),
            Some(TypeDef::Object { .. }) => Base::Object,
            Some(TypeDef::Interface { discriminator, .. } | TypeDef::Union { discriminator, .. }) => {
                Base::Abstract(discriminator.field.clone())
            }
            _ => Base::Leaf(Leaf::Custom),
        },
    };
    Out { nullable, base }
}

use super::model::named_type as named;

/// A response key's fields merged across the selection sets that select it.
struct Merged<'d> {
    key: &'d str,
    first: &'d Positioned<DocField>,
    sets: Vec<&'d Positioned<SelectionSet>>,
    /// Every occurrence sits under `@skip`/`@include` on a variable: another assignment of the
    /// variables leaves the field out (see [`Field::conditional`]).
    conditional: bool,
}

struct Compiler<'a> {
    doc: &'a ExecutableDocument,
    schema: &'a FacadeSchema,
    variables: &'a serde_json::Map<String, Value>,
    steps: Vec<Step>,
    /// See [`Plan::required`] (filled while folding conditions, which borrows `self`).
    required: std::cell::RefCell<Vec<(String, String)>>,
    /// What makes the operation invalid: the same response key with a different field or
    /// arguments (the spec's "field selection merging"), a literal argument of the wrong type.
    conflicts: std::cell::RefCell<Vec<String>>,
    /// Compiling a mutation: its root fields write.
    serial: bool,
    /// Every condition on a variable holds (`Operation::fullest_plan`).
    everything: bool,
    /// The document of each subgraph step, by step (`federate.rs`).
    subdocs: HashMap<usize, federate::SubDoc>,
}

impl<'a> Compiler<'a> {
    fn require(&self, variable: &str, place: String) {
        let mut required = self.required.borrow_mut();
        if !required.iter().any(|(v, p)| v == variable && *p == place) {
            required.push((variable.to_owned(), place));
        }
    }

    /// Whether `@skip`/`@include` keep the selection (variables read from the request).
    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|d| {
            let want = match d.node.name.node.as_str() {
                "skip" => false,
                "include" => true,
                _ => return true,
            };
            let value = match d.node.get_argument("if").map(|v| &v.node) {
                Some(DocValue::Boolean(b)) => *b,
                Some(DocValue::Variable(name)) => {
                    self.require(name, format!("@{}(if:)", d.node.name.node));
                    if self.everything {
                        return true;
                    }
                    self.variables.get(name.as_str()).and_then(Value::as_bool).unwrap_or(false)
                }
                _ => false,
            };
            value == want
        })
    }

    /// The fields `sets` select, fragments inlined and same keys merged, in selection order.
    fn merge(&self, sets: &[&'a Positioned<SelectionSet>], concrete: &str) -> Vec<Merged<'a>> {
        let applies = |condition: Option<&Positioned<async_graphql::parser::types::TypeCondition>>| {
            condition.is_none_or(|c| self.schema.applies(c.node.on.node.as_str(), concrete))
        };
        let mut out: Vec<Merged<'a>> = Vec::new();
        // Each level: its selections, and whether a variable's condition holds it.
        let mut stack: Vec<(std::slice::Iter<'a, Positioned<Selection>>, bool)> =
            sets.iter().rev().map(|s| (s.node.items.iter(), false)).collect();
        while let Some((top, under)) = stack.last_mut() {
            let under = *under;
            let Some(item) = top.next() else {
                stack.pop();
                continue;
            };
            match &item.node {
                Selection::Field(f) => {
                    if !self.included(&f.node.directives) {
                        continue;
                    }
                    let conditional = under || on_variable(&f.node.directives);
                    let key = f.node.response_key().node.as_str();
                    match out.iter_mut().find(|m| m.key == key) {
                        Some(m) => {
                            m.conditional &= conditional;
                            if m.first.node.name.node != f.node.name.node
                                || m.first.node.arguments != f.node.arguments
                            {
                                let (a, b) = (m.first.pos, f.pos);
                                self.conflicts.borrow_mut().push(format!(
                                    "{}:{}: fields {key:?} at {}:{} and {}:{} select different fields or \
                                     arguments under one response key; use an alias",
                                    b.line, b.column, a.line, a.column, b.line, b.column
                                ));
                            }
                            m.sets.push(&f.node.selection_set)
                        }
                        None => {
                            out.push(Merged { key, first: f, sets: vec![&f.node.selection_set], conditional })
                        }
                    }
                }
                Selection::InlineFragment(i) => {
                    if self.included(&i.node.directives) && applies(i.node.type_condition.as_ref()) {
                        let conditional = under || on_variable(&i.node.directives);
                        stack.push((i.node.selection_set.node.items.iter(), conditional));
                    }
                }
                Selection::FragmentSpread(s) => {
                    if self.included(&s.node.directives)
                        && let Some(fragment) = self.doc.fragments.get(&s.node.fragment_name.node)
                        && applies(Some(&fragment.node.type_condition))
                    {
                        let conditional = under || on_variable(&s.node.directives);
                        stack.push((fragment.node.selection_set.node.items.iter(), conditional));
                    }
                }
            }
        }
        out
    }

    /// Compiles the fields selected on `type_name` into `out`. `producer` and `via` say where
    /// the objects of this type come from at run time; `sub`, the subgraph document they are
    /// fetched with (`federate.rs`).
    #[allow(clippy::too_many_arguments)]
    fn fields(
        &mut self,
        type_name: &str,
        sets: &[&'a Positioned<SelectionSet>],
        producer: Option<(usize, usize)>,
        via: &[(Arc<str>, usize)],
        guards: &[TypeCondition],
        sub: Option<&federate::At>,
        out: &mut Vec<Field>,
    ) {
        let Some(TypeDef::Object { fields: defs, .. }) = self.schema.types.get(type_name) else { return };
        if sub.is_some() || defs.iter().any(|d| matches!(d.binding, Binding::Subgraph(_))) {
            return self.federated(type_name, sets, producer, via, sub, out);
        }
        for merged in self.merge(sets, type_name) {
            self.own_field(type_name, defs, &merged, producer, via, guards, None, out);
        }
    }

    /// Compiles one selected field bound as a facade field (read from its parent, `@http`,
    /// `@js`, `__typename`); under a subgraph's object (`sub`), what an `@http` route reads
    /// of its parent is added to that subgraph's document.
    #[allow(clippy::too_many_arguments)]
    fn own_field(
        &mut self,
        type_name: &str,
        defs: &[FieldDef],
        merged: &Merged<'a>,
        producer: Option<(usize, usize)>,
        via: &[(Arc<str>, usize)],
        guards: &[TypeCondition],
        sub: Option<&federate::At>,
        out: &mut Vec<Field>,
    ) {
        let doc_field = &merged.first.node;
        let name = doc_field.name.node.as_str();
        let key: Arc<str> = Arc::from(merged.key);
        let key_json = KeyJson::new(merged.key);
        if name == "__typename" {
            let text = serde_json::to_vec(type_name).expect("a string").into_boxed_slice();
            out.push(Field {
                key,
                key_json,
                name: Arc::from(name),
                path_name: Arc::from(format!("{type_name}.__typename")),
                pos: merged.first.pos,
                source: Source::Typename(text),
                out: Out { nullable: vec![false], base: Base::Leaf(Leaf::Text) },
                children: Vec::new(),
                by_type: Vec::new(),
                count: Count::One,
                conditional: merged.conditional,
            });
            return;
        }
        if matches!(name, "__schema" | "__type") && producer.is_none() && via.is_empty() {
            out.push(Field {
                key,
                key_json,
                name: Arc::from(name),
                path_name: Arc::from(format!("{type_name}.{name}")),
                pos: merged.first.pos,
                source: Source::Introspection,
                out: Out { nullable: vec![true], base: Base::Leaf(Leaf::Custom) },
                children: Vec::new(),
                by_type: Vec::new(),
                count: Count::One,
                conditional: merged.conditional,
            });
            return;
        }
        // Validation let only known fields through.
        let Some(def) = defs.iter().find(|d| *d.name == *name) else { return };
        let out_ty = out_type(self.schema, &def.ty);
        let path_name: Arc<str> = Arc::from(format!("{type_name}.{name}"));
        self.check_literals(doc_field, def, &path_name);
        let mut field = Field {
            key,
            key_json,
            // The schema's shared text: the kept names of the answers are the same.
            name: def.name.clone(),
            path_name: path_name.clone(),
            pos: merged.first.pos,
            source: Source::Parent,
            out: out_ty.clone(),
            children: Vec::new(),
            by_type: Vec::new(),
            count: Count::of(def, doc_field),
            conditional: merged.conditional,
        };
        let child_type = named(&def.ty).to_owned();
        match &def.binding {
            Binding::Parent => {
                let mut via = via.to_vec();
                via.push((field.name.clone(), out_ty.list_depth()));
                self.children(&mut field, &child_type, &merged.sets, producer, &via, guards, None);
            }
            binding => {
                let kind = match binding {
                    Binding::Http(http) => StepKind::Http(http.clone()),
                    Binding::Js { function } => StepKind::Js(function.clone()),
                    // Planned by `federate.rs`, which never hands such a field here.
                    Binding::Parent | Binding::Subgraph(_) => return,
                };
                if let (StepKind::Http(http), Some(sub)) = (&kind, sub) {
                    self.parent_reads(http, sub);
                }
                for (arg, value) in &doc_field.arguments {
                    if let DocValue::Variable(v) = &value.node
                        && def.args.iter().any(|a| a.name == arg.node.as_str() && !a.ty.nullable)
                    {
                        self.require(v, format!("argument {} of {path_name}", arg.node));
                    }
                }
                let id = self.steps.len();
                self.steps.push(Step {
                    kind,
                    args: arguments(doc_field, def),
                    producer: producer.map(|(p, _)| p),
                    via: via.to_vec(),
                    guards: guards.to_vec(),
                    path_name,
                    out: out_ty.clone(),
                    fallback: def
                        .fallback
                        .clone()
                        .map(|v| Arc::new(crate::backends::json::tape::Tape::from_json(&v))),
                    children: Vec::new(),
                    write: self.serial && producer.is_none() && via.is_empty(),
                    keep: None,
                });
                if let Some((p, _)) = producer {
                    self.steps[p].children.push(id);
                }
                field.source = Source::Step(id);
                let me = Some((id, out_ty.list_depth()));
                self.children(&mut field, &child_type, &merged.sets, me, &[], &[], None);
            }
        }
        out.push(field);
    }

    /// Refuses a literal argument value that does not fit its type (async-graphql's check of
    /// argument values is left out of validation, which runs without the variables).
    fn check_literals(&self, field: &DocField, def: &FieldDef, path_name: &str) {
        for (name, value) in &field.arguments {
            let (Some(arg), Some(literal)) =
                (def.args.iter().find(|a| a.name == name.node.as_str()), value.node.clone().into_const())
            else {
                continue;
            };
            let json = literal.into_json().unwrap_or(Value::Null);
            if let Err(why) = super::input::check_input(self.schema, &arg.ty, &json, 0) {
                let at = value.pos;
                self.conflicts.borrow_mut().push(format!(
                    "{}:{}: argument {} of {path_name} ({}): {why}",
                    at.line, at.column, name.node, arg.ty
                ));
            }
        }
    }

    /// Compiles what `field` selects below it: an object type's fields, or an interface's or
    /// union's fields per possible type, each with the guard that picks its parents.
    #[allow(clippy::too_many_arguments)]
    fn children(
        &mut self,
        field: &mut Field,
        child_type: &str,
        sets: &[&'a Positioned<SelectionSet>],
        producer: Option<(usize, usize)>,
        via: &[(Arc<str>, usize)],
        guards: &[TypeCondition],
        sub: Option<&federate::At>,
    ) {
        match &field.out.base {
            Base::Leaf(_) => {}
            Base::Object => self.fields(child_type, sets, producer, via, guards, sub, &mut field.children),
            Base::Abstract(discriminator) => {
                let discriminator = discriminator.clone();
                let possible: Vec<Arc<str>> =
                    self.schema.possible_types(child_type).into_iter().map(Arc::from).collect();
                for type_name in possible {
                    let mut guards = guards.to_vec();
                    guards.push(TypeCondition {
                        hop: via.len(),
                        field: discriminator.clone(),
                        type_name: type_name.clone(),
                    });
                    let mut children = Vec::new();
                    self.fields(&type_name, sets, producer, via, &guards, sub, &mut children);
                    field.by_type.push((type_name, children));
                }
            }
        }
    }
}

/// A field's arguments as a resolver gets them: given ones in document order, then the
/// schema's defaults for the others.
fn arguments(field: &DocField, def: &FieldDef) -> Vec<(String, ArgValue)> {
    let mut args: Vec<(String, ArgValue)> = field
        .arguments
        .iter()
        .map(|(name, value)| {
            let value = match value.node.clone().into_const() {
                Some(c) => ArgValue::Const(c.into_json().unwrap_or(Value::Null)),
                None => ArgValue::Dynamic(value.node.clone()),
            };
            (name.node.to_string(), value)
        })
        .collect();
    for arg in &def.args {
        if let Some(default) = &arg.default
            && !args.iter().any(|(n, _)| *n == arg.name)
        {
            args.push((
                arg.name.clone(),
                ArgValue::Const(default.clone().into_json().unwrap_or(Value::Null)),
            ));
        }
    }
    args
}

/// Sets each `@http` step's [`Keep`]: what its field's value needs, united over every step of
/// the same binding (so two steps asking one route still share its fetch).
fn share_keeps(root: &[Field], steps: &mut [Step]) {
    let mut own: Vec<Option<Keep>> = steps.iter().map(|_| None).collect();
    let mut stack: Vec<&Field> = root.iter().collect();
    while let Some(field) = stack.pop() {
        if let Source::Step(id) = field.source {
            own[id] = keep_of(field, &steps[id], steps);
        }
        stack.extend(field.children.iter());
        stack.extend(field.by_type.iter().flat_map(|(_, c)| c.iter()));
    }
    let mut by_binding: Vec<(*const HttpBinding, Option<Keep>)> = Vec::new();
    for (id, step) in steps.iter().enumerate() {
        let StepKind::Http(http) = &step.kind else { continue };
        let keep = own[id].take();
        match by_binding.iter_mut().find(|(p, _)| *p == Arc::as_ptr(http)) {
            Some((_, shared)) => *shared = shared.take().zip(keep).map(|(a, b)| a.union(b)),
            None => by_binding.push((Arc::as_ptr(http), keep)),
        }
    }
    let shared: Vec<(*const HttpBinding, Option<KeepRef>)> =
        by_binding.into_iter().map(|(p, k)| (p, k.map(|k| KeepRef(Arc::new(k))))).collect();
    for step in steps.iter_mut() {
        if let StepKind::Http(http) = &step.kind {
            step.keep = shared.iter().find(|(p, _)| *p == Arc::as_ptr(http)).and_then(|(_, k)| k.clone());
        }
    }
}

/// What of an `@http` step's answer anything reads: the selection (and, below it, keys and
/// route values of the next steps, discriminators) under `select`, and the match field. `None`
/// where everything is kept: an answer keyed by key (no match field).
fn keep_of(field: &Field, step: &Step, steps: &[Step]) -> Option<Keep> {
    let StepKind::Http(http) = &step.kind else { return None };
    // `select` reads one key of the answer (of each matched item, in a batch).
    let mut keep = value_keep(field, steps);
    if let Some(select) = &http.select {
        keep = Keep::field(select.clone(), keep);
    }
    if let Some(batch) = &http.batch {
        let matched = batch.match_field.clone()?;
        keep = keep.union(Keep::shared([matched]));
    }
    Some(keep)
}

/// What a field's value needs kept, by its type. Recursion follows the plan.
fn value_keep(field: &Field, steps: &[Step]) -> Keep {
    match &field.out.base {
        Base::Leaf(_) => Keep::All,
        Base::Object => object_keep(&field.children, steps),
        Base::Abstract(discriminator) => {
            field.by_type.iter().fold(Keep::shared([discriminator.clone()]), |k, (_, children)| {
                k.union(object_keep(children, steps))
            })
        }
    }
}

/// What an object needs kept for these selected fields: parent-bound fields (each as its
/// value needs), and for a field of the next step the keys and route values it reads from
/// this object — everything, if that is a `@js` function (it sees the whole object).
fn object_keep(children: &[Field], steps: &[Step]) -> Keep {
    let mut keep = Keep::nothing();
    for child in children {
        let more = match &child.source {
            Source::Typename(_) | Source::Introspection | Source::Fetched { .. } => continue,
            Source::Parent => Keep::field(child.name.clone(), value_keep(child, steps)),
            Source::Step(id) => match &steps[*id].kind {
                StepKind::Js(_) => return Keep::All,
                StepKind::Subgraph(_) => continue,
                StepKind::Http(http) => {
                    let parents = http.template.parts.iter().filter_map(|p| match p {
                        Part::Parent(name) => Some(name.clone()),
                        _ => None,
                    });
                    Keep::shared(parents.chain(http.batch.as_ref().map(|b| b.keys_from.clone())))
                }
            },
        };
        keep = keep.union(more);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Arc<Plan> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let schema = Arc::new(crate::graphql::check_dir(&dir).unwrap());
        let doc = Arc::new(async_graphql::parser::parse_query(text).unwrap());
        Operation::new(doc, None, schema).unwrap().plan(&serde_json::Map::new()).unwrap()
    }

    fn keep(plan: &Plan, step: usize) -> Option<Keep> {
        plan.steps[step].keep.as_ref().map(|k| Keep::clone(&k.0))
    }

    #[test]
    fn keys_are_written_whole_at_every_length() {
        for key in ["a", "fourteen_chars", "fifteen_chars__", "sixteen_chars___", "with \"quote\" é", ""] {
            let mut buf = b"{".to_vec();
            KeyJson::new(key).write(&mut buf);
            assert_eq!(buf, [b"{".as_slice(), &serde_json::to_vec(key).unwrap(), b":"].concat(), "{key}");
        }
    }

    #[test]
    fn each_answer_keeps_only_what_the_plan_reads() {
        let p = plan("{ profile(id: 1) { name rows { name titles { name artwork { url } } } } }");
        // The next route reads $parent.id; the rows' titles are keyed by titleIds; items
        // are matched by their match field.
        assert_eq!(keep(&p, 0), Some(Keep::fields(["id", "name"])));
        assert_eq!(keep(&p, 1), Some(Keep::fields(["name", "titleIds"])));
        assert_eq!(keep(&p, 2), Some(Keep::fields(["id", "name"])));
        assert_eq!(keep(&p, 3), Some(Keep::fields(["titleId", "url"])));
        // A `@js` field sees its whole parent.
        let p = plan("{ title(id: 1) { name runtime } }");
        assert_eq!(keep(&p, 0), Some(Keep::All));
        // Under an interface: the discriminator and every possible type's fields.
        let p = plan("{ video(id: 1) { name ... on Show { seasons { number } } ... on Title { year } } }");
        assert_eq!(keep(&p, 0), Some(Keep::fields(["kind", "name", "seasonIds", "year"])));
    }

    #[test]
    fn steps_of_one_binding_share_one_keep() {
        let p = plan("{ a: title(id: 1) { name } b: title(id: 1) { year } }");
        let (a, b) = (p.steps[0].keep.clone().unwrap(), p.steps[1].keep.clone().unwrap());
        assert_eq!(a, b, "the same KeepRef, so the batcher sees one request");
        assert_eq!(*a.0, Keep::fields(["name", "year"]));
    }
}
