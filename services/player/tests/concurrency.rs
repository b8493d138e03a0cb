//! Writes that race, against the real FerretDB, which makes only unique inserts and deletes by `_id`
//! atomic (an update's filter holds only when the document is read; concurrent updates overwrite each
//! other). Each test fires conflicting requests at once, across two replicas, many rounds over, and
//! checks that exactly one outcome stands. docs/storage.md lists which write each one covers.

mod support;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Answer, Deployment, Player, Replica, SERVICE_KEY, name};

const ROUNDS: usize = 8;

/// The answers to `requests`, sent at once.
async fn all_at_once<F>(requests: Vec<F>) -> Vec<Answer>
where
    F: Future<Output = Answer>,
{
    join_all(requests).await
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    statuses.sort_unstable();
    statuses
}

/// Asserts that the tokens a sign-in or refresh answered with work no more.
async fn assert_revoked(replica: &Replica, tokens: &Value) {
    let refresh = tokens["refreshToken"].as_str().expect("refresh token");
    replica.refresh(refresh).await.error(401);
    let access = tokens["accessToken"].as_str().expect("access token");
    replica.get("/v1/players/me", access).await.error(401);
}

async fn two_replicas() -> (Replica, Replica) {
    let deployment = Deployment::new();
    (deployment.replica().await, deployment.replica().await)
}

/// How `of` stands with `with`, from `of`'s own friend list ("none" when absent).
async fn standing(replica: &Replica, of: &Player, with: &Player) -> String {
    for state in ["mutual", "inviteSent", "inviteReceived", "blocked"] {
        let page = replica
            .get(&format!("/v1/friends?state={state}"), &of.token)
            .await
            .expect(200);
        let listed = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|item| item["player"]["id"] == with.id.as_str());
        if listed {
            return state.into();
        }
    }
    "none".into()
}

#[tokio::test]
async fn accepting_and_declining_one_request_at_once_has_one_outcome_and_the_other_hears_409() {
    let (one, two) = two_replicas().await;
    let ann = one.player(&name("ann")).await;
    let bob = one.player(&name("bob")).await;
    for round in 0..ROUNDS {
        one.ask(&ann, &bob).await.expect(201);
        let accept = format!("/v1/friends/{}/accept", ann.id);
        let decline = format!("/v1/friends/{}/decline", ann.id);
        let (accepted, declined) = tokio::join!(
            one.post(&accept, &bob.token, json!({})),
            two.post(&decline, &bob.token, json!({})),
        );
        let (a, d) = (accepted.status.as_u16(), declined.status.as_u16());
        let (anns, bobs) = (standing(&one, &ann, &bob).await, standing(&two, &bob, &ann).await);
        match (a, d) {
            (200, 409) => assert_eq!(
                (anns.as_str(), bobs.as_str()),
                ("mutual", "mutual"),
                "round {round}"
            ),
            (409, 204) => assert_eq!((anns.as_str(), bobs.as_str()), ("none", "none"), "round {round}"),
            other => panic!("round {round}: accept and decline answered {other:?}; one must win"),
        }
        if anns == "mutual" {
            one.delete(&format!("/v1/friends/{}", bob.id), &ann.token)
                .await
                .expect(204);
        }
    }
}

#[tokio::test]
async fn a_block_racing_an_accept_always_ends_blocked() {
    let (one, two) = two_replicas().await;
    let ann = one.player(&name("ann")).await;
    let bob = one.player(&name("bob")).await;
    for round in 0..ROUNDS {
        one.ask(&ann, &bob).await.expect(201);
        let (accept, block) = (
            format!("/v1/friends/{}/accept", ann.id),
            format!("/v1/friends/{}/block", bob.id),
        );
        let (accepted, blocked) = tokio::join!(
            one.post(&accept, &bob.token, json!({})),
            two.post(&block, &ann.token, json!({})),
        );
        blocked.expect(204);
        // Before the block, the accept made them friends (and the block ended it); after it, the
        // request was gone and the accept lost the race.
        assert!(
            matches!(accepted.status.as_u16(), 200 | 409),
            "round {round}: accept answered {:?}",
            accepted.body
        );
        assert_eq!(standing(&one, &ann, &bob).await, "blocked", "round {round}");
        assert_eq!(standing(&two, &bob, &ann).await, "none", "round {round}");
        one.delete(&format!("/v1/friends/{}/block", bob.id), &ann.token)
            .await
            .expect(204);
    }
}

