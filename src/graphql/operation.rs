//! Preparing an operation: a request's text parsed and its structure bounded
//! ([`limits::analyze`]), its operation picked by the one rule ([`super::document::pick`]), validated against
//! the schema (`validate.rs`) and compiled into a plan (`plan.rs`); ad-hoc texts compiled once
//! into a cache bounded by weight, stored documents once at publish or load ([`Prepared`]).

use std::sync::Arc;

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use serde_json::{Map, Value};

use super::answer::Answer;
use super::input::VarKind;
use super::model::FacadeSchema;
use super::validate::Validator;
use super::{limits, plan, usage};
use crate::config::Limits;

/// A GraphQL request as it arrives over HTTP.
#[derive(Debug, Clone)]
pub struct GraphqlRequest {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    /// Whether introspection fields (`__schema`, `__type`) may be asked.
    pub introspection: bool,
    /// Where to record the backend calls, when someone asked to see them.
    pub fetch_log: Option<crate::backends::FetchLog>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// A request whose document parsed and passed [`limits::analyze`].
pub struct Parsed {
    request: GraphqlRequest,
    document: Arc<ExecutableDocument>,
    /// The compiled operation, when this text was compiled before.
    operation: Option<Arc<plan::Operation>>,
    /// Selections with every fragment expanded (from [`limits::analyze`]): what compiling it
    /// would weigh in the cache.
    selections: u64,
}

impl Parsed {
    /// The variables and fetch log the request came with.
    pub fn into_inputs(self) -> (Map<String, Value>, Option<crate::backends::FetchLog>) {
        (self.request.variables.unwrap_or_default(), self.request.fetch_log)
    }

    /// The kind of the operation that will run, when the document makes it unambiguous.
    pub fn operation_kind(&self) -> Option<OperationKind> {
        let ty = super::document::pick(&self.document, self.request.operation_name.as_deref()).ok()?.ty;
        Some(match ty {
            OperationType::Query => OperationKind::Query,
            OperationType::Mutation => OperationKind::Mutation,
            OperationType::Subscription => OperationKind::Subscription,
        })
    }
}

/// A stored document, parsed and validated once (at publish or load), run many times.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub text: String,
    pub operation_name: Option<String>,
    pub kind: OperationKind,
    document: Arc<ExecutableDocument>,
    variables: Vec<(String, VarKind)>,
    operation: Arc<plan::Operation>,
}

impl Prepared {
    /// The compiled operation.
    pub fn operation(&self) -> &plan::Operation {
        &self.operation
    }

    /// Whether the document asks `__schema` or `__type` anywhere.
    pub fn uses_introspection(&self) -> bool {
        super::document::uses_introspection(&self.document)
    }

    /// The schema coordinates this document uses, read with `model` (`usage.rs`).
    pub fn usage(&self, model: &FacadeSchema) -> std::collections::BTreeSet<String> {
        usage::of(&self.document, self.operation_name.as_deref(), model)
    }

    /// The TypeScript types of this document's `data` and of a transform's `ctx`
    /// (`typescript.rs`); `what` names it in the module's header (`tv/home@3`).
    pub fn typescript(&self, what: &str, model: &FacadeSchema) -> Result<String, Vec<String>> {
        let plan = self.operation.fullest_plan()?;
        Ok(super::typescript::module(what, &plan.root, self.operation.definition(), model))
    }

    /// A query-string parameter as the JSON value of the variable it names: numbers and
    /// booleans are parsed by the variable's declared type; unknown names are ignored.
    pub fn variable_from_text(&self, name: &str, raw: &str) -> Option<Value> {
        let (_, kind) = self.variables.iter().find(|(n, _)| n == name)?;
        Some(kind.read(raw))
    }
}

fn introspection_refused() -> Answer {
    Answer::request_error("introspection is disabled for requests without a token")
}

/// An ad-hoc document's text and operation name, hashed (a hit checks the text).
type OperationKey = u64;

fn operation_key(text: &str, operation_name: Option<&str>) -> OperationKey {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one((text, operation_name))
}

/// How much compiled ad-hoc work the cache keeps, in expanded selections times the plans an
/// operation may hold (about 200 bytes each): a few thousand home screens, ~50 MiB at most.
const OPERATION_CACHE_WEIGHT: usize = 250_000;

