//! The simulated game: players move around a square arena, push each other apart when they
//! collide and score by collecting orbs, which respawn at random places.
//!
//! Integer arithmetic only (millimetres, fixed per-tick speeds) and a fixed iteration order, so
//! the same inputs always give the same states on every machine.

use std::collections::BTreeMap;

use crate::grid::Grid;
use crate::rng::SplitMix64;
use crate::wire::{EntityId, EntityState, FIRST_ORB_ID};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaConfig {
    /// Side of the square arena.
    pub size_mm: i32,
    pub player_radius_mm: i32,
    pub orb_radius_mm: i32,
    /// Distance a player covers in one tick at full input.
    pub speed_mm_per_tick: i32,
    pub orbs: u16,
    pub seed: u64,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        // 200 m × 200 m holds 1,000 players at ~40 m² each; 5 m/s at 30 Hz.
        Self {
            size_mm: 200_000,
            player_radius_mm: 500,
            orb_radius_mm: 300,
            speed_mm_per_tick: 167,
            orbs: 512,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avatar {
    pub x: i32,
    pub y: i32,
    pub score: u32,
    /// The direction held, ±127 per axis.
    pub dx: i8,
    pub dy: i8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arena {
    pub(crate) config: ArenaConfig,
    pub(crate) tick: u32,
    pub(crate) avatars: BTreeMap<EntityId, Avatar>,
    pub(crate) orbs: Vec<(i32, i32)>,
    pub(crate) rng: SplitMix64,
}

/// Scratch space reused between ticks so the hot path does not allocate. `players` holds
/// every avatar's id and state in grid-index order, so queries need no map lookups.
pub(crate) struct Spatial {
    pub(crate) player_grid: Grid,
    pub(crate) players: Vec<(EntityId, EntityState)>,
    pub(crate) orb_grid: Grid,
    pub(crate) near: Vec<usize>,
    candidates: Vec<(i64, EntityId, EntityState)>,
}

impl Spatial {
    pub(crate) fn new(cell_mm: i32, size_mm: i32) -> Self {
        Self {
            player_grid: Grid::new(cell_mm, size_mm),
            players: Vec::new(),
            orb_grid: Grid::new(cell_mm, size_mm),
            near: Vec::new(),
            candidates: Vec::new(),
        }
    }

    pub(crate) fn index(&mut self, arena: &Arena) {
        self.player_grid.clear();
        self.players.clear();
        for (i, (id, a)) in arena.avatars.iter().enumerate() {
            self.players.push((
                *id,
                EntityState {
                    x: a.x,
                    y: a.y,
                    score: a.score,
                },
            ));
            self.player_grid.insert(i, a.x, a.y);
        }
        self.orb_grid.clear();
        for (i, (x, y)) in arena.orbs.iter().enumerate() {
            self.orb_grid.insert(i, *x, *y);
        }
    }
}

impl Arena {
    pub fn new(config: ArenaConfig) -> Self {
        let mut rng = SplitMix64 { state: config.seed };
        let orbs = (0..config.orbs)
            .map(|_| random_point(&mut rng, &config))
            .collect();
        Self {
            config,
            tick: 0,
            avatars: BTreeMap::new(),
            orbs,
            rng,
        }
    }

    pub fn tick(&self) -> u32 {
        self.tick
    }

    pub fn avatar(&self, id: EntityId) -> Option<&Avatar> {
        self.avatars.get(&id)
    }

    pub fn avatars(&self) -> impl Iterator<Item = (EntityId, &Avatar)> {
        self.avatars.iter().map(|(id, a)| (*id, a))
    }

    /// Places a new avatar at a random free-ish spot; returns where.
    pub fn spawn(&mut self, id: EntityId) -> (i32, i32) {
        let (x, y) = random_point(&mut self.rng, &self.config);
        self.avatars.insert(
            id,
            Avatar {
                x,
                y,
                score: 0,
                dx: 0,
                dy: 0,
            },
        );
        (x, y)
    }

    /// Puts an avatar back where a checkpoint had it.
    pub fn place(&mut self, id: EntityId, avatar: Avatar) {
        self.avatars.insert(id, avatar);
    }

    pub fn remove(&mut self, id: EntityId) {
        self.avatars.remove(&id);
    }

    pub fn steer(&mut self, id: EntityId, dx: i8, dy: i8) {
        if let Some(a) = self.avatars.get_mut(&id) {
            a.dx = dx;
            a.dy = dy;
        }
    }

    pub fn reset_scores(&mut self) {
        self.avatars.values_mut().for_each(|a| a.score = 0);
    }

    /// One fixed step: move, separate colliding players, collect orbs.
    pub(crate) fn step(&mut self, spatial: &mut Spatial) {
        let ArenaConfig {
            size_mm,
            player_radius_mm: r,
            speed_mm_per_tick: speed,
            ..
        } = self.config;
        for a in self.avatars.values_mut() {
            a.x = (a.x + i32::from(a.dx) * speed / 127).clamp(r, size_mm - r);
            a.y = (a.y + i32::from(a.dy) * speed / 127).clamp(r, size_mm - r);
        }
        spatial.index(self);
        self.separate(spatial);
        self.collect(spatial);
        spatial.index(self);
        self.tick = self.tick.wrapping_add(1);
    }

    /// Pushes overlapping pairs apart, each by half the overlap, in id order (Gauss–Seidel:
    /// later pairs see earlier corrections, which is deterministic and converges fast).
    fn separate(&mut self, spatial: &mut Spatial) {
        let (r, size) = (self.config.player_radius_mm, self.config.size_mm);
        let min_dist = i64::from(2 * r);
        let mut near = std::mem::take(&mut spatial.near);
        let players = &mut spatial.players;
        let mut moved = false;
        for i in 0..players.len() {
            let (_, a) = players[i];
            spatial.player_grid.near(a.x, a.y, 2 * r, &mut near);
            for &j in near.iter().filter(|&&j| j > i) {
                let (a, b) = (players[i].1, players[j].1);
                let (dx, dy) = (i64::from(b.x - a.x), i64::from(b.y - a.y));
                let dist_sq = dx * dx + dy * dy;
                if dist_sq >= min_dist * min_dist {
                    continue;
                }
                let dist = dist_sq.isqrt();
                let push = (min_dist - dist + 1) / 2;
                // Coincident players separate along x, lower id to the left.
                let (ux, uy, len) = if dist == 0 { (1, 0, 1) } else { (dx, dy, dist) };
                let (px, py) = (to_i32(ux * push / len), to_i32(uy * push / len));
                let shift = |s: &mut EntityState, dx: i32, dy: i32| {
                    s.x = (s.x + dx).clamp(r, size - r);
                    s.y = (s.y + dy).clamp(r, size - r);
                };
                shift(&mut players[i].1, -px, -py);
                shift(&mut players[j].1, px, py);
                moved = true;
            }
        }
        if moved {
            for (id, state) in players.iter() {
                if let Some(a) = self.avatars.get_mut(id) {
                    a.x = state.x;
                    a.y = state.y;
                }
            }
        }
        spatial.near = near;
    }

    /// Each player collects the orbs it touches; a collected orb respawns elsewhere at once.
    fn collect(&mut self, spatial: &mut Spatial) {
        let reach = i64::from(self.config.player_radius_mm + self.config.orb_radius_mm);
        let mut near = std::mem::take(&mut spatial.near);
        let mut taken = vec![false; self.orbs.len()];
        for a in self.avatars.values_mut() {
            spatial.orb_grid.near(a.x, a.y, to_i32(reach), &mut near);
            for &o in &near {
                let (ox, oy) = self.orbs[o];
                let (dx, dy) = (i64::from(ox - a.x), i64::from(oy - a.y));
                if !taken[o] && dx * dx + dy * dy <= reach * reach {
                    taken[o] = true;
                    a.score = a.score.saturating_add(1);
                }
            }
        }
        for (o, was_taken) in taken.into_iter().enumerate() {
            if was_taken {
                self.orbs[o] = random_point(&mut self.rng, &self.config);
            }
        }
        spatial.near = near;
    }

    /// What a player sees: entities within `radius`, at most `max` — the nearest ones (ties by
    /// id) when crowded, since the closest matter most — in id order.
    pub(crate) fn visible(
        &self,
        spatial: &mut Spatial,
        viewer: EntityId,
        radius: i32,
        max: usize,
        out: &mut Vec<(EntityId, EntityState)>,
    ) {
        out.clear();
        let Some(me) = self.avatars.get(&viewer) else {
            return;
        };
        let (mx, my) = (i64::from(me.x), i64::from(me.y));
        let r2 = i64::from(radius) * i64::from(radius);
        let mut candidates = std::mem::take(&mut spatial.candidates);
        let mut near = std::mem::take(&mut spatial.near);
        candidates.clear();
        spatial.player_grid.near(me.x, me.y, radius, &mut near);
        for &i in &near {
            let Some(&(id, state)) = spatial.players.get(i) else {
                continue;
            };
            let (dx, dy) = (i64::from(state.x) - mx, i64::from(state.y) - my);
            let d = if id == viewer { -1 } else { dx * dx + dy * dy };
            if d <= r2 {
                candidates.push((d, id, state));
            }
        }
        spatial.orb_grid.near(me.x, me.y, radius, &mut near);
        for &o in &near {
            let (x, y) = self.orbs[o];
            let (dx, dy) = (i64::from(x) - mx, i64::from(y) - my);
            let d = dx * dx + dy * dy;
            if d <= r2 {
                let id = FIRST_ORB_ID.saturating_add(u16::try_from(o).unwrap_or(u16::MAX - FIRST_ORB_ID));
                candidates.push((d, id, EntityState { x, y, score: 0 }));
            }
        }
        if candidates.len() > max {
            // Keys are unique (ids are), so the kept set is deterministic.
            candidates.select_nth_unstable_by_key(max, |(d, id, _)| (*d, *id));
            candidates.truncate(max);
        }
        out.extend(candidates.iter().map(|(_, id, state)| (*id, *state)));
        out.sort_unstable_by_key(|(id, _)| *id);
        spatial.candidates = candidates;
        spatial.near = near;
    }
}

fn random_point(rng: &mut SplitMix64, config: &ArenaConfig) -> (i32, i32) {
    let margin = config.player_radius_mm;
    (
        rng.range(margin, config.size_mm - margin),
        rng.range(margin, config.size_mm - margin),
    )
}

fn to_i32(v: i64) -> i32 {
    i32::try_from(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> (Arena, Spatial) {
        let config = ArenaConfig {
            orbs: 0,
            ..ArenaConfig::default()
        };
        (Arena::new(config.clone()), Spatial::new(20_000, config.size_mm))
    }

    #[test]
    fn a_player_moves_at_its_speed_and_stops_at_the_wall() {
        let (mut arena, mut spatial) = arena();
        arena.place(
            1,
            Avatar {
                x: 1_000,
                y: 1_000,
                score: 0,
                dx: 127,
                dy: 0,
            },
        );
        arena.step(&mut spatial);
        assert_eq!(arena.avatar(1).map(|a| (a.x, a.y)), Some((1_167, 1_000)));
        arena.steer(1, -127, -127);
        for _ in 0..20 {
            arena.step(&mut spatial);
        }
        assert_eq!(
            arena.avatar(1).map(|a| (a.x, a.y)),
            Some((500, 500)),
            "clamped at the radius"
        );
    }

    #[test]
    fn colliding_players_are_pushed_apart_symmetrically() {
        let (mut arena, mut spatial) = arena();
        arena.place(
            1,
            Avatar {
                x: 10_000,
                y: 10_000,
                score: 0,
                dx: 0,
                dy: 0,
            },
        );
        arena.place(
            2,
            Avatar {
                x: 10_400,
                y: 10_000,
                score: 0,
                dx: 0,
                dy: 0,
            },
        );
        arena.step(&mut spatial);
        let (a, b) = (arena.avatar(1).copied(), arena.avatar(2).copied());
        let (a, b) = (a.expect("avatar 1"), b.expect("avatar 2"));
        assert!(b.x - a.x >= 1_000, "separated to two radii, got {}", b.x - a.x);
        assert_eq!(10_000 - a.x, b.x - 10_400, "each moved by half the overlap");
        assert_eq!((a.y, b.y), (10_000, 10_000));
    }

    #[test]
    fn touching_an_orb_scores_and_the_orb_respawns() {
        let mut arena = Arena::new(ArenaConfig {
            orbs: 1,
            ..ArenaConfig::default()
        });
        let mut spatial = Spatial::new(20_000, 200_000);
        let (ox, oy) = arena.orbs[0];
        arena.place(
            1,
            Avatar {
                x: ox,
                y: oy,
                score: 0,
                dx: 0,
                dy: 0,
            },
        );
        arena.step(&mut spatial);
        assert_eq!(arena.avatar(1).map(|a| a.score), Some(1));
        assert_ne!(arena.orbs[0], (ox, oy), "the orb moved elsewhere");
    }

    #[test]
    fn visibility_is_limited_by_radius_and_count_nearest_first() {
        let (mut arena, mut spatial) = arena();
        for id in 1..=10u16 {
            let x = 10_000 + i32::from(id) * 3_000;
            arena.place(
                id,
                Avatar {
                    x,
                    y: 10_000,
                    score: 0,
                    dx: 0,
                    dy: 0,
                },
            );
        }
        arena.step(&mut spatial);
        let mut seen = Vec::new();
        arena.visible(&mut spatial, 1, 10_000, 64, &mut seen);
        let ids: Vec<_> = seen.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            vec![1, 2, 3, 4],
            "self first, then within 10 m nearest first"
        );
        arena.visible(&mut spatial, 1, 10_000, 2, &mut seen);
        assert_eq!(seen.len(), 2);
    }
}
