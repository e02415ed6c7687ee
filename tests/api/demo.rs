//! The demo backends over HTTP: batches answer what single calls answer, in order, leaving out
//! unknown IDs; a record's JSON is the same when made and when served from the memo.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn demo_batches_join_single_records_and_the_memo_serves_them_unchanged() {
    let app = spawn_app().await;
    let backends: Vec<Value> = app.get_json("/demo/backends").await;
    let url = |name: &str| {
        let b = backends.iter().find(|b| b["name"] == name).expect("backend listed");
        b["baseUrl"].as_str().unwrap().to_owned()
    };
    let text = |u: String| {
        let client = app.client.clone();
        async move {
            let r = client.get(&u).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let catalog = url("catalog");
    // First call: made and kept; the same bytes again from the memo.
    let (status, first) = text(format!("{catalog}/titles?ids=1,99999,0,2")).await;
    assert_eq!(status, 200);
    let (_, again) = text(format!("{catalog}/titles?ids=1,99999,0,2")).await;
    assert_eq!(first, again);
    let (_, one) = text(format!("{catalog}/titles/1")).await;
    let (_, two) = text(format!("{catalog}/titles/2")).await;
    assert_eq!(first, format!("[{one},{two}]"));
    let one: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["name"], "The Quiet Circuit");
    assert_eq!(text(format!("{catalog}/titles/99999")).await.0, 404);
    assert_eq!(text(format!("{catalog}/titles?ids=99999")).await.1, "[]");

    let artwork = url("artwork");
    let (_, medium) = text(format!("{artwork}/artwork?ids=2,1&size=medium")).await;
    let (_, upper) = text(format!("{artwork}/artwork?ids=2,1&size=MEDIUM")).await;
    assert_eq!(medium, upper);
    let items: Vec<Value> = serde_json::from_str(&medium).unwrap();
    assert_eq!(items[0]["url"], "https://art.facade.example/2/780/7d2732e1.jpg");
    assert_eq!(items.len(), 2);
    let (_, large) = text(format!("{artwork}/artwork/1?size=LARGE")).await;
    assert!(large.contains("\"width\":1920"), "{large}");
    assert_eq!(text(format!("{artwork}/artwork/1?size=HUGE")).await.0, 404);
    // An ID past the catalog is unknown in every size, whatever the memo holds.
    assert_eq!(text(format!("{artwork}/artwork?ids=12001,24001&size=SMALL")).await.1, "[]");
    assert_eq!(text(format!("{artwork}/artwork/12001?size=SMALL")).await.0, 404);
}
