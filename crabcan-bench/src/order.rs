//! The order of the runtimes within each round of an interleaved measurement.
//!
//! A fixed order gives every runtime the same predecessor in every round, and what a run
//! leaves the kernel to finish after it exits (its cgroups' release, a helper's exit, freed
//! memory) lands on that one successor, as do the caches it warmed or evicted: the floor
//! variants, one program run three times in a row, always followed each other. A fresh
//! random order per round spreads those effects over every runtime alike. The generator is
//! seeded, so that two runs of the benchmark measure in the same orders.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// The seed of every benchmark run's orders.
const SEED: u64 = 0x6372_6162_6361_6e21;

/// Yields one order (a permutation of `0..n`) per round.
#[derive(Debug)]
pub struct RoundOrder {
    rng: rand::rngs::SmallRng,
    order: Vec<usize>,
}

impl RoundOrder {
    /// The orders of `n` runtimes.
    pub fn new(n: usize) -> RoundOrder {
        RoundOrder {
            rng: rand::rngs::SmallRng::seed_from_u64(SEED),
            order: (0..n).collect(),
        }
    }

    /// The next round's order.
    pub fn next_round(&mut self) -> &[usize] {
        self.order.shuffle(&mut self.rng);
        &self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_round_is_a_permutation_and_no_runtime_keeps_its_predecessor() {
        let n = 8;
        let mut o = RoundOrder::new(n);
        let mut predecessors = vec![BTreeSet::new(); n];
        let mut positions = vec![BTreeSet::new(); n];
        let mut last: Option<usize> = None;
        for _ in 0..300 {
            let round = o.next_round().to_vec();
            let mut sorted = round.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..n).collect::<Vec<_>>(),
                "not a permutation: {round:?}"
            );
            for (pos, &i) in round.iter().enumerate() {
                if let Some(p) = last {
                    predecessors[i].insert(p);
                }
                positions[i].insert(pos);
                last = Some(i);
            }
        }
        for i in 0..n {
            // Over 300 rounds every other runtime (and itself, across a round's boundary)
            // comes just before it, and it runs at every place in a round.
            assert_eq!(
                predecessors[i].len(),
                n,
                "runtime {i}: {:?}",
                predecessors[i]
            );
            assert_eq!(positions[i].len(), n, "runtime {i}: {:?}", positions[i]);
        }
    }

    #[test]
    fn two_runs_measure_in_the_same_orders() {
        let (mut a, mut b) = (RoundOrder::new(5), RoundOrder::new(5));
        for _ in 0..20 {
            assert_eq!(a.next_round(), b.next_round());
        }
    }
}
