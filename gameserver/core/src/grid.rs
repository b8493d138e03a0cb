//! A uniform grid over the arena: collision checks and interest queries look at the cells
//! around a point instead of at every entity, so a tick costs O(n), not O(n²). The arena is
//! bounded, so the grid is a flat vector of cells: no hashing on the hot path.

pub(crate) struct Grid {
    cell: i32,
    side: i32,
    cells: Vec<Vec<usize>>,
}

impl Grid {
    /// A grid of `cell`-sized cells covering a square arena of side `size`.
    pub(crate) fn new(cell: i32, size: i32) -> Self {
        let cell = cell.max(1);
        let side = (size.max(1) + cell - 1) / cell;
        let count = usize::try_from(side).unwrap_or(1).pow(2);
        Self {
            cell,
            side,
            cells: (0..count).map(|_| Vec::new()).collect(),
        }
    }

    fn coord(&self, v: i32) -> i32 {
        (v / self.cell).clamp(0, self.side - 1)
    }

    fn slot(&self, cx: i32, cy: i32) -> usize {
        usize::try_from(cx * self.side + cy).unwrap_or(0)
    }

    pub(crate) fn clear(&mut self) {
        // Keeps each cell's allocation: a steady-state tick allocates nothing.
        self.cells.iter_mut().for_each(Vec::clear);
    }

    pub(crate) fn insert(&mut self, index: usize, x: i32, y: i32) {
        let slot = self.slot(self.coord(x), self.coord(y));
        self.cells[slot].push(index);
    }

    /// Indexes in the cells within `radius` of (x, y), cell by cell in a fixed order, each
    /// cell in insertion order: deterministic for the same inserts.
    pub(crate) fn near(&self, x: i32, y: i32, radius: i32, out: &mut Vec<usize>) {
        out.clear();
        let (lo_x, hi_x) = (
            self.coord(x.saturating_sub(radius)),
            self.coord(x.saturating_add(radius)),
        );
        let (lo_y, hi_y) = (
            self.coord(y.saturating_sub(radius)),
            self.coord(y.saturating_add(radius)),
        );
        for cx in lo_x..=hi_x {
            for cy in lo_y..=hi_y {
                out.extend_from_slice(&self.cells[self.slot(cx, cy)]);
            }
        }
    }
}
