//! The four subgraphs of The Guild's federation benchmark (accounts, inventory, products,
//! reviews), written here with async-graphql's federation support: the same data and the same
//! behaviour as the published harness (read as facts), served on one port at `POST /accounts`,
//! `/inventory`, `/products` and `/reviews`, each with `_service { sdl }` and `_entities`.
//!
//! Behaviour kept on purpose, as the benchmark's expected answer has it:
//! - a review's `author` is always user 1 (`urigo`), whose reviews are reviews 1 and 2;
//! - the reviews subgraph answers any user entity with username `user` and reviews 1 and 2;
//! - inventory answers a product entity from its own table, ignoring the `price` and
//!   `weight` it is sent, so `shippingEstimate` (which `@requires` them) is always null.
//!
//! For tests, not part of the harness: `GET /_calls` counts each subgraph's requests;
//! `POST /_hold` holds every request until `POST /_release`, and `POST /_step` lets the
//! requests held now go on while holding later ones (how a test keeps a call in flight while
//! another request arrives, without timing).

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, ID, Object, ObjectType, SDLExportOptions, Schema,
    SimpleObject,
};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

struct UserRow {
    id: &'static str,
    name: &'static str,
    username: &'static str,
}

const USERS: [UserRow; 6] = [
    UserRow { id: "1", name: "Uri Goldshtein", username: "urigo" },
    UserRow { id: "2", name: "Dotan Simha", username: "dotansimha" },
    UserRow { id: "3", name: "Kamil Kisiela", username: "kamilkisiela" },
    UserRow { id: "4", name: "Arda Tanrikulu", username: "ardatan" },
    UserRow { id: "5", name: "Gil Gardosh", username: "gilgardosh" },
    UserRow { id: "6", name: "Laurin Quast", username: "laurin" },
];

/// Every user's birthday in the harness.
const BIRTHDAY: i32 = 1_234_567_890;

/// upc, name, price, weight, in stock.
const PRODUCTS: [(&str, &str, i64, i64, bool); 9] = [
    ("1", "Table", 899, 100, true),
    ("2", "Couch", 1299, 1000, false),
    ("3", "Glass", 15, 20, false),
    ("4", "Chair", 499, 100, false),
    ("5", "TV", 1299, 1000, true),
    ("6", "Lamp", 6999, 300, true),
    ("7", "Grill", 3999, 2000, true),
    ("8", "Fridge", 100000, 6000, false),
    ("9", "Sofa", 9999, 800, true),
];

const LOREM: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.";
const SED_UT: &str = "Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugi";
const SED_QUIA: &str = "sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat voluptatem.";
const UT_ENIM: &str = "Ut enim ad minima veniam, quis nostrum exercitationem ullam corporis suscipit laboriosam, nisi ut aliquid ex ea commodi consequatur? Quis autem";
const AT_VERO: &str = "At vero eos et accusamus et iusto odio dignissimos ducimus qui blanditiis praesentium voluptatum deleniti atque corrupti quos dolores et quas molestias excepturi sint occaecati cupiditate non provident, similique sunt in culpa qui officia deserunt mollitia animi, id est laborum et dolorum fuga. Et harum quidem rerum facilis est et expedita distinctio. Nam libero tempore, cum soluta nobis est eligendi optio cumque nihil impedit quo minus id quod maxime placeat facere possimus, omnis voluptas assumenda est, omnis dolor repellendus. Temporibus autem quibusdam et aut officiis debitis aut rerum necessitatibus saepe eveniet ut et voluptates repudiandae sint et molestiae non recusandae. Itaque earum rerum hic tenetur a sapiente delectus, ut aut reiciendis voluptatibus maiores alias consequatur aut perferendis doloribus asperiores repellat.";

/// id, body, product upc.
const REVIEWS: [(&str, &str, &str); 11] = [
    ("1", LOREM, "1"),
    ("2", SED_UT, "1"),
    ("3", SED_QUIA, "1"),
    ("4", UT_ENIM, "1"),
    ("5", LOREM, "2"),
    ("6", SED_UT, "2"),
    ("7", SED_QUIA, "2"),
    ("8", UT_ENIM, "2"),
    ("9", UT_ENIM, "3"),
    ("10", UT_ENIM, "4"),
    ("11", AT_VERO, "4"),
];

