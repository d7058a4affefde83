//! Keys, ciphertexts and their byte encodings (fixed length per scheme and size), with
//! the validation applied to everything received from a peer, for Okamoto–Uchiyama
//! (Eurocrypt 1998) and Paillier (Eurocrypt 1999): a ciphertext must be a unit below the
//! ciphertext modulus, a public key must have the shape its scheme defines (OU:
//! `H = G^n mod n`, as `h = g^n` in §3 of the OU paper).
//!
//! Public key bytes: `"FCHE" ‖ version (1) ‖ scheme (1 = OU, 2 = Paillier) ‖ bits (u16 BE)`
//! followed by big-endian fixed-width integers: OU `n ‖ G ‖ H` (each `bits/8` bytes),
//! Paillier `n ‖ h_s` (`bits/8` and `bits/4` bytes). Ciphertexts are `bits/8` (OU) or
//! `bits/4` (Paillier) big-endian bytes. Secret key bytes: `"FCHS" ‖ version ‖ public key
//! bytes ‖ p ‖ q` (each `⌈|p|/8⌉` bytes) and, for OU, `‖ t`.

use std::sync::Arc;

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::One;
use rand::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::encoding::Plaintext;
use super::limbs;
use super::mont::Modulus;
use super::ou::{self, OuPublic, OuSecret, OuSizes};
use super::paillier::{self, PaillierPublic, PaillierSecret};
use super::prime;
use super::{HeError, MAX_BITS, MIN_BITS, Scheme, security_bits};

const PK_MAGIC: &[u8; 4] = b"FCHE";
const SK_MAGIC: &[u8; 4] = b"FCHS";
const VERSION: u8 = 1;
const HEADER: usize = 8;

/// A ciphertext of some key, held in Montgomery form modulo the key's ciphertext modulus
/// (`n` for OU, `n²` for Paillier). Only meaningful together with its [`PublicKey`]:
/// using it with a key of another size panics (a programming error), with another key of
/// the same size gives garbage. Ciphertexts from a peer enter through
/// [`PublicKey::ciphertext_from_bytes`] or [`PublicKey::read_ciphertexts`], which validate
/// them against the key they are read with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ciphertext(pub(crate) Box<[u64]>);

impl std::fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let top = self.0.last().copied().unwrap_or(0);
        write!(f, "Ciphertext({} bits, …{:016x})", self.0.len() * 64, top)
    }
}

/// Precomputed encryption randomness (`H^r` or `h_s^α`), each used once.
///
/// # Security
/// Whoever holds the pool can decrypt the ciphertexts made from it; it is zeroized on
/// drop and prints only its size.
pub struct RandomnessPool {
    key: [u8; 32],
    factors: Vec<Box<[u64]>>,
}

impl Drop for RandomnessPool {
    fn drop(&mut self) {
        for f in &mut self.factors {
            f.zeroize();
        }
    }
}

impl ZeroizeOnDrop for RandomnessPool {}

impl std::fmt::Debug for RandomnessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RandomnessPool({} left, <redacted>)", self.factors.len())
    }
}

impl RandomnessPool {
    /// Entries left.
    pub fn len(&self) -> usize {
        self.factors.len()
    }

    /// Whether the pool is used up.
    pub fn is_empty(&self) -> bool {
        self.factors.is_empty()
    }

    pub(crate) fn new(key: [u8; 32], factors: Vec<Box<[u64]>>) -> Self {
        Self { key, factors }
    }

    fn take(&mut self, key: &[u8; 32]) -> Result<Box<[u64]>, HeError> {
        if &self.key != key {
            return Err(HeError::Pool("made for another key"));
        }
        self.factors.pop().ok_or(HeError::Pool("used up"))
    }
}

pub(crate) enum PublicKind {
    Ou(OuPublic),
    Paillier(PaillierPublic),
}

pub(crate) struct PublicInner {
    pub scheme: Scheme,
    pub bits: u32,
    /// `n` (normal form, `bits/64` limbs).
    pub n: Box<[u64]>,
    /// Ciphertext modulus: `n` (OU) or `n²` (Paillier).
    pub ct: Modulus,
    pub kind: PublicKind,
    pub plaintext_bits: u32,
    pub fingerprint: [u8; 32],
}

