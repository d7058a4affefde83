//! Hashing ids to ristretto255 under a per-job domain separation tag.
//!
//! `hash_to_ristretto255(msg) = from_uniform_bytes(expand_message_xmd(msg, DST, 64))`
//! with SHA-512: RFC 9380 §5.3.1 (`expand_message_xmd`), §3.1 (domain separation) and
//! Appendix B, with the element derivation (`from_uniform_bytes`, two Elligator maps and
//! an addition) of RFC 9496 §4.3.4. The suite is the one RFC 9497 §4.1 uses for its
//! ristretto255 OPRF, so its test vectors check this code end to end.
//!
//! # The domain separation tag
//!
//! [`Dst::for_job`] builds `"fedcredit-psi-v1:ristretto255_XMD:SHA-512_R255MAP_RO_:" ‖ job`,
//! naming the protocol, version and suite as RFC 9380 §3.1 asks, plus the job. Every
//! job so has its own random oracle: a point computed for one job, or for another
//! protocol that hashes to ristretto255, says nothing in this job, and any work an
//! adversary spends on the (structured, enumerable) id space for one job is lost for the
//! next. The per-job secret keys already make blinded values of two jobs unlinkable; the
//! tag adds separation at the hash itself. Tags longer than 255 bytes are replaced by
//! `SHA-512("H2C-OVERSIZE-DST-" ‖ tag)` (RFC 9380 §5.3.3).
//!
//! # Speed
//!
//! The first block hashed for every id is the 128 zero bytes of `Z_pad`; [`Dst`] keeps
//! the SHA-512 state after that block, so an 18-byte id costs two SHA-512 compressions
//! when the tag is at most 45 bytes, three otherwise, next to the two Elligator maps that
//! dominate.

use curve25519_dalek::ristretto::RistrettoPoint;
use sha2::{Digest, Sha512};

use super::PsiError;

/// SHA-512's output (`b_in_bytes`) and block (`s_in_bytes`) sizes.
const B_IN_BYTES: usize = 64;
const S_IN_BYTES: usize = 128;

/// The prefix of [`Dst::for_job`].
pub const JOB_DST_PREFIX: &str = "fedcredit-psi-v1:ristretto255_XMD:SHA-512_R255MAP_RO_:";

/// A domain separation tag for hashing ids to ristretto255, with the hash state after
/// `Z_pad` precomputed.
#[derive(Clone)]
pub struct Dst {
    /// `DST ‖ I2OSP(len(DST), 1)` after oversize handling.
    dst_prime: Vec<u8>,
    /// SHA-512 after absorbing the 128 zero bytes of `Z_pad`.
    after_zpad: Sha512,
}

impl std::fmt::Debug for Dst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = &self.dst_prime[..self.dst_prime.len() - 1];
        f.debug_tuple("Dst").field(&String::from_utf8_lossy(tag)).finish()
    }
}

impl Dst {
    /// The tag of one job: [`JOB_DST_PREFIX`] followed by the job id.
    pub fn for_job(job: &str) -> Self {
        let mut tag = JOB_DST_PREFIX.as_bytes().to_vec();
        tag.extend_from_slice(job.as_bytes());
        Self::from_nonempty(&tag)
    }

    /// An arbitrary non-empty tag (for test vectors and other protocols).
    pub fn new(tag: &[u8]) -> Result<Self, PsiError> {
        if tag.is_empty() {
            return Err(PsiError::EmptyDst);
        }
        Ok(Self::from_nonempty(tag))
    }

    fn from_nonempty(tag: &[u8]) -> Self {
        let dst_prime = dst_prime(tag);
        let mut after_zpad = Sha512::new();
        after_zpad.update([0u8; S_IN_BYTES]);
        Self { dst_prime, after_zpad }
    }

    /// The effective tag (after oversize handling).
    pub fn tag(&self) -> &[u8] {
        &self.dst_prime[..self.dst_prime.len() - 1]
    }

