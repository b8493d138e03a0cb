//! Friends and blocks against the real FerretDB, Redis and OpenSearch: requests and their answers, the
//! lists, limits, privacy settings, blocks, mutual friends, suggestions, notifications, races between
//! replicas, and bad input.

mod support;

use flotilla_player::model::{FriendEdge, FriendState};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Deployment, Player, Replica, SERVICE_KEY, name};

const REFUSED: &str = "this player does not accept friend requests from you";

fn friend(id: &str) -> String {
    format!("/v1/friends/{id}")
}

/// Ids in a page, suggestion list or mutual-friend list, in order.
fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            item.get("player").unwrap_or(item)["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect()
}

async fn listed(replica: &Replica, player: &Player, query: &str) -> Vec<String> {
    ids(&replica
        .get(&format!("/v1/friends{query}"), &player.token)
        .await
        .expect(200))
}

/// The caller's notifications as (kind, subject) pairs.
async fn notifications(replica: &Replica, player: &Player) -> Vec<(String, String)> {
    let body = replica.get("/v1/notifications", &player.token).await.expect(200);
    let items = body["items"].as_array().expect("items");
    items
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().expect("kind").into(),
                n["subject"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

async fn set_requests(replica: &Replica, player: &Player, audience: &str) {
    let body = json!({"privacy": {"friendRequests": audience}});
    replica
        .call(Method::PATCH, "/v1/players/me", Some(&player.token), Some(body))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_request_accepted_on_another_replica_makes_both_friends_and_notifies_each() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let ann = one.player(&name("ann")).await;
    let bob = two.player(&name("bob")).await;

    let sent = one
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
    assert_eq!(sent["state"], "inviteSent");
    assert_eq!(sent["player"]["id"], bob.id.as_str());
    assert!(
        sent["player"].get("privacy").is_none(),
        "private fields leaked: {sent}"
    );
    // Asking again changes nothing and says so.
    let again = one
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(200);
    assert_eq!(
        (again["state"].clone(), again["updatedMs"].clone()),
        (sent["state"].clone(), sent["updatedMs"].clone())
    );
    assert_eq!(listed(&one, &ann, "?state=inviteSent").await, [bob.id.as_str()]);
    assert_eq!(
        listed(&two, &bob, "?state=inviteReceived").await,
        [ann.id.as_str()]
    );
    assert_eq!(listed(&two, &bob, "").await, [ann.id.as_str()]);
    assert!(listed(&two, &bob, "?state=mutual").await.is_empty());
    assert_eq!(
        notifications(&two, &bob).await,
        [("friendRequest".into(), ann.id.clone())]
    );

    let accepted = two
        .post(&format!("/v1/friends/{}/accept", ann.id), &bob.token, json!({}))
        .await
        .expect(200);
    assert_eq!(accepted["state"], "mutual");
    assert_eq!(
        accepted["player"]["username"],
        one.get("/v1/players/me", &ann.token).await.expect(200)["username"]
    );
    // A retried accept is answered the same, without a second notification.
    two.post(&format!("/v1/friends/{}/accept", ann.id), &bob.token, json!({}))
        .await
        .expect(200);
    let page = one.get("/v1/friends?state=mutual", &ann.token).await.expect(200);
    assert_eq!(ids(&page), [bob.id.as_str()]);
    assert_eq!(page["items"][0]["state"], "mutual");
    assert!(page["items"][0]["updatedMs"].as_i64().expect("updatedMs") > 0);
    assert!(page.get("nextCursor").is_none());
    assert_eq!(listed(&two, &bob, "?state=mutual").await, [ann.id.as_str()]);
    assert_eq!(
        notifications(&one, &ann).await,
        [("friendAccepted".into(), bob.id.clone())]
    );

    let answer = one.post(&friend(&bob.id), &ann.token, json!({})).await;
    assert_eq!(answer.error(409), "conflict");
}

#[tokio::test]
async fn asking_someone_who_already_asked_makes_friends_at_once() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    replica
        .post(&friend(&ann.id), &bob.token, json!({}))
        .await
        .expect(201);
    let answer = replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(200);
    assert_eq!(answer["state"], "mutual");
    assert_eq!(listed(&replica, &bob, "?state=mutual").await, [ann.id.as_str()]);
    assert_eq!(listed(&replica, &ann, "?state=mutual").await, [bob.id.as_str()]);
    assert!(
        notifications(&replica, &bob)
            .await
            .contains(&("friendAccepted".into(), ann.id.clone()))
    );
}

#[tokio::test]
async fn requests_crossing_between_replicas_always_end_as_friends() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    for _ in 0..8 {
        let ann = one.player(&name("ann")).await;
        let bob = two.player(&name("bob")).await;
        let (to_bob, to_ann) = (friend(&bob.id), friend(&ann.id));
        let (a, b) = tokio::join!(
            one.post(&to_bob, &ann.token, json!({})),
            two.post(&to_ann, &bob.token, json!({}))
        );
        assert!(a.status.is_success() && b.status.is_success(), "{a:?} {b:?}");
        assert_eq!(
            listed(&one, &ann, "?state=mutual").await,
            [bob.id.as_str()],
            "{a:?} {b:?}"
        );
        assert_eq!(
            listed(&two, &bob, "?state=mutual").await,
            [ann.id.as_str()],
            "{a:?} {b:?}"
        );
    }
}

