//! Sale fees in integers. The fee is the price's share in basis points, rounded down; the seller
//! gets the rest, so fee and proceeds always add up to the price exactly.

/// A price split between the seller and the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub proceeds: i64,
    pub fee: i64,
}

/// Splits `price` (0 ..= 10^12) with a fee of `bps` basis points (0 ..= 10,000).
pub fn split(price: i64, bps: i64) -> Split {
    // In i128: 10^12 × 10^4 does not fit an i64.
    let fee = (i128::from(price) * i128::from(bps.clamp(0, 10_000)) / 10_000) as i64;
    Split {
        proceeds: price - fee,
        fee,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::MAX_AMOUNT;
    use crate::ledger::memory::Rng;

    #[test]
    fn fee_and_proceeds_add_up_to_the_price_for_every_sale() {
        let mut rng = Rng::new(20261203);
        for _ in 0..200_000 {
            let price = 1 + rng.below(MAX_AMOUNT as u64) as i64;
            let bps = rng.below(10_001) as i64;
            let Split { proceeds, fee } = split(price, bps);
            assert_eq!(proceeds + fee, price, "{price} at {bps} bps");
            assert!((0..=price).contains(&fee), "{price} at {bps} bps: fee {fee}");
            // Rounded down: the exact fee is in [fee, fee + 1).
            assert!(i128::from(fee) * 10_000 <= i128::from(price) * i128::from(bps));
            assert!(i128::from(fee + 1) * 10_000 > i128::from(price) * i128::from(bps));
        }
        assert_eq!(split(15, 1_000), Split { proceeds: 14, fee: 1 });
        assert_eq!(split(3, 500), Split { proceeds: 3, fee: 0 });
        assert_eq!(
            split(MAX_AMOUNT, 10_000),
            Split {
                proceeds: 0,
                fee: MAX_AMOUNT
            }
        );
        assert_eq!(split(7, 0), Split { proceeds: 7, fee: 0 });
    }
}