/// The reviews every user entity of the reviews subgraph carries (and user 1 as an author).
const FIRST_TWO: std::ops::Range<usize> = 0..2;

mod accounts {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct User {
        id: ID,
        name: Option<String>,
        username: Option<String>,
        birthday: Option<i32>,
    }

    fn user(row: &UserRow) -> User {
        User {
            id: ID(row.id.to_owned()),
            name: Some(row.name.to_owned()),
            username: Some(row.username.to_owned()),
            birthday: Some(BIRTHDAY),
        }
    }

    pub struct Query;

    #[Object(extends)]
    impl Query {
        async fn me(&self) -> Option<User> {
            Some(user(&USERS[0]))
        }

        async fn user(&self, id: ID) -> Option<User> {
            USERS.iter().find(|u| u.id == id.as_str()).map(user)
        }

        async fn users(&self) -> Option<Vec<Option<User>>> {
            Some(USERS.iter().map(|u| Some(user(u))).collect())
        }

        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> Option<User> {
            USERS.iter().find(|u| u.id == id.as_str()).map(user)
        }
    }
}

mod products {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        upc: String,
        name: Option<String>,
        price: Option<i64>,
        weight: Option<i64>,
    }

    fn product(row: &(&str, &str, i64, i64, bool)) -> Product {
        Product {
            upc: row.0.to_owned(),
            name: Some(row.1.to_owned()),
            price: Some(row.2),
            weight: Some(row.3),
        }
    }

    pub struct Query;

    #[Object(extends)]
    impl Query {
        async fn top_products(
            &self,
            #[graphql(default = 5)] first: Option<i32>,
        ) -> Option<Vec<Option<Product>>> {
            let n = usize::try_from(first.unwrap_or(5)).unwrap_or(0);
            Some(PRODUCTS.iter().take(n).map(|p| Some(product(p))).collect())
        }

        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: ID) -> Option<Product> {
            PRODUCTS.iter().find(|p| p.0 == upc.as_str()).map(product)
        }
    }
}

mod inventory {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(extends, complex)]
    pub struct Product {
        #[graphql(external)]
        upc: String,
        #[graphql(external)]
        weight: Option<i64>,
        #[graphql(external)]
        price: Option<i64>,
        in_stock: Option<bool>,
    }

    #[ComplexObject]
    impl Product {
        #[graphql(requires = "price weight")]
        async fn shipping_estimate(&self) -> Option<i64> {
            let price = self.price?;
            if price > 1000 {
                return Some(0);
            }
            self.weight.map(|w| w / 2)
        }
    }

    pub struct Query;

    #[Object(extends)]
    impl Query {
        /// Answers from its own table: the `price` and `weight` sent are not read (the
        /// harness's behaviour), so `shippingEstimate` is null.
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: ID) -> Option<Product> {
            PRODUCTS.iter().find(|p| p.0 == upc.as_str()).map(|p| Product {
                upc: p.0.to_owned(),
                weight: None,
                price: None,
                in_stock: Some(p.4),
            })
        }
    }
}

mod reviews {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    pub struct Review {
        id: ID,
        body: Option<String>,
        product: Option<Product>,
    }

    pub fn review(row: &(&str, &str, &str)) -> Review {
        Review {
            id: ID(row.0.to_owned()),
            body: Some(row.1.to_owned()),
            product: Some(Product { upc: row.2.to_owned() }),
        }
    }

    fn first_two() -> Option<Vec<Option<Review>>> {
        Some(REVIEWS[FIRST_TWO].iter().map(|r| Some(review(r))).collect())
    }

    #[ComplexObject]
    impl Review {
        #[graphql(provides = "username")]
        async fn author(&self) -> Option<User> {
            Some(User { id: ID("1".to_owned()), username: Some("urigo".to_owned()), reviews: first_two() })
        }
    }

