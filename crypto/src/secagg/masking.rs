//! Mask expansion: a 32-byte seed becomes a vector of uniform elements of `Z_{2^k}`.
//!
//! Bonawitz et al. (CCS 2017, §4) expand every seed with a PRG; here the PRG is AES-256 in
//! counter mode (NIST SP 800-38A; the PRG of Google's secure-aggregation implementation):
//! keystream block `j` is `AES-256_seed(label ‖ j)`, with an 8-byte label per mask kind (self
//! masks and pairwise masks use different labels, though their seeds are already independent)
//! and `j` a 64-bit little-endian counter. Each element takes the next 4 keystream bytes when
//! `k ≤ 32` and the next 8 otherwise, read little-endian and reduced modulo `2^k` (a bit
//! mask): since `2^k` divides `2^32` or `2^64`, the element is exactly uniform. Halving the
//! keystream for small rings halves the masking cost for the usual `k ≈ 28` codes.
//!
//! AES-256-CTR replaced the ChaCha20 keystream (RFC 8439) of earlier versions by measurement:
//! with AES-NI / VAES (detected at run time by the `aes` crate) a party of ten applies its ten
//! 10k-element masks in 77 µs, 7.7 µs each, where ChaCha20's keystream alone takes 17.1 µs
//! per mask (AVX2) on this kind of machine (`cargo bench -p fedcredit-crypto --bench secagg
//! -- secagg_parts`). [`apply_masks`] expands several seeds chunk by chunk and
//! sums their keystreams in a cache-resident accumulator (wrapping in `u32` for `k ≤ 32`),
//! so the vector itself is read and written once.
//!
//! [`pack_elements`] writes ring elements in `⌈k/8⌉` bytes each, so the upload of a
//! masked vector is as large as the plaintext encoding (e.g. 4 bytes per value for a
//! 28-bit ring, half the size of the `f64` update).

use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::SecAggError;

const SELF_LABEL: [u8; 8] = *b"fcsa-s-2";
const PAIR_LABEL: [u8; 8] = *b"fcsa-p-2";
/// Keystream blocks per chunk (4 KiB).
const CHUNK_BLOCKS: usize = 256;

/// A 32-byte seed from which a mask is expanded.
///
/// # Security
/// Whoever holds it can remove the mask. Zeroized on drop; `Debug` prints `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, serde::Serialize, serde::Deserialize)]
pub struct MaskSeed([u8; 32]);

impl std::fmt::Debug for MaskSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskSeed(<redacted>)")
    }
}

impl MaskSeed {
    /// A fresh random seed.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Self([0; 32]);
        rng.fill_bytes(&mut seed.0);
        seed
    }

    /// A seed from bytes (e.g. a reconstructed secret).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(*bytes)
    }

    /// The seed's bytes (for the wire, when the protocol reveals it).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Which protocol mask a seed expands to (selects the keystream label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// The self mask `PRG(b_u)`.
    SelfMask,
    /// A pairwise mask `PRG(s_uv)`.
    Pairwise,
}

/// Whether a mask is added to or subtracted from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskOp {
    /// `buf += mask`.
    Add,
    /// `buf -= mask`.
    Sub,
}

/// `2^k − 1`.
pub(crate) fn ring_mask(ring_bits: u32) -> u64 {
    if ring_bits >= 64 { u64::MAX } else { (1u64 << ring_bits) - 1 }
}

/// One seed's keystream, block by block.
struct Keystream {
    cipher: Aes256,
    label: [u8; 8],
    add: bool,
}

impl Keystream {
    fn new(seed: &MaskSeed, kind: MaskKind, op: MaskOp) -> Self {
        let label = match kind {
            MaskKind::SelfMask => SELF_LABEL,
            MaskKind::Pairwise => PAIR_LABEL,
        };
        Self { cipher: Aes256::new(seed.as_bytes().into()), label, add: op == MaskOp::Add }
    }

