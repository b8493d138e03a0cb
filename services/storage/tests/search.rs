//! Player search against a real OpenSearch: start one with `e2e/storage/up.sh` and export its env
//! file. Every test uses its own index prefix, so tests run in parallel.

use std::collections::BTreeSet;

use flotilla_storage::{
    Error,
    search::{MAX_LIMIT, PlayerDoc, PlayerSearch},
};
use futures::stream;
use ring::rand::{SecureRandom, SystemRandom};

fn opensearch_url() -> String {
    std::env::var("FLOTILLA_OPENSEARCH_URL").unwrap_or_else(|_| {
        panic!("FLOTILLA_OPENSEARCH_URL is not set: run e2e/storage/up.sh and source its env file")
    })
}

/// An index prefix no other test (or run) uses; index names must be lowercase.
fn unique_prefix() -> String {
    let mut random = [0u8; 6];
    SystemRandom::new().fill(&mut random).expect("randomness");
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("test-{suffix}")
}

fn doc(id: &str, username: &str, display_name: &str) -> PlayerDoc {
    PlayerDoc {
        id: id.to_owned(),
        username: username.to_owned(),
        display_name: display_name.to_owned(),
    }
}

/// A test's search handle and its indices, deleted when the test ends well.
struct Fixture {
    search: PlayerSearch,
    http: reqwest::Client,
}

impl Fixture {
    /// An unprepared index prefix: no alias or index yet.
    fn empty() -> Self {
        let search = PlayerSearch::new(&opensearch_url(), &unique_prefix()).expect("a valid url");
        Self {
            search,
            http: reqwest::Client::new(),
        }
    }

    async fn with(docs: &[PlayerDoc]) -> Self {
        let fixture = Self::empty();
        fixture.search.ensure_index().await.expect("ensure index");
        for doc in docs {
            fixture.search.upsert(doc).await.expect("upsert");
        }
        fixture.search.refresh().await.expect("refresh");
        fixture
    }

    async fn usernames(&self, query: &str) -> Vec<String> {
        let hits = self
            .search
            .search(query, 10)
            .await
            .unwrap_or_else(|error| panic!("search {query:?}: {error}"));
        hits.into_iter().map(|hit| hit.username).collect()
    }

    /// The indices named `{alias}-v*`, and which of them the alias points at.
    async fn indices(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let all = self.get_json(&format!("{}-v*/_alias", self.search.alias())).await;
        let all = all.as_object().expect("an object of indices");
        let aliased = all
            .iter()
            .filter(|(_, index)| index["aliases"].get(self.search.alias()).is_some())
            .map(|(name, _)| name.clone())
            .collect();
        (all.keys().cloned().collect(), aliased)
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        let url = format!("{}/{path}", opensearch_url().trim_end_matches('/'));
        let response = self.http.get(&url).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {url}: {}", response.status());
        response.json().await.expect("a json body")
    }

    async fn clean_up(self) {
        let url = format!(
            "{}/{}-v*",
            opensearch_url().trim_end_matches('/'),
            self.search.alias()
        );
        let response = self.http.delete(&url).send().await.expect("DELETE");
        assert!(
            response.status().is_success(),
            "DELETE {url}: {}",
            response.status()
        );
    }
}

fn players() -> Vec<PlayerDoc> {
    vec![
        doc("1", "alice", "Alice Liddell"),
        doc("2", "alicent", "Queen Alicent"),
        doc("3", "malice", "Mal"),
        doc("4", "bob", "Robert Paulson"),
        doc("5", "bobby", "Bobby Tables"),
        doc("6", "bib", "Bib Fortuna"),
        doc("7", "xx_sniper_xx", "Renée Dupont"),
    ]
}

#[tokio::test]
async fn a_prefix_finds_the_players_whose_names_start_with_it() {
    let fixture = Fixture::with(&players()).await;

    let found: BTreeSet<String> = fixture.usernames("ali").await.into_iter().collect();

    assert_eq!(found, BTreeSet::from(["alice".to_owned(), "alicent".to_owned()]));
    assert_eq!(fixture.usernames("xx_sn").await, ["xx_sniper_xx"]);
    assert_eq!(fixture.usernames("ALI").await.len(), 2, "case does not matter");
    fixture.clean_up().await;
}

#[tokio::test]
async fn a_typo_still_finds_the_player() {
    let fixture = Fixture::with(&players()).await;

    for typo in ["alcie", "alise", "aliec", "robret"] {
        let found = fixture.usernames(typo).await;
        let expected = if typo == "robret" { "bob" } else { "alice" };
        assert_eq!(
            found.first().map(String::as_str),
            Some(expected),
            "{typo:?} found {found:?}"
        );
    }
    fixture.clean_up().await;
}

