//! Direct messages against the real FerretDB and Redis: who may message whom, history pages, read
//! markers, bad bodies and the sending limit.

mod support;

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{Value, json};

use support::{Deployment, Player, Replica, name};

fn messages(to: &Player) -> String {
    format!("/v1/players/{}/messages", to.id)
}

async fn send(replica: &Replica, from: &Player, to: &Player, body: &str) -> Value {
    replica
        .post(&messages(to), &from.token, json!({"body": body}))
        .await
        .expect(201)
}

fn bodies(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect()
}

async fn stored_messages(replica: &Replica, a: &Player, b: &Player) -> u64 {
    let conversation = flotilla_player::model::Message::conversation_of(&a.id, &b.id);
    replica
        .state
        .messages
        .count(doc! {"conversation": conversation})
        .await
        .expect("count")
}

async fn notifications_of(replica: &Replica, player: &Player) -> u64 {
    replica
        .state
        .notifications
        .count(doc! {"player": &player.id})
        .await
        .expect("count")
}

#[tokio::test]
async fn friends_exchange_messages_and_read_their_history_newest_first_in_pages() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.befriend(&ann, &bob).await;
    let first = send(&replica, &ann, &bob, "hi bob").await;
    assert_eq!(
        (first["from"].as_str(), first["to"].as_str()),
        (Some(ann.id.as_str()), Some(bob.id.as_str()))
    );
    assert!(first["sentMs"].as_i64().is_some(), "{first}");
    for i in 1..=4 {
        send(&replica, &bob, &ann, &format!("reply {i}\nwith a second line")).await;
    }

    let page = replica
        .get(&format!("{}?limit=2", messages(&bob)), &ann.token)
        .await
        .expect(200);
    assert_eq!(
        bodies(&page),
        ["reply 4\nwith a second line", "reply 3\nwith a second line"]
    );
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let rest = replica
        .get(
            &format!("{}?limit=10&cursor={cursor}", messages(&bob)),
            &ann.token,
        )
        .await
        .expect(200);
    assert_eq!(
        bodies(&rest),
        [
            "reply 2\nwith a second line",
            "reply 1\nwith a second line",
            "hi bob"
        ]
    );
    assert!(rest.get("nextCursor").is_none(), "{rest}");
    // Bob sees the same conversation from his side.
    let his = replica
        .get(&format!("{}?limit=100", messages(&ann)), &bob.token)
        .await
        .expect(200);
    assert_eq!(his["items"].as_array().map(Vec::len), Some(5));

    replica
        .get(&format!("{}?cursor=garbage!", messages(&bob)), &ann.token)
        .await
        .error(400);
    let not_a_number = replica
        .get(&format!("{}?limit=ten", messages(&bob)), &ann.token)
        .await;
    assert_eq!(not_a_number.error(400), "bad_request");
    replica
        .post(&messages(&ann), &ann.token, json!({"body": "note to self"}))
        .await
        .error(403);
}

#[tokio::test]
async fn read_markers_only_move_forward_and_unread_counts_the_other_players_messages() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.befriend(&ann, &bob).await;
    let mut from_bob = Vec::new();
    for i in 0..3 {
        from_bob.push(
            send(&replica, &bob, &ann, &format!("b{i}")).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let mine = send(&replica, &ann, &bob, "a0").await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let history = replica.get(&messages(&bob), &ann.token).await.expect(200);
    assert_eq!(
        (history["unread"].clone(), history["myReadUpTo"].clone()),
        (json!(3), Value::Null)
    );
    let read = format!("{}/read", messages(&bob));
    let state = replica
        .post(&read, &ann.token, json!({"upTo": from_bob[1]}))
        .await
        .expect(200);
    assert_eq!(
        (state["myReadUpTo"].as_str(), state["unread"].as_u64()),
        (Some(from_bob[1].as_str()), Some(1))
    );
    // Backwards is ignored: the marker stays where it was.
    let state = replica
        .post(&read, &ann.token, json!({"upTo": from_bob[0]}))
        .await
        .expect(200);
    assert_eq!(state["myReadUpTo"].as_str(), Some(from_bob[1].as_str()));
    // Ann's own message counts as a position too; nothing of Bob's is after it.
    let state = replica
        .post(&read, &ann.token, json!({"upTo": mine}))
        .await
        .expect(200);
    assert_eq!(
        (state["myReadUpTo"].as_str(), state["unread"].as_u64()),
        (Some(mine.as_str()), Some(0))
    );

    let his = replica.get(&messages(&ann), &bob.token).await.expect(200);
    assert_eq!(
        (his["theirReadUpTo"].as_str(), his["myReadUpTo"].clone()),
        (Some(mine.as_str()), Value::Null)
    );
    assert_eq!(his["unread"], 1, "Ann's one message is unread by Bob");

    replica
        .post(&read, &ann.token, json!({"upTo": "not-a-message"}))
        .await
        .error(404);
    replica
        .post(&read, &ann.token, json!({"upTo": mine, "extra": 1}))
        .await
        .error(400);
}

#[tokio::test]
async fn nobody_can_read_or_mark_a_conversation_that_is_not_theirs() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let eve = replica.player(&name("eve")).await;
    replica.befriend(&ann, &bob).await;
    let sent = send(&replica, &ann, &bob, "secret plans").await;
    // Eve can only ever name her own conversation with Ann or Bob, and it is empty.
    for other in [&ann, &bob] {
        let page = replica.get(&messages(other), &eve.token).await.expect(200);
        assert_eq!(
            (page["items"].clone(), page["unread"].clone()),
            (json!([]), json!(0))
        );
        replica
            .post(
                &format!("{}/read", messages(other)),
                &eve.token,
                json!({"upTo": sent["id"]}),
            )
            .await
            .error(404);
    }
    replica
        .call(Method::GET, &messages(&ann), None, None)
        .await
        .error(401);
}

