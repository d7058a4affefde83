//! Intersecting blinded sets or token sets, mapping back to one's own rows, and the
//! agreed order of the aligned rows.
//!
//! The values intersected here are pseudorandom (fully blinded ristretto255 points of the
//! ECDH mode, HMAC tokens of the server-aided mode of Kamara et al., FC 2014), so plain
//! byte order is a fine total order and no hashing is needed. Everything is sort- and
//! binary-search-based, `O(n log n)` in the worst case whatever a peer sends (a hash
//! table keyed on peer-chosen values would invite collisions).
//!
//! # Unbalanced sets
//!
//! [`intersect_many`] sorts the smallest set. Each other set is galloped through if it
//! arrives sorted (`O(s log(n/s))` for `s` small and `n` large elements); if unsorted and
//! of similar size it is sorted and galloped (sorting is cache-friendly, where 1M random
//! lookups into 32 MB are not); if unsorted and more than 16 times larger, each of its
//! elements is looked up in the small sorted set, in parallel (`O(n log s)`, the small
//! set staying in cache). A 100k-borrower bank against a 10M-merchant platform therefore
//! costs one pass over the 10M values, never a sort of them.
//!
//! # Agreed order
//!
//! Alignment needs every party to list the common rows in the same order, and that
//! order must say nothing about any party's row order. [`align_rows`] orders the
//! intersection by the value every party holds for a common id: the fully blinded point
//! `(Π k)·H(x)` (ECDH) or the token `HMAC(K, x)` (server-aided). That order is a function
//! of the ids and the job's keys only, so it is the same for all parties and independent
//! of how any party stores its rows; it is pseudorandom in the ids, so it does not leak
//! the ids' own order (the codes encode region and registration date) either. No party can
//! compute the ECDH value of an id alone (it needs every key), and the coordinator, which
//! sees the sorted tokens or points, cannot link a position to an id because it holds no
//! key.

use rayon::prelude::*;

/// A larger set is sorted and merged if it has at most this many times the elements of
/// the current intersection; beyond, each of its elements is looked up in the (small,
/// cache-resident) intersection instead.
const MERGE_RATIO: usize = 16;

/// The k-way intersection of `sets`, sorted ascending and without duplicates.
///
/// Empty if `sets` is empty. Sets may be unsorted and of very different sizes; see the
/// module documentation for the cost.
pub fn intersect_many<T: Ord + Copy + Send + Sync>(sets: &[&[T]]) -> Vec<T> {
    let Some((smallest, _)) = sets.iter().enumerate().min_by_key(|(_, s)| s.len()) else {
        return Vec::new();
    };
    let mut common: Vec<T> = sets[smallest].to_vec();
    common.par_sort_unstable();
    common.dedup();
    let others: Vec<&[T]> =
        sets.iter().enumerate().filter(|(i, _)| *i != smallest).map(|(_, s)| *s).collect();
    retain_common(&mut common, &others, |v| v);
    common
}

/// Keeps the elements of `base` (sorted by `key`) whose key occurs in every one of
/// `others`.
fn retain_common<B, T, K>(base: &mut Vec<B>, others: &[&[T]], key: K)
where
    B: Sync,
    T: Ord + Copy + Send + Sync,
    K: Fn(&B) -> &T + Sync,
{
    for other in others {
        if base.is_empty() {
            return;
        }
        let hit = hits(base, other, &key);
        let mut keep = hit.iter();
        base.retain(|_| keep.next().copied().unwrap_or(false));
    }
}

/// For each element of `base` (sorted by `key`, duplicates allowed), whether its key
/// occurs in `other`.
fn hits<B, T, K>(base: &[B], other: &[T], key: &K) -> Vec<bool>
where
    B: Sync,
    T: Ord + Copy + Send + Sync,
    K: Fn(&B) -> &T + Sync,
{
    if other.is_sorted() {
        return gallop(base, other, key);
    }
    if other.len() <= MERGE_RATIO.saturating_mul(base.len()) {
        let mut sorted = other.to_vec();
        sorted.par_sort_unstable();
        return gallop(base, &sorted, key);
    }
    // Much larger and unsorted: look each element up in the small base, in parallel.
    let mut hit = vec![false; base.len()];
    let found: Vec<usize> = other
        .par_chunks(4096)
        .flat_map_iter(|chunk| {
            chunk.iter().filter_map(|v| base.binary_search_by(|b| key(b).cmp(v)).ok())
        })
        .collect();
    for at in found {
        hit[at] = true;
    }
    // A lookup marks one of several equal keys; spread the mark over the run.
    for i in 1..base.len() {
        if key(&base[i]) == key(&base[i - 1]) {
            hit[i] |= hit[i - 1];
        }
    }
    for i in (1..base.len()).rev() {
        if key(&base[i]) == key(&base[i - 1]) {
            hit[i - 1] |= hit[i];
        }
    }
    hit
}

