//! Signing in: email + password, device id and custom id; linking several methods to one account;
//! access and refresh tokens; sign-out; per-account and per-address limits on attempts.
//!
//! Accounts are created without transactions: the player document first (its unique username index
//! settles name races), then the identity (its unique `_id` settles identifier races). If the identity
//! loses, the player just created is deleted again.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use flotilla_storage::rate_limit::Check;

use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::metrics::LoginLabels;
use crate::model::{Identity, Method, Player, Privacy, RefreshToken, RevokedSession, new_id, random};
use crate::passwords;
use crate::players::{self, OwnProfile};
use crate::rules;
use crate::session::{self, Session};
use crate::state::Shared;
use crate::tokens::{AUDIENCE, Claims, ISSUER};
use flotilla_service::extract::JsonBody;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/auth/email/register", post(register_email))
        .route("/v1/auth/email/login", post(login_email))
        .route("/v1/auth/device", post(login_device))
        .route("/v1/auth/custom", post(login_custom))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/keys", axum::routing::get(keys))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/link/email", post(link_email))
        .route("/v1/auth/link/device", post(link_device))
        .route("/v1/auth/link/custom", post(link_custom))
        .route("/v1/auth/unlink/email", post(unlink_email))
        .route("/v1/auth/unlink/device", post(unlink_device))
        .route("/v1/auth/unlink/custom", post(unlink_custom))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailRegistration {
    #[schemars(pattern(rules::EMAIL.pattern), length(min = rules::EMAIL.min, max = rules::EMAIL.max))]
    pub email: String,
    #[schemars(pattern(rules::PASSWORD.pattern), length(min = rules::PASSWORD.min, max = rules::PASSWORD.max))]
    pub password: String,
    #[schemars(pattern(rules::USERNAME.pattern), length(min = rules::USERNAME.min, max = rules::USERNAME.max))]
    pub username: String,
    #[serde(default)]
    #[schemars(pattern(rules::DISPLAY_NAME.pattern), length(min = rules::DISPLAY_NAME.min, max = rules::DISPLAY_NAME.max))]
    pub display_name: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailLogin {
    #[schemars(pattern(rules::EMAIL.pattern), length(min = rules::EMAIL.min, max = rules::EMAIL.max))]
    pub email: String,
    pub password: String,
}

/// Device or custom id sign-in; creates the account on first use unless `create` is false.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdLogin {
    /// Device ids are 10-128 printable ASCII characters, custom ids 6-128.
    pub id: String,
    #[serde(default)]
    #[schemars(pattern(rules::USERNAME.pattern), length(min = rules::USERNAME.min, max = rules::USERNAME.max))]
    pub username: Option<String>,
    #[serde(default = "yes")]
    pub create: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// An email and password to link.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkEmail {
    #[schemars(pattern(rules::EMAIL.pattern), length(min = rules::EMAIL.min, max = rules::EMAIL.max))]
    pub email: String,
    #[schemars(pattern(rules::PASSWORD.pattern), length(min = rules::PASSWORD.min, max = rules::PASSWORD.max))]
    pub password: String,
}

/// An email to unlink.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnlinkEmail {
    #[schemars(pattern(rules::EMAIL.pattern), length(min = rules::EMAIL.min, max = rules::EMAIL.max))]
    pub email: String,
}

/// A device or custom id to link or unlink: device ids are 10-128 printable ASCII characters,
/// custom ids 6-128.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkId {
    pub id: String,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub access_token: String,
    /// Seconds the access token is valid for.
    pub expires_in: u64,
    /// Single use: each refresh returns the next one.
    pub refresh_token: String,
    pub player: OwnProfile,
    /// True when this call created the account.
    pub created: bool,
}

/// The caller's address, for per-address limits: from the trusted proxies' header when configured,
/// else the TCP peer.
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<Shared> for ClientAddress {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        };
        let Some(source) = &state.config.client_address else {
            return Ok(Self(peer()));
        };
        let header = parts
            .headers
            .get_all(&source.header)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self(forwarded_client(&header, source.trusted_hops).or_else(peer)))
    }
}