    /// Writes blocks `first..first + out.len()` of the keystream.
    fn blocks(&self, first: u64, out: &mut [[u8; 16]]) {
        for (j, b) in (first..).zip(out.iter_mut()) {
            b[..8].copy_from_slice(&self.label);
            b[8..].copy_from_slice(&j.to_le_bytes());
        }
        self.cipher.encrypt_blocks(Array::cast_slice_from_core_mut(out));
    }
}

/// A keystream word per ring element: `u32` for rings up to 32 bits, `u64` above.
trait Lane: Copy + Default + Zeroize {
    const BYTES: usize;
    fn from_le(bytes: &[u8]) -> Self;
    fn wrapping_add(self, other: Self) -> Self;
    fn wrapping_sub(self, other: Self) -> Self;
    fn widen(self) -> u64;
}

macro_rules! lane {
    ($t:ty) => {
        impl Lane for $t {
            const BYTES: usize = size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn wrapping_add(self, other: Self) -> Self {
                <$t>::wrapping_add(self, other)
            }
            fn wrapping_sub(self, other: Self) -> Self {
                <$t>::wrapping_sub(self, other)
            }
            fn widen(self) -> u64 {
                u64::from(self)
            }
        }
    };
}
lane!(u32);
lane!(u64);

/// `buf += Σ ±stream` modulo `mask + 1`, one chunk at a time: each stream's keystream for the
/// chunk is summed into an accumulator of `L` words, which is added to the chunk once.
fn sum_keystreams<L: Lane>(buf: &mut [u64], streams: &[Keystream], mask: u64) {
    let per_chunk = CHUNK_BLOCKS * 16 / L::BYTES;
    let mut block = Zeroizing::new([[0u8; 16]; CHUNK_BLOCKS]);
    let mut acc = Zeroizing::new(vec![L::default(); per_chunk]);
    for (c, chunk) in buf.chunks_mut(per_chunk).enumerate() {
        let blocks = &mut block[..(chunk.len() * L::BYTES).div_ceil(16)];
        let acc = &mut acc[..chunk.len()];
        acc.fill(L::default());
        for s in streams {
            s.blocks((c * CHUNK_BLOCKS) as u64, blocks);
            let words = blocks.as_flattened().chunks_exact(L::BYTES).map(L::from_le);
            if s.add {
                for (a, w) in acc.iter_mut().zip(words) {
                    *a = a.wrapping_add(w);
                }
            } else {
                for (a, w) in acc.iter_mut().zip(words) {
                    *a = a.wrapping_sub(w);
                }
            }
        }
        for (d, a) in chunk.iter_mut().zip(acc.iter()) {
            *d = d.wrapping_add(a.widen()) & mask;
        }
    }
}

/// Adds or subtracts the mask expanded from `seed` to `buf`, element-wise modulo `2^ring_bits`.
///
/// # Errors
/// None today (the 64-bit block counter covers any vector that fits in memory); kept for
/// callers that treat expansion as fallible.
pub fn apply_mask(
    buf: &mut [u64],
    seed: &MaskSeed,
    kind: MaskKind,
    ring_bits: u32,
    op: MaskOp,
) -> Result<(), SecAggError> {
    apply_masks(buf, &[(seed, kind, op)], ring_bits)
}

/// Adds or subtracts the masks of several seeds to `buf`, modulo `2^ring_bits`: the same as
/// [`apply_mask`] once per seed, with the vector read and written once.
///
/// # Errors
/// As [`apply_mask`].
pub fn apply_masks(
    buf: &mut [u64],
    masks: &[(&MaskSeed, MaskKind, MaskOp)],
    ring_bits: u32,
) -> Result<(), SecAggError> {
    if masks.is_empty() {
        return Ok(());
    }
    let streams: Vec<Keystream> =
        masks.iter().map(|(seed, kind, op)| Keystream::new(seed, *kind, *op)).collect();
    let mask = ring_mask(ring_bits);
    if ring_bits <= 32 {
        // 2^k divides 2^32: the masks' sum wraps in u32 and is reduced once.
        sum_keystreams::<u32>(buf, &streams, mask);
    } else {
        sum_keystreams::<u64>(buf, &streams, mask);
    }
    Ok(())
}