#[tokio::test]
async fn of_eight_refreshes_with_one_token_at_most_one_gets_a_session_and_the_reuse_revokes_it() {
    let (one, two) = two_replicas().await;
    for round in 0..ROUNDS {
        let player = one.player(&name("cat")).await;
        let requests = (0..8)
            .map(|n| {
                let replica = if n % 2 == 0 { &one } else { &two };
                replica.refresh(&player.refresh)
            })
            .collect();
        let answers = all_at_once(requests).await;
        let granted: Vec<&Value> = answers
            .iter()
            .filter(|a| a.status.as_u16() == 200)
            .map(|a| &a.body)
            .collect();
        assert!(
            granted.len() <= 1,
            "round {round}: {} refreshes of one token succeeded",
            granted.len()
        );
        assert!(
            answers.iter().all(|a| matches!(a.status.as_u16(), 200 | 401)),
            "round {round}: {:?}",
            statuses(&answers)
        );
        // The others presented a used token: the sign-in is revoked, including what the winner got.
        for tokens in granted {
            assert_revoked(&one, tokens).await;
        }
        one.get("/v1/players/me", &player.token).await.error(401);
    }
}

#[tokio::test]
async fn a_refresh_racing_sign_out_leaves_no_working_token() {
    let (one, two) = two_replicas().await;
    for _ in 0..ROUNDS {
        let player = one.player(&name("dot")).await;
        let (refreshed, signed_out) = tokio::join!(
            one.refresh(&player.refresh),
            two.call(Method::POST, "/v1/auth/logout", Some(&player.token), None),
        );
        signed_out.expect(204);
        if refreshed.status.as_u16() == 200 {
            assert_revoked(&one, &refreshed.body).await;
        } else {
            refreshed.error(401);
        }
    }
}

#[tokio::test]
async fn eight_first_sign_ins_with_one_new_device_make_one_account() {
    let (one, two) = two_replicas().await;
    for round in 0..ROUNDS {
        let device = format!("race-device-{}", name("d"));
        let requests = (0..8)
            .map(|n| {
                let replica = if n % 2 == 0 { &one } else { &two };
                replica.call(Method::POST, "/v1/auth/device", None, Some(json!({"id": device})))
            })
            .collect();
        let answers = all_at_once(requests).await;
        let created = answers.iter().filter(|a| a.status.as_u16() == 201).count();
        assert_eq!(created, 1, "round {round}: {:?}", statuses(&answers));
        let mut ids: Vec<&str> = answers
            .iter()
            .map(|a| a.body["player"]["id"].as_str().expect("signed in"))
            .collect();
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every sign-in reached the one account"
        );
    }
    let players = one
        .state
        .players
        .count(mongodb::bson::doc! {})
        .await
        .expect("count");
    assert_eq!(players, ROUNDS as u64, "no account left over from a lost race");
}

#[tokio::test]
async fn eight_registrations_of_one_username_or_one_email_make_one_account() {
    let (one, two) = two_replicas().await;
    let username = name("eve");
    let email = format!("{}@example.com", name("eve"));
    for (what, bodies) in [
        (
            "username",
            (0..8)
                .map(|n| json!({"email": format!("{n}{email}"), "password": "long enough", "username": username}))
                .collect::<Vec<_>>(),
        ),
        (
            "email",
            (0..8)
                .map(|n| json!({"email": email, "password": "long enough", "username": format!("{username}{n}")}))
                .collect(),
        ),
    ] {
        let requests = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| {
                let replica = if n % 2 == 0 { &one } else { &two };
                replica.call(Method::POST, "/v1/auth/email/register", None, Some(body))
            })
            .collect();
        let answers = all_at_once(requests).await;
        assert_eq!(
            statuses(&answers),
            [201, 409, 409, 409, 409, 409, 409, 409],
            "one {what}"
        );
    }
    let players = one
        .state
        .players
        .count(mongodb::bson::doc! {})
        .await
        .expect("count");
    assert_eq!(players, 2, "one account per race, none left over");
}