/// A public key: encrypts, and evaluates on ciphertexts (add, scalar multiply, sums by
/// bin, compression). Cheap to clone (shared).
#[derive(Clone)]
pub struct PublicKey(pub(crate) Arc<PublicInner>);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicKey {{ scheme: {}, bits: {}, fingerprint: {} }}",
            self.scheme(),
            self.bits(),
            self.fingerprint_hex()
        )
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.fingerprint == other.0.fingerprint
    }
}

impl Eq for PublicKey {}

fn check_bits(scheme: Scheme, bits: u32) -> Result<(), HeError> {
    let bad = |why| Err(HeError::BadKeySize { scheme, bits, why });
    if !bits.is_multiple_of(64) {
        return bad("the size must be a multiple of 64");
    }
    if bits > MAX_BITS {
        return bad("larger than 8192 bits");
    }
    match scheme {
        Scheme::Ou if OuSizes::for_bits(bits).is_none() => bad("too small for the OU subgroup"),
        Scheme::Paillier if bits < 256 => bad("smaller than 256 bits"),
        _ => Ok(()),
    }
}

fn be_len(bits: u32) -> usize {
    bits.div_ceil(8) as usize
}

impl PublicKey {
    /// Builds the key from `n` and the scheme's public elements (normal forms); checks
    /// only what is needed to avoid panics. Peers' keys go through [`Self::from_bytes`].
    fn assemble(scheme: Scheme, bits: u32, n: &[u64], elems: &[&[u64]]) -> Result<Self, HeError> {
        let bad = |what, why| HeError::BadPublicKey { scheme, what, why };
        let n = limbs::resized(n, (bits / 64) as usize);
        let nm = Modulus::new(&n).ok_or(bad("n", "is even"))?;
        let (ct, kind, plaintext_bits) = match scheme {
            Scheme::Ou => {
                let sizes = OuSizes::for_bits(bits).ok_or(bad("n", "is too small"))?;
                let g = nm.to_mont(elems[0]);
                let h = nm.to_mont(elems[1]);
                (nm, PublicKind::Ou(OuPublic::new(g, h, sizes)), sizes.plaintext_bits())
            }
            Scheme::Paillier => {
                let n2 = Modulus::new(&limbs::mul(&n, &n)).ok_or(bad("n", "is even"))?;
                let hs = n2.to_mont(elems[0]);
                (n2, PublicKind::Paillier(PaillierPublic::new(nm, hs, bits)), bits - 2)
            }
        };
        let mut pk = PublicInner {
            scheme,
            bits,
            n: n.into(),
            ct,
            kind,
            plaintext_bits,
            fingerprint: [0; 32],
        };
        let bytes = Self::encode(&pk);
        pk.fingerprint = Sha256::digest(&bytes).into();
        Ok(Self(Arc::new(pk)))
    }

    fn encode(pk: &PublicInner) -> Vec<u8> {
        let w = be_len(pk.bits);
        let mut out = Vec::with_capacity(HEADER + 3 * w);
        out.extend_from_slice(PK_MAGIC);
        out.push(VERSION);
        out.push(pk.scheme.tag());
        out.extend_from_slice(&(pk.bits as u16).to_be_bytes());
        let mut put = |x: &[u64], len: usize| {
            let mut buf = vec![0u8; len];
            limbs::write_be_bytes(x, &mut buf);
            out.extend_from_slice(&buf);
        };
        put(&pk.n, w);
        match &pk.kind {
            PublicKind::Ou(o) => {
                put(&pk.ct.out_of_mont(&o.g), w);
                put(&pk.ct.out_of_mont(&o.h), w);
            }
            PublicKind::Paillier(p) => put(&pk.ct.out_of_mont(&p.hs), 2 * w),
        }
        out
    }

