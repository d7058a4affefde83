//! Elementwise products of shared vectors with Beaver triples (Beaver, CRYPTO 1991).
//!
//! The dealer hands `P0` one seed from which it expands `(a₀, b₀, c₀)` for every triple of the
//! job, and `P1` one seed for `(a₁, b₁)`; per triple only `c₁ = (a₀ + a₁)(b₀ + b₁) − c₀`
//! travels. A product is one exchange: each side sends its [`Opening`] (`x_i − a_i`,
//! `y_i − b_i`), both add the two openings to `e = x − a`, `f = y − b` (uniform, since `a` and
//! `b` are), and each computes its share of `x·y = c + e·b + f·a + e·f` ([`Mul::finish`]).
//! The result is at scale `2^{2f}`: truncate it ([`super::truncate`]).

use serde::{Deserialize, Serialize};

use super::{Elem, MpcError, Seed, Side, check_len};

/// Stream labels.
const A: &str = "beaver/a";
const B: &str = "beaver/b";
const C: &str = "beaver/c";

/// The dealer's side of a pair's elementwise triples.
#[derive(Debug, Clone)]
pub struct TripleDealer {
    p0: Seed,
    p1: Seed,
}

impl TripleDealer {
    /// Triples under `root` (the dealer's seed for this pair in this job).
    pub fn new(root: &Seed) -> Self {
        Self { p0: root.derive(b"beaver/p0"), p1: root.derive(b"beaver/p1") }
    }

    /// The seed for `side` (sent once, to that side only).
    pub fn seed(&self, side: Side) -> Seed {
        match side {
            Side::P0 => self.p0.clone(),
            Side::P1 => self.p1.clone(),
        }
    }

    /// `P1`'s share `c₁` of triple `(step, item)` of `n` values.
    pub fn correction(&self, step: u64, item: u64, n: usize) -> Vec<Elem> {
        let a0 = self.p0.derive_at(A, step, item).expand(n);
        let b0 = self.p0.derive_at(B, step, item).expand(n);
        let c0 = self.p0.derive_at(C, step, item).expand(n);
        let a1 = self.p1.derive_at(A, step, item).expand(n);
        let b1 = self.p1.derive_at(B, step, item).expand(n);
        (0..n)
            .map(|i| {
                a0[i]
                    .wrapping_add(a1[i])
                    .wrapping_mul(b0[i].wrapping_add(b1[i]))
                    .wrapping_sub(c0[i])
            })
            .collect()
    }
}

/// One side's share of a triple `(a, b, c = a·b)`.
#[derive(Debug, Clone)]
pub struct Triple {
    a: Vec<Elem>,
    b: Vec<Elem>,
    c: Vec<Elem>,
}

impl Triple {
    /// `side`'s share of triple `(step, item)` of `n` values, from its dealer seed; `P1` also
    /// needs the dealer's `correction` (`P0` passes `None`).
    ///
    /// # Errors
    /// [`MpcError`] when `P1` has no correction or one of another length.
    pub fn new(
        side: Side,
        seed: &Seed,
        step: u64,
        item: u64,
        n: usize,
        correction: Option<Vec<Elem>>,
    ) -> Result<Self, MpcError> {
        let a = seed.derive_at(A, step, item).expand(n);
        let b = seed.derive_at(B, step, item).expand(n);
        let c = match side {
            Side::P0 => seed.derive_at(C, step, item).expand(n),
            Side::P1 => {
                let c = correction.ok_or(MpcError::Order("P1 needs the dealer's correction"))?;
                check_len("triple correction", n, c.len())?;
                c
            }
        };
        Ok(Self { a, b, c })
    }

    /// Values.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
}

/// One side's share of `(x − a, y − b)`: what it sends for a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    /// Share of `x − a`.
    pub e: Vec<Elem>,
    /// Share of `y − b`.
    pub f: Vec<Elem>,
}

/// A product in progress at one side.
#[derive(Debug)]
pub struct Mul {
    side: Side,
    triple: Triple,
    mine: Opening,
}

impl Mul {
    /// Starts `x·y` with `triple`: returns the state and the opening to send.
    ///
    /// # Errors
    /// [`MpcError::Length`] when `x`, `y` and the triple differ in length.
    pub fn start(
        side: Side,
        x: &[Elem],
        y: &[Elem],
        triple: Triple,
    ) -> Result<(Self, Opening), MpcError> {
        check_len("product operand", triple.len(), x.len())?;
        check_len("product operand", triple.len(), y.len())?;
        let e: Vec<Elem> = x.iter().zip(&triple.a).map(|(x, a)| x.wrapping_sub(*a)).collect();
        let f: Vec<Elem> = y.iter().zip(&triple.b).map(|(y, b)| y.wrapping_sub(*b)).collect();
        let mine = Opening { e, f };
        Ok((Self { side, triple, mine: mine.clone() }, mine))
    }