#[tokio::test]
async fn unlinking_two_methods_at_once_never_leaves_an_account_without_one() {
    let (one, two) = two_replicas().await;
    for round in 0..ROUNDS {
        let player = one.player(&name("fay")).await;
        let custom = format!("custom-{}", name("f"));
        one.post("/v1/auth/link/custom", &player.token, json!({"id": custom}))
            .await
            .expect(204);
        let (a, b) = tokio::join!(
            one.post("/v1/auth/unlink/custom", &player.token, json!({"id": custom})),
            two.post(
                "/v1/auth/unlink/device",
                &player.token,
                json!({"id": player.device})
            ),
        );
        let answered = statuses(&[a, b]);
        let left = one
            .state
            .identities
            .count(mongodb::bson::doc! {"player": &player.id})
            .await
            .expect("count");
        assert!(left >= 1, "round {round}: no way to sign in left ({answered:?})");
        let unlinked = answered.iter().filter(|&&s| s == 204).count() as u64;
        assert_eq!(
            left,
            2 - unlinked,
            "round {round}: answers {answered:?} match what is left"
        );
    }
}

#[tokio::test]
async fn a_ban_landing_among_profile_updates_is_never_lost() {
    let (one, two) = two_replicas().await;
    let admin = Some(SERVICE_KEY);
    for round in 0..ROUNDS {
        let player = one.player(&name("gil")).await;
        let ban = format!("/v1/admin/players/{}/ban", player.id);
        let mut requests: Vec<_> = (0..6)
            .map(|n| {
                let replica = if n % 2 == 0 { &one } else { &two };
                let body = json!({"displayName": format!("Gil {n}")});
                replica.call(Method::PATCH, "/v1/players/me", Some(&player.token), Some(body))
            })
            .collect();
        requests.insert(
            3,
            one.call(Method::POST, &ban, admin, Some(json!({"reason": "cheating"}))),
        );
        all_at_once(requests).await;
        let stored = one
            .state
            .players
            .get(&player.id)
            .await
            .expect("read")
            .expect("player");
        assert!(stored.banned.is_some(), "round {round}: the ban was overwritten");
        let device = json!({"id": player.device});
        let sign_in = two
            .call(Method::POST, "/v1/auth/device", None, Some(device))
            .await;
        assert_eq!(sign_in.error(403), "banned", "round {round}");
    }
}

#[tokio::test]
async fn read_markers_moved_to_many_messages_at_once_end_at_the_newest() {
    let (one, two) = two_replicas().await;
    let ann = one.player(&name("ann")).await;
    let bob = one.player(&name("bob")).await;
    let settings =
        json!({"privacy": {"messages": "everyone", "presence": "friends", "friendRequests": "everyone"}});
    one.call(Method::PATCH, "/v1/players/me", Some(&bob.token), Some(settings))
        .await
        .expect(200);
    let settings =
        json!({"privacy": {"messages": "everyone", "presence": "friends", "friendRequests": "everyone"}});
    one.call(Method::PATCH, "/v1/players/me", Some(&ann.token), Some(settings))
        .await
        .expect(200);
    let to_bob = format!("/v1/players/{}/messages", bob.id);
    let to_ann = format!("/v1/players/{}/messages", ann.id);
    for round in 0..ROUNDS / 2 {
        // Both write at once, on both replicas: each message moves both players' list entries.
        let sends = (0..12)
            .map(|n| {
                let (replica, from, path) = if n % 2 == 0 {
                    (&one, &ann, &to_bob)
                } else {
                    (&two, &bob, &to_ann)
                };
                let body = json!({"body": format!("message {round}.{n}")});
                replica.post(path, &from.token, body)
            })
            .collect();
        let mut sent: Vec<String> = all_at_once(sends)
            .await
            .into_iter()
            .map(|answer| answer.expect(201)["id"].as_str().expect("id").to_owned())
            .collect();
        sent.sort();
        let read = format!("/v1/players/{}/messages/read", ann.id);
        let requests = sent
            .iter()
            .rev()
            .enumerate()
            .map(|(n, id)| {
                let replica = if n % 2 == 0 { &one } else { &two };
                replica.post(&read, &bob.token, json!({"upTo": id}))
            })
            .collect();
        for answer in all_at_once(requests).await {
            answer.expect(200);
        }
        let history = one
            .get(&format!("/v1/players/{}/messages", ann.id), &bob.token)
            .await
            .expect(200);
        let newest = sent.last().expect("sent");
        assert_eq!(history["myReadUpTo"], newest.as_str(), "round {round}");
        assert_eq!(history["unread"], 0, "round {round}");
        for player in [&ann, &bob] {
            let conversations = one.get("/v1/conversations", &player.token).await.expect(200);
            assert_eq!(
                conversations["items"][0]["lastMessage"]["id"],
                newest.as_str(),
                "round {round}: the list shows the newest message"
            );
        }
    }
}
