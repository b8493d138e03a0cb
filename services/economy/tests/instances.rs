//! Unique items against the real FerretDB: each unit an instance with its own properties, moved
//! whole, held by one player at a time however many requests race for it, and counted against the
//! item's maximum count.

mod support;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{As, Deployment, Replica, unique};

/// A player's relics: `(count, reserved, instances)`; the count must equal the instances held.
async fn relics(economy: &Replica, player: &str) -> (i64, i64, Vec<Value>) {
    let (status, wallet) = economy
        .get(&format!("/v1/players/{player}/wallet"), As::Service)
        .await;
    assert_eq!(status, StatusCode::OK, "{wallet}");
    let Some(relic) = wallet["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == "relic")
    else {
        return (0, 0, Vec::new());
    };
    let instances = relic["instances"].as_array().expect("instances").clone();
    let count = relic["count"].as_i64().expect("count");
    let reserved = relic["reserved"].as_i64().expect("reserved");
    assert_eq!(
        (count + reserved) as usize,
        instances.len(),
        "the count is the instances held: {relic}"
    );
    (count, reserved, instances)
}

async fn grant_relic(economy: &Replica, player: &str, properties: Value) -> String {
    let body = json!({"player": player, "instances": [{"item": "relic", "properties": properties}], "reason": "drop"});
    let (status, answer) = economy
        .post("/v1/grants", As::Service, &unique("relic-"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let asset = answer["legs"][0]["asset"].as_str().expect("asset");
    asset.rsplit(':').next().expect("id").to_owned()
}

#[tokio::test]
async fn unique_items_are_instances_with_their_own_properties_up_to_the_maximum_count() {
    let economy = Deployment::new().replica().await;
    let ann = unique("ann");
    let grant = json!({
        "player": ann,
        "items": {"relic": 1},
        "instances": [{"item": "relic", "properties": {"level": 7, "name": "Dawn"}}],
        "reason": "boss drop",
    });
    let (status, first) = economy
        .post("/v1/grants", As::Service, "drop-1", grant.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = economy.post("/v1/grants", As::Service, "drop-1", grant).await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &first),
        "a retry mints the same instances"
    );

    let (count, _, instances) = relics(&economy, &ann).await;
    assert_eq!(count, 2);
    let mut properties: Vec<&Value> = instances.iter().map(|i| &i["properties"]).collect();
    properties.sort_by_key(|p| p["level"].as_i64());
    assert_eq!(
        properties[0],
        &json!({"rarity": "common", "level": 1}),
        "the catalog's"
    );
    assert_eq!(
        properties[1],
        &json!({"rarity": "common", "level": 7, "name": "Dawn"}),
        "the grant's over the catalog's"
    );

    economy.grant_gold(&ann, 20).await;
    let (status, bought) = economy
        .post(
            "/v1/purchases",
            As::Player(&ann),
            "box",
            json!({"offer": "relic-box"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bought}");
    assert_eq!(relics(&economy, &ann).await.0, 3);

    // A fourth passes the maximum count (3): refused whole, the gold stays.
    let (status, refused) = economy
        .post(
            "/v1/purchases",
            As::Player(&ann),
            "box-2",
            json!({"offer": "relic-box"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(relics(&economy, &ann).await.0, 3);
    assert_eq!(economy.holding(&ann, "gold").await, (15, 0));
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn an_instance_moves_whole_and_only_from_its_holder() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    let relic = grant_relic(&economy, &ann, json!({"level": 4})).await;

    let gift = json!({"to": bob, "instances": [relic]});
    let (status, answer) = economy
        .post("/v1/gifts", As::Player(&ann), "g1", gift.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(relics(&economy, &ann).await.0, 0);
    let (count, _, held) = relics(&economy, &bob).await;
    assert_eq!((count, &held[0]["id"]), (1, &json!(relic)));
    assert_eq!(held[0]["properties"]["level"], 4, "properties travel with it");

    // Ann no longer holds it: refused, and nothing moves.
    let (status, answer) = economy.post("/v1/gifts", As::Player(&ann), "g2", gift).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(relics(&economy, &bob).await.0, 1);

    let bad = [
        (
            json!({"to": ann, "instances": ["AAAAAAAAAAAAAAAAAAAAAA"]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"to": ann, "instances": [relic, relic]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"to": ann, "instances": ["not an id"]}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"to": ann, "instances": []}), StatusCode::BAD_REQUEST),
        (
            json!({"to": ann, "item": "relic", "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"to": ann, "instances": [relic], "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"to": ann, "currency": "gold", "instances": [relic]}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (n, (body, expected)) in bad.into_iter().enumerate() {
        let (status, answer) = economy
            .post("/v1/gifts", As::Player(&bob), &format!("bad-{n}"), body.clone())
            .await;
        assert_eq!(status, expected, "{body} answered {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let bad_grant = json!({"player": bob, "instances": [{"item": "potion"}], "reason": "x"});
    let (status, _) = economy
        .post("/v1/grants", As::Service, "bad-grant", bad_grant)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a stackable item has no instances"
    );
    let many: Vec<Value> = (0..101).map(|_| json!({"item": "relic"})).collect();
    let too_many = json!({"player": bob, "instances": many, "reason": "x"});
    let (status, _) = economy
        .post("/v1/grants", As::Service, "too-many", too_many)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(relics(&economy, &bob).await.0, 1, "bad input changed nothing");

    let (status, answer) = economy
        .post(
            "/v1/consumptions",
            As::Player(&bob),
            "use",
            json!({"instances": [relic]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(relics(&economy, &bob).await, (0, 0, Vec::new()));
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn sixteen_gifts_of_one_instance_at_once_move_it_once() {
    let economy = Deployment::new().replica().await;
    let ann = unique("ann");
    let relic = grant_relic(&economy, &ann, json!({})).await;
    let friends: Vec<String> = (0..16).map(|n| format!("{ann}f{n}")).collect();
    let answers = join_all(friends.iter().enumerate().map(|(n, friend)| {
        let (economy, ann, relic) = (&economy, &ann, &relic);
        async move {
            let body = json!({"to": friend, "instances": [relic]});
            let key = format!("race-{n}");
            economy.post("/v1/gifts", As::Player(ann), &key, body).await
        }
    }))
    .await;
    let winners: Vec<usize> = (0..16).filter(|&n| answers[n].0 == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (status, answer) in &answers {
        assert!(
            [StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY].contains(status),
            "{status} {answer}"
        );
    }
    let mut holders = Vec::new();
    for player in std::iter::once(&ann).chain(&friends) {
        let (count, reserved, held) = relics(&economy, player).await;
        assert_eq!(reserved, 0);
        if count > 0 {
            holders.push((player.clone(), held[0]["id"].clone()));
        }
    }
    assert_eq!(holders, [(friends[winners[0]].clone(), json!(relic))]);
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn reversing_an_instance_brings_it_back_with_its_count_or_records_the_shortfall() {
    let economy = Deployment::new().replica().await;
    let (ann, bob, cat) = (unique("ann"), unique("bob"), unique("cat"));
    let kept = grant_relic(&economy, &ann, json!({"n": 1})).await;
    let passed = grant_relic(&economy, &ann, json!({"n": 2})).await;
    let (_, gift) = economy
        .post(
            "/v1/gifts",
            As::Player(&ann),
            "both",
            json!({"to": bob, "instances": [kept, passed]}),
        )
        .await;
    assert_eq!(gift["state"], "committed", "{gift}");
    // Bob passes one on, so only the other can be taken back.
    let (status, _) = economy
        .post(
            "/v1/gifts",
            As::Player(&bob),
            "on",
            json!({"to": cat, "instances": [passed]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let reverse =
        |policy: &str| json!({"transaction": gift["id"], "reason": "scam", "by": "ops", "policy": policy});
    let (status, _) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reverse("fail")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        relics(&economy, &bob).await.0,
        1,
        "a failed reversal moves nothing"
    );

    let (status, clawed) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reverse("clawback")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{clawed}");
    assert!(
        clawed["memo"]
            .as_str()
            .is_some_and(|m| m.contains("shortfall: 1 u:relic:")),
        "{clawed}"
    );
    let (count, _, held) = relics(&economy, &ann).await;
    assert_eq!((count, &held[0]["id"]), (1, &json!(kept)));
    assert_eq!(relics(&economy, &bob).await.0, 0);
    assert_eq!(relics(&economy, &cat).await.0, 1);
    assert_eq!(economy.audit().await["drift"], 0);
}