#[tokio::test]
async fn a_declined_or_cancelled_request_leaves_nothing_behind() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let decline = format!("/v1/friends/{}/decline", ann.id);

    replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
    replica.post(&decline, &bob.token, json!({})).await.expect(204);
    assert!(listed(&replica, &ann, "").await.is_empty());
    assert!(listed(&replica, &bob, "").await.is_empty());
    assert_eq!(
        replica.post(&decline, &bob.token, json!({})).await.error(404),
        "not_found"
    );
    // The one who asked cannot answer their own request.
    replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
    replica
        .post(&format!("/v1/friends/{}/accept", bob.id), &ann.token, json!({}))
        .await
        .error(404);
    replica
        .post(&format!("/v1/friends/{}/decline", bob.id), &ann.token, json!({}))
        .await
        .error(404);

    let cancel = format!("/v1/friends/{}/request", bob.id);
    replica.delete(&cancel, &ann.token).await.expect(204);
    assert!(listed(&replica, &ann, "").await.is_empty());
    assert!(listed(&replica, &bob, "").await.is_empty());
    replica.delete(&cancel, &ann.token).await.error(404);
    // Bob answering the request Ann just withdrew conflicts with her cancel; a request that never
    // was is simply not found.
    assert_eq!(
        replica
            .post(&format!("/v1/friends/{}/accept", ann.id), &bob.token, json!({}))
            .await
            .error(409),
        "conflict"
    );
    let cat = replica.player(&name("cat")).await;
    replica
        .post(&format!("/v1/friends/{}/accept", cat.id), &bob.token, json!({}))
        .await
        .error(404);
}

#[tokio::test]
async fn removing_a_friend_ends_the_friendship_for_both() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    replica.befriend(&ann, &bob).await;
    replica.delete(&friend(&ann.id), &bob.token).await.expect(204);
    assert!(listed(&replica, &ann, "").await.is_empty());
    assert!(listed(&replica, &bob, "").await.is_empty());
    assert_eq!(
        replica.delete(&friend(&ann.id), &bob.token).await.error(404),
        "not_found"
    );
    // A pending request is not a friendship to remove.
    replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
    replica.delete(&friend(&bob.id), &ann.token).await.error(404);
}

#[tokio::test]
async fn bad_ids_filters_and_cursors_are_refused() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let answer = replica.post(&friend(&ann.id), &ann.token, json!({})).await;
    assert_eq!(answer.error(403), "forbidden", "one's own id");
    for id in ["no-such-player", &"x".repeat(65)] {
        replica.post(&friend(id), &ann.token, json!({})).await.error(404);
        replica
            .post(&format!("/v1/friends/{id}/block"), &ann.token, json!({}))
            .await
            .error(404);
        replica
            .get(&format!("/v1/friends/{id}/mutual"), &ann.token)
            .await
            .error(404);
        replica.delete(&friend(id), &ann.token).await.error(404);
    }
    let bad_state = replica
        .get("/v1/friends?state=enemies", &ann.token)
        .await
        .expect(400);
    assert_eq!(bad_state["error"]["field"], "state");
    replica.get("/v1/friends?cursor=!!", &ann.token).await.error(400);
    replica.get("/v1/friends?limit=lots", &ann.token).await.error(400);
    let anonymous = replica.call(Method::POST, &friend(&ann.id), None, None).await;
    assert_eq!(anonymous.error(401), "unauthenticated");
}