/// The client's address in an `X-Forwarded-For`-style list that `hops` trusted proxies appended to:
/// the entry `hops` from the right. Entries further left were sent by the client and prove nothing.
/// `None` when the list is shorter than that or the entry is not an address.
fn forwarded_client(header: &str, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let index = entries.len().checked_sub(hops)?;
    entries.get(index)?.parse().ok()
}

async fn register_email(
    State(state): State<Shared>,
    address: ClientAddress,
    JsonBody(body): JsonBody<EmailRegistration>,
) -> Result<(StatusCode, Json<Tokens>)> {
    limit_sign_in(&state, &address, None).await?;
    let email = normalize_email(&body.email)?;
    validate_password(&body.password)?;
    players::validate_username(&body.username)?;
    let display_name = body.display_name.unwrap_or_else(|| body.username.clone());
    players::validate_display_name(&display_name)?;
    let secret_hash = passwords::hash(body.password).await?;
    let identity = Method::Email.identity_id(&email);
    let player = create_account(
        &state,
        &body.username,
        &display_name,
        identity,
        Method::Email,
        secret_hash,
    )
    .await?;
    let tokens = sign_in(&state, &player.id, "email", true).await?;
    record_login(&state, "email", "created");
    Ok((StatusCode::CREATED, Json(tokens)))
}

async fn login_email(
    State(state): State<Shared>,
    address: ClientAddress,
    JsonBody(body): JsonBody<EmailLogin>,
) -> Result<Json<Tokens>> {
    let email = normalize_email(&body.email)?;
    let identity_id = Method::Email.identity_id(&email);
    limit_sign_in(&state, &address, Some(&identity_id)).await?;
    let identity = state.identities.get(&identity_id).await?;
    // An unknown email costs one hash verification too, so timing does not reveal which emails exist.
    let stored = match &identity {
        Some(identity) => identity.secret_hash.clone(),
        None => passwords::decoy().await?,
    };
    let matches = passwords::verify(body.password, stored).await?;
    let Some(identity) = identity.filter(|_| matches) else {
        record_login(&state, "email", "refused");
        return Err(Error::Unauthenticated("email or password is wrong"));
    };
    let tokens = sign_in(&state, &identity.player, "email", false).await?;
    record_login(&state, "email", "ok");
    Ok(Json(tokens))
}

async fn login_device(
    State(state): State<Shared>,
    address: ClientAddress,
    JsonBody(body): JsonBody<IdLogin>,
) -> Result<(StatusCode, Json<Tokens>)> {
    login_by_id(state, address, Method::Device, body).await
}

async fn login_custom(
    State(state): State<Shared>,
    address: ClientAddress,
    JsonBody(body): JsonBody<IdLogin>,
) -> Result<(StatusCode, Json<Tokens>)> {
    login_by_id(state, address, Method::Custom, body).await
}

async fn login_by_id(
    state: Shared,
    address: ClientAddress,
    method: Method,
    body: IdLogin,
) -> Result<(StatusCode, Json<Tokens>)> {
    validate_id(method, &body.id)?;
    let identity_id = method.identity_id(&body.id);
    limit_sign_in(&state, &address, Some(&identity_id)).await?;
    if let Some(identity) = state.identities.get(&identity_id).await? {
        let tokens = sign_in(&state, &identity.player, method.as_str(), false).await?;
        record_login(&state, method.as_str(), "ok");
        return Ok((StatusCode::OK, Json(tokens)));
    }
    if !body.create {
        record_login(&state, method.as_str(), "refused");
        return Err(Error::NotFound("account"));
    }
    let username = match body.username {
        Some(username) => {
            players::validate_username(&username)?;
            username
        }
        None => generated_username()?,
    };
    match create_account(
        &state,
        &username,
        &username,
        identity_id.clone(),
        method,
        String::new(),
    )
    .await
    {
        Ok(player) => {
            let tokens = sign_in(&state, &player.id, method.as_str(), true).await?;
            record_login(&state, method.as_str(), "created");
            Ok((StatusCode::CREATED, Json(tokens)))
        }
        Err(conflict @ Error::Conflict(_)) => {
            // Two first sign-ins with the same new id raced and the other won: sign in to its
            // account. Otherwise the username was taken.
            let Some(identity) = state.identities.get(&identity_id).await? else {
                return Err(conflict);
            };
            let tokens = sign_in(&state, &identity.player, method.as_str(), false).await?;
            record_login(&state, method.as_str(), "ok");
            Ok((StatusCode::OK, Json(tokens)))
        }
        Err(error) => Err(error),
    }
}

