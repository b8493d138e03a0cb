//! The marketplace: players list items at a fixed price, others buy them whole or in part.
//!
//! Every exchange is a ledger transaction into or out of an **escrow account** per listing
//! (`listing:<id>`, an ordered account like a player's), so conservation keeps holding and no
//! exchange depends on a conditional update:
//! - listing moves the items from the seller into the escrow (and the listing fee to the sink);
//! - buying moves units out of the escrow to the buyer, and the price from the buyer to the seller
//!   less the sale fee, which goes to the sink: all or nothing. Two buyers racing for the last
//!   unit race for the escrow's balance, which the ledger gives to one;
//! - cancelling or expiry moves whatever the escrow still holds back to the seller.
//!
//! So a listing's state is its escrow's balance: open while it holds units, sold out or closed
//! when it is empty. Listings are browsed and searched in OpenSearch ([`search`]), which the
//! service keeps in step after each change and can rebuild from the store; the store stays the
//! truth.

pub mod closing;
pub mod listings;
pub mod routes;
pub mod search;

use flotilla_storage::model::Store;
use flotilla_storage::mongo::Mongo;

use crate::Result;
use crate::market::listings::{Closure, Listing, Sale};
use crate::market::search::ListingIndex;
use crate::remembered::Remembered;

/// Where the market keeps its records, and its search index.
pub struct Market {
    pub listings: Store<Listing>,
    /// Listings by id, remembered once read (they never change).
    pub listing_records: Remembered<Listing>,
    pub sales: Store<Sale>,
    pub closures: Store<Closure>,
    pub index: ListingIndex,
    /// Listings' transactions' outcomes, remembered once decided (they never change).
    decisions: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl Market {
    pub fn new(mongo: &Mongo, index: ListingIndex) -> Self {
        Self {
            listings: mongo.store(),
            listing_records: Remembered::new(mongo.store()),
            sales: mongo.store(),
            closures: mongo.store(),
            index,
            decisions: Default::default(),
        }
    }

    fn remembered_decision(&self, listing: &str) -> Option<bool> {
        let decisions = self
            .decisions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        decisions.get(listing).copied()
    }

    fn remember_decision(&self, listing: &str, committed: bool) {
        let mut decisions = self
            .decisions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if decisions.len() >= 100_000 {
            decisions.clear();
        }
        decisions.insert(listing.to_owned(), committed);
    }

    /// Creates the collections' indexes and the search index; safe from every replica at once.
    pub async fn ensure_indexes(&self) -> Result<()> {
        self.listings.ensure_indexes().await?;
        self.sales.ensure_indexes().await?;
        self.closures.ensure_indexes().await?;
        self.index.ensure().await
    }
}