    /// `expand_message_xmd(msg, DST, 64)` with SHA-512.
    pub fn expand64(&self, msg: &[u8]) -> [u8; 64] {
        // b_0 = H(Z_pad ‖ msg ‖ I2OSP(64, 2) ‖ I2OSP(0, 1) ‖ DST_prime)
        let mut h = self.after_zpad.clone();
        h.update(msg);
        h.update([0u8, 64, 0]);
        h.update(&self.dst_prime);
        let b0 = h.finalize();
        // b_1 = H(b_0 ‖ I2OSP(1, 1) ‖ DST_prime); ell = 1, so uniform_bytes = b_1.
        let mut h = Sha512::new();
        h.update(b0);
        h.update([1u8]);
        h.update(&self.dst_prime);
        h.finalize().into()
    }

    /// `hash_to_ristretto255(msg)`: RFC 9380 Appendix B / RFC 9496 §4.3.4.
    pub fn hash_to_group(&self, msg: &[u8]) -> RistrettoPoint {
        RistrettoPoint::from_uniform_bytes(&self.expand64(msg))
    }
}

/// `DST ‖ I2OSP(len(DST), 1)`, hashing tags over 255 bytes (RFC 9380 §5.3.3).
fn dst_prime(tag: &[u8]) -> Vec<u8> {
    let mut out = if tag.len() > 255 {
        let mut h = Sha512::new();
        h.update(b"H2C-OVERSIZE-DST-");
        h.update(tag);
        h.finalize().to_vec()
    } else {
        tag.to_vec()
    };
    // The length fits: at most 255 after the oversize rule.
    out.push(out.len() as u8);
    out
}

