//! The neighbour graph: who masks with whom and who holds whose shares.
//!
//! The original protocol (Bonawitz et al., CCS 2017) pairs every party with every other
//! one: the complete graph. SecAgg+ (Bell et al., CCS 2020, §3) pairs each party only
//! with `k` neighbours in a random `k`-regular graph, so per-party work is `O(k)` instead
//! of `O(n)`. As in their construction, the graph here is a Harary graph `H(k, n)` (each
//! position joined to the `⌊k/2⌋` positions on either side of a ring, plus the opposite
//! position when `k` is odd) laid over a permutation of the parties. The permutation is
//! a Fisher–Yates shuffle driven by a ChaCha20 keystream keyed by
//! `SHA-256("fedcredit secagg graph v1" || round context)`, so every party derives the same
//! graph from the round context alone and no one chooses it.

use std::collections::BTreeSet;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{PartyIndex, RoundContext, SecAggError};

const GRAPH_NONCE: [u8; 12] = *b"fcsa-graph-1";

/// An undirected graph over party indices `0..n`, without self-loops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    adjacency: Vec<Vec<PartyIndex>>,
}

impl Graph {
    /// Every party is a neighbour of every other.
    pub fn complete(n: usize) -> Self {
        let adjacency =
            (0..n).map(|u| (0..n).filter(|&v| v != u).map(|v| v as PartyIndex).collect()).collect();
        Self { adjacency }
    }

    /// A `k`-regular Harary graph over a permutation seeded by the round context.
    ///
    /// # Errors
    /// [`SecAggError::InvalidParam`] when `k` is not in `2..n` or `k` and `n` are both odd
    /// (no `k`-regular graph exists).
    pub fn harary(n: usize, k: usize, context: &RoundContext) -> Result<Self, SecAggError> {
        if k < 2 || k >= n {
            return Err(SecAggError::InvalidParam {
                name: "degree",
                reason: format!("{k} neighbours among {n} parties"),
            });
        }
        if k % 2 == 1 && n % 2 == 1 {
            return Err(SecAggError::InvalidParam {
                name: "degree",
                reason: format!("no {k}-regular graph on {n} vertices (both odd)"),
            });
        }
        let perm = seeded_permutation(n, context)?;
        let half = k / 2;
        let mut sets = vec![BTreeSet::new(); n];
        for p in 0..n {
            let u = perm[p];
            let mut link = |q: usize| {
                let v = perm[q % n];
                sets[u as usize].insert(v);
                sets[v as usize].insert(u);
            };
            for j in 1..=half {
                link(p + j);
            }
            if k % 2 == 1 {
                link(p + n / 2);
            }
        }
        Ok(Self { adjacency: sets.into_iter().map(|s| s.into_iter().collect()).collect() })
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.adjacency.len()
    }