/// The compiled ad-hoc operations, least recently used out first, bounded by weight: an
/// operation weighs its expanded selections times the plans it may keep (one per assignment
/// of its `@skip`/`@include` variables), so large or many-conditioned texts cannot fill memory.
struct OperationCache {
    lru: lru::LruCache<OperationKey, (Arc<plan::Operation>, usize)>,
    weight: usize,
}

impl OperationCache {
    fn get(&mut self, key: &OperationKey) -> Option<Arc<plan::Operation>> {
        self.lru.get(key).map(|(op, _)| op.clone())
    }

    fn put(&mut self, key: OperationKey, op: Arc<plan::Operation>, weight: usize) {
        if weight > OPERATION_CACHE_WEIGHT {
            return;
        }
        if let Some((_, old)) = self.lru.pop(&key) {
            self.weight -= old;
        }
        while self.weight + weight > OPERATION_CACHE_WEIGHT {
            let Some((_, (_, w))) = self.lru.pop_lru() else { break };
            self.weight -= w;
        }
        self.weight += weight;
        self.lru.put(key, (op, weight));
    }
}

/// The operations of one schema: ad-hoc texts compiled once and cached, stored documents
/// prepared; everything checked against this schema's model, limits and validator.
pub struct Operations {
    model: Arc<FacadeSchema>,
    limits: Limits,
    validator: Arc<Validator>,
    cache: std::sync::Mutex<OperationCache>,
}

impl Operations {
    pub fn new(model: Arc<FacadeSchema>, limits: Limits, validator: Arc<Validator>) -> Self {
        let cache = OperationCache { lru: lru::LruCache::unbounded(), weight: 0 };
        Self { model, limits, validator, cache: std::sync::Mutex::new(cache) }
    }

    /// Parses the document and checks its structure ([`limits::analyze`]: fragment cycles,
    /// nesting, expanded size) before anything else walks it; a failure is a request error.
    /// The cost is estimated after validation, during [`Engine::execute`].
    pub fn parse(&self, request: GraphqlRequest) -> Result<Parsed, Answer> {
        // A text compiled before is not parsed again (it passed every check then); whether
        // this request may introspect is its own.
        if let Some(operation) = self.cached_operation(&request) {
            if !request.introspection && operation.uses_introspection {
                return Err(introspection_refused());
            }
            let document = operation.document.clone();
            return Ok(Parsed { request, document, operation: Some(operation), selections: 0 });
        }
        let document = async_graphql::parser::parse_query(&request.query)
            .map_err(|e| Answer::request_errors(vec![e.into()]))?;
        let analysis = limits::analyze(&document, &self.limits)
            .map_err(|e| Answer::request_errors(vec![ServerError::new(e.message, None)]))?;
        if !request.introspection && super::document::uses_introspection(&document) {
            return Err(introspection_refused());
        }
        let selections = analysis.expanded_selections;
        Ok(Parsed { request, document: Arc::new(document), operation: None, selections })
    }

