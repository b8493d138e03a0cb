//! A uniform grid over the arena: collision checks and interest queries look at the 3×3 cells
//! around a point instead of at every entity, so a tick costs O(n), not O(n²).

use std::collections::HashMap;

pub(crate) struct Grid {
    cell: i32,
    cells: HashMap<(i32, i32), Vec<usize>>,
}

impl Grid {
    pub(crate) fn new(cell: i32) -> Self {
        Self {
            cell: cell.max(1),
            cells: HashMap::new(),
        }
    }

    fn key(&self, x: i32, y: i32) -> (i32, i32) {
        (x.div_euclid(self.cell), y.div_euclid(self.cell))
    }

    pub(crate) fn clear(&mut self) {
        // Keeps the allocated cells: a steady-state tick allocates nothing.
        self.cells.values_mut().for_each(Vec::clear);
    }

    pub(crate) fn insert(&mut self, index: usize, x: i32, y: i32) {
        let key = self.key(x, y);
        self.cells.entry(key).or_default().push(index);
    }

    /// Indexes in the cells within `radius` of (x, y), cell by cell in a fixed order, each
    /// cell in insertion order: deterministic for the same inserts.
    pub(crate) fn near(&self, x: i32, y: i32, radius: i32, out: &mut Vec<usize>) {
        out.clear();
        let (lo_x, lo_y) = self.key(x.saturating_sub(radius), y.saturating_sub(radius));
        let (hi_x, hi_y) = self.key(x.saturating_add(radius), y.saturating_add(radius));
        for cx in lo_x..=hi_x {
            for cy in lo_y..=hi_y {
                if let Some(cell) = self.cells.get(&(cx, cy)) {
                    out.extend_from_slice(cell);
                }
            }
        }
    }
}