    /// The largest number of neighbours of any party (every party has this many: the graphs are regular).
    pub fn degree(&self) -> usize {
        self.adjacency.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The neighbours of `u`, ascending; empty for an index outside the graph.
    pub fn neighbours(&self, u: PartyIndex) -> &[PartyIndex] {
        self.adjacency.get(u as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `u` and `v` are neighbours.
    pub fn are_neighbours(&self, u: PartyIndex, v: PartyIndex) -> bool {
        self.neighbours(u).binary_search(&v).is_ok()
    }

    /// `u` and its neighbours, ascending: the parties that hold shares of `u`'s secrets.
    pub fn neighbourhood(&self, u: PartyIndex) -> Vec<PartyIndex> {
        let mut out: Vec<PartyIndex> = self.neighbours(u).to_vec();
        if (u as usize) < self.n() {
            let at = out.partition_point(|&v| v < u);
            out.insert(at, u);
        }
        out
    }

    /// Whether the subgraph induced by `members` is connected (true for an empty set).
    ///
    /// A disconnected survivor graph would let the server unmask the sum of one component on
    /// its own, since pairwise masks cancel within each component (Bell et al., CCS 2020,
    /// §3: the graph must stay connected after dropouts).
    pub fn connected_within(&self, members: &BTreeSet<PartyIndex>) -> bool {
        let Some(&start) = members.iter().next() else { return true };
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(u) = stack.pop() {
            for &v in self.neighbours(u) {
                if members.contains(&v) && seen.insert(v) {
                    stack.push(v);
                }
            }
        }
        seen.len() == members.len()
    }

    /// The fewest neighbours per party this implementation accepts for `n` parties:
    /// `min(n − 1, 2⌈log₂ n⌉ + 2)`. Bell et al. (CCS 2020, Thm. 3.6) need `k = Ω(log n)`
    /// for the graph to stay connected and every neighbourhood to keep an honest majority
    /// after dropouts; this is a conservative concrete choice (20 parties: 12; 100: 16).
    pub fn min_degree(n: usize) -> usize {
        if n < 2 {
            return 0;
        }
        let log = usize::BITS - (n - 1).leading_zeros();
        (2 * log as usize + 2).min(n - 1)
    }
}

/// Fisher–Yates over `0..n` with indices drawn by rejection from a ChaCha20 keystream.
fn seeded_permutation(n: usize, context: &RoundContext) -> Result<Vec<PartyIndex>, SecAggError> {
    let mut h = Sha256::new();
    h.update(b"fedcredit secagg graph v1");
    h.update(context.as_bytes());
    let key = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    let mut cipher = ChaCha20::new_from_slices(key.as_slice(), &GRAPH_NONCE)
        .map_err(|_| SecAggError::KeystreamExhausted)?;
    let mut next_u64 = || -> Result<u64, SecAggError> {
        let mut b = [0u8; 8];
        cipher.try_write_keystream(&mut b).map_err(|_| SecAggError::KeystreamExhausted)?;
        Ok(u64::from_le_bytes(b))
    };
    let mut perm: Vec<PartyIndex> = (0..n).map(|i| i as PartyIndex).collect();
    for i in (1..n).rev() {
        let bound = i as u64 + 1;
        // Accept only draws below the largest multiple of `bound`, so the index is uniform.
        let zone = u64::MAX - (u64::MAX % bound) - 1;
        let j = loop {
            let r = next_u64()?;
            if r <= zone {
                break (r % bound) as usize;
            }
        };
        perm.swap(i, j);
    }
    Ok(perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivity_of_survivors_and_minimum_degree() {
        let ctx = RoundContext([7; 32]);
        let g = Graph::harary(20, 4, &ctx).unwrap();
        let all: BTreeSet<PartyIndex> = (0..20).collect();
        assert!(g.connected_within(&all));
        // Cutting both sides of some position's ring neighbourhood isolates a group: find a
        // separator by brute force over the graph's own ring order.
        let mut isolated = false;
        'outer: for a in 0..20u16 {
            for b in 0..20u16 {
                let mut keep = all.clone();
                for &x in g.neighbours(a) {
                    if x != b {
                        keep.remove(&x);
                    }
                }
                keep.remove(&b);
                if !g.connected_within(&keep) {
                    isolated = true;
                    break 'outer;
                }
            }
        }
        assert!(isolated, "a degree-4 graph on 20 parties can be cut by a few dropouts");
        assert!(Graph::complete(5).connected_within(&BTreeSet::from([1, 3])));
        assert_eq!(Graph::min_degree(3), 2);
        assert_eq!(Graph::min_degree(20), 12);
        assert_eq!(Graph::min_degree(100), 16);
    }

    fn ctx(byte: u8) -> RoundContext {
        RoundContext([byte; 32])
    }

    fn check_regular_and_symmetric(g: &Graph, k: usize) {
        for u in 0..g.n() as PartyIndex {
            let nb = g.neighbours(u);
            assert_eq!(nb.len(), k, "party {u} has {} neighbours", nb.len());
            assert!(!nb.contains(&u));
            for &v in nb {
                assert!(g.are_neighbours(v, u), "{u}-{v} not symmetric");
            }
        }
    }

    #[test]
    fn complete_graph() {
        let g = Graph::complete(5);
        check_regular_and_symmetric(&g, 4);
        assert_eq!(g.neighbourhood(2), vec![0, 1, 2, 3, 4]);
        assert!(g.neighbours(9).is_empty());
    }

    #[test]
    fn harary_graphs_are_regular_symmetric_and_seeded() {
        for (n, k) in [(10, 4), (20, 6), (12, 3), (101, 8), (7, 2)] {
            let g = Graph::harary(n, k, &ctx(1)).unwrap();
            check_regular_and_symmetric(&g, k);
            assert_eq!(g, Graph::harary(n, k, &ctx(1)).unwrap(), "not deterministic");
            assert_ne!(g, Graph::harary(n, k, &ctx(2)).unwrap(), "context does not change it");
            assert_eq!(g.neighbourhood(0).len(), k + 1);
        }
        assert!(Graph::harary(9, 3, &ctx(1)).is_err());
        assert!(Graph::harary(5, 5, &ctx(1)).is_err());
    }

    #[test]
    fn permutation_is_a_permutation_and_spreads() {
        let p = seeded_permutation(1000, &ctx(3)).unwrap();
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<PartyIndex>>());
        let fixed_points = p.iter().enumerate().filter(|&(i, &v)| i == v as usize).count();
        assert!(fixed_points < 10, "{fixed_points} fixed points");
    }
}