#[tokio::test]
async fn friend_lists_page_newest_first_with_a_cursor() {
    let replica = Deployment::new().replica().await;
    let me = replica.player(&name("me")).await;
    let mut friends = Vec::new();
    for _ in 0..5 {
        let other = replica.player(&name("pal")).await;
        replica.befriend(&me, &other).await;
        friends.push(other.id);
    }
    let pending = replica.player(&name("ask")).await;
    // Timestamps are milliseconds: make sure the request is strictly the newest.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    replica
        .post(&friend(&pending.id), &me.token, json!({}))
        .await
        .expect(201);

    let mut seen = Vec::new();
    let mut times = Vec::new();
    let mut path = "/v1/friends?state=mutual&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = replica.get(&path, &me.token).await.expect(200);
        pages += 1;
        seen.extend(ids(&page));
        times.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["updatedMs"].as_i64().expect("time")),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/friends?state=mutual&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );
    assert_eq!(seen.len(), friends.len(), "a friend listed twice: {seen:?}");
    seen.sort();
    friends.sort();
    assert_eq!(seen, friends);
    // Without a filter: friends and requests alike, the request (the newest) first.
    let all = listed(&replica, &me, "?limit=100").await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], pending.id);
}

#[tokio::test]
async fn the_friend_limit_holds_for_the_asker_and_the_asked() {
    let mut deployment = Deployment::new();
    deployment.friend_limit = 2;
    let replica = deployment.replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let cat = replica.player(&name("cat")).await;
    let dan = replica.player(&name("dan")).await;
    let eve = replica.player(&name("eve")).await;
    // Received requests do not count toward the limit.
    replica
        .post(&friend(&ann.id), &eve.token, json!({}))
        .await
        .expect(201);
    replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
    replica.befriend(&ann, &cat).await;

    let full = replica
        .post(&friend(&dan.id), &ann.token, json!({}))
        .await
        .expect(409);
    assert_eq!(full["error"]["message"], "you have reached the friend limit of 2");
    let accepting = replica
        .post(&format!("/v1/friends/{}/accept", eve.id), &ann.token, json!({}))
        .await;
    assert_eq!(accepting.error(409), "conflict");
    let theirs = replica
        .post(&friend(&ann.id), &dan.token, json!({}))
        .await
        .expect(409);
    assert_eq!(
        theirs["error"]["message"],
        "this player has reached their friend limit"
    );
    // Taking back a request makes room.
    replica
        .delete(&format!("/v1/friends/{}/request", bob.id), &ann.token)
        .await
        .expect(204);
    replica
        .post(&format!("/v1/friends/{}/accept", eve.id), &ann.token, json!({}))
        .await
        .expect(200);
}

#[tokio::test]
async fn privacy_settings_decide_who_may_ask() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let cat = replica.player(&name("cat")).await;

    set_requests(&replica, &bob, "nobody").await;
    let refused = replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(403);
    assert_eq!(refused["error"]["message"], REFUSED);
    // Whoever accepts no requests may still ask, and be answered by a request.
    replica
        .post(&friend(&cat.id), &bob.token, json!({}))
        .await
        .expect(201);
    assert_eq!(
        replica
            .post(&friend(&bob.id), &cat.token, json!({}))
            .await
            .expect(200)["state"],
        "mutual"
    );

    set_requests(&replica, &bob, "friendsOfFriends").await;
    let stranger = replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(403);
    assert_eq!(stranger["error"]["message"], REFUSED);
    replica.befriend(&ann, &cat).await;
    replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
}

#[tokio::test]
async fn services_ask_how_two_players_stand_and_learn_whether_both_exist() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let relation = |a: &Player, b: &Player| format!("/v1/admin/players/{}/relations/{}", a.id, b.id);
    let stand = replica
        .get(&relation(&ann, &bob), support::SERVICE_KEY)
        .await
        .expect(200);
    assert_eq!(stand, json!({"blocked": false, "friends": false}));
    replica.befriend(&ann, &bob).await;
    let stand = replica
        .get(&relation(&bob, &ann), support::SERVICE_KEY)
        .await
        .expect(200);
    assert_eq!(stand, json!({"blocked": false, "friends": true}));
    replica.block(&bob, &ann).await;
    for (a, b) in [(&ann, &bob), (&bob, &ann)] {
        let stand = replica
            .get(&relation(a, b), support::SERVICE_KEY)
            .await
            .expect(200);
        assert_eq!(
            stand,
            json!({"blocked": true, "friends": false}),
            "either way round"
        );
    }
    let ghost = format!("/v1/admin/players/{}/relations/nobody", ann.id);
    replica.get(&ghost, support::SERVICE_KEY).await.expect(404);
    replica.get(&relation(&ann, &bob), &ann.token).await.expect(401);
}

