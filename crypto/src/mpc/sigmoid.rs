//! The logistic function in shares, by an odd polynomial of degree 5.
//!
//! `σ(z) ≈ ½ + a₁·s + a₃·s³ + a₅·s⁵` with `s = z / 8`: the least-squares fit of `σ(z) − ½` on
//! `[−8, 8]` (20,001 equally spaced points), largest error 0.061 there. Outside that range the
//! polynomial leaves `[0, 1]` quickly (a cubic, or a degree-5 fit on a wider range, makes
//! gradient descent diverge on unclipped features), so callers keep logits moderate:
//! standardized features clipped to ±4 (on default_credit this costs 0.002 AUC against the exact
//! sigmoid; a first-order Taylor sigmoid costs 0.004).
//!
//! Evaluated by Horner in three Beaver multiplications, three rounds:
//! `q = s²`; `t = a₃ + a₅·q` (local); `r = q·t`; `v = a₁ + r` (local); `σ = ½ + s·v`.
//! Dividing by 8 and by the public `a₅` are local truncations.

use super::beaver::{Mul, Opening, Triple};
use super::{Elem, Fixed, MpcError, Side, add_public, encode_bits, mul_public, truncate};

/// `[a₁, a₃, a₅]` of the polynomial in `s = z / 8`.
pub const COEFFS: [f64; 3] = [1.530_398_82, -2.352_936_94, 1.383_532_5];

/// `log2` of the scaling `z ↦ s = z / 8`.
const DOMAIN_BITS: u32 = 3;

/// Multiplications (and rounds) per evaluation.
pub const ROUNDS: u64 = 3;

/// The polynomial on plaintext (the reference the shares approximate).
pub fn sigmoid_poly(z: f64) -> f64 {
    let s = z / 8.0;
    let q = s * s;
    0.5 + s * (COEFFS[0] + q * (COEFFS[1] + COEFFS[2] * q))
}

#[derive(Debug)]
enum Stage {
    /// Next: open `s·s`.
    Square,
    /// Waiting for the other side's opening of round `k`.
    Waiting(u8, Mul),
    /// `q` known; next: open `q·t`.
    Second {
        q: Vec<Elem>,
    },
    /// `v` known; next: open `s·v`.
    Third {
        v: Vec<Elem>,
    },
    Done,
}

/// One side's evaluation of `σ` on a shared vector of logits.
#[derive(Debug)]
pub struct Sigmoid {
    side: Side,
    fx: Fixed,
    s: Vec<Elem>,
    stage: Stage,
}

impl Sigmoid {
    /// Starts on `side`'s shares of the logits `z` (fixed point `fx`).
    pub fn new(side: Side, fx: Fixed, mut z: Vec<Elem>) -> Self {
        truncate(side, &mut z, DOMAIN_BITS);
        Self { side, fx, s: z, stage: Stage::Square }
    }

    /// Values.
    pub fn len(&self) -> usize {
        self.s.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    /// The round about to open (0, 1 or 2), whose triple [`Sigmoid::open`] takes.
    pub fn round(&self) -> Option<u64> {
        match self.stage {
            Stage::Square => Some(0),
            Stage::Second { .. } => Some(1),
            Stage::Third { .. } => Some(2),
            Stage::Waiting(..) | Stage::Done => None,
        }
    }

    /// The round whose other opening [`Sigmoid::receive`] waits for.
    pub fn waiting(&self) -> Option<u64> {
        match self.stage {
            Stage::Waiting(k, _) => Some(u64::from(k)),
            _ => None,
        }
    }

    /// Opens the next round with its triple: the opening to send to the other side.
    ///
    /// # Errors
    /// [`MpcError`] when a round is already open or the evaluation is over, or the triple
    /// does not fit.
    pub fn open(&mut self, triple: Triple) -> Result<Opening, MpcError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        let (k, res) = match stage {
            Stage::Square => (0, Mul::start(self.side, &self.s, &self.s, triple)),
            Stage::Second { q } => {
                let mut t = q.clone();
                mul_public(&mut t, self.fx.encode(COEFFS[2]));
                truncate(self.side, &mut t, self.fx.frac_bits);
                add_public(self.side, &mut t, self.fx.encode(COEFFS[1]));
                (1, Mul::start(self.side, &q, &t, triple))
            }
            Stage::Third { v } => (2, Mul::start(self.side, &self.s, &v, triple)),
            other => {
                self.stage = other;
                return Err(MpcError::Order("no sigmoid round to open"));
            }
        };
        match res {
            Ok((mul, opening)) => {
                self.stage = Stage::Waiting(k, mul);
                Ok(opening)
            }
            Err(e) => {
                self.stage = Stage::Done;
                Err(e)
            }
        }
    }