    /// Fixed-length encoding (see the module doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        Self::encode(&self.0)
    }

    /// Reads and validates a peer's public key, refusing keys below [`MIN_BITS`].
    ///
    /// # Errors
    /// [`HeError`] naming the field that is malformed or fails validation.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        Self::from_bytes_with_min_bits(bytes, MIN_BITS)
    }

    /// As [`Self::from_bytes`] with a chosen minimum size (tests use small keys).
    ///
    /// Checks: framing and exact length; size within `[min_bits, 8192]`, a multiple of 64;
    /// `n` odd, of exactly `bits` bits, without prime factors below 2^14, not a perfect
    /// square or cube, not a probable prime; OU: `G, H ∈ [2, n)`, units, `H = G^n mod n`;
    /// Paillier: `h_s ∈ [2, n²)`, a unit.
    ///
    /// # Errors
    /// [`HeError`] naming what is wrong.
    pub fn from_bytes_with_min_bits(bytes: &[u8], min_bits: u32) -> Result<Self, HeError> {
        let what = "public key";
        let malformed = |why: String| HeError::Malformed { what, why };
        if bytes.len() < HEADER {
            return Err(malformed(format!(
                "{} bytes is shorter than the {HEADER}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..4] != PK_MAGIC {
            return Err(malformed("does not start with \"FCHE\"".into()));
        }
        if bytes[4] != VERSION {
            return Err(malformed(format!("version {} (expected {VERSION})", bytes[4])));
        }
        let scheme = Scheme::from_tag(bytes[5])
            .ok_or_else(|| malformed(format!("unknown scheme tag {}", bytes[5])))?;
        let bits = u16::from_be_bytes([bytes[6], bytes[7]]) as u32;
        if bits < min_bits {
            return Err(HeError::KeyTooSmall { scheme, bits, min: min_bits });
        }
        check_bits(scheme, bits)?;
        let w = be_len(bits);
        let expected = HEADER
            + match scheme {
                Scheme::Ou => 3 * w,
                Scheme::Paillier => 3 * w,
            };
        if bytes.len() != expected {
            return Err(malformed(format!(
                "{} bytes; a {bits}-bit {scheme} key has {expected}",
                bytes.len()
            )));
        }
        let len = (bits / 64) as usize;
        let body = &bytes[HEADER..];
        let read = |off: usize, l: usize, limbs_len: usize| {
            limbs::from_be_bytes(&body[off..off + l], limbs_len)
        };
        let bad = |what, why| HeError::BadPublicKey { scheme, what, why };
        let n = read(0, w, len).ok_or(bad("n", "does not fit"))?;
        validate_modulus(scheme, bits, &n)?;
        let nb = limbs::to_biguint(&n);
        let unit_in = |x: &[u64], modulus: &BigUint, what| -> Result<(), HeError> {
            let xb = limbs::to_biguint(x);
            if xb < BigUint::from(2u32) || &xb >= modulus {
                return Err(bad(what, "is out of range [2, modulus)"));
            }
            if !xb.gcd(&nb).is_one() {
                return Err(bad(what, "shares a factor with n"));
            }
            Ok(())
        };
        match scheme {
            Scheme::Ou => {
                let g = read(w, w, len).ok_or(bad("G", "does not fit"))?;
                let h = read(2 * w, w, len).ok_or(bad("H", "does not fit"))?;
                unit_in(&g, &nb, "G")?;
                unit_in(&h, &nb, "H")?;
                let pk = Self::assemble(scheme, bits, &n, &[&g, &h])?;
                let PublicKind::Ou(o) = &pk.0.kind else { unreachable!("assembled as OU") };
                if pk.0.ct.pow(&o.g, &n) != o.h.to_vec() {
                    return Err(bad("H", "is not G^n mod n"));
                }
                Ok(pk)
            }
            Scheme::Paillier => {
                let hs = read(w, 2 * w, 2 * len).ok_or(bad("h_s", "does not fit"))?;
                unit_in(&hs, &(&nb * &nb), "h_s")?;
                Self::assemble(scheme, bits, &n, &[&hs])
            }
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.0.scheme
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> u32 {
        self.0.bits
    }

    /// NIST-equivalent strength, see the module doc.
    pub fn security_bits(&self) -> u32 {
        security_bits(self.0.bits)
    }

    /// Signed plaintexts with `|m| < 2^plaintext_bits()` are supported.
    pub fn plaintext_bits(&self) -> u32 {
        self.0.plaintext_bits
    }

    /// Bytes per serialized ciphertext.
    pub fn ciphertext_len(&self) -> usize {
        match self.0.scheme {
            Scheme::Ou => be_len(self.0.bits),
            Scheme::Paillier => 2 * be_len(self.0.bits),
        }
    }

    /// SHA-256 of [`Self::to_bytes`].
    pub fn fingerprint(&self) -> [u8; 32] {
        self.0.fingerprint
    }

    fn fingerprint_hex(&self) -> String {
        self.0.fingerprint[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Bytes held by precomputed encryption tables so far (built on first encryption).
    pub fn table_bytes(&self) -> usize {
        match &self.0.kind {
            PublicKind::Ou(o) => o.table_bytes(),
            PublicKind::Paillier(p) => p.table_bytes(),
        }
    }

    pub(crate) fn ct(&self) -> &Modulus {
        &self.0.ct
    }

    /// Sign and magnitude of `m`, checked against the plaintext space.
    pub(crate) fn split(&self, m: &Plaintext) -> Result<(bool, Vec<u64>), HeError> {
        let (neg, mag) = m.sign_magnitude();
        let b = limbs::bits(&mag);
        if b > self.0.plaintext_bits {
            return Err(HeError::PlaintextTooLarge {
                bits: b as u64,
                max_bits: self.0.plaintext_bits,
            });
        }
        Ok((neg, mag))
    }

    /// Montgomery form of the message factor `G^m` (OU) or `1 + m·n` (Paillier).
    pub(crate) fn message_factor(&self, negative: bool, mag: &[u64]) -> Vec<u64> {
        if limbs::is_zero(mag) {
            return self.0.ct.one().to_vec();
        }
        match &self.0.kind {
            PublicKind::Ou(o) => o.g_pow(&self.0.ct, negative, mag),
            PublicKind::Paillier(p) => p.message_factor(&self.0.ct, negative, mag),
        }
    }

    /// Montgomery form of fresh randomness `H^r` / `h_s^α`.
    pub(crate) fn random_factor<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Vec<u64> {
        match &self.0.kind {
            PublicKind::Ou(o) => o.random_factor(&self.0.ct, rng),
            PublicKind::Paillier(p) => p.random_factor(&self.0.ct, rng),
        }
    }

    /// Encrypts `m` with fresh randomness (fixed-base tables, built on first use).
    ///
    /// # Errors
    /// [`HeError::PlaintextTooLarge`].
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        m: &Plaintext,
        rng: &mut R,
    ) -> Result<Ciphertext, HeError> {
        let (neg, mag) = self.split(m)?;
        let mut c = self.random_factor(rng);
        let f = self.message_factor(neg, &mag);
        self.0.ct.mul_assign(&mut c, &f);
        Ok(Ciphertext(c.into()))
    }

    /// Encrypts an `i64`.
    ///
    /// # Errors
    /// Only if the key's plaintext space is below 64 bits (never for supported sizes).
    pub fn encrypt_i64<R: CryptoRng + ?Sized>(
        &self,
        m: i64,
        rng: &mut R,
    ) -> Result<Ciphertext, HeError> {
        self.encrypt(&Plaintext::from(m), rng)
    }

    /// Encrypts with randomness from a pool: one multiplication plus the message factor.
    ///
    /// # Errors
    /// [`HeError::Pool`] if the pool is empty or another key's; [`HeError::PlaintextTooLarge`].
    pub fn encrypt_pooled(
        &self,
        m: &Plaintext,
        pool: &mut RandomnessPool,
    ) -> Result<Ciphertext, HeError> {
        let (neg, mag) = self.split(m)?;
        let mut c = pool.take(&self.0.fingerprint)?;
        let f = self.message_factor(neg, &mag);
        self.0.ct.mul_assign(&mut c, &f);
        Ok(Ciphertext(c))
    }

    /// `count` fresh randomness factors, computed on all cores.
    pub fn randomness_pool<R: CryptoRng + ?Sized>(
        &self,
        count: usize,
        rng: &mut R,
    ) -> RandomnessPool {
        let factors =
            super::batch::par_with_rng(count, rng, |_, r| self.random_factor(r).into_boxed_slice());
        RandomnessPool::new(self.0.fingerprint, factors)
    }

    /// The deterministic encryption of 0 (the identity; not randomized).
    pub fn zero(&self) -> Ciphertext {
        Ciphertext(self.0.ct.one().into())
    }

    /// Homomorphic addition.
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Ciphertext {
        Ciphertext(self.0.ct.mul_vec(&a.0, &b.0).into())
    }

    /// `a += b` homomorphically.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) {
        self.0.ct.mul_assign(&mut a.0, &b.0);
    }

    /// Adds a plaintext (no re-randomization).
    ///
    /// # Errors
    /// [`HeError::PlaintextTooLarge`].
    pub fn add_plain(&self, a: &Ciphertext, m: &Plaintext) -> Result<Ciphertext, HeError> {
        let (neg, mag) = self.split(m)?;
        let f = self.message_factor(neg, &mag);
        Ok(Ciphertext(self.0.ct.mul_vec(&a.0, &f).into()))
    }

    /// Multiplies the plaintext by a non-negative scalar `k` (`c^k`).
    pub fn mul_u64(&self, a: &Ciphertext, k: u64) -> Ciphertext {
        Ciphertext(self.0.ct.pow(&a.0, &[k]).into())
    }

    /// Multiplies the plaintext by a non-negative scalar of any size.
    pub fn mul_scalar(&self, a: &Ciphertext, k: &BigUint) -> Ciphertext {
        let e: Vec<u64> = k.iter_u64_digits().collect();
        if e.is_empty() {
            return self.zero();
        }
        Ciphertext(self.0.ct.pow(&a.0, &e).into())
    }

    /// Multiplies the plaintext by a signed scalar; a negative `k` costs an inverse
    /// ([`Self::neg`]). For many negative scalars prefer offsetting them (`k + K ≥ 0`,
    /// then subtract `K·Σ` once) or [`Self::neg_batch`].
    pub fn mul_i64(&self, a: &Ciphertext, k: i64) -> Ciphertext {
        let c = self.mul_u64(a, k.unsigned_abs());
        if k < 0 { self.neg(&c) } else { c }
    }

    /// Multiplies the plaintext by `2^bits` (`bits` squarings).
    pub fn shift(&self, a: &Ciphertext, bits: u32) -> Ciphertext {
        let mut c = a.0.to_vec();
        for _ in 0..bits {
            self.0.ct.square_assign(&mut c);
        }
        Ciphertext(c.into())
    }

    /// Negation: the modular inverse of the ciphertext (an extended GCD on public values,
    /// about 100–300 µs at 2048 bits).
    pub fn neg(&self, a: &Ciphertext) -> Ciphertext {
        let ct = &self.0.ct;
        let x = limbs::to_biguint(&ct.out_of_mont(&a.0));
        let m = limbs::to_biguint(ct.n());
        // ciphertexts are units (validated on entry); a non-unit maps to the identity.
        let inv = x.modinv(&m).unwrap_or_else(BigUint::one);
        let inv = limbs::from_biguint(&inv, ct.len()).unwrap_or_else(|| ct.one().to_vec());
        Ciphertext(ct.to_mont(&inv).into())
    }

    /// `a − b` (costs one inverse).
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Ciphertext {
        self.add(a, &self.neg(b))
    }

    /// Re-randomizes (adds a fresh encryption of 0).
    pub fn rerandomize<R: CryptoRng + ?Sized>(&self, a: &Ciphertext, rng: &mut R) -> Ciphertext {
        let r = self.random_factor(rng);
        Ciphertext(self.0.ct.mul_vec(&a.0, &r).into())
    }

    /// Serializes one ciphertext ([`Self::ciphertext_len`] bytes, big-endian).
    pub fn ciphertext_to_bytes(&self, c: &Ciphertext) -> Vec<u8> {
        let mut out = vec![0u8; self.ciphertext_len()];
        limbs::write_be_bytes(&self.0.ct.out_of_mont(&c.0), &mut out);
        out
    }

    /// Reads one ciphertext from a peer: exact length, value in `[1, N)`, a unit
    /// (`gcd(c, n) = 1`).
    ///
    /// # Errors
    /// [`HeError::BadCiphertext`] or [`HeError::LengthMismatch`].
    pub fn ciphertext_from_bytes(&self, bytes: &[u8]) -> Result<Ciphertext, HeError> {
        let c = self.read_one(bytes, 0)?;
        let x = limbs::to_biguint(&self.0.ct.out_of_mont(&c.0));
        if !x.gcd(&limbs::to_biguint(&self.0.n)).is_one() {
            return Err(HeError::BadCiphertext { index: 0, why: "shares a factor with n" });
        }
        Ok(c)
    }

    pub(crate) fn read_one(&self, bytes: &[u8], index: usize) -> Result<Ciphertext, HeError> {
        let len = self.ciphertext_len();
        if bytes.len() != len {
            return Err(HeError::LengthMismatch {
                what: "ciphertext bytes",
                expected: len,
                got: bytes.len(),
            });
        }
        let ct = &self.0.ct;
        let x = limbs::from_be_bytes(bytes, ct.len())
            .ok_or(HeError::BadCiphertext { index, why: "too long" })?;
        if limbs::is_zero(&x) {
            return Err(HeError::BadCiphertext { index, why: "is zero" });
        }
        if limbs::cmp(&x, ct.n()) != std::cmp::Ordering::Less {
            return Err(HeError::BadCiphertext {
                index,
                why: "is not below the ciphertext modulus",
            });
        }
        Ok(Ciphertext(ct.to_mont(&x).into()))
    }
}

/// Sanity checks on a peer's modulus `n`.
fn validate_modulus(scheme: Scheme, bits: u32, n: &[u64]) -> Result<(), HeError> {
    let bad = |why| Err(HeError::BadPublicKey { scheme, what: "n", why });
    if limbs::bits(n) != bits {
        return bad("does not have exactly the declared number of bits");
    }
    if n[0] & 1 == 0 {
        return bad("is even");
    }
    if prime::small_primes().iter().any(|&s| limbs::rem_small(n, s) == 0) {
        return bad("has a prime factor below 2^14");
    }
    let nb = limbs::to_biguint(n);
    let r2 = nb.sqrt();
    if &r2 * &r2 == nb {
        return bad("is a perfect square");
    }
    let r3 = nb.cbrt();
    if &r3 * &r3 * &r3 == nb {
        return bad("is a perfect cube");
    }
    // deterministic bases (the answer only has to be right for honest keys)
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_seed(
        Sha256::digest(limbs::to_biguint(n).to_bytes_be()).into(),
    );
    if prime::miller_rabin(n, 2, &mut rng) {
        return bad("is prime");
    }
    Ok(())
}

pub(crate) enum SecretKind {
    Ou(Box<OuSecret>),
    Paillier(Box<PaillierSecret>),
}

/// A secret key: decrypts, and encrypts faster than the public key by the CRT.
///
/// # Security
/// Never leaves its owner. Every secret value (factors, CRT constants, the tables over
/// `p²` and `q`) is zeroized on drop; `Debug` prints `<redacted>`.
pub struct SecretKey {
    public: PublicKey,
    inner: SecretKind,
}

impl ZeroizeOnDrop for SecretKey {}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey {{ public: {:?}, secret: <redacted> }}", self.public)
    }
}

impl SecretKey {
    /// Generates a key pair. `bits` is the modulus size: [`super::DEFAULT_BITS`] (2048) or
    /// 3072 for production; smaller multiples of 64 work for tests.
    ///
    /// # Errors
    /// [`HeError::BadKeySize`].
    pub fn generate<R: CryptoRng + ?Sized>(
        scheme: Scheme,
        bits: u32,
        rng: &mut R,
    ) -> Result<Self, HeError> {
        check_bits(scheme, bits)?;
        match scheme {
            Scheme::Ou => {
                let sizes = OuSizes::for_bits(bits).ok_or(HeError::BadKeySize {
                    scheme,
                    bits,
                    why: "too small",
                })?;
                let km = ou::generate(bits, sizes, rng);
                Self::from_ou_parts(bits, &km.p, &km.q, &km.t, &km.n, &km.g)
            }
            Scheme::Paillier => {
                let km = paillier::generate(bits, rng);
                Self::from_paillier_parts(bits, &km.p, &km.q, &km.n, &km.hs)
            }
        }
    }

    fn from_ou_parts(
        bits: u32,
        p: &[u64],
        q: &[u64],
        t: &[u64],
        n: &[u64],
        g: &[u64],
    ) -> Result<Self, HeError> {
        let scheme = Scheme::Ou;
        let nm = Modulus::new(n).ok_or(HeError::BadSecretKey { scheme, why: "n is even" })?;
        let h = nm.out_of_mont(&nm.pow(&nm.to_mont(g), n));
        let public = PublicKey::assemble(scheme, bits, n, &[g, &h])?;
        let sk = OuSecret::new(p, q, t, g, &nm).map_err(|e| HeError::BadSecretKey {
            scheme,
            why: match e {
                ou::OuKeyProblem::Factors => "p, q, t do not match n",
                ou::OuKeyProblem::Generator => "G does not have order p·t modulo p²",
            },
        })?;
        Ok(Self { public, inner: SecretKind::Ou(Box::new(sk)) })
    }

    fn from_paillier_parts(
        bits: u32,
        p: &[u64],
        q: &[u64],
        n: &[u64],
        hs: &[u64],
    ) -> Result<Self, HeError> {
        let scheme = Scheme::Paillier;
        let public = PublicKey::assemble(scheme, bits, n, &[hs])?;
        let sk = PaillierSecret::new(p, q, n, hs)
            .ok_or(HeError::BadSecretKey { scheme, why: "p, q do not match n" })?;
        Ok(Self { public, inner: SecretKind::Paillier(Box::new(sk)) })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Decrypts to the centred (signed) plaintext.
    pub fn decrypt(&self, c: &Ciphertext) -> Plaintext {
        let x = self.public.0.ct.out_of_mont(&c.0);
        let (neg, mag) = match &self.inner {
            SecretKind::Ou(s) => s.decrypt(&x),
            SecretKind::Paillier(s) => s.decrypt(&x),
        };
        Plaintext::from_sign_magnitude(neg, &mag)
    }

    /// Decrypts a value expected to fit in an `i128`.
    ///
    /// # Errors
    /// [`HeError::PlaintextTooLarge`] if it does not.
    pub fn decrypt_i128(&self, c: &Ciphertext) -> Result<i128, HeError> {
        let m = self.decrypt(c);
        m.to_i128().ok_or(HeError::PlaintextTooLarge { bits: m.magnitude_bits(), max_bits: 127 })
    }

    /// Encrypts with the factors (CRT): several times faster than [`PublicKey::encrypt`].
    ///
    /// # Errors
    /// [`HeError::PlaintextTooLarge`].
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        m: &Plaintext,
        rng: &mut R,
    ) -> Result<Ciphertext, HeError> {
        let (neg, mag) = self.public.split(m)?;
        Ok(self.encrypt_split(neg, &mag, rng))
    }

    pub(crate) fn encrypt_split<R: CryptoRng + ?Sized>(
        &self,
        neg: bool,
        mag: &[u64],
        rng: &mut R,
    ) -> Ciphertext {
        let pk = &self.public.0;
        let c = match (&self.inner, &pk.kind) {
            (SecretKind::Ou(s), PublicKind::Ou(o)) => s.encrypt(&o.sizes, neg, mag, rng),
            (SecretKind::Paillier(s), PublicKind::Paillier(p)) => {
                s.encrypt(p.alpha_bits, neg, mag, rng)
            }
            _ => unreachable!("secret and public parts are built together"),
        };
        Ciphertext(limbs::resized(limbs::trimmed(&c), pk.ct.len()).into())
    }

    /// Encrypts an `i64` (CRT).
    ///
    /// # Errors
    /// Never for supported key sizes.
    pub fn encrypt_i64<R: CryptoRng + ?Sized>(
        &self,
        m: i64,
        rng: &mut R,
    ) -> Result<Ciphertext, HeError> {
        self.encrypt(&Plaintext::from(m), rng)
    }

    /// `count` randomness factors made with the factors (CRT), on all cores; use with
    /// [`PublicKey::encrypt_pooled`].
    pub fn randomness_pool<R: CryptoRng + ?Sized>(
        &self,
        count: usize,
        rng: &mut R,
    ) -> RandomnessPool {
        let factors =
            super::batch::par_with_rng(count, rng, |_, r| self.encrypt_split(false, &[0], r).0);
        RandomnessPool::new(self.public.0.fingerprint, factors)
    }

    /// Serializes the key for its owner's own storage (checkpoints).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(SK_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.public.to_bytes());
        let bits = self.public.bits();
        let mut put = |x: &[u64], len: usize| {
            let mut buf = Zeroizing::new(vec![0u8; len]);
            limbs::write_be_bytes(x, &mut buf);
            out.extend_from_slice(&buf);
        };
        match &self.inner {
            SecretKind::Ou(s) => {
                let Some(sizes) = OuSizes::for_bits(bits) else {
                    unreachable!("checked at construction")
                };
                let w = be_len(sizes.p_bits);
                put(&s.p, w);
                put(&s.q, w);
                put(&s.t, be_len(sizes.t_bits));
            }
            SecretKind::Paillier(s) => {
                let w = be_len(bits / 2);
                put(&s.p, w);
                put(&s.q, w);
            }
        }
        out
    }

    /// Reads a key written by [`Self::to_bytes`], re-deriving and checking everything.
    ///
    /// # Errors
    /// [`HeError`] naming what is malformed or inconsistent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        let what = "secret key";
        let malformed = |why: String| HeError::Malformed { what, why };
        if bytes.len() < 5 + HEADER || &bytes[..4] != SK_MAGIC || bytes[4] != VERSION {
            return Err(malformed("missing \"FCHS\" header or wrong version".into()));
        }
        let pk_bytes = &bytes[5..];
        let scheme = Scheme::from_tag(pk_bytes[5])
            .ok_or_else(|| malformed(format!("unknown scheme tag {}", pk_bytes[5])))?;
        let bits = u16::from_be_bytes([pk_bytes[6], pk_bytes[7]]) as u32;
        check_bits(scheme, bits)?;
        let w = be_len(bits);
        let pk_len = HEADER + 3 * w;
        let (fw, tw) = match scheme {
            Scheme::Ou => {
                let Some(sizes) = OuSizes::for_bits(bits) else {
                    unreachable!("checked by check_bits")
                };
                (be_len(sizes.p_bits), be_len(sizes.t_bits))
            }
            Scheme::Paillier => (be_len(bits / 2), 0),
        };
        let expected = 5 + pk_len + 2 * fw + tw;
        if bytes.len() != expected {
            return Err(malformed(format!(
                "{} bytes; a {bits}-bit {scheme} secret key has {expected}",
                bytes.len()
            )));
        }
        let public = PublicKey::from_bytes_with_min_bits(&pk_bytes[..pk_len], 0)?;
        let sec = &pk_bytes[pk_len..];
        let flen = fw.div_ceil(8);
        let rd = |off: usize, l: usize, limbs_len: usize| {
            Zeroizing::new(limbs::from_be_bytes(&sec[off..off + l], limbs_len).unwrap_or_default())
        };
        let n = public.0.n.to_vec();
        let sk = match (&public.0.kind, scheme) {
            (PublicKind::Ou(o), Scheme::Ou) => {
                let p = rd(0, fw, flen);
                let q = rd(fw, fw, flen);
                let t = rd(2 * fw, tw, tw.div_ceil(8));
                let g = public.0.ct.out_of_mont(&o.g);
                Self::from_ou_parts(bits, &p, &q, &t, &n, &g)?
            }
            (PublicKind::Paillier(pp), Scheme::Paillier) => {
                let p = rd(0, fw, flen);
                let q = rd(fw, fw, flen);
                let hs = public.0.ct.out_of_mont(&pp.hs);
                Self::from_paillier_parts(bits, &p, &q, &n, &hs)?
            }
            _ => unreachable!("public key parsed with the same scheme"),
        };
        if sk.public != public {
            return Err(HeError::BadSecretKey { scheme, why: "does not match its public key" });
        }
        Ok(sk)
    }
}