#[tokio::test]
async fn a_block_ends_the_friendship_and_the_blocked_player_cannot_tell() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let ann = one.player(&name("ann")).await;
    let bob = two.player(&name("bob")).await;
    let cat = one.player(&name("cat")).await;
    one.befriend(&ann, &bob).await;
    one.befriend(&ann, &cat).await;
    one.befriend(&bob, &cat).await;
    let block = format!("/v1/friends/{}/block", bob.id);

    one.post(&block, &ann.token, json!({})).await.expect(204);
    one.post(&block, &ann.token, json!({})).await.expect(204);
    assert_eq!(listed(&one, &ann, "").await, [cat.id.as_str()]);
    assert_eq!(listed(&two, &bob, "").await, [cat.id.as_str()]);
    let blocks = one.get("/v1/blocks", &ann.token).await.expect(200);
    assert_eq!(ids(&blocks), [bob.id.as_str()]);
    assert_eq!(blocks["items"][0]["state"], "blocked");
    assert_eq!(listed(&one, &ann, "?state=blocked").await, [bob.id.as_str()]);

    // Bob hears what any refused asker hears; Ann is told why.
    assert_eq!(
        two.post(&friend(&ann.id), &bob.token, json!({}))
            .await
            .expect(403)["error"]["message"],
        REFUSED
    );
    assert_eq!(
        one.post(&friend(&bob.id), &ann.token, json!({})).await.error(409),
        "conflict"
    );
    // The friends they share are listed to Bob as to anyone: a block shows nowhere.
    assert_eq!(
        two.get(&format!("/v1/friends/{}/mutual", ann.id), &bob.token)
            .await
            .expect(200)["total"],
        1
    );
    assert_eq!(
        one.get(&format!("/v1/friends/{}/mutual", bob.id), &ann.token)
            .await
            .expect(200)["total"],
        1
    );
    two.delete(&friend(&ann.id), &bob.token).await.error(404);

    // Bob blocks back: Ann's block stays, and so does his after she lifts hers.
    two.post(&format!("/v1/friends/{}/block", ann.id), &bob.token, json!({}))
        .await
        .expect(204);
    one.delete(&block, &ann.token).await.expect(204);
    one.delete(&block, &ann.token).await.error(404);
    assert!(ids(&one.get("/v1/blocks", &ann.token).await.expect(200)).is_empty());
    assert_eq!(
        one.post(&friend(&bob.id), &ann.token, json!({}))
            .await
            .expect(403)["error"]["message"],
        REFUSED
    );
    assert_eq!(
        ids(&two.get("/v1/blocks", &bob.token).await.expect(200)),
        [ann.id.as_str()]
    );
    two.delete(&format!("/v1/friends/{}/block", ann.id), &bob.token)
        .await
        .expect(204);
    one.post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
}

/// What a player hears on each path toward another: status and body, with the other's id and
/// names taken out so two players' answers compare.
async fn heard(replica: &Replica, me: &Player, other: &Player, username: &str) -> Vec<(String, u16, Value)> {
    let mut heard = Vec::new();
    let mut note = |path: &str, answer: support::Answer| {
        let body = serde_json::to_string(&answer.body)
            .expect("json")
            .replace(&other.id, "ID")
            .replace(username, "NAME");
        heard.push((
            path.to_owned(),
            answer.status.as_u16(),
            serde_json::from_str(&body).expect("json"),
        ));
    };
    let id = &other.id;
    note(
        "profile",
        replica.get(&format!("/v1/players/{id}"), &me.token).await,
    );
    let hello = json!({"body": "hello"});
    note(
        "message",
        replica
            .post(&format!("/v1/players/{id}/messages"), &me.token, hello)
            .await,
    );
    note("request", replica.post(&friend(id), &me.token, json!({})).await);
    note(
        "accept",
        replica
            .post(&format!("/v1/friends/{id}/accept"), &me.token, json!({}))
            .await,
    );
    note(
        "decline",
        replica
            .post(&format!("/v1/friends/{id}/decline"), &me.token, json!({}))
            .await,
    );
    note("remove", replica.delete(&friend(id), &me.token).await);
    note(
        "mutual",
        replica.get(&format!("/v1/friends/{id}/mutual"), &me.token).await,
    );
    let found = replica
        .get(&format!("/v1/players/search?q={username}"), &me.token)
        .await;
    let found_it = found
        .body
        .as_array()
        .is_some_and(|hits| hits.iter().any(|hit| hit["id"] == id.as_str()));
    heard.push(("search".into(), found.status.as_u16(), json!(found_it)));
    heard
}