#[tokio::test]
async fn a_friends_only_player_refuses_strangers_and_an_open_one_accepts_them() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let sam = replica.player(&name("sam")).await;
    assert_eq!(
        replica
            .post(&messages(&ann), &sam.token, json!({"body": "hello?"}))
            .await
            .error(403),
        "forbidden"
    );
    assert_eq!(stored_messages(&replica, &ann, &sam).await, 0);
    assert_eq!(notifications_of(&replica, &ann).await, 0);

    let privacy =
        json!({"privacy": {"presence": "friends", "messages": "everyone", "friendRequests": "everyone"}});
    replica
        .call(Method::PATCH, "/v1/players/me", Some(&ann.token), Some(privacy))
        .await
        .expect(200);
    send(&replica, &sam, &ann, "hello!").await;
    assert_eq!(notifications_of(&replica, &ann).await, 1);
    replica
        .post(
            "/v1/players/nobody-has-this-id/messages",
            &sam.token,
            json!({"body": "hi"}),
        )
        .await
        .error(404);
}

#[tokio::test]
async fn a_block_stops_messages_both_ways_but_both_keep_their_history() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.befriend(&ann, &bob).await;
    send(&replica, &bob, &ann, "before").await;
    let notified = notifications_of(&replica, &ann).await;
    replica
        .post(&format!("/v1/friends/{}/block", bob.id), &ann.token, json!({}))
        .await
        .expect(204);

    replica
        .post(&messages(&ann), &bob.token, json!({"body": "why?"}))
        .await
        .error(403);
    replica
        .post(&messages(&bob), &ann.token, json!({"body": "because"}))
        .await
        .error(403);
    assert_eq!(stored_messages(&replica, &ann, &bob).await, 1);
    assert_eq!(
        notifications_of(&replica, &ann).await,
        notified,
        "no notification reached the blocker"
    );
    for (reader, other) in [(&ann, &bob), (&bob, &ann)] {
        assert_eq!(
            bodies(&replica.get(&messages(other), &reader.token).await.expect(200)),
            ["before"]
        );
    }
}

#[tokio::test]
async fn bad_message_bodies_are_refused_and_nothing_is_stored() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.befriend(&ann, &bob).await;
    for body in [
        json!({"body": ""}),
        json!({"body": "   "}),
        json!({"body": "x".repeat(2001)}),
        json!({"body": "bell\u{7}"}),
        json!({"body": 42}),
        json!({}),
        json!({"body": "hi", "to": "someone-else"}),
    ] {
        let answer = replica.post(&messages(&bob), &ann.token, body.clone()).await;
        assert_eq!(answer.status.as_u16(), 400, "{body}: {:?}", answer.body);
    }
    let malformed = replica
        .http
        .post(replica.url(&messages(&bob)))
        .bearer_auth(&ann.token)
        .header("content-type", "application/json")
        .body("{\"body\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(stored_messages(&replica, &ann, &bob).await, 0);
    send(&replica, &ann, &bob, &"é".repeat(2000)).await;
}

