//! The seeded credit-application table of [`fedcredit_models::testdata::applications`] as a
//! [`Table`] (id column `id`, label column `default`), for `fedcredit data applications` and
//! the reference script `benches/reference/make_reference.py`, which reads the CSV it writes.

use std::path::PathBuf;

use fedcredit_models::testdata::{ApplicationsConfig, applications};

use crate::{DataError, Table};

/// The id column of the applications table.
pub const ID_COLUMN: &str = "id";
/// The label column of the applications table (1 = default).
pub const LABEL_COLUMN: &str = "default";

/// Generates the applications table described by `cfg`.
///
/// # Errors
/// [`DataError::Model`] naming the parameter when the shape is out of range.
pub fn applications_table(cfg: &ApplicationsConfig) -> Result<Table, DataError> {
    let generated = applications(cfg)?;
    Ok(Table {
        source: PathBuf::from("applications.csv"),
        ids: generated.ids,
        time: None,
        label: Some(generated.data.label),
        features: generated.data.features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TableSpec, load_table};

    #[test]
    fn writes_a_csv_that_loads_back_with_the_same_values() {
        let cfg = ApplicationsConfig { rows: 500, numeric: 8, text: 5, seed: 1 };
        let t = applications_table(&cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("applications.csv");
        t.write_csv(&path, ID_COLUMN, None, Some(LABEL_COLUMN)).unwrap();
        let back = load_table(&TableSpec::new(&path, ID_COLUMN).with_label(LABEL_COLUMN)).unwrap();
        assert_eq!(back.ids, t.ids);
        assert_eq!(back.label, t.label);
        assert_eq!(back.features.names(), t.features.names());
        // Numeric cells round-trip exactly; text cells by level name.
        for (j, spec) in t.features.specs.iter().enumerate() {
            for r in 0..t.n_rows() {
                let (a, b) = (t.features.values[[r, j]], back.features.values[[r, j]]);
                match (&spec.kind, &back.features.specs[j].kind) {
                    (
                        fedcredit_models::FeatureKind::Categorical { levels: la },
                        fedcredit_models::FeatureKind::Categorical { levels: lb },
                    ) => assert_eq!(
                        (!a.is_nan()).then(|| &la[a as usize]),
                        (!b.is_nan()).then(|| &lb[b as usize])
                    ),
                    _ => assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())),
                }
            }
        }
    }
}