    #[derive(SimpleObject)]
    #[graphql(extends)]
    pub struct User {
        #[graphql(external)]
        id: ID,
        #[graphql(external)]
        username: Option<String>,
        reviews: Option<Vec<Option<Review>>>,
    }

    #[derive(SimpleObject, Clone)]
    #[graphql(extends, complex)]
    pub struct Product {
        #[graphql(external)]
        upc: String,
    }

    #[ComplexObject]
    impl Product {
        async fn reviews(&self) -> Option<Vec<Option<Review>>> {
            Some(REVIEWS.iter().filter(|r| r.2 == self.upc).map(|r| Some(review(r))).collect())
        }
    }

    pub struct Query;

    #[Object(extends)]
    impl Query {
        #[graphql(entity)]
        async fn find_review_by_id(&self, id: ID) -> Option<Review> {
            REVIEWS.iter().find(|r| r.0 == id.as_str()).map(review)
        }

        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> User {
            User { id, username: Some("user".to_owned()), reviews: first_two() }
        }

        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: ID) -> Product {
            Product { upc: upc.0 }
        }
    }
}

/// A subgraph's schema with federation on, and its SDL as `_service { sdl }` gives it.
fn subgraph<Q: ObjectType + 'static>(query: Q) -> (Schema<Q, EmptyMutation, EmptySubscription>, String) {
    let schema = Schema::build(query, EmptyMutation, EmptySubscription).enable_federation().finish();
    let sdl = schema.sdl_with_options(SDLExportOptions::new().federation().compose_directive());
    (schema, sdl)
}

/// Requests per subgraph, and the gate that holds them (see the module's note).
struct Control {
    calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Whether requests are held, and the step count (`/_step` lets those entered before it go).
    held: tokio::sync::watch::Sender<(bool, u64)>,
}

static CONTROL: std::sync::LazyLock<Control> = std::sync::LazyLock::new(|| Control {
    calls: std::sync::Mutex::default(),
    held: tokio::sync::watch::Sender::new((false, 0)),
});

impl Control {
    /// Counts a request to `name`, then waits while requests are held.
    async fn enter(&self, name: &'static str) {
        *self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(name).or_default() += 1;
        let mut open = self.held.subscribe();
        let entered = open.borrow().1;
        let _ = open.wait_for(|(held, step)| !*held || *step > entered).await;
    }
}

fn routes<Q: ObjectType + 'static>(name: &'static str, query: Q) -> Router {
    let (schema, sdl) = subgraph(query);
    let execute = move |State(schema): State<Schema<Q, EmptyMutation, EmptySubscription>>,
                        Json(request): Json<async_graphql::Request>| async move {
        CONTROL.enter(name).await;
        Json(schema.execute(request).await)
    };
    Router::new()
        .route(&format!("/{name}"), post(execute))
        .route(&format!("/{name}/sdl"), get(move || async move { sdl }))
        .with_state(schema)
}

/// The four subgraphs on one router: `POST /NAME` (GraphQL), `GET /NAME/sdl`.
pub fn router() -> Router {
    Router::new()
        .merge(routes("accounts", accounts::Query))
        .merge(routes("inventory", inventory::Query))
        .merge(routes("products", products::Query))
        .merge(routes("reviews", reviews::Query))
        .route(
            "/_calls",
            get(|| async {
                Json(CONTROL.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
            }),
        )
        .route("/_hold", post(|| async { CONTROL.held.send_modify(|(held, _)| *held = true) }))
        .route("/_step", post(|| async { CONTROL.held.send_modify(|(_, step)| *step += 1) }))
        .route("/_release", post(|| async { CONTROL.held.send_modify(|(held, _)| *held = false) }))
}

/// Serves the subgraphs on `listen` until the process ends.
pub async fn serve(listen: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("subgraphs on http://{}/{{accounts,inventory,products,reviews}}", listener.local_addr()?);
    axum::serve(listener, router()).await
}