/// Bytes per packed element: `⌈ring_bits / 8⌉`.
pub fn packed_width(ring_bits: u32) -> usize {
    ring_bits.clamp(1, 64).div_ceil(8) as usize
}

/// Packs ring elements little-endian in [`packed_width`] bytes each (higher bits are dropped).
pub fn pack_elements(values: &[u64], ring_bits: u32) -> Vec<u8> {
    let w = packed_width(ring_bits);
    let mut out = Vec::with_capacity(values.len() * w);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes()[..w]);
    }
    out
}

/// Unpacks what [`pack_elements`] wrote.
///
/// # Errors
/// [`SecAggError::InvalidParam`] when the byte length is not a multiple of the width, and
/// [`SecAggError::OutOfRing`] (party 0, as the sender is unknown here) for an element
/// at or above `2^ring_bits`.
pub fn unpack_elements(bytes: &[u8], ring_bits: u32) -> Result<Vec<u64>, SecAggError> {
    let w = packed_width(ring_bits);
    if !bytes.len().is_multiple_of(w) {
        return Err(SecAggError::InvalidParam {
            name: "packed vector",
            reason: format!("{} bytes is not a multiple of {w}", bytes.len()),
        });
    }
    let mask = ring_mask(ring_bits);
    bytes
        .chunks_exact(w)
        .enumerate()
        .map(|(position, c)| {
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(c);
            let v = u64::from_le_bytes(b);
            if v & !mask != 0 {
                Err(SecAggError::OutOfRing { party: 0, position, ring_bits })
            } else {
                Ok(v)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn add_then_sub_cancels_exactly() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        for bits in [1, 7, 28, 32, 33, 51, 64] {
            let mask = ring_mask(bits);
            let orig: Vec<u64> = (0..5000u64).map(|i| i.wrapping_mul(0x9E37_79B9) & mask).collect();
            let seed = MaskSeed::random(&mut rng);
            let mut buf = orig.clone();
            apply_mask(&mut buf, &seed, MaskKind::Pairwise, bits, MaskOp::Add).unwrap();
            assert_ne!(buf, orig, "mask is zero at {bits} bits");
            assert!(buf.iter().all(|&v| v <= mask));
            apply_mask(&mut buf, &seed, MaskKind::Pairwise, bits, MaskOp::Sub).unwrap();
            assert_eq!(buf, orig, "{bits} bits");
        }
    }

    #[test]
    fn masks_depend_on_seed_and_kind_and_are_deterministic() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let a = MaskSeed::random(&mut rng);
        let b = MaskSeed::random(&mut rng);
        let expand = |s: &MaskSeed, k| {
            let mut v = vec![0u64; 100];
            apply_mask(&mut v, s, k, 40, MaskOp::Add).unwrap();
            v
        };
        assert_eq!(expand(&a, MaskKind::SelfMask), expand(&a.clone(), MaskKind::SelfMask));
        assert_ne!(expand(&a, MaskKind::SelfMask), expand(&b, MaskKind::SelfMask));
        assert_ne!(expand(&a, MaskKind::SelfMask), expand(&a, MaskKind::Pairwise));
    }

    #[test]
    fn mask_is_the_aes256_ctr_keystream() {
        // The cipher itself: FIPS 197, appendix C.3.
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mut b = Array::from(0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128.to_be_bytes());
        Aes256::new(&key.into()).encrypt_block(&mut b);
        assert_eq!(b.as_slice(), &0x8ea2_b7ca_5167_45bf_eafc_4990_4b49_6089u128.to_be_bytes());
        // Element i of a 64-bit mask is keystream bytes 8i..8i+8, block j = AES(label ‖ j).
        let seed = MaskSeed::from_bytes(&[9; 32]);
        let mut v = vec![0u64; 20];
        apply_mask(&mut v, &seed, MaskKind::Pairwise, 64, MaskOp::Add).unwrap();
        let c = Aes256::new(&[9; 32].into());
        let mut ks = Vec::new();
        for j in 0u64..10 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&PAIR_LABEL);
            b[8..].copy_from_slice(&j.to_le_bytes());
            let mut b = Array::from(b);
            c.encrypt_block(&mut b);
            ks.extend_from_slice(b.as_slice());
        }
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x, u64::from_le_bytes(ks[8 * i..8 * i + 8].try_into().unwrap()));
        }
    }

    #[test]
    fn several_masks_at_once_equal_one_at_a_time() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let seeds: Vec<MaskSeed> = (0..5).map(|_| MaskSeed::random(&mut rng)).collect();
        let ops = [MaskOp::Add, MaskOp::Sub, MaskOp::Sub, MaskOp::Add, MaskOp::Add];
        let kinds = [
            MaskKind::SelfMask,
            MaskKind::Pairwise,
            MaskKind::Pairwise,
            MaskKind::Pairwise,
            MaskKind::SelfMask,
        ];
        // Lengths around the chunk boundaries, rings on both sides of 32 bits.
        for len in [1, 1023, 1024, 1025, 2 * 1024 + 3, 5000] {
            for bits in [1, 28, 32, 33, 64] {
                let m = ring_mask(bits);
                let orig: Vec<u64> =
                    (0..len as u64).map(|i| i.wrapping_mul(0x9E37_79B9) & m).collect();
                let mut one = orig.clone();
                for ((s, k), o) in seeds.iter().zip(kinds).zip(ops) {
                    apply_mask(&mut one, s, k, bits, o).unwrap();
                }
                let mut all = orig.clone();
                let masks: Vec<_> =
                    seeds.iter().zip(kinds).zip(ops).map(|((s, k), o)| (s, k, o)).collect();
                apply_masks(&mut all, &masks, bits).unwrap();
                assert_eq!(one, all, "{len} elements, {bits} bits");
                assert!(all.iter().all(|&v| v <= m));
            }
        }
    }

    #[test]
    fn masks_look_uniform() {
        let seed = MaskSeed::from_bytes(&[3; 32]);
        let mut v = vec![0u64; 64_000];
        apply_mask(&mut v, &seed, MaskKind::SelfMask, 28, MaskOp::Add).unwrap();
        let mut counts = [0f64; 16];
        for x in &v {
            counts[(x >> 24) as usize] += 1.0;
        }
        let e = v.len() as f64 / 16.0;
        let chi2: f64 = counts.iter().map(|c| (c - e).powi(2) / e).sum();
        assert!(chi2 < 37.7, "chi2 = {chi2}");
    }

    #[test]
    fn packing_round_trips_at_ring_width() {
        let v: Vec<u64> = vec![0, 1, (1 << 28) - 1, 12345];
        let packed = pack_elements(&v, 28);
        assert_eq!(packed.len(), 16);
        assert_eq!(unpack_elements(&packed, 28).unwrap(), v);
        let wide: Vec<u64> = vec![u64::MAX, 0];
        assert_eq!(unpack_elements(&pack_elements(&wide, 64), 64).unwrap(), wide);
        assert!(unpack_elements(&[0xFF; 4], 28).is_err());
        assert!(unpack_elements(&[0; 5], 28).is_err());
    }

    #[test]
    fn seeds_print_redacted() {
        let seed = MaskSeed::from_bytes(&[0xAB; 32]);
        let printed = format!("{seed:?}");
        assert!(printed.contains("<redacted>") && !printed.contains("171"));
    }
}