    /// The other side's opening of the open round; `Some(σ shares)` after the last round.
    ///
    /// # Errors
    /// [`MpcError`] when no round is open or the opening does not fit.
    pub fn receive(&mut self, theirs: &Opening) -> Result<Option<Vec<Elem>>, MpcError> {
        let Stage::Waiting(k, mul) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return Err(MpcError::Order("no sigmoid round is open"));
        };
        let mut z = mul.finish(theirs)?;
        truncate(self.side, &mut z, self.fx.frac_bits);
        match k {
            0 => self.stage = Stage::Second { q: z },
            1 => {
                add_public(self.side, &mut z, self.fx.encode(COEFFS[0]));
                self.stage = Stage::Third { v: z };
            }
            _ => {
                add_public(self.side, &mut z, encode_bits(0.5, self.fx.frac_bits));
                return Ok(Some(z));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::super::beaver::TripleDealer;
    use super::super::{Seed, reconstruct, share};
    use super::*;

    fn exact(z: f64) -> f64 {
        1.0 / (1.0 + (-z).exp())
    }

    #[test]
    fn the_polynomial_stays_close_to_the_sigmoid_on_its_domain() {
        let mut worst: f64 = 0.0;
        for i in 0..=1600 {
            let z = -8.0 + i as f64 * 0.01;
            worst = worst.max((sigmoid_poly(z) - exact(z)).abs());
        }
        assert!(worst < 0.062, "{worst}");
        // Odd around ½ and increasing near 0.
        assert!((sigmoid_poly(1.3) + sigmoid_poly(-1.3) - 1.0).abs() < 1e-12);
        assert!(sigmoid_poly(0.5) > sigmoid_poly(0.0));
    }

    #[test]
    fn shared_sigmoid_matches_the_polynomial() {
        let mut rng = ChaCha20Rng::seed_from_u64(30);
        let fx = Fixed::default();
        let dealer = TripleDealer::new(&Seed::random(&mut rng));
        let zs: Vec<f64> = (0..801).map(|i| -10.0 + i as f64 * 0.025).collect();
        let n = zs.len();
        let (z0, z1) = share(&fx.encode_all(&zs), &mut rng);
        let mut p0 = Sigmoid::new(Side::P0, fx, z0);
        let mut p1 = Sigmoid::new(Side::P1, fx, z1);
        let (s0, s1) = (dealer.seed(Side::P0), dealer.seed(Side::P1));
        let step = 9;
        let mut out = None;
        while let Some(k) = p0.round() {
            assert_eq!(p1.round(), Some(k));
            let t0 = Triple::new(Side::P0, &s0, step, k, n, None).unwrap();
            let t1 = Triple::new(Side::P1, &s1, step, k, n, Some(dealer.correction(step, k, n)))
                .unwrap();
            let o0 = p0.open(t0).unwrap();
            let o1 = p1.open(t1).unwrap();
            let r0 = p0.receive(&o1).unwrap();
            let r1 = p1.receive(&o0).unwrap();
            assert_eq!(r0.is_some(), r1.is_some());
            if let (Some(a), Some(b)) = (r0, r1) {
                out = Some(reconstruct(&a, &b).unwrap());
            }
        }
        let sig = fx.decode_all(&out.unwrap());
        for (z, s) in zs.iter().zip(&sig) {
            assert!((s - sigmoid_poly(*z)).abs() < 2e-5, "σ({z}) = {s} vs {}", sigmoid_poly(*z));
            if z.abs() <= 8.0 {
                assert!((s - exact(*z)).abs() < 0.062);
            }
        }
        assert!(p0.receive(&Opening { e: vec![], f: vec![] }).is_err());
    }
}
