//! The realtime connection and presence against the real FerretDB, Redis and OpenSearch, with
//! replicas in-process: events crossing replicas, presence privacy and blocks, authentication,
//! bad frames, sign-out, bans and token expiry.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use flotilla_player::model::{FriendEdge, FriendState};
use support::{Deployment, Player, Replica, SERVICE_KEY, name};

/// The longest any live wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A test client's WebSocket.
struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection attempt or a connection ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Closed(u16, String),
    /// The stream ended or failed without a close frame.
    Dropped,
}

impl Socket {
    /// Opens `/v1/realtime` with the token in the header and waits until the server has registered it.
    async fn open(replica: &Replica, token: &str) -> Self {
        let mut socket = Self::try_open(replica, Some(token), None)
            .await
            .expect("websocket opens");
        socket.ready().await;
        socket
    }

    async fn try_open(
        replica: &Replica,
        header: Option<&str>,
        query: Option<&str>,
    ) -> Result<Self, StatusCode> {
        let path = match query {
            Some(token) => format!("/v1/realtime?token={token}"),
            None => "/v1/realtime".to_owned(),
        };
        let mut request = replica.ws_url(&path).into_client_request().expect("request");
        if let Some(token) = header {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        match timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect in time")
        {
            Ok((stream, _)) => Ok(Self { stream }),
            Err(tungstenite::Error::Http(response)) => {
                Err(StatusCode::from_u16(response.status().as_u16()).expect("status"))
            }
            Err(error) => panic!("websocket failed: {error}"),
        }
    }

    async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    async fn send_raw(&mut self, message: Message) {
        timeout(WAIT, self.stream.send(message))
            .await
            .expect("send in time")
            .expect("sent");
    }

    /// Pings and waits for the pong: everything sent before has been handled, and since the server
    /// registers a connection before reading from it, the connection is live.
    async fn ready(&mut self) {
        self.send(json!({"type": "ping"})).await;
        self.wait_for(|frame| frame["type"] == "pong").await;
    }

    /// The next JSON frame, skipping control frames; panics if the connection ends.
    async fn next(&mut self) -> Value {
        loop {
            let message = timeout(WAIT, self.stream.next()).await.expect("a frame in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).expect("json frame");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// The first frame matching `wanted`, skipping others.
    async fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = timeout(deadline - Instant::now(), self.next())
                .await
                .expect("the awaited frame in time");
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// The next presence event about `player`.
    async fn presence_of(&mut self, player: &Player) -> Value {
        self.wait_for(|frame| frame["type"] == "presence" && frame["player"] == player.id.as_str())
            .await
    }

    /// Reads until the connection ends, returning the close frame's code and reason.
    async fn ended(&mut self) -> Ended {
        loop {
            match timeout(WAIT, self.stream.next())
                .await
                .expect("the connection ends in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ended::Closed(u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Ended::Dropped,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Closes from the client side, as a browser tab would.
    async fn close(mut self) {
        let _ = self.stream.close(None).await;
        while let Ok(Some(Ok(_))) = timeout(WAIT, self.stream.next()).await {}
    }
}

async fn set_presence_privacy(replica: &Replica, player: &Player, audience: &str) {
    let body =
        json!({"privacy": {"presence": audience, "messages": "friends", "friendRequests": "everyone"}});
    replica
        .call(Method::PATCH, "/v1/players/me", Some(&player.token), Some(body))
        .await
        .expect(200);
}

/// The ids among `of` whose presence `viewer` is shown.
async fn visible_presence(replica: &Replica, viewer: &Player, of: &[&Player]) -> Vec<String> {
    let ids: Vec<&str> = of.iter().map(|p| p.id.as_str()).collect();
    let body = replica
        .get(&format!("/v1/presence?ids={}", ids.join(",")), &viewer.token)
        .await
        .expect(200);
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["player"].as_str().expect("id").to_owned())
        .collect()
}

/// Polls `check` until it holds, failing the test after [`WAIT`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn friends_on_two_replicas_see_each_other_come_and_go_and_their_messages_arrive_live() {
    let deployment = Deployment::new();
    let one = deployment.replica().await;
    let two = deployment.replica().await;
    let ann = one.player(&name("ann")).await;
    let bob = two.player(&name("bob")).await;
    one.befriend(&ann, &bob).await;

    let mut ann_socket = Socket::open(&one, &ann.token).await;
    let mut bob_socket = Socket::open(&two, &bob.token).await;
    let online = ann_socket.presence_of(&bob).await;
    assert_eq!(online["status"], "online", "{online}");
    assert_eq!(visible_presence(&one, &ann, &[&bob]).await, vec![bob.id.clone()]);

    // Bob writes over HTTP to replica two; Ann, connected to replica one, gets it live.
    let path = format!("/v1/players/{}/messages", ann.id);
    let sent = two
        .post(&path, &bob.token, json!({"body": "good game!"}))
        .await
        .expect(201);
    let message = ann_socket.wait_for(|frame| frame["type"] == "message").await;
    assert_eq!(
        (
            message["id"].clone(),
            message["from"].as_str(),
            message["body"].as_str()
        ),
        (sent["id"].clone(), Some(bob.id.as_str()), Some("good game!"))
    );
    let notification = ann_socket.wait_for(|frame| frame["type"] == "notification").await;
    assert_eq!(
        (notification["kind"].as_str(), notification["subject"].as_str()),
        (Some("message"), Some(bob.id.as_str()))
    );
    assert_eq!(notification["content"]["messageId"], sent["id"]);
    // The sender's own connections see it too, for their other devices.
    let echoed = bob_socket.wait_for(|frame| frame["type"] == "message").await;
    assert_eq!(echoed["id"], sent["id"]);

    bob_socket
        .send(json!({"type": "status", "status": "inMatch", "payload": {"map": "harbour"}}))
        .await;
    let in_match = ann_socket.presence_of(&bob).await;
    assert_eq!(
        (in_match["status"].as_str(), in_match["payload"]["map"].as_str()),
        (Some("inMatch"), Some("harbour"))
    );

    bob_socket.close().await;
    let offline = ann_socket.presence_of(&bob).await;
    assert!(
        offline.get("status").is_none(),
        "offline has no status: {offline}"
    );
    let (one, ann, bob) = (&one, &ann, &bob);
    eventually("bob reads as offline", || async move {
        visible_presence(one, ann, &[bob]).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_second_connection_keeps_the_player_online_until_the_last_one_closes() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    replica.befriend(&ann, &bob).await;
    let mut ann_socket = Socket::open(&replica, &ann.token).await;
    let phone = Socket::open(&replica, &bob.token).await;
    ann_socket.presence_of(&bob).await;
    let laptop = Socket::open(&replica, &bob.token).await;
    phone.close().await;
    // Still online on the laptop: the next presence event Ann gets is the laptop closing.
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        visible_presence(&replica, &ann, &[&bob]).await,
        vec![bob.id.clone()]
    );
    laptop.close().await;
    let offline = ann_socket.presence_of(&bob).await;
    assert!(offline.get("status").is_none(), "{offline}");
}

#[tokio::test]
async fn presence_is_shown_as_each_players_privacy_setting_allows() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let fred = replica.player(&name("fred")).await;
    let sam = replica.player(&name("sam")).await;
    replica.befriend(&ann, &fred).await;
    let mut fred_socket = Socket::open(&replica, &fred.token).await;
    let mut ann_socket = Socket::open(&replica, &ann.token).await;
    assert_eq!(fred_socket.presence_of(&ann).await["status"], "online");

    // Friends (the default): the friend sees her, a stranger does not.
    assert_eq!(
        visible_presence(&replica, &fred, &[&ann]).await,
        vec![ann.id.clone()]
    );
    assert!(visible_presence(&replica, &sam, &[&ann]).await.is_empty());

    set_presence_privacy(&replica, &ann, "everyone").await;
    assert_eq!(
        visible_presence(&replica, &sam, &[&ann]).await,
        vec![ann.id.clone()]
    );
    ann_socket.send(json!({"type": "status", "status": "away"})).await;
    assert_eq!(fred_socket.presence_of(&ann).await["status"], "away");

    // Nobody: hidden from all but herself, and her changes are not pushed.
    set_presence_privacy(&replica, &ann, "nobody").await;
    assert!(visible_presence(&replica, &fred, &[&ann]).await.is_empty());
    assert!(visible_presence(&replica, &sam, &[&ann]).await.is_empty());
    assert_eq!(
        visible_presence(&replica, &ann, &[&ann]).await,
        vec![ann.id.clone()]
    );
    ann_socket
        .send(json!({"type": "status", "status": "inMatch"}))
        .await;
    ann_socket.ready().await;

    // Back to friends: the next event Fred gets is this one, so the hidden change never reached him.
    set_presence_privacy(&replica, &ann, "friends").await;
    ann_socket
        .send(json!({"type": "status", "status": "online"}))
        .await;
    assert_eq!(fred_socket.presence_of(&ann).await["status"], "online");
}

#[tokio::test]
async fn a_block_hides_presence_both_ways_even_between_friends() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let cat = replica.player(&name("cat")).await;
    set_presence_privacy(&replica, &ann, "everyone").await;
    set_presence_privacy(&replica, &bob, "everyone").await;
    let mut ann_socket = Socket::open(&replica, &ann.token).await;
    let _bob_socket = Socket::open(&replica, &bob.token).await;
    assert_eq!(
        visible_presence(&replica, &bob, &[&ann]).await,
        vec![ann.id.clone()]
    );

    replica.block(&ann, &bob).await;
    assert!(
        visible_presence(&replica, &bob, &[&ann]).await.is_empty(),
        "the blocked player cannot see the blocker"
    );
    assert!(
        visible_presence(&replica, &ann, &[&bob]).await.is_empty(),
        "nor the blocker the blocked"
    );
    assert_eq!(
        visible_presence(&replica, &cat, &[&ann, &bob]).await.len(),
        2,
        "others are unaffected"
    );

    // Friends until Cat blocks Ann: from then on neither hears of the other.
    replica.befriend(&ann, &cat).await;
    let mut cat_socket = Socket::open(&replica, &cat.token).await;
    assert_eq!(ann_socket.presence_of(&cat).await["status"], "online");
    replica.block(&cat, &ann).await;
    for socket in [&mut ann_socket, &mut cat_socket] {
        socket.send(json!({"type": "status", "status": "away"})).await;
        socket.ready().await;
    }
    // Unblocked and friends again: the first presence events either gets are the ones after.
    replica
        .call(
            Method::DELETE,
            &format!("/v1/friends/{}/block", ann.id),
            Some(&cat.token),
            None,
        )
        .await
        .expect(204);
    replica.befriend(&ann, &cat).await;
    ann_socket
        .send(json!({"type": "status", "status": "inMatch"}))
        .await;
    assert_eq!(cat_socket.presence_of(&ann).await["status"], "inMatch");
    cat_socket
        .send(json!({"type": "status", "status": "inMatch"}))
        .await;
    assert_eq!(ann_socket.presence_of(&cat).await["status"], "inMatch");
}

#[tokio::test]
async fn a_half_written_block_already_hides_presence() {
    let replica = Deployment::new().replica().await;
    let (ann, cat) = (
        replica.player(&name("ann")).await,
        replica.player(&name("cat")).await,
    );
    replica.befriend(&ann, &cat).await;
    let mut ann_socket = Socket::open(&replica, &ann.token).await;
    let mut cat_socket = Socket::open(&replica, &cat.token).await;
    assert_eq!(ann_socket.presence_of(&cat).await["status"], "online");
    // Cat's block as far as its first write: Ann's edge is gone, Cat's own still says mutual.
    let anns_edge = FriendEdge::id_of(&ann.id, &cat.id);
    replica
        .state
        .edges
        .delete_one(mongodb::bson::doc! {"_id": anns_edge})
        .await
        .expect("edge removed");
    cat_socket.send(json!({"type": "status", "status": "away"})).await;
    cat_socket.ready().await;
    // With the pair restored, the first event Ann gets is the one after.
    replica.write_edge(&ann, &cat, FriendState::Mutual).await;
    cat_socket
        .send(json!({"type": "status", "status": "inMatch"}))
        .await;
    assert_eq!(ann_socket.presence_of(&cat).await["status"], "inMatch");
}

#[tokio::test]
async fn presence_queries_are_bounded() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    replica.get("/v1/presence", &ann.token).await.error(400);
    replica.get("/v1/presence?ids=,,", &ann.token).await.error(400);
    let many: Vec<String> = (0..101).map(|i| format!("p{i}")).collect();
    replica
        .get(&format!("/v1/presence?ids={}", many.join(",")), &ann.token)
        .await
        .error(400);
    let unknown = replica
        .get(
            &format!("/v1/presence?ids=nobody,{}", "x".repeat(300)),
            &ann.token,
        )
        .await
        .expect(200);
    assert_eq!(unknown["items"], json!([]));
    replica
        .call(Method::GET, "/v1/presence?ids=a", None, None)
        .await
        .error(401);
}

#[tokio::test]
async fn a_missing_bad_expired_or_revoked_token_refuses_the_upgrade_with_401() {
    let mut deployment = Deployment::new();
    deployment.access_token_seconds = 1;
    let replica = deployment.replica().await;
    let ann = replica.player(&name("ann")).await;
    assert_eq!(
        Socket::try_open(&replica, None, None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        Socket::try_open(&replica, Some("not-a-token"), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        Socket::try_open(&replica, None, Some("a.b.c")).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    replica.state.clock.advance(Duration::from_secs(2));
    assert_eq!(
        Socket::try_open(&replica, Some(&ann.token), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );

    let fresh = replica
        .call(
            Method::POST,
            "/v1/auth/device",
            None,
            Some(json!({"id": ann.device})),
        )
        .await
        .expect(200);
    let token = fresh["accessToken"].as_str().expect("token").to_owned();
    replica
        .call(Method::POST, "/v1/auth/logout", Some(&token), None)
        .await
        .expect(204);
    assert_eq!(
        Socket::try_open(&replica, Some(&token), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn browsers_may_pass_the_token_in_the_query_string() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let mut socket = Socket::try_open(&replica, None, Some(&ann.token))
        .await
        .expect("opens with ?token=");
    socket.ready().await;
}

#[tokio::test]
async fn bad_frames_are_answered_with_errors_and_a_flood_closes_only_that_connection() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let mut noisy = Socket::open(&replica, &ann.token).await;
    let mut quiet = Socket::open(&replica, &ann.token).await;

    let bad_frames = [
        Message::text("not json"),
        Message::text(json!({"type": "dance"}).to_string()),
        Message::text(json!({"type": "status", "status": "busy"}).to_string()),
        Message::text(json!({"type": "ping", "extra": true}).to_string()),
        Message::text(json!({"type": "status", "status": "away", "payload": [1, 2]}).to_string()),
        Message::text(
            json!({"type": "status", "status": "away", "payload": {"x": "y".repeat(2000)}}).to_string(),
        ),
        Message::text("x".repeat(5000)),
        Message::binary(vec![1, 2, 3]),
    ];
    let count = bad_frames.len();
    for frame in bad_frames {
        noisy.send_raw(frame).await;
        let answer = noisy.next().await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert!(
            answer["code"].is_string() && answer["message"].is_string(),
            "{answer}"
        );
    }
    noisy.ready().await;
    assert!(visible_presence(&replica, &ann, &[&ann]).await.contains(&ann.id));

    for _ in count..20 {
        // The server may close part-way through; later sends may then fail.
        let _ = noisy.stream.send(Message::text("{")).await;
    }
    assert_eq!(
        noisy.ended().await,
        Ended::Closed(1008, "too many invalid frames".into())
    );
    quiet.ready().await;

    // Past the socket's limit the frame cannot be read, so the connection ends; others live on.
    let mut huge = Socket::open(&replica, &ann.token).await;
    huge.send_raw(Message::text("x".repeat(20 * 1024))).await;
    match huge.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 1009),
        Ended::Dropped => {}
    }
    quiet.ready().await;
}

#[tokio::test]
async fn status_changes_are_rate_limited() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let mut socket = Socket::open(&replica, &ann.token).await;
    for status in ["away", "online"].iter().cycle().take(10) {
        socket.send(json!({"type": "status", "status": status})).await;
    }
    socket.send(json!({"type": "status", "status": "away"})).await;
    let refused = socket.wait_for(|frame| frame["type"] == "error").await;
    assert_eq!(refused["code"], "rate_limited");
}

#[tokio::test]
async fn signing_out_closes_that_sessions_socket_and_no_other() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let other_sign_in = replica
        .call(
            Method::POST,
            "/v1/auth/device",
            None,
            Some(json!({"id": ann.device})),
        )
        .await
        .expect(200);
    let mut first = Socket::open(&replica, &ann.token).await;
    let mut second = Socket::open(&replica, other_sign_in["accessToken"].as_str().expect("token")).await;

    replica
        .call(Method::POST, "/v1/auth/logout", Some(&ann.token), None)
        .await
        .expect(204);
    let event = first.wait_for(|frame| frame["type"] == "disconnect").await;
    assert_eq!(event["reason"], "signed out");
    assert_eq!(first.ended().await, Ended::Closed(4000, "signed out".into()));
    second.ready().await;
}

#[tokio::test]
async fn a_ban_closes_every_connection_of_the_player_on_every_replica() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let hal = one.player(&name("hal")).await;
    let mut here = Socket::open(&one, &hal.token).await;
    let mut there = Socket::open(&two, &hal.token).await;
    let path = format!("/v1/admin/players/{}/ban", hal.id);
    one.post(&path, SERVICE_KEY, json!({"reason": "cheating"}))
        .await
        .expect(204);
    for socket in [&mut here, &mut there] {
        assert_eq!(
            socket.wait_for(|frame| frame["type"] == "disconnect").await["reason"],
            "banned"
        );
        assert_eq!(socket.ended().await, Ended::Closed(4000, "banned".into()));
    }
}

#[tokio::test]
async fn a_connection_ends_when_its_token_expires_unless_renewed_with_a_token_of_the_same_sign_in() {
    let mut deployment = Deployment::new();
    deployment.access_token_seconds = 60;
    let replica = deployment.replica().await;
    let clock = &replica.state.clock;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    let mut kept = Socket::open(&replica, &ann.token).await;
    let mut lapsing = Socket::open(&replica, &ann.token).await;

    clock.advance(Duration::from_secs(30));
    let refreshed = replica
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refreshToken": ann.refresh})),
        )
        .await
        .expect(200);
    let token = refreshed["accessToken"].as_str().expect("token");
    kept.send(json!({"type": "renew", "token": token})).await;
    let renewed = kept.wait_for(|frame| frame["type"] == "renewed").await;
    assert!(renewed["expiresAt"].as_i64().is_some(), "{renewed}");
    // Another player's token does not renew this connection.
    kept.send(json!({"type": "renew", "token": bob.token})).await;
    assert_eq!(
        kept.wait_for(|frame| frame["type"] == "error").await["code"],
        "bad_token"
    );

    // Past the first token's expiry, short of the renewed one's: a connection notices the time
    // whenever it wakes (here, for a ping).
    clock.advance(Duration::from_secs(35));
    lapsing.send(json!({"type": "ping"})).await;
    assert_eq!(
        lapsing.ended().await,
        Ended::Closed(4001, "access token expired".into())
    );
    kept.ready().await;
    clock.advance(Duration::from_secs(30));
    kept.send(json!({"type": "ping"})).await;
    assert_eq!(
        kept.ended().await,
        Ended::Closed(4001, "access token expired".into())
    );
}

#[tokio::test]
async fn the_connection_gauge_and_presence_are_cleaned_up_when_a_client_leaves() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let gauge = |metrics: String| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("flotilla_player_websocket_connections "))
            .map(|value| value.trim().to_owned())
    };
    let socket = Socket::open(&replica, &ann.token).await;
    assert_eq!(gauge(replica.metrics().await).as_deref(), Some("1"));
    assert_eq!(
        visible_presence(&replica, &ann, &[&ann]).await,
        vec![ann.id.clone()]
    );
    // Dropped without a close handshake, as when a phone loses its network.
    drop(socket);
    let (replica, ann) = (&replica, &ann);
    eventually("the gauge drops", || async move {
        gauge(replica.metrics().await).as_deref() == Some("0")
    })
    .await;
    eventually("presence is removed", || async move {
        visible_presence(replica, ann, &[ann]).await.is_empty()
    })
    .await;
}
