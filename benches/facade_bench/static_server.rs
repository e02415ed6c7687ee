//! The comparison server: the same home-screen schema written by hand with async-graphql's
//! static (derive) API, on the same backends and the same per-request `Batcher`, with no
//! dynamic schema and no SDL bindings. Throughput(Facade) / throughput(this) compares
//! Facade's compiled plans with async-graphql's own executor.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Enum, ID, Object, Result, Schema};
use axum::routing::post;
use axum::{Json, Router};
use facade::backends::json::tape::{Held, Val, View};
use facade::backends::policy::Resilience;
use facade::backends::{BackendSettings, Backends, BatchRoute, Batcher, Key, SingleRequest};
use facade::graphql::model::Method;

const MEMBERS: usize = 0;
const LISTS: usize = 1;
const CATALOG: usize = 2;
const ARTWORK: usize = 3;
const RATINGS: usize = 4;
const HISTORY: usize = 5;

fn batcher<'a>(ctx: &Context<'a>) -> &'a Batcher {
    ctx.data_unchecked::<Batcher>()
}

fn route(
    backend: usize,
    method: Method,
    prefix: String,
    suffix: Option<&str>,
    match_field: &str,
) -> BatchRoute {
    BatchRoute {
        backend,
        method,
        prefix,
        suffix: suffix.map(str::to_owned),
        match_field: Some(match_field.into()),
        keep: None,
    }
}

fn text(v: &Held, key: &str) -> Option<String> {
    let v = v.val().get(key)?;
    match v.view() {
        View::Str(s) => Some(s.to_string()),
        View::Null => None,
        _ => Some(v.to_string()),
    }
}

async fn one(ctx: &Context<'_>, route: BatchRoute, key: Option<Val<'_>>) -> Result<Option<Held>> {
    let key = key.and_then(Key::of).ok_or("bad key")?;
    let mut results = batcher(ctx).load_many(route, vec![key]).await.results();
    Ok(results.pop().transpose().map_err(|e| e.to_string())?.flatten())
}

pub struct Query;

#[Object]
impl Query {
    async fn profile(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Profile>> {
        let request = SingleRequest {
            backend: MEMBERS,
            method: Method::Get,
            path: format!("/profiles/{}", id.0),
            body: None,
            keep: None,
        };
        let v = batcher(ctx).load_one(request).await.map_err(|e| e.to_string())?;
        Ok((!v.val().is_null()).then_some(Profile(v)))
    }
}

pub struct Profile(Held);

#[Object]
impl Profile {
    async fn id(&self) -> Option<ID> {
        text(&self.0, "id").map(ID)
    }
    async fn name(&self) -> Option<String> {
        text(&self.0, "name")
    }
    async fn rows(&self, ctx: &Context<'_>, #[graphql(default = 10)] first: i32) -> Result<Option<Vec<Row>>> {
        let path = format!("/profiles/{}/rows?limit={first}", text(&self.0, "id").unwrap_or_default());
        let request = SingleRequest { backend: LISTS, method: Method::Get, path, body: None, keep: None };
        let v = batcher(ctx).load_one(request).await.map_err(|e| e.to_string())?;
        Ok(match v.val().view() {
            View::List(rows) => Some(rows.map(|r| Row(v.at(r))).collect()),
            _ => None,
        })
    }
}

pub struct Row(Held);

#[Object]
impl Row {
    async fn name(&self) -> Option<String> {
        text(&self.0, "name")
    }
    async fn titles(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> Result<Option<Vec<Title>>> {
        let Some(View::List(ids)) = self.0.val().get("titleIds").map(Val::view) else { return Ok(None) };
        let keys: Vec<Key> = ids.take(first.max(0) as usize).filter_map(Key::of).collect();
        let r = route(CATALOG, Method::Get, "/titles?ids=".into(), Some(""), "id");
        let mut titles = Vec::new();
        for result in batcher(ctx).load_many(r, keys).await.results() {
            if let Some(v) = result.map_err(|e| e.to_string())? {
                titles.push(Title(v));
            }
        }
        Ok(Some(titles))
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ArtworkSize {
    Small,
    Medium,
    Large,
}

pub struct Title(Held);

#[Object]
impl Title {
    async fn id(&self) -> Option<ID> {
        text(&self.0, "id").map(ID)
    }
    async fn name(&self) -> Option<String> {
        text(&self.0, "name")
    }
    async fn year(&self) -> Option<i64> {
        self.0.val().get("year").and_then(Val::as_i64)
    }
    async fn artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "ArtworkSize::Medium")] size: ArtworkSize,
    ) -> Result<Option<Artwork>> {
        let size = match size {
            ArtworkSize::Small => "SMALL",
            ArtworkSize::Medium => "MEDIUM",
            ArtworkSize::Large => "LARGE",
        };
        let suffix = format!("&size={size}");
        let r = route(ARTWORK, Method::Get, "/artwork?ids=".into(), Some(&suffix), "titleId");
        Ok(one(ctx, r, self.0.val().get("id")).await?.map(Artwork))
    }
    async fn rating(&self, ctx: &Context<'_>) -> Result<Option<Rating>> {
        let r = BatchRoute {
            backend: RATINGS,
            method: Method::Post,
            prefix: "/ratings/batch".into(),
            suffix: None,
            match_field: Some("titleId".into()),
            keep: None,
        };
        Ok(one(ctx, r, self.0.val().get("id")).await?.map(Rating))
    }
    async fn bookmark(&self, ctx: &Context<'_>, profile_id: ID) -> Result<Option<Bookmark>> {
        let prefix = format!("/profiles/{}/bookmarks?titleIds=", profile_id.0);
        let r = route(HISTORY, Method::Get, prefix, Some(""), "titleId");
        Ok(one(ctx, r, self.0.val().get("id")).await?.map(Bookmark))
    }
}

pub struct Artwork(Held);

#[Object]
impl Artwork {
    async fn url(&self) -> Option<String> {
        text(&self.0, "url")
    }
}

pub struct Rating(Held);

#[Object]
impl Rating {
    async fn average(&self) -> Option<f64> {
        self.0.val().get("average").and_then(Val::as_f64)
    }
}

pub struct Bookmark(Held);

#[Object]
impl Bookmark {
    async fn position_seconds(&self) -> Option<i64> {
        self.0.val().get("positionSeconds").and_then(Val::as_i64)
    }
}

type HomeSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Serves `POST /graphql` on `127.0.0.1:0`, prints its URL, and runs until killed.
pub async fn serve(urls: Vec<(String, String)>) -> anyhow::Result<()> {
    let settings = urls
        .into_iter()
        .map(|(name, url)| BackendSettings {
            name,
            url,
            resilience: Resilience { max_batch_size: 200, ..Resilience::default() },
        })
        .collect();
    let backends = Arc::new(Backends::new(settings)?);
    let schema: HomeSchema = Schema::build(Query, EmptyMutation, EmptySubscription).finish();
    let app = Router::new().route(
        "/graphql",
        post(move |Json(request): Json<async_graphql::Request>| {
            let schema = schema.clone();
            let backends = backends.clone();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            async move { Json(schema.execute(request.data(Batcher::new(backends, deadline))).await) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("static server listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