    /// The other side's opening: this side's share of `x·y` (scale `2^{2f}`, not truncated).
    ///
    /// # Errors
    /// [`MpcError::Length`] when the opening does not fit.
    pub fn finish(self, theirs: &Opening) -> Result<Vec<Elem>, MpcError> {
        let n = self.triple.len();
        check_len("opening e", n, theirs.e.len())?;
        check_len("opening f", n, theirs.f.len())?;
        let Triple { a, b, c } = self.triple;
        Ok((0..n)
            .map(|i| {
                let e = self.mine.e[i].wrapping_add(theirs.e[i]);
                let f = self.mine.f[i].wrapping_add(theirs.f[i]);
                let mut z =
                    c[i].wrapping_add(e.wrapping_mul(b[i])).wrapping_add(f.wrapping_mul(a[i]));
                if self.side == Side::P0 {
                    z = z.wrapping_add(e.wrapping_mul(f));
                }
                z
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::super::{Fixed, reconstruct, share, truncate};
    use super::*;

    #[test]
    fn beaver_products_match_plaintext() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let fx = Fixed::default();
        let dealer = TripleDealer::new(&Seed::random(&mut rng));
        let xs: Vec<f64> = (0..500).map(|i| (i as f64 - 250.0) / 37.0).collect();
        let ys: Vec<f64> = (0..500).map(|i| ((i * 31) % 97) as f64 / 9.0 - 5.0).collect();
        let (x0, x1) = share(&fx.encode_all(&xs), &mut rng);
        let (y0, y1) = share(&fx.encode_all(&ys), &mut rng);
        let t0 = Triple::new(Side::P0, &dealer.seed(Side::P0), 4, 2, 500, None).unwrap();
        let t1 = Triple::new(
            Side::P1,
            &dealer.seed(Side::P1),
            4,
            2,
            500,
            Some(dealer.correction(4, 2, 500)),
        )
        .unwrap();
        let (m0, o0) = Mul::start(Side::P0, &x0, &y0, t0).unwrap();
        let (m1, o1) = Mul::start(Side::P1, &x1, &y1, t1).unwrap();
        // What crosses the wire is not the operand.
        assert_ne!(o0.e, x0);
        let mut z0 = m0.finish(&o1).unwrap();
        let mut z1 = m1.finish(&o0).unwrap();
        truncate(Side::P0, &mut z0, fx.frac_bits);
        truncate(Side::P1, &mut z1, fx.frac_bits);
        let z = fx.decode_all(&reconstruct(&z0, &z1).unwrap());
        for ((x, y), z) in xs.iter().zip(&ys).zip(&z) {
            assert!((x * y - z).abs() < 1e-5, "{x}·{y} = {z}");
        }
    }

    #[test]
    fn a_triple_of_another_step_does_not_fit_and_bad_lengths_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let dealer = TripleDealer::new(&Seed::random(&mut rng));
        let n = 8;
        let a0 = dealer.seed(Side::P0).derive_at(A, 1, 0).expand(n);
        let a1 = dealer.seed(Side::P1).derive_at(A, 1, 0).expand(n);
        let b0 = dealer.seed(Side::P0).derive_at(B, 1, 0).expand(n);
        let b1 = dealer.seed(Side::P1).derive_at(B, 1, 0).expand(n);
        let c0 = dealer.seed(Side::P0).derive_at(C, 1, 0).expand(n);
        let c1 = dealer.correction(1, 0, n);
        for i in 0..n {
            assert_eq!(
                c0[i].wrapping_add(c1[i]),
                a0[i].wrapping_add(a1[i]).wrapping_mul(b0[i].wrapping_add(b1[i]))
            );
        }
        assert_ne!(dealer.correction(2, 0, n), c1);
        assert!(Triple::new(Side::P1, &dealer.seed(Side::P1), 1, 0, n, None).is_err());
        assert!(Triple::new(Side::P1, &dealer.seed(Side::P1), 1, 0, n, Some(vec![0; 3])).is_err());
        let t = Triple::new(Side::P0, &dealer.seed(Side::P0), 1, 0, n, None).unwrap();
        assert!(Mul::start(Side::P0, &[0; 8], &[0; 7], t.clone()).is_err());
        let (m, _) = Mul::start(Side::P0, &[0; 8], &[0; 8], t).unwrap();
        assert!(m.finish(&Opening { e: vec![0; 8], f: vec![0; 2] }).is_err());
    }
}
