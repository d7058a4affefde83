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
//! [`intersect_many`] sorts only the smallest set. Each larger set is then either
//! galloped through, if it arrives sorted (`O(s log(n/s))` for `s` small and `n` large
//! elements), or looked up element by element in the small sorted set, in parallel
//! (`O(n log s)`). A 100k-borrower bank against a 10M-merchant platform therefore costs
//! one pass over the 10M values, never a sort of them.
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
    for (i, other) in sets.iter().enumerate() {
        if i == smallest || common.is_empty() {
            continue;
        }
        let hit = hits(&common, other);
        let mut keep = hit.iter();
        common.retain(|_| keep.next().copied().unwrap_or(false));
    }
    common
}

/// For each element of the sorted, duplicate-free `base`, whether it occurs in `other`.
fn hits<T: Ord + Sync>(base: &[T], other: &[T]) -> Vec<bool> {
    let mut hit = vec![false; base.len()];
    if other.is_sorted() {
        // Gallop through the sorted larger set: doubling steps, then a binary search.
        let mut rest = other;
        for (h, b) in hit.iter_mut().zip(base) {
            let mut step = 1;
            while step < rest.len() && rest[step] < *b {
                step *= 2;
            }
            let window = &rest[..rest.len().min(step + 1)];
            match window.binary_search(b) {
                Ok(at) => {
                    *h = true;
                    rest = &rest[at + 1..];
                }
                Err(at) => rest = &rest[at..],
            }
            if rest.is_empty() {
                break;
            }
        }
    } else {
        let found: Vec<usize> = other
            .par_chunks(4096)
            .flat_map_iter(|chunk| chunk.iter().filter_map(|v| base.binary_search(v).ok()))
            .collect();
        for at in found {
            hit[at] = true;
        }
    }
    hit
}

/// Positions in `mine` (ascending) whose value occurs in every one of `others`.
///
/// `mine` is the caller's own fully blinded values (or tokens) in the order it holds
/// them; the positions index that order. Ids are unique within a party (checked before
/// any protocol step), so each common value has one position.
pub fn intersect_indices<T: Ord + Copy + Send + Sync>(mine: &[T], others: &[&[T]]) -> Vec<usize> {
    let mut sets = Vec::with_capacity(others.len() + 1);
    sets.push(mine);
    sets.extend_from_slice(others);
    let common = intersect_many(&sets);
    mine.par_iter()
        .enumerate()
        .filter(|(_, v)| common.binary_search(v).is_ok())
        .map(|(p, _)| p)
        .collect()
}

/// Positions in `mine` of the intersection with every one of `others`, in the **agreed
/// order**: ascending by the shared value (see the module documentation). The `t`-th
/// position of every party's result refers to the same id.
pub fn align_rows<T: Ord + Copy + Send + Sync>(mine: &[T], others: &[&[T]]) -> Vec<usize> {
    let mut rows = intersect_indices(mine, others);
    rows.par_sort_unstable_by(|a, b| mine[*a].cmp(&mine[*b]).then(a.cmp(b)));
    rows
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
    }
}