#[tokio::test]
async fn a_blocked_player_hears_on_every_path_what_a_player_refused_by_privacy_settings_hears() {
    let replica = Deployment::new().replica().await;
    // Ann blocked Bob; Cat blocked nobody but lets nobody in; Dan is a stranger to Cat.
    let (ann_name, cat_name) = (name("ann"), name("cat"));
    let ann = replica.player(&ann_name).await;
    let bob = replica.player(&name("bob")).await;
    let cat = replica.player(&cat_name).await;
    let dan = replica.player(&name("dan")).await;
    let everyone =
        json!({"privacy": {"presence": "everyone", "messages": "everyone", "friendRequests": "everyone"}});
    replica
        .call(Method::PATCH, "/v1/players/me", Some(&ann.token), Some(everyone))
        .await
        .expect(200);
    let strict =
        json!({"privacy": {"presence": "nobody", "messages": "friends", "friendRequests": "nobody"}});
    replica
        .call(Method::PATCH, "/v1/players/me", Some(&cat.token), Some(strict))
        .await
        .expect(200);
    replica.block(&ann, &bob).await;
    // The search index is eventually consistent: wait until both names are found.
    for username in [&ann_name, &cat_name] {
        for _ in 0..50 {
            let hits = replica
                .get(&format!("/v1/players/search?q={username}"), &dan.token)
                .await
                .expect(200);
            if hits.as_array().is_some_and(|hits| !hits.is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    let blocked = heard(&replica, &bob, &ann, &ann_name).await;
    let refused = heard(&replica, &dan, &cat, &cat_name).await;
    for (blocked, refused) in blocked.iter().zip(&refused) {
        assert_eq!(blocked, refused, "a block shows on {}", blocked.0);
    }
    assert_eq!(blocked.len(), refused.len());
}

#[tokio::test]
async fn a_block_ends_a_pending_request_and_is_kept_when_the_blocked_player_asks_again() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    replica
        .post(&friend(&ann.id), &bob.token, json!({}))
        .await
        .expect(201);
    replica
        .post(&format!("/v1/friends/{}/block", bob.id), &ann.token, json!({}))
        .await
        .expect(204);
    assert!(listed(&replica, &bob, "").await.is_empty());
    replica
        .post(&friend(&ann.id), &bob.token, json!({}))
        .await
        .error(403);
    let edge = replica
        .state
        .edges
        .get(&format!("{}:{}", ann.id, bob.id))
        .await
        .expect("read")
        .expect("block kept");
    assert_eq!(edge.state, FriendState::Blocked);
    assert!(
        replica
            .state
            .edges
            .get(&format!("{}:{}", bob.id, ann.id))
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn mutual_friends_are_the_friends_both_have() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let mut shared = Vec::new();
    for _ in 0..3 {
        let pal = replica.player(&name("pal")).await;
        replica.befriend(&ann, &pal).await;
        replica.befriend(&bob, &pal).await;
        shared.push(pal.id);
    }
    let only_ann = replica.player(&name("solo")).await;
    replica.befriend(&ann, &only_ann).await;
    let asked = replica.player(&name("asked")).await;
    replica.befriend(&bob, &asked).await;
    replica
        .post(&friend(&asked.id), &ann.token, json!({}))
        .await
        .expect(201);

    let mutual = replica
        .get(&format!("/v1/friends/{}/mutual", bob.id), &ann.token)
        .await
        .expect(200);
    assert_eq!(mutual["total"], 3);
    let mut found = ids(&mutual);
    found.sort();
    shared.sort();
    assert_eq!(found, shared);
    let limited = replica
        .get(&format!("/v1/friends/{}/mutual?limit=2", bob.id), &ann.token)
        .await
        .expect(200);
    assert_eq!((limited["total"].clone(), ids(&limited).len()), (json!(3), 2));
    replica
        .get(&format!("/v1/friends/{}/mutual", ann.id), &ann.token)
        .await
        .error(403);
}

#[tokio::test]
async fn suggestions_rank_friends_of_friends_and_leave_out_who_they_must() {
    let replica = Deployment::new().replica().await;
    let me = replica.player(&name("me")).await;
    let mut pals = Vec::new();
    for _ in 0..3 {
        let pal = replica.player(&name("pal")).await;
        replica.befriend(&me, &pal).await;
        pals.push(pal);
    }
    // My friends know each other: still not suggested.
    replica.befriend(&pals[0], &pals[1]).await;
    let known_by = |count: usize| (count, pals[..count].to_vec());
    let mut expected = Vec::new();
    for (count, knowers) in [known_by(3), known_by(2), known_by(1)] {
        let candidate = replica.player(&name("cand")).await;
        for pal in &knowers {
            replica.befriend(pal, &candidate).await;
        }
        expected.push((candidate.id, count));
    }
    let choosy = replica.player(&name("fof")).await;
    set_requests(&replica, &choosy, "friendsOfFriends").await;
    replica.befriend(&choosy, &pals[2]).await;
    expected.push((choosy.id.clone(), 1));
    expected[2..].sort();

    let mut excluded = Vec::new();
    for _ in 0..5 {
        let player = replica.player(&name("out")).await;
        replica.befriend(&pals[0], &player).await;
        excluded.push(player);
    }
    let [asked, blocker, blocked, closed, banned] = excluded.as_slice() else {
        unreachable!("five players")
    };
    replica
        .post(&friend(&asked.id), &me.token, json!({}))
        .await
        .expect(201);
    replica
        .post(&format!("/v1/friends/{}/block", me.id), &blocker.token, json!({}))
        .await
        .expect(204);
    replica
        .post(&format!("/v1/friends/{}/block", blocked.id), &me.token, json!({}))
        .await
        .expect(204);
    set_requests(&replica, closed, "nobody").await;
    let ban = format!("/v1/admin/players/{}/ban", banned.id);
    replica
        .post(&ban, SERVICE_KEY, json!({"reason": "cheating"}))
        .await
        .expect(204);

    let body = replica
        .get("/v1/friends/suggestions", &me.token)
        .await
        .expect(200);
    let found: Vec<(String, usize)> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| {
            let count = s["mutualCount"].as_u64().expect("count");
            (
                s["player"]["id"].as_str().expect("id").to_owned(),
                usize::try_from(count).expect("small"),
            )
        })
        .collect();
    assert_eq!(found, expected);
    let first = replica
        .get("/v1/friends/suggestions?limit=1", &me.token)
        .await
        .expect(200);
    assert_eq!(ids(&first), [expected[0].0.as_str()]);
    let lonely = replica.player(&name("lonely")).await;
    assert!(
        ids(&replica
            .get("/v1/friends/suggestions", &lonely.token)
            .await
            .expect(200))
        .is_empty()
    );
}

#[tokio::test]
async fn edges_left_half_written_before_relationships_were_sequences_are_completed_by_a_retry() {
    let replica = Deployment::new().replica().await;
    let state_of = async |owner: &Player, other: &Player| {
        let id = FriendEdge::id_of(&owner.id, &other.id);
        replica
            .state
            .edges
            .get(&id)
            .await
            .expect("read")
            .map(|edge| edge.state)
    };

    // Ann's request wrote Bob's edge and stopped before her own.
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.write_edge(&bob, &ann, FriendState::InviteReceived).await;
    replica
        .post(&friend(&bob.id), &ann.token, json!({}))
        .await
        .expect(201);
    assert_eq!(state_of(&ann, &bob).await, Some(FriendState::InviteSent));
    assert_eq!(state_of(&bob, &ann).await, Some(FriendState::InviteReceived));
    assert_eq!(
        notifications(&replica, &bob).await,
        [("friendRequest".into(), ann.id.clone())]
    );

    // Bob's accept of Ann's request wrote Ann's edge and stopped before his own.
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.write_edge(&ann, &bob, FriendState::Mutual).await;
    replica.write_edge(&bob, &ann, FriendState::InviteReceived).await;
    let accept = format!("/v1/friends/{}/accept", ann.id);
    assert_eq!(
        replica.post(&accept, &bob.token, json!({})).await.expect(200)["state"],
        "mutual"
    );
    assert_eq!(state_of(&bob, &ann).await, Some(FriendState::Mutual));

    // Ann's removal deleted Bob's edge and stopped before her own.
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.write_edge(&ann, &bob, FriendState::Mutual).await;
    replica.delete(&friend(&bob.id), &ann.token).await.expect(204);
    assert_eq!(
        (state_of(&ann, &bob).await, state_of(&bob, &ann).await),
        (None, None)
    );
}