/// Membership of each (sorted) base key in the sorted `other`: `O(s log(n/s))` by
/// galloping (doubling steps, then a binary search), linear when the sizes are alike.
fn gallop<B, T: Ord, K: Fn(&B) -> &T>(base: &[B], other: &[T], key: &K) -> Vec<bool> {
    let mut hit = vec![false; base.len()];
    let mut rest = other;
    for (h, b) in hit.iter_mut().zip(base) {
        let b = key(b);
        let mut step = 1;
        while step < rest.len() && rest[step] < *b {
            step *= 2;
        }
        let window = &rest[..rest.len().min(step + 1)];
        // Keep a match in `rest`: the next base key may be equal.
        match window.binary_search(b) {
            Ok(at) => {
                *h = true;
                rest = &rest[at..];
            }
            Err(at) => rest = &rest[at..],
        }
        if rest.is_empty() {
            break;
        }
    }
    hit
}

/// Positions in `mine` (ascending) whose value occurs in every one of `others`.
///
/// `mine` is the caller's own fully blinded values (or tokens) in the order it holds
/// them; the positions index that order. Ids are unique within a party (checked before
/// any protocol step); if a value repeats, all its positions are returned.
pub fn intersect_indices<T: Ord + Copy + Send + Sync>(mine: &[T], others: &[&[T]]) -> Vec<usize> {
    let mut rows = align_rows(mine, others);
    rows.par_sort_unstable();
    rows
}

/// Positions in `mine` of the intersection with every one of `others`, in the **agreed
/// order**: ascending by the shared value, ties by position (see the module
/// documentation). The `t`-th position of every party's result refers to the same id.
pub fn align_rows<T: Ord + Copy + Send + Sync>(mine: &[T], others: &[&[T]]) -> Vec<usize> {
    let mut pairs: Vec<(T, usize)> = mine.iter().copied().zip(0..).collect();
    pairs.par_sort_unstable();
    retain_common(&mut pairs, others, |(v, _)| v);
    pairs.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::collections::BTreeSet;

    fn reference(sets: &[&[u64]]) -> Vec<u64> {
        let mut it = sets.iter().map(|s| s.iter().copied().collect::<BTreeSet<u64>>());
        let Some(first) = it.next() else { return Vec::new() };
        it.fold(first, |acc, s| acc.intersection(&s).copied().collect()).into_iter().collect()
    }

    #[test]
    fn matches_a_set_reference_sorted_or_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for (na, nb, nc) in
            [(0, 10, 10), (5, 50_000, 300), (2_000, 2_000, 2_000), (300, 100_000, 7)]
        {
            let a: Vec<u64> = (0..na).map(|_| rng.random_range(0..60_000)).collect();
            let mut b: Vec<u64> = (0..nb).map(|_| rng.random_range(0..60_000)).collect();
            let c: Vec<u64> = (0..nc).map(|_| rng.random_range(0..60_000)).collect();
            let want = reference(&[&a, &b, &c]);
            assert_eq!(intersect_many(&[&a[..], &b, &c]), want);
            b.sort_unstable();
            assert_eq!(intersect_many(&[&a[..], &b, &c]), want);
            assert_eq!(intersect_many(&[&b[..], &a]), reference(&[&a, &b]));
        }
        assert!(intersect_many::<u64>(&[]).is_empty());
        assert_eq!(intersect_many(&[&[3u64, 1, 3][..]]), vec![1, 3]);
    }

    #[test]
    fn indices_and_agreed_order() {
        let mine = [50u64, 10, 40, 30, 20];
        let theirs = [20u64, 40, 99, 50];
        assert_eq!(intersect_indices(&mine, &[&theirs]), vec![0, 2, 4]);
        // Ascending by value: 20 (position 4), 40 (2), 50 (0).
        assert_eq!(align_rows(&mine, &[&theirs]), vec![4, 2, 0]);
        assert_eq!(align_rows(&theirs, &[&mine]), vec![0, 1, 3]);
        assert!(align_rows(&mine, &[&[][..]]).is_empty());
        assert_eq!(align_rows(&mine, &[]), vec![1, 4, 3, 2, 0]);
    }

    #[test]
    fn repeated_values_keep_all_positions_on_every_path() {
        let mine = [5u64, 7, 5, 9, 7];
        let small_sorted = [5u64, 7];
        let small_unsorted = [7u64, 5];
        // More than 16 times larger than the base and unsorted: the lookup path.
        let mut large: Vec<u64> = (100..200).rev().collect();
        large.extend([7, 5]);
        for other in [&small_sorted[..], &small_unsorted, &large] {
            assert_eq!(align_rows(&mine, &[other]), vec![0, 2, 1, 4]);
            assert_eq!(intersect_indices(&mine, &[other]), vec![0, 1, 2, 4]);
        }
    }
}