#[tokio::test]
async fn sending_is_limited_per_player() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.befriend(&ann, &bob).await;
    // 30 at once, then one more every third of a second: a slow machine may get a few past 30.
    let mut sent = 0;
    let limited = loop {
        let answer = replica
            .post(
                &messages(&bob),
                &ann.token,
                json!({"body": format!("spam {sent}")}),
            )
            .await;
        if answer.status.as_u16() != 201 || sent == 100 {
            break answer;
        }
        sent += 1;
    };
    assert!(sent >= 30, "only {sent} admitted");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.error(429), "rate_limited");
    assert_eq!(stored_messages(&replica, &ann, &bob).await, sent);
    // Bob's allowance is his own.
    send(&replica, &bob, &ann, "stop it").await;
}

#[tokio::test]
async fn each_player_lists_their_conversations_newest_first_with_unread_counts() {
    let replica = Deployment::new().replica().await;
    let [ann, bob, cat, eve] = [
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
        replica.player(&name("cat")).await,
        replica.player(&name("eve")).await,
    ];
    replica.befriend(&ann, &bob).await;
    replica.befriend(&ann, &cat).await;
    send(&replica, &ann, &bob, "one").await;
    let two = send(&replica, &bob, &ann, "two").await;
    send(&replica, &cat, &ann, "three").await;
    let list = |player: &Player, query: &str| {
        let path = format!("/v1/conversations{query}");
        let token = player.token.clone();
        let replica = &replica;
        async move { replica.get(&path, &token).await.expect(200) }
    };
    let summary = |page: &Value| -> Vec<(String, String, u64)> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| {
                (
                    c["with"].as_str().expect("with").to_owned(),
                    c["lastMessage"]["body"]
                        .as_str()
                        .expect("last message")
                        .to_owned(),
                    c["unread"].as_u64().expect("unread"),
                )
            })
            .collect()
    };

    let anns = list(&ann, "").await;
    assert_eq!(
        summary(&anns),
        [
            (cat.id.clone(), "three".into(), 1),
            (bob.id.clone(), "two".into(), 1)
        ]
    );
    assert!(anns.get("nextCursor").is_none(), "{anns}");
    // Bob sees the same conversation from his side: Ann's "one" is unread, his own "two" is not.
    assert_eq!(
        summary(&list(&bob, "").await),
        [(ann.id.clone(), "two".into(), 1)]
    );
    assert_eq!(
        list(&eve, "").await["items"],
        json!([]),
        "eve has no conversations"
    );

    // Pages of one.
    let first = list(&ann, "?limit=1").await;
    assert_eq!(summary(&first), [(cat.id.clone(), "three".into(), 1)]);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second = list(&ann, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(summary(&second), [(bob.id.clone(), "two".into(), 1)]);

    // Reading clears the count; a new message moves its conversation to the top.
    replica
        .post(
            &format!("{}/read", messages(&bob)),
            &ann.token,
            json!({"upTo": two["id"]}),
        )
        .await
        .expect(200);
    send(&replica, &ann, &bob, "four").await;
    assert_eq!(
        summary(&list(&ann, "").await),
        [
            (bob.id.clone(), "four".into(), 0),
            (cat.id.clone(), "three".into(), 1)
        ]
    );

    // A deleted account takes its conversations out of the other players' lists.
    replica.delete("/v1/players/me", &cat.token).await.expect(204);
    assert_eq!(
        summary(&list(&ann, "").await),
        [(bob.id.clone(), "four".into(), 0)]
    );
    replica
        .get("/v1/conversations?limit=many", &ann.token)
        .await
        .error(400);
}

#[tokio::test]
async fn the_conversations_migration_lists_messages_sent_before_it() {
    let deployment = Deployment::new();
    let replica = deployment.replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    // Messages as a release before the list stored them: no conversation entries.
    for (i, (from, to)) in [(&ann, &bob), (&bob, &ann), (&ann, &bob)].into_iter().enumerate() {
        let message = flotilla_player::model::Message {
            id: flotilla_player::model::new_sortable_id(1_700_000_000_000 + i as i64).expect("random"),
            conversation: flotilla_player::model::Message::conversation_of(&from.id, &to.id),
            from: from.id.clone(),
            to: to.id.clone(),
            body: format!("old {i}"),
            sent_ms: 1_700_000_000_000 + i as i64,
        };
        replica.state.messages.insert(&message).await.expect("insert");
    }
    assert_eq!(
        replica.get("/v1/conversations", &ann.token).await.expect(200)["items"],
        json!([])
    );

    // The database forgets version 4 was applied; the next start applies it again.
    assert_eq!(deployment.migrate_again(4).await, [4]);
    for (player, other) in [(&ann, &bob), (&bob, &ann)] {
        let list = replica.get("/v1/conversations", &player.token).await.expect(200);
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list["items"][0]["with"], other.id.as_str());
        assert_eq!(list["items"][0]["lastMessage"]["body"], "old 2");
    }
}