#[tokio::test]
async fn display_names_are_searched_with_accents_folded() {
    let fixture = Fixture::with(&players()).await;

    assert_eq!(fixture.usernames("renee").await, ["xx_sniper_xx"]);
    assert_eq!(fixture.usernames("Renée Dup").await, ["xx_sniper_xx"]);
    assert_eq!(fixture.usernames("tables").await, ["bobby"]);
    assert_eq!(fixture.usernames("paul").await, ["bob"]);
    fixture.clean_up().await;
}

#[tokio::test]
async fn exact_matches_rank_above_prefixes_and_prefixes_above_typos() {
    let fixture = Fixture::with(&players()).await;

    assert_eq!(fixture.usernames("bob").await, ["bob", "bobby", "bib"]);
    let hits = fixture.search.search("alice", 10).await.expect("search");
    assert_eq!(hits.first().map(|hit| hit.id.as_str()), Some("1"), "{hits:?}");
    assert!(
        hits.windows(2).all(|pair| pair[0].score >= pair[1].score),
        "{hits:?}"
    );
    fixture.clean_up().await;
}

#[tokio::test]
async fn updates_and_deletes_are_reflected_in_results() {
    let fixture = Fixture::with(&players()).await;

    fixture
        .search
        .upsert(&doc("4", "robert", "Robert Paulson"))
        .await
        .expect("upsert");
    fixture.search.delete("1").await.expect("delete");
    fixture
        .search
        .delete("1")
        .await
        .expect("deleting a missing player is fine");
    fixture
        .search
        .delete("never-indexed")
        .await
        .expect("deleting an unknown player is fine");
    fixture.search.refresh().await.expect("refresh");

    assert_eq!(fixture.usernames("robert").await, ["robert"]);
    assert_eq!(fixture.usernames("bobby").await, ["bobby"]);
    assert_eq!(
        fixture.usernames("alice").await.first().map(String::as_str),
        Some("alicent")
    );
    fixture.clean_up().await;
}

#[tokio::test]
async fn ensure_index_is_idempotent_when_replicas_race() {
    let fixture = Fixture::empty();
    let replicas: Vec<PlayerSearch> = (0..4).map(|_| fixture.search.clone()).collect();

    let results = futures::future::join_all(replicas.iter().map(PlayerSearch::ensure_index)).await;
    fixture.search.ensure_index().await.expect("and once more");

    for result in results {
        result.expect("every replica succeeds");
    }
    let v1 = format!("{}-v1", fixture.search.alias());
    assert_eq!(
        fixture.indices().await,
        (BTreeSet::from([v1.clone()]), BTreeSet::from([v1]))
    );
    fixture.clean_up().await;
}

#[tokio::test]
async fn a_rebuild_fills_a_new_index_swaps_the_alias_and_drops_the_old_one() {
    let fixture = Fixture::with(&players()).await;
    let alias = fixture.search.alias().to_owned();
    let before = fixture.usernames("ali").await;

    // More than one bulk batch; "malice" was deleted from the database since the last sync.
    let mut everyone: Vec<PlayerDoc> = players()
        .into_iter()
        .filter(|doc| doc.username != "malice")
        .collect();
    everyone.extend((0..1200).map(|i| doc(&format!("filler-{i}"), &format!("zz{i:04}"), "Filler")));
    let indexed = fixture
        .search
        .rebuild(stream::iter(everyone.clone().into_iter().map(Ok)))
        .await
        .expect("rebuild");

    assert_eq!(indexed, u64::try_from(everyone.len()).expect("small"));
    let v2 = format!("{alias}-v2");
    assert_eq!(
        fixture.indices().await,
        (BTreeSet::from([v2.clone()]), BTreeSet::from([v2]))
    );
    assert_eq!(
        fixture.usernames("ali").await,
        before,
        "same results from the new index"
    );
    assert!(
        fixture
            .usernames("malice")
            .await
            .iter()
            .all(|name| name != "malice")
    );
    assert_eq!(
        fixture.search.search("zz", 100).await.expect("search").len(),
        MAX_LIMIT
    );

    let indexed = fixture
        .search
        .rebuild(stream::iter(players().into_iter().map(Ok)))
        .await
        .expect("rebuild");
    assert_eq!(indexed, 7);
    let v3 = format!("{alias}-v3");
    assert_eq!(
        fixture.indices().await,
        (BTreeSet::from([v3.clone()]), BTreeSet::from([v3]))
    );
    assert!(
        fixture
            .usernames("malice")
            .await
            .iter()
            .any(|name| name == "malice")
    );
    fixture.clean_up().await;
}

