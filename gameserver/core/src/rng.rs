//! SplitMix64: tiny, fast and fully determined by its state, which a checkpoint stores, so a
//! restored match spawns the same orbs the original would have.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitMix64 {
    pub(crate) state: u64,
}

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `lo..hi` (`hi > lo`).
    pub(crate) fn range(&mut self, lo: i32, hi: i32) -> i32 {
        let span = u64::try_from(i64::from(hi) - i64::from(lo)).unwrap_or(1).max(1);
        let offset = i64::try_from(self.next_u64() % span).unwrap_or(0);
        i32::try_from(i64::from(lo) + offset).unwrap_or(lo)
    }
}
