//! Notifications against the real FerretDB and Redis: listing newest first, the unread filter and
//! pages, marking read, deleting, other players' notifications, and blocked senders.

mod support;

use reqwest::Method;
use serde_json::{Value, json};

use flotilla_player::events;
use flotilla_player::model::NotificationKind;
use support::{Deployment, Player, Replica, name};

/// Leaves `player` a notification caused by `subject`, as a feature would; returns its id.
async fn notify(replica: &Replica, player: &Player, subject: Option<&Player>, n: u32) -> String {
    let subject = subject.map(|s| s.id.as_str());
    let view = events::notify(
        &replica.state,
        &player.id,
        NotificationKind::FriendRequest,
        subject,
        json!({"n": n}),
    )
    .await
    .expect("notified");
    view.id
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["id"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn notifications_list_newest_first_in_pages_and_filter_by_unread() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let mut made = Vec::new();
    for n in 0..5 {
        made.push(notify(&replica, &ann, Some(&bob), n).await);
        // Ids order by millisecond, then at random: one notification per millisecond, so the
        // order made is the order listed.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    made.reverse();

    let first = replica
        .get("/v1/notifications?limit=2", &ann.token)
        .await
        .expect(200);
    assert_eq!(ids(&first), made[..2]);
    assert_eq!(first["items"][0]["content"], json!({"n": 4}));
    assert_eq!(
        (
            first["items"][0]["kind"].as_str(),
            first["items"][0]["subject"].as_str(),
            first["items"][0]["read"].as_bool()
        ),
        (Some("friendRequest"), Some(bob.id.as_str()), Some(false))
    );
    let cursor = first["nextCursor"].as_str().expect("next page");
    let rest = replica
        .get(&format!("/v1/notifications?limit=10&cursor={cursor}"), &ann.token)
        .await
        .expect(200);
    assert_eq!(ids(&rest), made[2..]);

    let read = replica
        .post(
            "/v1/notifications/read",
            &ann.token,
            json!({"ids": [made[0], made[3]]}),
        )
        .await
        .expect(200);
    assert_eq!(read["updated"], 2);
    let unread = replica
        .get("/v1/notifications?unread=true", &ann.token)
        .await
        .expect(200);
    assert_eq!(
        ids(&unread),
        [made[1].as_str(), made[2].as_str(), made[4].as_str()]
    );
    let all = replica
        .post("/v1/notifications/read", &ann.token, json!({"all": true}))
        .await
        .expect(200);
    assert_eq!(all["updated"], 3);
    assert_eq!(
        replica
            .get("/v1/notifications?unread=true", &ann.token)
            .await
            .expect(200)["items"],
        json!([])
    );
    assert_eq!(
        ids(&replica.get("/v1/notifications", &ann.token).await.expect(200)).len(),
        5
    );
}

#[tokio::test]
async fn a_notification_can_be_deleted_by_its_owner_only() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let eve = replica.player(&name("eve")).await;
    let hers = notify(&replica, &ann, None, 1).await;
    let path = format!("/v1/notifications/{hers}");

    assert_eq!(
        replica
            .call(Method::DELETE, &path, Some(&eve.token), None)
            .await
            .error(404),
        "not_found"
    );
    let marked = replica
        .post("/v1/notifications/read", &eve.token, json!({"ids": [hers]}))
        .await
        .expect(200);
    assert_eq!(marked["updated"], 0);
    replica
        .post("/v1/notifications/read", &eve.token, json!({"all": true}))
        .await
        .expect(200);
    assert_eq!(
        replica.get("/v1/notifications", &eve.token).await.expect(200)["items"],
        json!([])
    );
    let still = replica.get("/v1/notifications", &ann.token).await.expect(200);
    assert_eq!(
        (ids(&still), still["items"][0]["read"].as_bool()),
        (vec![hers.as_str()], Some(false))
    );

    replica
        .call(Method::DELETE, &path, Some(&ann.token), None)
        .await
        .expect(204);
    replica
        .call(Method::DELETE, &path, Some(&ann.token), None)
        .await
        .error(404);
    assert_eq!(
        replica.get("/v1/notifications", &ann.token).await.expect(200)["items"],
        json!([])
    );
    replica
        .call(Method::GET, "/v1/notifications", None, None)
        .await
        .error(401);
}

#[tokio::test]
async fn notifications_from_a_player_i_blocked_are_hidden_until_unblocked() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let cat = replica.player(&name("cat")).await;
    let from_bob = notify(&replica, &ann, Some(&bob), 1).await;
    let from_cat = notify(&replica, &ann, Some(&cat), 2).await;
    let from_nobody = notify(&replica, &ann, None, 3).await;

    let block = format!("/v1/friends/{}/block", bob.id);
    replica.post(&block, &ann.token, json!({})).await.expect(204);
    let listed = replica.get("/v1/notifications", &ann.token).await.expect(200);
    assert_eq!(ids(&listed), [from_nobody.as_str(), from_cat.as_str()]);

    replica
        .call(Method::DELETE, &block, Some(&ann.token), None)
        .await
        .expect(204);
    let listed = replica.get("/v1/notifications", &ann.token).await.expect(200);
    assert_eq!(
        ids(&listed),
        [from_nobody.as_str(), from_cat.as_str(), from_bob.as_str()]
    );
}

#[tokio::test]
async fn a_read_request_names_ids_or_all_and_nothing_else() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let too_many: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
    for body in [
        json!({}),
        json!({"ids": []}),
        json!({"ids": too_many}),
        json!({"all": false}),
        json!({"ids": ["a"], "all": true}),
        json!({"all": true, "player": "someone"}),
        json!({"ids": "a"}),
    ] {
        let answer = replica
            .post("/v1/notifications/read", &ann.token, body.clone())
            .await;
        assert_eq!(answer.status.as_u16(), 400, "{body}: {:?}", answer.body);
    }
    replica
        .get("/v1/notifications?cursor=nope!", &ann.token)
        .await
        .error(400);
    let not_a_bool = replica.get("/v1/notifications?unread=maybe", &ann.token).await;
    assert_eq!(not_a_bool.error(400), "bad_request");
}

#[tokio::test]
async fn other_services_send_notifications_with_the_service_key() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let path = format!("/v1/admin/players/{}/notifications", ann.id);
    let body = json!({"event": "outbid", "subject": bob.id, "content": {"auction": "a1", "amount": 15}});
    let sent = replica
        .post(&path, support::SERVICE_KEY, body.clone())
        .await
        .expect(201);
    assert_eq!(sent["kind"], "economy");
    let listed = replica.get("/v1/notifications", &ann.token).await.expect(200);
    let first = &listed["items"][0];
    assert_eq!(first["kind"], "economy");
    let content: Value = match &first["content"] {
        Value::String(text) => serde_json::from_str(text).expect("json"),
        other => other.clone(),
    };
    assert_eq!(content["event"], "outbid");
    assert_eq!(content["amount"], 15);

    replica.post(&path, &ann.token, body.clone()).await.expect(401);
    for bad in [
        json!({"event": "Not An Event"}),
        json!({"event": ""}),
        json!({"event": "sold", "content": {"note": "x".repeat(3000)}}),
        json!({"event": "sold", "colour": "red"}),
    ] {
        replica.post(&path, support::SERVICE_KEY, bad).await.expect(400);
    }
    replica
        .post(
            "/v1/admin/players/nobody/notifications",
            support::SERVICE_KEY,
            body,
        )
        .await
        .expect(404);
}
