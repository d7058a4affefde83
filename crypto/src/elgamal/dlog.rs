//! Small discrete logarithms by baby-step giant-step (D. Shanks, "Class number, a theory
//! of factorization, and genera", Proc. Symp. Pure Math. 20, 1971): `m` with `m·G = P`
//! for `m ≤ max`, as `m = i·T + j` with a table of the `T` baby steps `j·G` (keyed by
//! their encodings) and `⌊max / T⌋ + 1` giant steps `P − i·T·G`.

use std::collections::HashMap;

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;

/// Largest table: 2^16 baby steps (about 3 MB, built in ≈ 0.1 s).
pub const MAX_TABLE: u64 = 1 << 16;
/// Smallest table.
const MIN_TABLE: u64 = 16;

/// The baby-step table: `T` encodings of `j·G`, `j < T`.
pub struct DlogTable {
    step: u64,
    /// `enc(j·G)` → `j`.
    index: HashMap<[u8; 32], u32>,
    /// `T·G`.
    giant: RistrettoPoint,
}

impl std::fmt::Debug for DlogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlogTable").field("step", &self.step).finish_non_exhaustive()
    }
}

impl DlogTable {
    /// A table suited to values up to `max`: `T` the power of two at or above `max + 1`,
    /// between 16 and [`MAX_TABLE`] (so that sums up to 2^16 need one giant step, sums up
    /// to 10^6 about 16).
    pub fn for_max(max: u64) -> Self {
        let t = max.saturating_add(1).checked_next_power_of_two().unwrap_or(MAX_TABLE);
        Self::with_steps(t.clamp(MIN_TABLE, MAX_TABLE))
    }

    /// A table of `steps` baby steps (clamped to 16..=2^16). The points `j·(G/2)` are
    /// encoded doubled in batches (one shared inversion each), giving `enc(j·G)`.
    pub fn with_steps(steps: u64) -> Self {
        let step = steps.clamp(MIN_TABLE, MAX_TABLE);
        let half_g = RISTRETTO_BASEPOINT_POINT * Scalar::from(2u8).invert();
        let mut full = Vec::with_capacity(step as usize);
        let mut p = RistrettoPoint::identity();
        let mut batch = Vec::with_capacity(1024);
        for _ in 0..step {
            batch.push(p);
            p += half_g;
            if batch.len() == 1024 {
                full.extend(
                    RistrettoPoint::double_and_compress_batch(&batch).iter().map(|c| c.to_bytes()),
                );
                batch.clear();
            }
        }
        full.extend(RistrettoPoint::double_and_compress_batch(&batch).iter().map(|c| c.to_bytes()));
        let index = full.into_iter().enumerate().map(|(j, b)| (b, j as u32)).collect();
        let giant = RISTRETTO_BASEPOINT_POINT * Scalar::from(step);
        Self { step, index, giant }
    }

    /// Baby steps in the table.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// `m ≤ max` with `m·G = p`, if there is one.
    pub fn solve(&self, p: &RistrettoPoint, max: u64) -> Option<u64> {
        let mut q = *p;
        let mut base = 0u64;
        loop {
            let enc = q.compress().to_bytes();
            if let Some(&j) = self.index.get(&enc) {
                let m = base + u64::from(j);
                return (m <= max).then_some(m);
            }
            base = base.checked_add(self.step)?;
            if base > max {
                return None;
            }
            q -= self.giant;
        }
    }
}