    /// Parses `text`, picks its operation and validates it against this schema without
    /// running it. Every problem comes back, with line:column where there is one.
    /// The operation limits are checked too, with the variables unset (so the limit
    /// arguments count their defaults): a document that could never run is refused here.
    pub async fn prepare(&self, text: &str, operation_name: Option<&str>) -> Result<Prepared, Vec<String>> {
        let document = async_graphql::parser::parse_query(text).map_err(|e| {
            let at = e.positions().next().map(|p| format!("{}:{}: ", p.line, p.column)).unwrap_or_default();
            vec![format!("{at}{}", e.to_string().replace('\n', " ").trim())]
        })?;
        limits::analyze(&document, &self.limits).map_err(|e| vec![e.message])?;
        let operation = super::document::pick(&document, operation_name).map_err(|e| vec![e])?;
        let kind = match operation.ty {
            OperationType::Query => OperationKind::Query,
            OperationType::Mutation => OperationKind::Mutation,
            OperationType::Subscription => return Err(vec!["subscriptions cannot be endpoints".to_owned()]),
        };
        let variables = operation
            .variable_definitions
            .iter()
            .map(|v| (v.node.name.node.to_string(), VarKind::of(&v.node.var_type.node, &self.model)))
            .collect();
        let errors: Vec<String> = self
            .validator
            .validate(text, &document, operation_name)
            .await
            .iter()
            .map(|e| match e.locations.first() {
                Some(p) => format!("{}:{}: {}", p.line, p.column, e.message),
                None => e.message.clone(),
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let document = Arc::new(document);
        let operation = self.compile(&document, operation_name, None).map_err(|e| vec![e])?;
        let widest = operation.widest_plan()?;
        limits::check(&widest, &Map::new(), &self.limits).map_err(|e| vec![e])?;
        Ok(Prepared {
            text: text.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            kind,
            document,
            variables,
            operation,
        })
    }

    /// The compiled operation for a validated document.
    fn compile(
        &self,
        document: &Arc<ExecutableDocument>,
        operation_name: Option<&str>,
        text: Option<&str>,
    ) -> Result<Arc<plan::Operation>, String> {
        let op = super::document::pick(document, operation_name)?;
        if op.ty == OperationType::Subscription {
            return Err("subscriptions are not supported".to_owned());
        }
        let mut op =
            plan::Operation::new(document.clone(), operation_name.map(str::to_owned), self.model.clone())?;
        op.text = text.map(str::to_owned);
        op.widest_plan().map_err(|conflicts| conflicts.join("\n"))?;
        Ok(Arc::new(op))
    }

    /// The compiled operation of this text and operation name, if the cache holds it.
    fn cached_operation(&self, request: &GraphqlRequest) -> Option<Arc<plan::Operation>> {
        let key = operation_key(&request.query, request.operation_name.as_deref());
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let op = cache.get(&key)?;
        (op.text.as_deref() == Some(request.query.as_str())
            && op.operation_name.as_deref() == request.operation_name.as_deref())
        .then(|| op.clone())
    }

    /// The compiled operation of an ad-hoc request: from the cache, or validated and compiled
    /// now. `Err`: the request error to answer.
    pub async fn operation_of(&self, parsed: &Parsed) -> Result<Arc<plan::Operation>, Answer> {
        if let Some(op) = &parsed.operation {
            return Ok(op.clone());
        }
        let key = operation_key(&parsed.request.query, parsed.request.operation_name.as_deref());
        let name = parsed.request.operation_name.as_deref();
        let errors = self.validator.validate(&parsed.request.query, &parsed.document, name).await;
        if !errors.is_empty() {
            return Err(Answer::request_errors(errors));
        }
        let op = self
            .compile(&parsed.document, name, Some(&parsed.request.query))
            .map_err(|e| Answer::request_error(&e))?;
        let selections = usize::try_from(parsed.selections).unwrap_or(usize::MAX);
        let weight = selections.saturating_mul(op.max_plans()).max(1);
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(key, op.clone(), weight);
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::check_dir;
    use std::path::Path;

    fn operation() -> Arc<plan::Operation> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let schema = Arc::new(check_dir(&dir).unwrap());
        let doc = Arc::new(async_graphql::parser::parse_query("{ title(id: 1) { name } }").unwrap());
        Arc::new(plan::Operation::new(doc, None, schema).unwrap())
    }

    #[test]
    fn the_operation_cache_is_bounded_by_weight_not_count() {
        let op = operation();
        let mut cache = OperationCache { lru: lru::LruCache::unbounded(), weight: 0 };
        let heavy = OPERATION_CACHE_WEIGHT / 4;
        for key in 0..10 {
            cache.put(key, op.clone(), heavy);
            assert!(cache.weight <= OPERATION_CACHE_WEIGHT);
        }
        // The four most recent fit; the older ones went, least recently used first.
        assert_eq!(cache.lru.len(), 4);
        assert!(cache.get(&9).is_some() && cache.get(&5).is_none());
        // Too heavy alone: not kept, and nothing else is pushed out for it.
        cache.put(99, op.clone(), OPERATION_CACHE_WEIGHT + 1);
        assert!(cache.get(&99).is_none() && cache.lru.len() == 4);
        // Putting a key again replaces its weight.
        cache.put(9, op, 1);
        assert_eq!(cache.weight, 3 * heavy + 1);
    }
}
