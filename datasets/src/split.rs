//! Hash-based stratified splits and partitions, reproducible across languages and parties.
//!
//! Every row is ordered by a key derived from its id with SHA-256 (FIPS 180-4), so the
//! split depends only on the ids, the labels and the seed: not on row order, not on a
//! random generator, and any party (or a Python script) holding the ids computes the same
//! split.
//!
//! `key(id) = first 8 bytes, big-endian, of SHA-256(b"fedcredit-split-v1" || seed as u64
//! little-endian || id as UTF-8)`. Within each class the rows are ordered by `(key, id)`.

use fedcredit_models::Features;
use sha2::{Digest, Sha256};

use crate::DataError;

/// Domain-separation prefix of the split key.
pub const SPLIT_DOMAIN: &[u8] = b"fedcredit-split-v1";

/// Row indices of a train/test split, each list in ascending row order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// The split key of one id: the first 8 bytes, big-endian, of
/// SHA-256(`fedcredit-split-v1` || `seed` as u64 little-endian || `id` as UTF-8).
pub fn split_key(id: &str, seed: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(SPLIT_DOMAIN);
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The project-wide stratified train/test split.
///
/// For each class c in {0, 1}: the rows with label c are sorted by `(split_key(id, seed), id)`;
/// `n_test_c = floor(test_fraction * n_c + 0.5)`; the first `n_test_c` are test rows and the
/// rest train rows. Both lists are returned in ascending row order.
///
/// This Python function computes the same split (it is the definition other tools follow):
///
/// ```python
/// import hashlib, math, struct
///
/// def split_key(id_: str, seed: int) -> int:
///     h = hashlib.sha256(b"fedcredit-split-v1" + struct.pack("<Q", seed) + id_.encode("utf-8"))
///     return int.from_bytes(h.digest()[:8], "big")
///
/// def stratified_split(ids, label, test_fraction, seed):
///     test = []
///     for c in (0, 1):
///         rows = [i for i, y in enumerate(label) if y == c]
///         rows.sort(key=lambda i: (split_key(ids[i], seed), ids[i]))
///         n_test = math.floor(test_fraction * len(rows) + 0.5)
///         test += rows[:n_test]
///     test = sorted(test)
///     chosen = set(test)
///     train = [i for i in range(len(ids)) if i not in chosen]
///     return train, test
///
/// ids = [str(i) for i in range(1, 11)]
/// label = [0, 1, 0, 1, 0, 0, 1, 0, 0, 0]
/// assert stratified_split(ids, label, 0.3, 42)[1] == [3, 8, 9]
/// ```
///
/// (Python sorts the id strings by code point, Rust by UTF-8 bytes: the same order.)
///
/// # Errors
/// [`DataError::InvalidParam`] when the lengths differ, `test_fraction` is not in `[0, 1]`,
/// or a label is not 0 or 1.
pub fn stratified_split(
    ids: &[String],
    label: &[f64],
    test_fraction: f64,
    seed: u64,
) -> Result<Split, DataError> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(DataError::InvalidParam {
            name: "test_fraction",
            reason: format!("{test_fraction} is not in [0, 1]"),
        });
    }
    let classes = ordered_classes(ids, label, seed)?;
    let mut test = Vec::new();
    for rows in &classes {
        let n_test = (test_fraction * rows.len() as f64 + 0.5).floor() as usize;
        test.extend_from_slice(&rows[..n_test.min(rows.len())]);
    }
    test.sort_unstable();
    let mut is_test = vec![false; ids.len()];
    for &r in &test {
        is_test[r] = true;
    }
    let train = (0..ids.len()).filter(|&r| !is_test[r]).collect();
    Ok(Split { train, test })
}

/// Deals rows into `n_parts` horizontal parts (for example several banks), stratified by label.
///
/// The rows of class 0 ordered by `(split_key(id, seed), id)`, followed by the rows of class 1
/// in the same order, are dealt round-robin: the j-th row of that sequence goes to part
/// `j mod n_parts`. Every part gets the same number of rows of each class up to one.
/// Each part's indices are in ascending row order.
///
/// # Errors
/// [`DataError::InvalidParam`] when `n_parts` is 0, the lengths differ or a label is not 0/1.
pub fn partition_horizontal(
    ids: &[String],
    label: &[f64],
    n_parts: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    if n_parts == 0 {
        return Err(DataError::InvalidParam {
            name: "n_parts",
            reason: "must be at least 1".into(),
        });
    }
    let classes = ordered_classes(ids, label, seed)?;
    let mut parts = vec![Vec::new(); n_parts];
    for (j, &r) in classes.iter().flatten().enumerate() {
        parts[j % n_parts].push(r);
    }
    for p in &mut parts {
        p.sort_unstable();
    }
    Ok(parts)
}

/// Splits the columns of `features` into groups by name (for example one group per party).
///
/// Columns named in no group are left out.
///
/// # Errors
/// [`DataError::UnknownFeature`] for a name `features` does not have;
/// [`DataError::InvalidParam`] for a name listed twice (in one group or in two).
pub fn partition_vertical(
    features: &Features,
    groups: &[Vec<String>],
) -> Result<Vec<Features>, DataError> {
    let names = features.names();
    let mut taken = vec![false; names.len()];
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut cols = Vec::with_capacity(group.len());
        for name in group {
            let c =
                names.iter().position(|n| n == name).ok_or_else(|| DataError::UnknownFeature {
                    name: name.clone(),
                    available: names.iter().map(|s| s.to_string()).collect(),
                })?;
            if taken[c] {
                return Err(DataError::InvalidParam {
                    name: "groups",
                    reason: format!("column `{name}` is listed more than once"),
                });
            }
            taken[c] = true;
            cols.push(c);
        }
        out.push(features.select_columns(&cols));
    }
    Ok(out)
}