/// `expand_message_xmd(msg, DST, len_in_bytes)` with SHA-512 (RFC 9380 §5.3.1), for any
/// length; [`Dst::expand64`] is the fast path for the 64 bytes hashing to ristretto255
/// needs.
pub fn expand_message_xmd_sha512(msg: &[u8], tag: &[u8], len: usize) -> Result<Vec<u8>, PsiError> {
    if tag.is_empty() {
        return Err(PsiError::EmptyDst);
    }
    let ell = len.div_ceil(B_IN_BYTES);
    if ell > 255 || len > 65_535 {
        return Err(PsiError::OutputTooLong { len });
    }
    let dst_prime = dst_prime(tag);
    let mut h = Sha512::new();
    h.update([0u8; S_IN_BYTES]);
    h.update(msg);
    h.update((len as u16).to_be_bytes());
    h.update([0u8]);
    h.update(&dst_prime);
    let b0 = h.finalize();
    let mut out = Vec::with_capacity(ell * B_IN_BYTES);
    let mut prev = [0u8; B_IN_BYTES];
    for i in 1..=ell {
        let mut input = [0u8; B_IN_BYTES];
        for (k, byte) in input.iter_mut().enumerate() {
            // b_1 hashes b_0 itself; b_i (i > 1) hashes b_0 XOR b_(i-1), and prev is zero
            // for i = 1.
            *byte = b0[k] ^ prev[k];
        }
        let mut h = Sha512::new();
        h.update(input);
        h.update([i as u8]);
        h.update(&dst_prime);
        prev = h.finalize().into();
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 9380 Appendix K.3: expand_message_xmd(SHA-512).
    #[test]
    fn rfc9380_expand_message_xmd_sha512_vectors() {
        let dst = b"QUUX-V01-CS02-with-expander-SHA512-256";
        let q128 = format!("q128_{}", "q".repeat(128));
        let a512 = format!("a512_{}", "a".repeat(512));
        let cases: [(&[u8], usize, &str); 10] = [
            (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
            (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
            (
                b"abcdef0123456789",
                0x20,
                "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58",
            ),
            (
                q128.as_bytes(),
                0x20,
                "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3",
            ),
            (
                a512.as_bytes(),
                0x20,
                "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4",
            ),
            (
                b"",
                0x80,
                "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921\
                 b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e\
                 0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e\
                 b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
            ),
            (
                b"abc",
                0x80,
                "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11\
                 bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134\
                 7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843\
                 1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1",
            ),
            (
                b"abcdef0123456789",
                0x80,
                "3f721f208e6199fe903545abc26c837ce59ac6fa45733f1baaf0222f8b7acb04\
                 24814fcb5eecf6c1d38f06e9d0a6ccfbf85ae612ab8735dfdf9ce84c372a77c8\
                 f9e1c1e952c3a61b7567dd0693016af51d2745822663d0c2367e3f4f0bed827f\
                 eecc2aaf98c949b5ed0d35c3f1023d64ad1407924288d366ea159f46287e61ac",
            ),
            (
                q128.as_bytes(),
                0x80,
                "b799b045a58c8d2b4334cf54b78260b45eec544f9f2fb5bd12fb603eaee70db7\
                 317bf807c406e26373922b7b8920fa29142703dd52bdf280084fb7ef69da78af\
                 df80b3586395b433dc66cde048a258e476a561e9deba7060af40adf30c64249c\
                 a7ddea79806ee5beb9a1422949471d267b21bc88e688e4014087a0b592b695ed",
            ),
            (
                a512.as_bytes(),
                0x80,
                "05b0bfef265dcee87654372777b7c44177e2ae4c13a27f103340d9cd11c86cb2\
                 426ffcad5bd964080c2aee97f03be1ca18e30a1f14e27bc11ebbd650f305269c\
                 c9fb1db08bf90bfc79b42a952b46daf810359e7bc36452684784a64952c343c5\
                 2e5124cd1f71d474d5197fefc571a92929c9084ffe1112cf5eea5192ebff330b",
            ),
        ];
        for (msg, len, want) in cases {
            let got = expand_message_xmd_sha512(msg, dst, len).expect("valid length");
            assert_eq!(hex(&got), want, "msg of {} bytes, len {len}", msg.len());
        }
    }

    #[test]
    fn fast_path_matches_the_general_expansion() {
        for tag in [&b"x"[..], b"short tag", &[7u8; 45], &[9u8; 46], &[1u8; 255], &[2u8; 300]] {
            let dst = Dst::new(tag).expect("non-empty");
            for msg in [&b""[..], b"91350100M000100Y43", &[0xffu8; 200]] {
                let general = expand_message_xmd_sha512(msg, tag, 64).expect("valid");
                assert_eq!(dst.expand64(msg).to_vec(), general);
            }
        }
    }

    #[test]
    fn oversize_tag_is_hashed() {
        let long = vec![b'x'; 300];
        let dst = Dst::new(&long).expect("non-empty");
        assert_eq!(dst.tag().len(), 64);
        let mut h = Sha512::new();
        h.update(b"H2C-OVERSIZE-DST-");
        h.update(&long);
        assert_eq!(dst.tag(), h.finalize().as_slice());
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert_eq!(Dst::new(b"").unwrap_err(), PsiError::EmptyDst);
        assert_eq!(expand_message_xmd_sha512(b"", b"", 64).unwrap_err(), PsiError::EmptyDst);
        assert!(expand_message_xmd_sha512(b"", b"t", 255 * 64).is_ok());
        assert_eq!(
            expand_message_xmd_sha512(b"", b"t", 255 * 64 + 1).unwrap_err(),
            PsiError::OutputTooLong { len: 255 * 64 + 1 }
        );
    }

    /// RFC 9497 Appendix A.1.1 (OPRF(ristretto255, SHA-512), mode 0x00): the blinded
    /// element is `Blind · HashToGroup(Input)` with `HashToGroup` exactly this suite.
    #[test]
    fn rfc9497_hash_to_group_vectors() {
        use curve25519_dalek::scalar::Scalar;
        let dst = Dst::new(b"HashToGroup-OPRFV1-\x00-ristretto255-SHA512").expect("non-empty");
        let mut blind = [0u8; 32];
        for (i, b) in blind.iter_mut().enumerate() {
            let s = &"64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"
                [2 * i..2 * i + 2];
            *b = u8::from_str_radix(s, 16).expect("hex");
        }
        let blind = Scalar::from_canonical_bytes(blind).expect("canonical");
        let cases: [(&[u8], &str); 2] = [
            (&[0x00], "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c"),
            (&[0x5a; 17], "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418"),
        ];
        for (input, want) in cases {
            let blinded = (dst.hash_to_group(input) * blind).compress();
            assert_eq!(hex(blinded.as_bytes()), want);
        }
    }

    #[test]
    fn job_tags_are_distinct_and_readable() {
        let a = Dst::for_job("job-1");
        let b = Dst::for_job("job-2");
        assert_ne!(a.hash_to_group(b"id"), b.hash_to_group(b"id"));
        assert_eq!(a.tag(), format!("{JOB_DST_PREFIX}job-1").as_bytes());
        assert!(format!("{a:?}").contains("job-1"));
    }
}