#[tokio::test]
async fn a_rebuild_creates_the_alias_when_there_is_none() {
    let fixture = Fixture::empty();

    let indexed = fixture
        .search
        .rebuild(stream::iter(players().into_iter().map(Ok)))
        .await
        .expect("rebuild");

    assert_eq!(indexed, 7);
    let v1 = format!("{}-v1", fixture.search.alias());
    assert_eq!(
        fixture.indices().await,
        (BTreeSet::from([v1.clone()]), BTreeSet::from([v1]))
    );
    assert_eq!(
        fixture.usernames("bob").await.first().map(String::as_str),
        Some("bob")
    );
    fixture
        .search
        .ensure_index()
        .await
        .expect("ensure index finds the alias");
    fixture.clean_up().await;
}

#[tokio::test]
async fn a_failed_rebuild_leaves_the_alias_and_results_alone() {
    let fixture = Fixture::with(&players()).await;
    let docs = players().into_iter().map(Ok).chain([Err(Error::Search {
        operation: "read players",
        message: "database went away".to_owned(),
    })]);

    let failed = fixture.search.rebuild(stream::iter(docs)).await;

    assert!(
        matches!(
            &failed,
            Err(Error::Search {
                operation: "read players",
                ..
            })
        ),
        "{failed:?}"
    );
    let v1 = format!("{}-v1", fixture.search.alias());
    assert_eq!(
        fixture.indices().await,
        (BTreeSet::from([v1.clone()]), BTreeSet::from([v1]))
    );
    assert_eq!(fixture.usernames("bob").await, ["bob", "bobby", "bib"]);
    fixture.clean_up().await;
}

#[tokio::test]
async fn garbage_and_huge_queries_find_nothing_or_something_but_never_fail() {
    let fixture = Fixture::with(&players()).await;
    let long = "alice".repeat(2000);
    let queries = [
        "",
        "   ",
        "*",
        "\"}}, \"match_all\": {}",
        "alice OR 1=1; DROP TABLE players",
        "[]{}()\\/~?^:!\"'",
        "💥🔥 ✨",
        "\u{0}\u{1}\u{7f}",
        long.as_str(),
    ];

    for query in queries {
        let hits = fixture.search.search(query, 10).await;
        let hits = hits.unwrap_or_else(|error| {
            panic!("query {:?}: {error}", query.chars().take(40).collect::<String>())
        });
        assert!(hits.len() <= 10);
    }
    assert!(
        fixture
            .search
            .search("", 10)
            .await
            .expect("empty query")
            .is_empty()
    );
    assert!(
        fixture
            .search
            .search("alice", 0)
            .await
            .expect("no hits wanted")
            .is_empty()
    );
    assert!(
        fixture
            .search
            .search("a", usize::MAX)
            .await
            .expect("a huge limit is capped")
            .len()
            <= MAX_LIMIT
    );
    fixture.clean_up().await;
}

#[tokio::test]
async fn upsert_without_an_index_fails_instead_of_guessing_one() {
    let fixture = Fixture::empty();

    let failed = fixture.search.upsert(&doc("1", "alice", "Alice")).await;

    let Err(Error::Search { operation, message }) = failed else {
        panic!("upsert must fail without the alias: {failed:?}");
    };
    assert_eq!(operation, "upsert");
    assert!(message.starts_with("404"), "{message}");
    assert_eq!(fixture.indices().await.0, BTreeSet::new());
    let url = format!(
        "{}/{}",
        opensearch_url().trim_end_matches('/'),
        fixture.search.alias()
    );
    let status = fixture.http.head(&url).send().await.expect("HEAD").status();
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "no index was created in the alias's name"
    );
}

#[tokio::test]
async fn opensearch_errors_carry_the_status_and_reason_not_the_body() {
    let fixture = Fixture::empty();

    let failed = fixture.search.search("alice", 10).await;

    let Err(Error::Search { operation, message }) = failed else {
        panic!("search must fail without an index: {failed:?}");
    };
    assert_eq!(operation, "search");
    assert!(
        message.starts_with("404 Not Found: index_not_found_exception: no such index"),
        "{message}"
    );
    assert!(!message.contains('{'), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let search = PlayerSearch::new("http://127.0.0.1:9/", &unique_prefix()).expect("a valid url");

    let failed = search.ensure_index().await;

    let Err(Error::Search { operation, message }) = failed else {
        panic!("ensure_index must fail: {failed:?}");
    };
    assert_eq!(operation, "ensure index");
    assert!(message.to_lowercase().contains("connect"), "{message}");
    assert!(PlayerSearch::new("not a url", "x").is_err());
}