/// Rows of class 0 and class 1, each ordered by `(split_key(id, seed), id)`.
fn ordered_classes(ids: &[String], label: &[f64], seed: u64) -> Result<[Vec<usize>; 2], DataError> {
    if ids.len() != label.len() {
        return Err(DataError::InvalidParam {
            name: "label",
            reason: format!("{} ids but {} labels", ids.len(), label.len()),
        });
    }
    let mut classes: [Vec<(u64, usize)>; 2] = [Vec::new(), Vec::new()];
    for (r, (id, &y)) in ids.iter().zip(label).enumerate() {
        let c = if y == 0.0 {
            0
        } else if y == 1.0 {
            1
        } else {
            return Err(DataError::InvalidParam {
                name: "label",
                reason: format!("label at row {} (1-based) is {y}, not 0 or 1", r + 1),
            });
        };
        classes[c].push((split_key(id, seed), r));
    }
    Ok(classes.map(|mut rows| {
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| ids[a.1].cmp(&ids[b.1])));
        rows.into_iter().map(|(_, r)| r).collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedcredit_models::FeatureSpec;
    use ndarray::array;

    fn ten() -> (Vec<String>, Vec<f64>) {
        let ids = (1..=10).map(|i| i.to_string()).collect();
        (ids, vec![0., 1., 0., 1., 0., 0., 1., 0., 0., 0.])
    }

    #[test]
    fn split_key_matches_python_hashlib() {
        // python3 -c 'import hashlib,struct;print(int.from_bytes(hashlib.sha256(
        //   b"fedcredit-split-v1"+struct.pack("<Q",42)+b"1").digest()[:8],"big"))'
        assert_eq!(split_key("1", 42), PY_KEY_1_SEED_42);
    }

    /// From the Python one-liner in `split_key_matches_python_hashlib`.
    const PY_KEY_1_SEED_42: u64 = 16_301_484_741_312_009_501;

    /// From the Python snippet in the docs of [`stratified_split`].
    #[test]
    fn stratified_split_test_vector() {
        let (ids, label) = ten();
        let s = stratified_split(&ids, &label, 0.3, 42).unwrap();
        assert_eq!(s.test, vec![3, 8, 9]);
        assert_eq!(s.train, vec![0, 1, 2, 4, 5, 6, 7]);
        // floor(0.3 * 7 + 0.5) = 2 negatives, floor(0.3 * 3 + 0.5) = 1 positive.
        let pos = s.test.iter().filter(|&&r| label[r] == 1.0).count();
        assert_eq!(pos, 1);
    }

    #[test]
    fn split_is_independent_of_row_order() {
        let (ids, label) = ten();
        let s = stratified_split(&ids, &label, 0.3, 42).unwrap();
        let test_ids: Vec<&String> = s.test.iter().map(|&r| &ids[r]).collect();
        let rev_ids: Vec<String> = ids.iter().rev().cloned().collect();
        let rev_label: Vec<f64> = label.iter().rev().copied().collect();
        let r = stratified_split(&rev_ids, &rev_label, 0.3, 42).unwrap();
        let mut rev_test: Vec<&String> = r.test.iter().map(|&i| &rev_ids[i]).collect();
        rev_test.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(test_ids, rev_test);
        let other = stratified_split(&ids, &label, 0.3, 43).unwrap();
        assert_eq!(other.test.len(), 3);
    }

    #[test]
    fn split_edges_and_errors() {
        let (ids, label) = ten();
        assert!(stratified_split(&ids, &label, 0.0, 1).unwrap().test.is_empty());
        assert_eq!(stratified_split(&ids, &label, 1.0, 1).unwrap().test.len(), 10);
        assert!(matches!(
            stratified_split(&ids, &label, 1.5, 1),
            Err(DataError::InvalidParam { name: "test_fraction", .. })
        ));
        assert!(stratified_split(&ids, &label[..9], 0.3, 1).is_err());
        let mut bad = label.clone();
        bad[4] = 0.5;
        let e = stratified_split(&ids, &bad, 0.3, 1).unwrap_err().to_string();
        assert!(e.contains("row 5"), "{e}");
    }

    #[test]
    fn horizontal_parts_are_stratified_and_cover_all_rows() {
        let ids: Vec<String> = (0..103).map(|i| format!("e{i}")).collect();
        let label: Vec<f64> = (0..103).map(|i| if i % 5 == 0 { 1.0 } else { 0.0 }).collect();
        let parts = partition_horizontal(&ids, &label, 3, 7).unwrap();
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        for p in &parts {
            assert!(p.windows(2).all(|w| w[0] < w[1]));
            let pos = p.iter().filter(|&&r| label[r] == 1.0).count();
            assert_eq!(pos, 7);
            assert!((34..=35).contains(&p.len()));
        }
        assert!(partition_horizontal(&ids, &label, 0, 7).is_err());
    }

    #[test]
    fn vertical_partition_by_names() {
        let f = Features::new(
            vec![FeatureSpec::numeric("a"), FeatureSpec::numeric("b"), FeatureSpec::numeric("c")],
            array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        )
        .unwrap();
        let parts =
            partition_vertical(&f, &[vec!["c".into(), "a".into()], vec!["b".into()]]).unwrap();
        assert_eq!(parts[0].names(), vec!["c", "a"]);
        assert_eq!(parts[0].values, array![[3.0, 1.0], [6.0, 4.0]]);
        assert_eq!(parts[1].values, array![[2.0], [5.0]]);
        let e = partition_vertical(&f, &[vec!["z".into()]]).unwrap_err();
        assert!(matches!(e, DataError::UnknownFeature { .. }));
        assert!(partition_vertical(&f, &[vec!["a".into()], vec!["a".into()]]).is_err());
    }
}