/// The public keys access tokens are signed with: other services (the economy) verify player
/// tokens with them, and cannot mint any.
#[derive(Serialize, schemars::JsonSchema)]
pub struct TokenKeysAnswer {
    /// Raw Ed25519 public keys, base64; the first signs new tokens.
    pub keys: Vec<String>,
}

async fn keys(State(state): State<Shared>) -> Json<TokenKeysAnswer> {
    Json(TokenKeysAnswer {
        keys: state.tokens.public_keys(),
    })
}

async fn refresh(
    State(state): State<Shared>,
    address: ClientAddress,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Json<Tokens>> {
    const REFUSED: Error = Error::Unauthenticated("refresh token is invalid or expired");
    limit_sign_in(&state, &address, None).await?;
    if body.refresh_token.len() > 128 {
        return Err(REFUSED);
    }
    let presented = state
        .refresh_tokens
        .get(&token_hash(&body.refresh_token))
        .await?
        .filter(|token| token.expires_ms > state.clock.now_ms())
        .ok_or(REFUSED)?;
    // Using token n is inserting token n + 1: of two uses of one token, the unique (family,
    // generation) index lets exactly one through.
    let (refresh_token, next) = next_refresh_token(&state, &presented)?;
    match state.refresh_tokens.insert(&next).await {
        Ok(()) => {}
        // The new token's hash is 256 random bits, so the only index it can collide on is the
        // generation's (which FerretDB does not name when the colliding token was revoked since).
        Err(flotilla_storage::Error::Duplicate { .. }) => {
            // Used already: whoever holds it copied it. End the whole sign-in, for both copies.
            tracing::warn!(session = %presented.family, "refresh token reused; revoking its session");
            revoke_family(&state, &presented.player, &presented.family).await?;
            return Err(Error::Unauthenticated(
                "refresh token was already used; the session is revoked",
            ));
        }
        Err(error) => return Err(error.into()),
    }
    // Checked after storing the next token: a sign-out recorded before this read is seen here, and
    // one recorded after it deletes the token just stored (see `RevokedSession`).
    if state.revoked_sessions.get(&presented.family).await?.is_some() {
        state.refresh_tokens.delete_one(doc! {"_id": &next.hash}).await?;
        return Err(Error::Unauthenticated("session was signed out or revoked"));
    }
    let player = match signed_in_player(&state, &presented.player, "refresh").await {
        Ok(player) => player,
        Err(error) => {
            state.refresh_tokens.delete_one(doc! {"_id": &next.hash}).await?;
            return Err(error);
        }
    };
    let properties = json!({"event": "account:refresh"});
    session_event(
        &state,
        "design",
        &player.id,
        &next.family,
        next.generation,
        properties,
    );
    Ok(Json(tokens(&state, &player, &next.family, refresh_token, false)?))
}

async fn logout(State(state): State<Shared>, session: Session) -> Result<StatusCode> {
    revoke_family(&state, &session.player, &session.session).await?;
    session_event(
        &state,
        "session_end",
        &session.player,
        &session.session,
        0,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// A sign-in's analytics event: the sign-in (a refresh-token family) is the session, so it starts
/// at sign-in, lasts while the client refreshes its token, and ends at sign-out. The id is fixed by
/// the family and the step, so a retried request is counted once.
fn session_event(
    state: &Shared,
    name: &str,
    player: &str,
    family: &str,
    generation: i64,
    properties: serde_json::Value,
) {
    let id = format!("{name}-{family}-{generation}");
    let event =
        flotilla_service::analytics::event(&id, name, player, Some(family), state.clock.now_ms(), properties);
    state.config.analytics.emit(event);
}

async fn link_email(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<LinkEmail>,
) -> Result<StatusCode> {
    let email = normalize_email(&body.email)?;
    validate_password(&body.password)?;
    let secret_hash = passwords::hash(body.password).await?;
    link(&state, session, Method::Email, &email, secret_hash).await
}

async fn link_device(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<LinkId>,
) -> Result<StatusCode> {
    validate_id(Method::Device, &body.id)?;
    link(&state, session, Method::Device, &body.id, String::new()).await
}

async fn link_custom(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<LinkId>,
) -> Result<StatusCode> {
    validate_id(Method::Custom, &body.id)?;
    link(&state, session, Method::Custom, &body.id, String::new()).await
}

async fn link(
    state: &Shared,
    session: Session,
    method: Method,
    identifier: &str,
    secret_hash: String,
) -> Result<StatusCode> {
    let identity = Identity {
        id: method.identity_id(identifier),
        player: session.player,
        method,
        secret_hash,
        created_ms: state.clock.now_ms(),
    };
    state
        .identities
        .insert(&identity)
        .await
        .map_err(Error::taken("that sign-in is linked to an account already"))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unlink_email(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<UnlinkEmail>,
) -> Result<StatusCode> {
    let email = normalize_email(&body.email)?;
    unlink(&state, session, Method::Email, &email).await
}

async fn unlink_device(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<LinkId>,
) -> Result<StatusCode> {
    validate_id(Method::Device, &body.id)?;
    unlink(&state, session, Method::Device, &body.id).await
}

async fn unlink_custom(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<LinkId>,
) -> Result<StatusCode> {
    validate_id(Method::Custom, &body.id)?;
    unlink(&state, session, Method::Custom, &body.id).await
}

async fn unlink(state: &Shared, session: Session, method: Method, identifier: &str) -> Result<StatusCode> {
    let id = method.identity_id(identifier);
    let Some(identity) = state
        .identities
        .get(&id)
        .await?
        .filter(|i| i.player == session.player)
    else {
        return Err(Error::NotFound("linked sign-in"));
    };
    if state.identities.count(doc! {"player": &session.player}).await? <= 1 {
        return Err(last_sign_in());
    }
    // The owner in the filter never changes, so it holds as the delete lands: a second unlink of
    // this identifier cannot delete it after another account linked it again.
    if !state
        .identities
        .delete_one(doc! {"_id": &id, "player": &session.player})
        .await?
    {
        return Err(Error::NotFound("linked sign-in"));
    }
    // Two unlinks at once may each have counted the other's method: count again after deleting,
    // and put this one back if it was the last. Of racing unlinks, at least one finds a method left
    // or restores its own, so an account never ends with no way in.
    if state.identities.count(doc! {"player": &session.player}).await? == 0 {
        state.identities.insert(&identity).await?;
        return Err(last_sign_in());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn last_sign_in() -> Error {
    Error::Conflict("cannot unlink the only way to sign in".into())
}

async fn create_account(
    state: &Shared,
    username: &str,
    display_name: &str,
    identity_id: String,
    method: Method,
    secret_hash: String,
) -> Result<Player> {
    let now = state.clock.now_ms();
    let player = Player {
        id: new_id()?,
        username: username.to_owned(),
        username_key: username.to_lowercase(),
        display_name: display_name.to_owned(),
        avatar_url: String::new(),
        language: String::new(),
        metadata: "{}".into(),
        privacy: Privacy::default(),
        banned: None,
        created_ms: now,
        updated_ms: now,
    };
    state
        .players
        .insert(&player)
        .await
        .map_err(Error::taken("that username is taken"))?;
    let identity = Identity {
        id: identity_id,
        player: player.id.clone(),
        method,
        secret_hash,
        created_ms: now,
    };
    match state.identities.insert(&identity).await {
        Ok(()) => {}
        Err(error @ flotilla_storage::Error::Duplicate { .. }) => {
            state.players.delete_one(doc! {"_id": &player.id}).await?;
            return Err(Error::taken("an account with that sign-in exists")(error));
        }
        // The insert may have landed: keep the player, so an identity that did land leads somewhere.
        Err(error) => return Err(error.into()),
    }
    players::index(state, &player).await;
    Ok(player)
}

/// The player an identity belongs to, refusing banned accounts.
async fn signed_in_player(state: &Shared, id: &str, method: &'static str) -> Result<Player> {
    let player = players::load(state, id)
        .await?
        .ok_or(Error::Unauthenticated("account no longer exists"))?;
    // The ban record itself, not the profile's copy: a profile edit in flight may have written the
    // copy away for a moment (`players::settle_ban`).
    if state.bans.get(id).await?.is_some() {
        record_login(state, method, "banned");
        return Err(Error::Banned);
    }
    Ok(player)
}

/// Starts a sign-in of `player`: the first refresh token of a new family, then an access token.
///
/// The token is stored before the ban check, and a ban is recorded before it revokes the player's
/// tokens, so a sign-in racing a ban either sees the ban or has its token revoked by it.
async fn sign_in(state: &Shared, player: &str, method: &'static str, created: bool) -> Result<Tokens> {
    let now = state.clock.now_ms();
    let refresh_token = random_token()?;
    let record = RefreshToken {
        hash: token_hash(&refresh_token),
        family: new_id()?,
        player: player.to_owned(),
        generation: 0,
        expires_ms: now.saturating_add(refresh_ttl_ms(state)),
        created_ms: now,
    };
    state.refresh_tokens.insert(&record).await?;
    match signed_in_player(state, player, method).await {
        Ok(player) => {
            let properties = json!({"method": method, "created": created});
            session_event(state, "session_start", &player.id, &record.family, 0, properties);
            tokens(state, &player, &record.family, refresh_token, created)
        }
        Err(error) => {
            state
                .refresh_tokens
                .delete_one(doc! {"_id": &record.hash})
                .await?;
            Err(error)
        }
    }
}

/// The token that follows `presented` in its family, and its value (stored only hashed).
fn next_refresh_token(state: &Shared, presented: &RefreshToken) -> Result<(String, RefreshToken)> {
    let now = state.clock.now_ms();
    let value = random_token()?;
    let next = RefreshToken {
        hash: token_hash(&value),
        family: presented.family.clone(),
        player: presented.player.clone(),
        generation: presented.generation + 1,
        expires_ms: now.saturating_add(refresh_ttl_ms(state)),
        created_ms: now,
    };
    Ok((value, next))
}

fn refresh_ttl_ms(state: &Shared) -> i64 {
    i64::try_from(state.config.refresh_token_ttl.as_millis()).unwrap_or(i64::MAX)
}

/// The answer to a sign-in or refresh: a new access token for `family` and the refresh token given.
fn tokens(
    state: &Shared,
    player: &Player,
    family: &str,
    refresh_token: String,
    created: bool,
) -> Result<Tokens> {
    let now = state.clock.now_ms();
    let ttl = state.config.access_token_ttl.as_secs();
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: player.id.clone(),
        sid: family.to_owned(),
        iat: now / 1000,
        exp: now / 1000 + i64::try_from(ttl).unwrap_or(i64::MAX),
        created: Some(player.created_ms / 1000),
    };
    Ok(Tokens {
        access_token: state.tokens.sign(&claims)?,
        expires_in: ttl,
        refresh_token,
        player: OwnProfile::from(player),
        created,
    })
}

/// Ends a sign-in: it is recorded as revoked, its refresh tokens deleted (in that order, see
/// `RevokedSession`), its access tokens refused from now on, and its realtime connections closed.
pub async fn revoke_family(state: &Shared, player: &str, family: &str) -> Result<()> {
    record_revoked(state, player, family).await?;
    state.refresh_tokens.delete_many(doc! {"family": family}).await?;
    session::revoke(state, family).await?;
    let event = Event::Disconnect {
        session: Some(family.to_owned()),
        reason: "signed out".into(),
    };
    events::publish(state, player, &event).await
}

/// Ends every sign-in of a player (ban, deleted account).
pub async fn revoke_all(state: &Shared, player: &str, reason: &str) -> Result<()> {
    let tokens = state
        .refresh_tokens
        .find(doc! {"player": player}, doc! {}, i64::MAX)
        .await?;
    let mut families: Vec<String> = tokens.into_iter().map(|t| t.family).collect();
    families.sort();
    families.dedup();
    for family in &families {
        record_revoked(state, player, family).await?;
    }
    state.refresh_tokens.delete_many(doc! {"player": player}).await?;
    for family in &families {
        session::revoke(state, family).await?;
    }
    events::publish(
        state,
        player,
        &Event::Disconnect {
            session: None,
            reason: reason.into(),
        },
    )
    .await
}

async fn record_revoked(state: &Shared, player: &str, family: &str) -> Result<()> {
    let revoked = RevokedSession {
        family: family.to_owned(),
        player: player.to_owned(),
        expires_ms: state.clock.now_ms().saturating_add(refresh_ttl_ms(state)),
    };
    match state.revoked_sessions.insert(&revoked).await {
        Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Counts a sign-in attempt against its address's limit (when the address is known) and its
/// account's (when there is one), in one Redis round trip: refused by either, it counts against
/// neither.
async fn limit_sign_in(state: &Shared, address: &ClientAddress, account: Option<&str>) -> Result<()> {
    let ip = address.0.map(|ip| ip.to_string());
    let address = ip.as_deref().map(|ip| Check {
        bucket: "login-address",
        key: ip,
        limit: state.config.login_per_address,
    });
    let account = account.map(|account| Check {
        bucket: "login-account",
        key: account,
        limit: state.config.login_per_account,
    });
    let checks: Vec<Check<'_>> = address.into_iter().chain(account).collect();
    state.limit(&checks).await
}

fn record_login(state: &Shared, method: &'static str, result: &'static str) {
    state
        .metrics
        .logins
        .get_or_create(&LoginLabels { method, result })
        .inc();
}

/// Checked against [`rules::EMAIL`], then lowercased.
pub fn normalize_email(email: &str) -> Result<String> {
    if !rules::EMAIL.allows(email) {
        return Err(Error::bad("email", "email address is not valid"));
    }
    Ok(email.to_lowercase())
}

fn validate_password(password: &str) -> Result<()> {
    if !rules::PASSWORD.allows(password) {
        return Err(Error::bad("password", "password must be 8-128 characters"));
    }
    Ok(())
}

/// Device ids are 10–128 printable ASCII characters; custom ids 6–128.
fn validate_id(method: Method, id: &str) -> Result<()> {
    let (rule, min) = match method {
        Method::Device => (&rules::DEVICE_ID, 10),
        _ => (&rules::CUSTOM_ID, 6),
    };
    if !rule.allows(id) {
        return Err(Error::bad(
            "id",
            format!("id must be {min}-128 printable ASCII characters"),
        ));
    }
    Ok(())
}

fn generated_username() -> Result<String> {
    let bytes: [u8; 6] = random()?;
    let number = bytes.iter().fold(0_u64, |n, b| (n << 8) | u64::from(*b)) % 1_000_000_000_000;
    Ok(format!("player{number:012}"))
}

fn random_token() -> Result<String> {
    let bytes: [u8; 32] = random()?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("Ann@Example.COM").expect("valid"),
            "ann@example.com"
        );
        // What else an address must be is rules::EMAIL's, tested there.
        assert!(normalize_email(" ann@example.com").is_err());
    }

    #[test]
    fn the_client_address_is_taken_the_trusted_hops_from_the_right() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        // The client wrote the first entry; the one proxy appended what it saw.
        let header = "203.0.113.9, 198.51.100.7";
        assert_eq!(forwarded_client(header, 1), ip("198.51.100.7"));
        assert_eq!(forwarded_client(header, 2), ip("203.0.113.9"));
        assert_eq!(forwarded_client(header, 3), None, "shorter than the proxy chain");
        assert_eq!(forwarded_client("", 1), None);
        assert_eq!(forwarded_client("spoofed, not-an-address", 1), None);
        assert_eq!(forwarded_client("2001:db8::1", 1), ip("2001:db8::1"));
    }

    #[test]
    fn ids_and_passwords_have_bounds() {
        assert!(validate_id(Method::Device, "0123456789").is_ok());
        assert!(validate_id(Method::Device, "short").is_err());
        assert!(validate_id(Method::Custom, "abcdef").is_ok());
        assert!(validate_id(Method::Custom, "with space").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("1234567").is_err());
        assert!(
            generated_username().expect("random").len() == 18
                && players::validate_username(&generated_username().expect("random")).is_ok()
        );
    }
}
