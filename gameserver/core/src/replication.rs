//! State replication: each player gets, every tick, what it can see, delta-encoded against the
//! newest snapshot it acknowledged.
//!
//! The server remembers the last [`HISTORY`] snapshots it sent each player. When a player
//! acknowledges tick T, the next snapshot carries only entities that are new, changed or gone
//! since T. Snapshots ride unreliable datagrams, so a lost one costs nothing: the next one is
//! still a delta against the last acknowledged state. A player whose acknowledgements fall out
//! of the history gets a full snapshot.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::{EntityDelta, EntityId, EntityState, SnapshotDatagram, fields};

/// Snapshots kept per player: about a second at 30 Hz, more than any useful round trip.
pub const HISTORY: usize = 32;

/// The server's record of what one player has been sent.
#[derive(Debug, Default)]
pub struct Replicator {
    sent: VecDeque<(u32, Vec<(EntityId, EntityState)>)>,
    acked: u32,
}

impl Replicator {
    /// Records an acknowledgement; old or unknown ticks are ignored (datagrams reorder).
    pub fn ack(&mut self, tick: u32) {
        if tick > self.acked && self.sent.iter().any(|(t, _)| *t == tick) {
            self.acked = tick;
        }
    }

    /// Builds the snapshot of `view` (sorted by id) for `tick`.
    pub fn snapshot(
        &mut self,
        tick: u32,
        input_seq: u32,
        view: &[(EntityId, EntityState)],
    ) -> SnapshotDatagram {
        let baseline = self
            .sent
            .iter()
            .find(|(t, _)| *t == self.acked && self.acked != 0);
        let (baseline_tick, base): (u32, &[(EntityId, EntityState)]) = match baseline {
            Some((t, entities)) => (*t, entities),
            None => (0, &[]),
        };
        let mut entities = Vec::new();
        let mut removed = Vec::new();
        // Both lists are sorted by id: one merge pass finds new, changed and removed entities.
        let (mut i, mut j) = (0, 0);
        while i < view.len() || j < base.len() {
            match (view.get(i), base.get(j)) {
                (Some(&(id, now)), Some(&(base_id, before))) if id == base_id => {
                    let mask = changed(before, now);
                    if mask != 0 {
                        entities.push(EntityDelta {
                            id,
                            mask,
                            state: masked(now, mask),
                        });
                    }
                    i += 1;
                    j += 1;
                }
                (Some(&(id, now)), Some(&(base_id, _))) if id < base_id => {
                    entities.push(EntityDelta {
                        id,
                        mask: fields::ALL,
                        state: now,
                    });
                    i += 1;
                }
                (Some(&(id, now)), None) => {
                    entities.push(EntityDelta {
                        id,
                        mask: fields::ALL,
                        state: now,
                    });
                    i += 1;
                }
                (_, Some(&(base_id, _))) => {
                    removed.push(base_id);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        // The oldest record's buffer is reused: no allocation per player per tick.
        let mut record = if self.sent.len() == HISTORY {
            self.sent.pop_front().map(|(_, v)| v)
        } else {
            None
        }
        .unwrap_or_default();
        record.clear();
        record.extend_from_slice(view);
        self.sent.push_back((tick, record));
        SnapshotDatagram {
            tick,
            baseline: baseline_tick,
            input_seq,
            entities,
            removed,
        }
    }
}

fn changed(before: EntityState, now: EntityState) -> u8 {
    let mut mask = 0;
    if before.x != now.x {
        mask |= fields::X;
    }
    if before.y != now.y {
        mask |= fields::Y;
    }
    if before.score != now.score {
        mask |= fields::SCORE;
    }
    mask
}

fn masked(state: EntityState, mask: u8) -> EntityState {
    EntityState {
        x: if mask & fields::X != 0 { state.x } else { 0 },
        y: if mask & fields::Y != 0 { state.y } else { 0 },
        score: if mask & fields::SCORE != 0 { state.score } else { 0 },
    }
}

/// Why a client could not apply a snapshot. Counted by bots as consistency failures, except
/// `Stale`, which is ordinary datagram reordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inconsistency {
    /// Older than a snapshot already applied.
    Stale,
    /// A delta against a snapshot this client never had.
    UnknownBaseline,
    /// A partial update for an entity the baseline did not have.
    PartialNewEntity,
    /// Removal of an entity the baseline did not have.
    UnknownRemoval,
}

/// The client's side: rebuilds full views from deltas and says which tick to acknowledge.
#[derive(Debug, Default)]
pub struct Receiver {
    views: VecDeque<(u32, BTreeMap<EntityId, EntityState>)>,
}

impl Receiver {
    /// The newest tick reconstructed, to acknowledge in the next input datagram.
    pub fn latest_tick(&self) -> u32 {
        self.views.back().map_or(0, |(t, _)| *t)
    }

    pub fn latest(&self) -> Option<&BTreeMap<EntityId, EntityState>> {
        self.views.back().map(|(_, v)| v)
    }

    pub fn apply(
        &mut self,
        snap: &SnapshotDatagram,
    ) -> Result<&BTreeMap<EntityId, EntityState>, Inconsistency> {
        if snap.tick <= self.latest_tick() {
            return Err(Inconsistency::Stale);
        }
        let mut view = if snap.baseline == 0 {
            BTreeMap::new()
        } else {
            self.views
                .iter()
                .find(|(t, _)| *t == snap.baseline)
                .map(|(_, v)| v.clone())
                .ok_or(Inconsistency::UnknownBaseline)?
        };
        for id in &snap.removed {
            view.remove(id).ok_or(Inconsistency::UnknownRemoval)?;
        }
        for delta in &snap.entities {
            match view.get_mut(&delta.id) {
                Some(state) => {
                    if delta.mask & fields::X != 0 {
                        state.x = delta.state.x;
                    }
                    if delta.mask & fields::Y != 0 {
                        state.y = delta.state.y;
                    }
                    if delta.mask & fields::SCORE != 0 {
                        state.score = delta.state.score;
                    }
                }
                None if delta.mask == fields::ALL => {
                    view.insert(delta.id, delta.state);
                }
                None => return Err(Inconsistency::PartialNewEntity),
            }
        }
        if self.views.len() == HISTORY {
            self.views.pop_front();
        }
        self.views.push_back((snap.tick, view));
        Ok(&self.views.back().expect("just pushed").1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(x: i32, y: i32, score: u32) -> EntityState {
        EntityState { x, y, score }
    }

    #[test]
    fn first_snapshot_is_full_then_deltas_carry_only_changes() {
        let mut server = Replicator::default();
        let mut client = Receiver::default();
        let view1 = vec![(1, e(0, 0, 0)), (2, e(5, 5, 1)), (0x8000, e(9, 9, 0))];
        let snap = server.snapshot(1, 0, &view1);
        assert_eq!((snap.baseline, snap.entities.len()), (0, 3));
        client.apply(&snap).expect("full snapshot applies");
        server.ack(client.latest_tick());

        let view2 = vec![(1, e(3, 0, 0)), (2, e(5, 5, 2)), (3, e(7, 7, 0))];
        let snap = server.snapshot(2, 0, &view2);
        assert_eq!(snap.baseline, 1);
        assert_eq!(
            snap.entities,
            vec![
                EntityDelta {
                    id: 1,
                    mask: fields::X,
                    state: e(3, 0, 0)
                },
                EntityDelta {
                    id: 2,
                    mask: fields::SCORE,
                    state: e(0, 0, 2)
                },
                EntityDelta {
                    id: 3,
                    mask: fields::ALL,
                    state: e(7, 7, 0)
                },
            ]
        );
        assert_eq!(snap.removed, vec![0x8000]);
        let rebuilt = client.apply(&snap).expect("delta applies");
        assert_eq!(rebuilt.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), view2);
    }

    #[test]
    fn lost_snapshots_still_delta_against_the_last_acknowledged_one() {
        let mut server = Replicator::default();
        let mut client = Receiver::default();
        client
            .apply(&server.snapshot(1, 0, &[(1, e(0, 0, 0))]))
            .expect("full");
        server.ack(1);
        let _lost = server.snapshot(2, 0, &[(1, e(1, 0, 0))]);
        let snap = server.snapshot(3, 0, &[(1, e(2, 0, 0))]);
        assert_eq!(snap.baseline, 1);
        assert_eq!(client.apply(&snap).expect("applies").get(&1), Some(&e(2, 0, 0)));
    }

    #[test]
    fn an_unknown_baseline_or_a_partial_new_entity_is_detected() {
        let mut client = Receiver::default();
        let snap = SnapshotDatagram {
            tick: 5,
            baseline: 4,
            input_seq: 0,
            entities: vec![],
            removed: vec![],
        };
        assert_eq!(client.apply(&snap).err(), Some(Inconsistency::UnknownBaseline));
        let partial = SnapshotDatagram {
            tick: 5,
            baseline: 0,
            input_seq: 0,
            entities: vec![EntityDelta {
                id: 1,
                mask: fields::X,
                state: e(1, 0, 0),
            }],
            removed: vec![],
        };
        assert_eq!(
            client.apply(&partial).err(),
            Some(Inconsistency::PartialNewEntity)
        );
        let full = SnapshotDatagram {
            tick: 6,
            baseline: 0,
            input_seq: 0,
            entities: vec![],
            removed: vec![],
        };
        client.apply(&full).expect("empty full snapshot");
        assert_eq!(client.apply(&full).err(), Some(Inconsistency::Stale));
    }

    #[test]
    fn acknowledging_a_tick_never_sent_keeps_the_old_baseline() {
        let mut server = Replicator::default();
        server.snapshot(1, 0, &[(1, e(0, 0, 0))]);
        server.ack(1);
        server.ack(99);
        assert_eq!(server.snapshot(2, 0, &[(1, e(0, 0, 0))]).baseline, 1);
    }
}
