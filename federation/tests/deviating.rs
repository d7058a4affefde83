//! A coordinator that deviates from the protocol, in memory, against the participants' real
//! code (issue 8, item 5), for secure aggregation v2 (round secrets from the parties' signed
//! job channel keys; upload with sealed shares, consistency check on dropouts, unmask).
//!
//! # Threat model
//!
//! Parties are semi-honest: they run the participant code as written (one faulty party in L4
//! only publishes a bad channel key, signed with its own certificate, and in L1 two parties
//! drop out, to make the others and the coordinator's honest side react). The coordinator may deviate
//! arbitrarily from the protocol — alter, drop, duplicate, re-address, reorder or inject any
//! message it sends or relays, the peer directory included — but does not collude with a party
//! and holds no party's certificate key. Every test builds a federation CA with real
//! certificates (`fedcredit_transport::tls::init_certs`), so every signature a party checks
//! (directory entries, survivor sets) is an ECDSA P-256 signature under a certificate chained
//! to the federation CA (two controls go without: the H1 control shows what an unsigned
//! directory gives away, and the L1 check of the server's retry rule drives bare state
//! machines), then plays the coordinator through the in-memory federation's intercept hook,
//! injected messages, or a conductor of its own, and asserts, from the transcript, both that
//! the attack is refused (a party's session refuses the message, or the party reports the
//! step failed, naming why) and that the coordinator gained nothing: no masked vector or
//! sealed share of a victim, never both the self-mask seed and a pairwise seed of one party
//! that uploaded, never a sum that isolates one party's vector or two sums of one
//! contribution over different parties.
//!
//! # Attacks (labels of the review in issue 8)
//!
//! - **H1** key substitution, now of the job channel keys every pair's round secrets derive
//!   from: directory entries with a substituted channel key, bank1's key signed for another
//!   job, a certificate of another CA, a certificate naming another party, the coordinator's
//!   certificate, no signature, a stranger. The control, without certificates, shows the
//!   coordinator posing as bank0's neighbours and unmasking bank0's vector on its own.
//! - **H2** participant-side policy: (a) a roster naming a party outside the job, (b) a roster
//!   below `min_parties`, (c) a lowered threshold, other fraction bits, another degree, a job
//!   threshold below a majority, (d) the same contribution under roster `R` then `R ∖ {u}`
//!   (also disguised as another step, after a model update, or behind a tree that changes
//!   nothing), and under the same roster with `u` called dropped in one run only (in either
//!   order), (e) another attempt of an unmasked step, also to a party restarted from its
//!   checkpoint.
//! - **H3** inconsistent survivor lists: the fast path to some parties, a consistency check
//!   naming dropouts to others, and different dropout sets to different parties (each party
//!   also offered the other path), every combination for 3 parties, every split around one
//!   party and seeded mixed views for 5, and splits around one party of a SecAgg+ graph of 20.
//! - **M1** SecAgg+ below `Graph::min_degree(n)`, and a disconnected survivor graph (in a
//!   consistency check and on the fast path).
//! - **L1** no retry once `t` unmask answers were released (server, conductor, parties), and
//!   no re-run of an unmasked step by a coordinator resumed from an earlier checkpoint (it
//!   opens a new step number, where the parties refuse the same contribution; a step number
//!   reused anyway is refused as unmasked).
//! - **L3** a roster above `secagg::MAX_ROSTER`, a benchmark dimension above
//!   `horizontal::sync::MAX_BENCH_DIM`, a GBDT task repeating nodes and features: refused
//!   without allocating (measured by a counting allocator).
//! - **L4** a faulty party's channel key that is a low-order point, or a copy of another
//!   party's key (for that party: its own key): the directory is refused by every honest
//!   party, which derives nothing from it, and the honest parties finish without the faulty
//!   one.
//! - **Relay** a sealed payload altered, re-addressed, replayed, reordered or truncated by the
//!   coordinator: refused by the receiver.
//!
//! And the honest signed run trains exactly the model of the unsigned run.
//!
//! # Dropped with secure aggregation v2
//!
//! - *Round keys substituted in `PeerKeys`* (fresh keys, the victim's own, another party's,
//!   signed with the coordinator's certificate, replayed from another round): v2 has no
//!   per-round key adverts; a round's pairwise seeds and share keys derive from the pair root
//!   of the two parties' job channel keys and the round context, so the only keys a
//!   coordinator could substitute are directory entries (H1 above; the replay becomes a key
//!   signed for another job).
//! - *Bad key adverts rejected by the server on arrival* (L4): there are no adverts; the
//!   channel key is checked by every party when the directory arrives (and by the coordinator's
//!   driver at join for low-order points), so L4 now covers directory entries.
//! - *A wrong share of the masking key `s_u`*: v2 reveals no shares of a long-term masking key
//!   (a survivor reveals its round seed with a dropped neighbour), so the faulty party of L1
//!   now drops out instead, and the "both secrets" check reads the round seeds revealed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_crypto::secagg::masking::{MaskKind, MaskOp, apply_mask};
use fedcredit_crypto::secagg::{self as sa, Graph, MaskSeed, PairRoot, PartyIndex, shamir};
use fedcredit_federation::auth::Signer;
use fedcredit_federation::channel::channel_key_statement;
use fedcredit_federation::horizontal::bench::bench_vector;
use fedcredit_federation::horizontal::sync::MAX_BENCH_DIM;
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation, honest};
use fedcredit_federation::protocol::{self, restore_conductor};
use fedcredit_federation::secagg::in_memory::Keyring;
use fedcredit_federation::secagg::{
    ClientMessage, ConsistencyCheck, MAX_ROSTER, Phase, RoundHeader, RoundSetup, SecAggClient,
    SecAggConfig, SecAggServer, ServerMessage, ServerStep, UnmaskRequest,
};
use fedcredit_federation::{JobId, PartyId, RoundId};
use fedcredit_proto::pb;
use fedcredit_transport::identity::CertSigner;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

mod common;
#[path = "common/deviant.rs"]
mod deviant;
use deviant::*;

// ---- Allocation accounting (L3). ----

/// Counts the bytes live on each thread, so a test can bound what one federation run (which
/// runs on the test's thread) allocated at its peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let _ = LIVE.try_with(|live| {
        let v = live.get().saturating_add(n);
        live.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn shrank(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
}

// The only unsafe code of the workspace: a test-only allocator that forwards to the system's
// and counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes this thread held at once beyond what it
/// held before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get).saturating_sub(base))
}

// ---- Shared pieces. ----

const GBDT: &str = "kind = \"gbdt\"\nn_trees = 2\nmax_depth = 2\nmax_bins = 16\neval_every = 0";

type Hook<'a> = dyn FnMut(&PartyId, &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> + 'a;

fn pass(to: &PartyId, msg: &pb::ToParty) -> Vec<(PartyId, pb::ToParty)> {
    vec![(to.clone(), msg.clone())]
}

fn header(round: u64, attempt: u32) -> RoundHeader {
    RoundHeader { job: job_id(), round: RoundId(round), attempt }
}

/// Starts and runs `fed` with `hook`; the run's result.
fn run(fed: &mut Federation, hook: &mut Hook<'_>) -> Result<protocol::Outcome, String> {
    fed.start(hook)?;
    fed.run(hook)
}

/// Every refusal in the transcript, for failure messages.
fn all_refusals(t: &[Entry]) -> Vec<(PartyId, String)> {
    t.iter()
        .filter_map(|e| match e {
            Entry::Refused { party, reason } => Some((party.clone(), reason.clone())),
            Entry::FromParty { from, msg, .. } => match &msg.body {
                Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                    body: Some(pb::role_message::Body::Failed(f)),
                })) => Some((from.clone(), format!("step {}: {}", f.step, f.reason))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Asserts that no party sent anything for `header`: the coordinator got no masked vector (nor
/// the shares sealed with it), survivor-set signature or unmask share for that attempt.
fn assert_nothing_for(t: &[Entry], header: &RoundHeader, what: &str) {
    let got: Vec<(PartyId, String)> = sent_by_parties(t)
        .into_iter()
        .filter(|(_, m)| m.header() == header)
        .map(|(p, m)| (p, format!("{:?}", m.phase())))
        .collect();
    assert!(got.is_empty(), "{what}: the coordinator received {got:?} for {header}");
}

// ---- The honest signed run. ----

/// Every directory entry the coordinator handed out: (certificate present, signature present).
fn directory_entries(t: &[Entry]) -> Vec<(bool, bool)> {
    t.iter()
        .filter_map(|e| match e {
            Entry::ToParty { msg, .. } => match &msg.body {
                Some(pb::to_party::Body::Directory(d)) => Some(d.peers.clone()),
                _ => None,
            },
            _ => None,
        })
        .flatten()
        .map(|e| {
            let k = e.key.unwrap_or_default();
            (!k.certificate.is_empty(), !k.signature.is_empty())
        })
        .collect()
}

#[test]
fn honest_signed_run_trains_the_same_model_as_the_unsigned_run() {
    let spec = job_spec(3, "", GBDT, "");
    let banks = with_data(&[160, 120, 140]);
    let certs = Certs::new(3);

    let mut plain = federation(&spec, &banks, None);
    let want = run(&mut plain, &mut honest).unwrap();
    let mut signed = federation(&spec, &banks, Some(&certs));
    let got = run(&mut signed, &mut honest).unwrap();

    assert!(want.artifact_json.is_some());
    assert_eq!(got.artifact_json, want.artifact_json);
    assert_eq!(got.metrics.get("auc"), want.metrics.get("auc"));
    assert!(all_refusals(&signed.transcript).is_empty(), "{:?}", all_refusals(&signed.transcript));
    // Every directory entry of the signed run carries a certificate and a signature; none of
    // the unsigned run's does.
    let entries = directory_entries(&signed.transcript);
    assert!(!entries.is_empty() && entries.iter().all(|&(c, s)| c && s), "{entries:?}");
    let entries = directory_entries(&plain.transcript);
    assert!(!entries.is_empty() && entries.iter().all(|&(c, s)| !c && !s), "{entries:?}");

    // With a dropout (bank2 misses step 0), the survivors sign the survivor set and check each
    // other's signatures; both runs sum the same vectors exactly.
    let spec = bench_spec(3, "min_parties = 2", "", 2);
    let mut miss_step0 = |to: &PartyId, msg: &mut pb::ToParty| {
        if *to == bank(2) && step_of(msg).is_some_and(|s| setup_of(&s).header == header(0, 0)) {
            return Vec::new();
        }
        pass(to, msg)
    };
    let mut plain = federation(&spec, &no_data(3), None);
    let want = run(&mut plain, &mut miss_step0).unwrap();
    let mut signed = federation(&spec, &no_data(3), Some(&certs));
    let got = run(&mut signed, &mut miss_step0).unwrap();
    assert_eq!(got, want);
    assert!(want.metrics["max_abs_error"] < 1e-6, "{:?}", want.metrics);
    assert_eq!(signed.steps, plain.steps);
    assert_eq!(signed.steps[0].contributors, vec![bank(0), bank(1)]);
    assert_eq!(signed.steps[0].dropped, vec![bank(2)]);
    assert!(all_refusals(&signed.transcript).is_empty(), "{:?}", all_refusals(&signed.transcript));
    let signatures = |f: &Federation| -> Vec<bool> {
        sent_by_parties(&f.transcript)
            .into_iter()
            .filter_map(|(_, m)| match m {
                ClientMessage::Consistency(c) => Some(!c.signature.is_empty()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(signatures(&signed), vec![true, true]);
    assert_eq!(signatures(&plain), vec![false, false]);
}

// ---- H1: substituted channel keys. ----

/// The peer directory a message to a party carries, if it is one.
fn directory_of(msg: &mut pb::ToParty) -> Option<&mut pb::PeerDirectory> {
    match &mut msg.body {
        Some(pb::to_party::Body::Directory(d)) => Some(d),
        _ => None,
    }
}

/// `p`'s channel key in a directory.
fn entry_of<'d>(d: &'d mut pb::PeerDirectory, p: &PartyId) -> &'d mut pb::ChannelKey {
    let e = d.peers.iter_mut().find(|e| e.party == p.0).unwrap();
    e.key.get_or_insert_with(Default::default)
}

/// The channel public key of `p` in the first directory of the transcript.
fn published_key(t: &[Entry], p: &PartyId) -> [u8; 32] {
    t.iter()
        .find_map(|e| match e {
            Entry::ToParty { msg, .. } => match &msg.body {
                Some(pb::to_party::Body::Directory(d)) => d
                    .peers
                    .iter()
                    .find(|e| e.party == p.0)
                    .and_then(|e| e.key.as_ref()?.public_key.as_slice().try_into().ok()),
                _ => None,
            },
            _ => None,
        })
        .unwrap()
}

/// The secure-aggregation messages `party` sent of the given kind, in any attempt.
fn sent_any(t: &[Entry], party: &PartyId, kind: fn(&ClientMessage) -> bool) -> usize {
    sent_by_parties(t).iter().filter(|(p, m)| p == party && kind(m)).count()
}

#[test]
fn h1_control_without_certificates_a_substituted_directory_unmasks_the_victims_vector() {
    // The coordinator hands bank0 channel keys of its own as bank1's and bank2's. Nothing is
    // signed, so bank0 takes them, derives its pair roots with the coordinator, and seals its
    // shares to it: the coordinator rebuilds bank0's self-mask seed and both its pairwise
    // seeds, and removes every mask from bank0's upload.
    let spec = bench_spec(3, "", "", 1);
    let (victim, n1, n2) = (bank(0), bank(1), bank(2));
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let as_n1 = ChannelSecret::generate(&mut rng);
    let as_n2 = ChannelSecret::generate(&mut rng);
    let mut fed = federation(&spec, &no_data(3), None);
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if *to == victim
            && let Some(d) = directory_of(msg)
        {
            entry_of(d, &n1).public_key = as_n1.public().to_vec();
            entry_of(d, &n2).public_key = as_n2.public().to_vec();
        }
        pass(to, msg)
    };
    let _ = run(&mut fed, &mut hook);
    let t = &fed.transcript;
    let (_, step) = steps_sent(t).into_iter().find(|(p, _)| *p == victim).unwrap();
    let setup = setup_of(&step);
    let spec_r = round_spec(&setup);
    let input = setup.config.input(3).unwrap();
    let up = uploads(t, &setup.header);
    let mine = &up[&victim];

    // The pair roots bank0 derived, as the coordinator derives them (a third root of its own
    // stands between its two personas).
    let ctx = JOB.as_bytes();
    let pk0 = published_key(t, &victim);
    let r01 = as_n1.pair(ctx, &n1.0, &victim.0, &pk0).unwrap().secagg_root();
    let r02 = as_n2.pair(ctx, &n2.0, &victim.0, &pk0).unwrap().secagg_root();
    let r12 = PairRoot::from_bytes([7; 32]);
    let persona = |me: PartyIndex| {
        let roots = match me {
            1 => BTreeMap::from([(0, r01.clone()), (2, r12.clone())]),
            _ => BTreeMap::from([(0, r02.clone()), (1, r12.clone())]),
        };
        let zeros = vec![0; input.vector_len];
        sa::mask_input(&spec_r, me, &roots, &zeros, &input, &mut ChaCha20Rng::seed_from_u64(6))
            .unwrap()
    };
    let ids = |v: &[PartyIndex]| v.iter().copied().collect::<BTreeSet<PartyIndex>>();
    // bank0's shares of its self-mask seed, sealed to "bank1" and "bank2".
    let (s1, _, _) = persona(1);
    let (s2, _, _) = persona(2);
    let got1 =
        s1.unmask(&BTreeMap::from([(0, mine.bundles[&n1].clone())]), &ids(&[0, 1]), &ids(&[2]));
    let got2 =
        s2.unmask(&BTreeMap::from([(0, mine.bundles[&n2].clone())]), &ids(&[0, 2]), &ids(&[1]));
    let shares = [got1.unwrap().self_mask[&0].clone(), got2.unwrap().self_mask[&0].clone()];
    let b0 = shamir::reconstruct(&shares, spec_r.threshold()).unwrap();
    // bank0's round seeds with "bank1" and "bank2".
    let (s1, _, to_others1) = persona(1);
    let (s2, _, to_others2) = persona(2);
    let seed01 = s1
        .unmask(&BTreeMap::from([(2, to_others2[&1].clone())]), &ids(&[1, 2]), &ids(&[0]))
        .unwrap()
        .pair_seeds[&0]
        .clone();
    let seed02 = s2
        .unmask(&BTreeMap::from([(1, to_others1[&2].clone())]), &ids(&[1, 2]), &ids(&[0]))
        .unwrap()
        .pair_seeds[&0]
        .clone();
    let ring = input.fixed.ring_bits;
    let mut x = mine.masked.clone();
    apply_mask(&mut x, &MaskSeed::from_bytes(&b0), MaskKind::SelfMask, ring, MaskOp::Sub).unwrap();
    // bank0 has the lowest index: it added both pairwise masks.
    apply_mask(&mut x, &seed01, MaskKind::Pairwise, ring, MaskOp::Sub).unwrap();
    apply_mask(&mut x, &seed02, MaskKind::Pairwise, ring, MaskOp::Sub).unwrap();
    let Some(pb::horizontal_task::Task::Bench(b)) = step.task.and_then(|t| t.task) else {
        panic!("a bench task")
    };
    let truth = bench_vector(b.seed, &victim, b.round, b.dim as usize);
    let unmasked = input.fixed.decode_vec(&x);
    let err = unmasked.iter().zip(&truth).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err <= input.fixed.sum_error_bound(1), "{unmasked:?} vs {truth:?}");
}

#[test]
fn h1_directory_entries_with_substituted_keys_or_foreign_certificates_are_refused() {
    let certs = Certs::new(3);
    let foreign = Certs::new(3);
    let spec = bench_spec(3, "", "", 1);
    let banks = no_data(3);
    let (victim, neighbour) = (bank(0), bank(1));
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let coordinator_key = ChannelSecret::generate(&mut rng).public().to_vec();
    let statement = |key: &[u8]| channel_key_statement(&job_id(), &neighbour, key);
    let neighbour_signer = CertSigner::from_files(&certs.paths.parties["bank1"]).unwrap();
    let foreign_signer = CertSigner::from_files(&foreign.paths.parties["bank1"]).unwrap();
    let coordinator_signer = CertSigner::from_files(&certs.paths.coordinator).unwrap();
    let other_job = ChannelSecret::generate(&mut rng).public().to_vec();

    type Edit<'a> = Box<dyn Fn(&mut pb::PeerDirectory) + 'a>;
    let variants: Vec<(&str, &str, Edit<'_>)> = vec![
        (
            "a substituted channel key",
            "channel key of bank1: channel key of bank1: signature does not verify",
            Box::new(|d| entry_of(d, &neighbour).public_key = coordinator_key.clone()),
        ),
        (
            "bank1's key signed for another job",
            "channel key of bank1: channel key of bank1: signature does not verify",
            Box::new(|d| {
                let st = channel_key_statement(&JobId("j0".into()), &neighbour, &other_job);
                let k = entry_of(d, &neighbour);
                k.public_key = other_job.clone();
                k.signature = neighbour_signer.sign(&st).unwrap();
            }),
        ),
        (
            "a certificate of another CA",
            "not issued by the federation CA",
            Box::new(|d| {
                *entry_of(d, &neighbour) = pb::ChannelKey {
                    certificate: foreign_signer.certificate().to_vec(),
                    public_key: coordinator_key.clone(),
                    signature: foreign_signer.sign(&statement(&coordinator_key)).unwrap(),
                };
            }),
        ),
        (
            "a certificate naming another party",
            "it names `bank2`",
            Box::new(|d| *entry_of(d, &neighbour) = entry_of(d, &bank(2)).clone()),
        ),
        (
            "the coordinator's own certificate",
            "certificate presented for bank1",
            Box::new(|d| {
                *entry_of(d, &neighbour) = pb::ChannelKey {
                    certificate: coordinator_signer.certificate().to_vec(),
                    public_key: coordinator_key.clone(),
                    signature: coordinator_signer.sign(&statement(&coordinator_key)).unwrap(),
                };
            }),
        ),
        (
            "an unsigned entry",
            "channel key of bank1 is not signed",
            Box::new(|d| entry_of(d, &neighbour).signature.clear()),
        ),
        (
            "a stranger",
            "the directory lists mallory, who is not a party of this job",
            Box::new(|d| {
                let mut e = d.peers[0].clone();
                e.party = "mallory".into();
                d.peers.push(e);
            }),
        ),
    ];

    // Control: the honest run, in which the victim uploads and seals shares to its neighbours.
    let mut fed = federation(&spec, &banks, Some(&certs));
    run(&mut fed, &mut honest).unwrap();
    assert_eq!(sent_any(&fed.transcript, &victim, is_masked), 1);
    assert!(all_refusals(&fed.transcript).is_empty());

    for (what, reason, edit) in variants {
        let mut fed = federation(&spec, &banks, Some(&certs));
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if *to == victim
                && let Some(d) = directory_of(msg)
            {
                edit(d);
            }
            pass(to, msg)
        };
        let _ = run(&mut fed, &mut hook);
        let t = &fed.transcript;
        assert!(refused(t, &victim, reason), "{what}: {:?}", all_refusals(t));
        // Nothing of the directory was kept: the victim derives no round secret, so it uploads
        // no masked vector and seals no share, and signs or releases nothing.
        assert!(refused(t, &victim, "no verified channel key of bank1"), "{what}");
        assert_eq!(sent_by_parties(t).iter().filter(|(p, _)| *p == victim).count(), 0, "{what}");
        // The others were not attacked: they finish the step without the victim.
        assert_eq!(refusers(t), BTreeSet::from([victim.clone()]), "{what}");
        assert_eq!(fed.steps.len(), 1, "{what}");
        assert_eq!(fed.steps[0].contributors, vec![bank(1), bank(2)], "{what}");
    }
}

// ---- H2: the participant-side policy. ----

/// A hook that rewrites the first attempt of step 0 with `edit` (which returns the parties to
/// send it to) and passes everything else.
fn edit_first_step<'a>(
    mut edit: impl FnMut(&mut RoundSetup) -> Option<BTreeSet<PartyId>> + 'a,
) -> impl FnMut(&PartyId, &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> + 'a {
    move |to, msg| {
        let Some(mut s) = step_of(msg) else { return pass(to, msg) };
        let mut setup = setup_of(&s);
        if setup.header != header(0, 0) {
            return pass(to, msg);
        }
        let recipients = edit(&mut setup);
        if recipients.is_some_and(|r| !r.contains(to)) {
            return Vec::new();
        }
        set_setup(&mut s, &setup);
        vec![(to.clone(), step_msg(s))]
    }
}

/// Runs a bench job whose first step is rewritten by `edit`; every party in `expect` must
/// refuse it with `reason`, and nobody may send anything for that attempt.
fn assert_setup_refused(
    spec: &JobSpec,
    certs: &Certs,
    n: usize,
    expect: &[PartyId],
    reason: &str,
    edit: impl FnMut(&mut RoundSetup) -> Option<BTreeSet<PartyId>>,
) {
    let mut fed = federation(spec, &no_data(n), Some(certs));
    let mut hook = edit_first_step(edit);
    let result = run(&mut fed, &mut hook);
    let t = &fed.transcript;
    for p in expect {
        assert!(refused(t, p, reason), "{p} should refuse `{reason}`: {:?}", all_refusals(t));
    }
    assert_nothing_for(t, &header(0, 0), reason);
    assert!(result.is_err(), "{reason}: the job cannot go on");
}

#[test]
fn h2a_a_roster_naming_a_party_outside_the_job_is_refused() {
    let certs = Certs::new(3);
    let spec = bench_spec(3, "", "", 1);
    assert_setup_refused(
        &spec,
        &certs,
        3,
        &banks(3),
        "the roster names mallory, who is not a party of the job",
        |setup| {
            setup.roster.push(PartyId("mallory".into()));
            setup.roster.sort();
            None
        },
    );
}

#[test]
fn h2b_a_roster_below_the_jobs_min_parties_is_refused() {
    let certs = Certs::new(3);
    let spec = bench_spec(3, "", "", 1);
    assert_setup_refused(
        &spec,
        &certs,
        3,
        &[bank(0), bank(1)],
        "a roster of 2 parties; the job needs at least 3",
        |setup| {
            setup.roster = vec![bank(0), bank(1)];
            Some(setup.roster.iter().cloned().collect())
        },
    );
}

#[test]
fn h2c_a_lowered_threshold_or_other_settings_than_the_jobs_are_refused() {
    let certs = Certs::new(5);
    let all = banks(5);
    let plain = bench_spec(5, "", "", 1);
    assert_setup_refused(
        &plain,
        &certs,
        5,
        &all,
        "threshold 2 for neighbourhoods of 5; at least 3 (a majority) is needed",
        |s| {
            s.config.threshold = Some(2);
            None
        },
    );
    assert_setup_refused(&plain, &certs, 5, &all, "16 fraction bits; the job has 24", |s| {
        s.config.frac_bits = 16;
        None
    });
    assert_setup_refused(
        &plain,
        &certs,
        5,
        &all,
        "SecAgg+ degree Some(2); the job has None",
        |s| {
            s.config.degree = Some(2);
            None
        },
    );
    let strict = bench_spec(5, "", "threshold = 4", 1);
    assert_setup_refused(&strict, &certs, 5, &all, "threshold None; the job has 4", |s| {
        s.config.threshold = None;
        None
    });
    assert_setup_refused(&strict, &certs, 5, &all, "threshold Some(3); the job has 4", |s| {
        s.config.threshold = Some(3);
        None
    });
    // A job whose own threshold is below a majority is refused at submit and by every party
    // before it joins (the offer's spec is validated); a party that held it anyway would
    // refuse its steps even from an honest coordinator.
    let weak = bench_spec(5, "", "threshold = 2", 1);
    let err = JobSpec::from_json(&weak.to_json()).unwrap_err().to_string();
    assert!(err.contains("secagg.threshold") && err.contains("majority"), "{err}");
    let mut fed = federation_with(
        &weak,
        &no_data(5),
        Some(&certs),
        conductor(&plain, &no_data(5)),
        &|_, r| r,
    );
    let mut hook = edit_first_step(|s| {
        s.config.threshold = Some(2);
        None
    });
    let result = run(&mut fed, &mut hook);
    let reason = "threshold 2 for neighbourhoods of 5; at least 3 (a majority) is needed";
    for p in &all {
        assert!(refused(&fed.transcript, p, reason), "{p}: {:?}", all_refusals(&fed.transcript));
    }
    assert_nothing_for(&fed.transcript, &header(0, 0), reason);
    assert!(result.is_err());
}

/// Steps of a horizontal job as sent to each party, by step number (first attempt only).
type Seen = BTreeMap<u64, BTreeMap<PartyId, pb::HorizontalStep>>;

fn task_kind(s: &pb::HorizontalStep) -> &'static str {
    use pb::horizontal_task::Task as T;
    match s.task.as_ref().and_then(|t| t.task.as_ref()) {
        Some(T::Bench(_)) => "bench",
        Some(T::Census(_)) => "census",
        Some(T::Grid(_)) => "grid",
        Some(T::Moments(_)) => "moments",
        Some(T::Gbdt(_)) => "gbdt",
        Some(T::Logistic(_)) => "logistic",
        Some(T::BinCounts(_)) => "bin_counts",
        Some(T::Evaluate(_)) => "evaluate",
        None => "none",
    }
}

/// The replay of `source` as step `round` with `roster` and `updates`.
fn replay(
    source: &pb::HorizontalStep,
    round: u64,
    roster: &[PartyId],
    updates: Vec<pb::ModelUpdate>,
) -> pb::HorizontalStep {
    let mut s = source.clone();
    let mut setup = setup_of(source);
    setup.header = header(round, 0);
    setup.roster = roster.to_vec();
    set_setup(&mut s, &setup);
    s.updates = updates;
    s
}

#[test]
fn h2d_the_same_contribution_under_a_smaller_roster_is_refused() {
    // Three banks, `min_parties = 2`: a coordinator that got the sum of a step over all three
    // asks bank0 and bank1 for the same contribution again; the difference of the two sums
    // would be bank2's contribution (the subtraction attack).
    let certs = Certs::new(3);
    let spec = job_spec(3, "min_parties = 2", GBDT, "");
    let data = with_data(&[160, 120, 140]);
    let (a, b, victim) = (bank(0), bank(1), bank(2));
    let pair = vec![a.clone(), b.clone()];
    let zero_tree = |version: u64| pb::ModelUpdate {
        version,
        body: Some(pb::model_update::Body::Tree(pb::BinTree {
            nodes: vec![pb::BinTreeNode { kind: Some(pb::bin_tree_node::Kind::Leaf(0.0)) }],
        })),
    };

    // Disguises: the replay as another step number; after a model update the census does not
    // depend on; behind a tree of zeros that leaves every gradient unchanged.
    for disguise in ["another step", "a model update", "a zero tree"] {
        let mut fed = federation(&spec, &data, Some(&certs));
        let mut seen: Seen = BTreeMap::new();
        let mut held: BTreeMap<PartyId, u64> = BTreeMap::new();
        let mut done = false;
        let replay_round = 1000;
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            let Some(s) = step_of(msg) else { return pass(to, msg) };
            let setup = setup_of(&s);
            let step = setup.header.round.0;
            let version = held.get(to).copied().unwrap_or(0);
            let after = s.updates.iter().map(|u| u.version).max().unwrap_or(0).max(version);
            if setup.header.attempt == 0 {
                seen.entry(step).or_default().insert(to.clone(), s.clone());
            }
            let mut out = Vec::new();
            // Which earlier, unmasked step to replay now (steps before `step` are complete).
            let source = match disguise {
                "another step" if step == 1 => Some((0, Vec::new())),
                "a model update"
                    if s.updates
                        .iter()
                        .any(|u| matches!(u.body, Some(pb::model_update::Body::GbdtSetup(_)))) =>
                {
                    Some((0, s.updates.clone()))
                }
                "a zero tree" if step > 0 && task_kind(&seen[&(step - 1)][to]) == "gbdt" => {
                    Some((step - 1, vec![zero_tree(version + 1)]))
                }
                _ => None,
            };
            if let Some((from, updates)) = source
                && !done
                && pair.contains(to)
            {
                let r = replay(&seen[&from][to], replay_round, &pair, updates);
                out.push((to.clone(), step_msg(r)));
                if to == &b {
                    done = true;
                }
            }
            held.insert(to.clone(), after);
            out.push((to.clone(), msg.clone()));
            out
        };
        let _ = run(&mut fed, &mut hook);
        assert_eq!(task_kind(&seen[&0][&a]), "census", "step 0 is the census");
        let t = &fed.transcript;
        for p in [&a, &b] {
            assert!(
                refusals(t, p).iter().any(|(step, r)| *step == Some(replay_round)
                    && r.contains("unmasked with [bank0, bank1, bank2]")),
                "{disguise}: {p} must refuse the replay: {:?}",
                all_refusals(t)
            );
        }
        assert_nothing_for(t, &header(replay_round, 0), disguise);
        assert!(!refusers(t).contains(&victim), "{disguise}");
    }
}

/// Every sum of one attempt the coordinator can unmask from what the parties released.
fn sums_of(t: &[Entry], setup: &RoundSetup) -> Vec<Vec<PartyId>> {
    Released::of(t, &setup.header).exposure(&round_spec(setup), &setup.roster).1
}

#[test]
fn h2d_the_same_contribution_with_a_party_called_dropped_in_one_run_only_is_refused() {
    // The roster stays all three banks (`min_parties` is 3), but the coordinator runs the
    // census twice: once with everyone in the sum, once telling bank1 and bank2 that bank0
    // dropped (in either order). The difference of the two sums would be bank0's census.
    let certs = Certs::new(3);
    let spec = job_spec(3, "", GBDT, "");
    let data = with_data(&[160, 120, 140]);
    let victim = bank(0);
    let others: BTreeSet<PartyId> = BTreeSet::from([bank(1), bank(2)]);
    for victim_first_out in [false, true] {
        let what = if victim_first_out { "bank0 out, then in" } else { "bank0 in, then out" };
        let mut fed = federation(&spec, &data, Some(&certs));
        // Honest, except that when bank0 is first out it misses step 0 (a real dropout: the
        // conductor recovers the step from bank1 and bank2 after a consistency check).
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if victim_first_out
                && *to == victim
                && step_of(msg).is_some_and(|s| setup_of(&s).header == header(0, 0))
            {
                return Vec::new();
            }
            pass(to, msg)
        };
        run(&mut fed, &mut hook).unwrap();
        let census = steps_sent(&fed.transcript)
            .into_iter()
            .find(|(p, s)| *p == bank(1) && setup_of(s).header == header(0, 0))
            .unwrap()
            .1;
        assert_eq!(task_kind(&census), "census");
        let first = setup_of(&census);
        let expect_first: Vec<PartyId> =
            if victim_first_out { others.iter().cloned().collect() } else { banks(3) };
        assert_eq!(sums_of(&fed.transcript, &first), vec![expect_first.clone()], "{what}");

        // The same census as step 1000, with the same roster, to everyone.
        let again = replay(&census, 1000, &first.roster, Vec::new());
        let second = setup_of(&again);
        let before = fed.transcript.len();
        for p in banks(3) {
            fed.inject(&p, step_msg(again.clone()));
        }
        let _ = fed.run(&mut honest);
        assert_eq!(uploads(&fed.transcript, &second.header).len(), 3, "{what}: everyone uploads");
        let views: BTreeMap<PartyId, View> = if victim_first_out {
            banks(3).into_iter().map(|p| (p, View::Fast)).collect()
        } else {
            others
                .iter()
                .map(|p| (p.clone(), View::Dropped(BTreeSet::from([victim.clone()]))))
                .collect()
        };
        play_views(&mut fed, &second, &views, false);
        // The coordinator can unmask no sum of the second run: one sum of the census in all.
        let sums = sums_of(&fed.transcript, &second);
        assert!(sums.is_empty(), "{what}: the census over {sums:?} as well as {expect_first:?}");
        let (problems, _) = Released::of(&fed.transcript, &second.header)
            .exposure(&round_spec(&second), &second.roster);
        assert!(problems.is_empty(), "{what}: {problems:?}");
        let t = &fed.transcript[before..];
        for p in &others {
            assert!(
                refusals(t, p).iter().any(|(step, r)| *step == Some(1000)
                    && r.contains(&format!("unmasked with [{}]", names(&expect_first)))),
                "{what}: {p} must refuse: {:?}",
                all_refusals(t)
            );
        }
    }
}

fn names(ps: &[PartyId]) -> String {
    ps.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join(", ")
}

#[test]
fn h2e_another_attempt_of_an_unmasked_step_is_refused_also_after_a_restart() {
    let certs = Certs::new(3);
    let spec = bench_spec(3, "", "", 3);
    let parties = no_data(3);
    let mut fed = federation(&spec, &parties, Some(&certs));
    let mut seen: Seen = BTreeMap::new();
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        let Some(s) = step_of(msg) else { return pass(to, msg) };
        let setup = setup_of(&s);
        seen.entry(setup.header.round.0).or_default().insert(to.clone(), s.clone());
        let mut out = Vec::new();
        if setup.header.round.0 == 1 {
            // Step 0 was unmasked: ask for it again, as attempt 1 with the same roster.
            let mut again = seen[&0][to].clone();
            let mut setup0 = setup_of(&again);
            setup0.header.attempt = 1;
            set_setup(&mut again, &setup0);
            out.push((to.clone(), step_msg(again)));
        }
        out.push((to.clone(), msg.clone()));
        out
    };
    let outcome = run(&mut fed, &mut hook);
    assert!(outcome.is_ok(), "the honest steps go on: {outcome:?}");
    for p in &banks(3) {
        assert!(
            refusals(&fed.transcript, p).iter().any(|(step, r)| *step == Some(0)
                && r.contains("step 0 was already unmasked with this party's shares")),
            "{p}: {:?}",
            all_refusals(&fed.transcript)
        );
    }
    assert_nothing_for(&fed.transcript, &header(0, 1), "attempt 1 of step 0");

    // bank0 restarts from its checkpoint; the coordinator tries step 0 and step 1 again.
    let victim = bank(0);
    let ckpt = fed.checkpoints[&victim].clone();
    fed.crash(&victim);
    let restarted = session(&spec, &parties[0], Some(&certs), Some(&ckpt), 77);
    fed.rejoin(victim.clone(), restarted, &mut honest);
    let before = fed.transcript.len();
    for (step, attempt) in [(0, 2), (1, 1)] {
        let mut s = steps_sent(&fed.transcript)
            .into_iter()
            .find(|(p, s)| p == &victim && setup_of(s).header.round.0 == step)
            .unwrap()
            .1;
        let mut setup = setup_of(&s);
        setup.header.attempt = attempt;
        set_setup(&mut s, &setup);
        fed.inject(&victim, step_msg(s));
    }
    let _ = fed.run(&mut honest);
    let after = &fed.transcript[before..];
    for step in [0, 1] {
        assert!(
            refusals(after, &victim).iter().any(|(s, r)| *s == Some(step)
                && r.contains(&format!("step {step} was already unmasked"))),
            "the restarted party keeps refusing step {step}: {:?}",
            all_refusals(after)
        );
    }
    assert_nothing_for(after, &header(0, 2), "restarted, step 0");
    assert_nothing_for(after, &header(1, 1), "restarted, step 1");
}

#[test]
fn h2f_a_party_restarted_on_its_pledge_answers_that_step_again_only_as_pledged() {
    // A bank stores a pledge (step, contribution, roster) while its upload travels and stores
    // nothing more when the unmask names the pledged contributors. Restarted from that
    // checkpoint it cannot know whether it released its shares: it answers the step again
    // under the same roster (the same sum at most; how a party restarted during the uploads
    // rejoins its step), never under another, and never once another step began.
    let certs = Certs::new(3);
    let spec = bench_spec(3, "min_parties = 2", "", 3);
    let parties = no_data(3);
    let mut fed = federation(&spec, &parties, Some(&certs));
    let outcome = run(&mut fed, &mut honest);
    assert!(outcome.is_ok(), "{outcome:?}");
    let victim = bank(0);
    let last = steps_sent(&fed.transcript)
        .into_iter()
        .filter(|(p, _)| p == &victim)
        .map(|(_, s)| s)
        .next_back()
        .unwrap();
    let step = setup_of(&last).header.round.0;
    let ckpt = fed.checkpoints[&victim].clone();
    fed.crash(&victim);
    let restarted = session(&spec, &parties[0], Some(&certs), Some(&ckpt), 79);
    fed.rejoin(victim.clone(), restarted, &mut honest);
    let attempt = |attempt: u32, roster: Vec<PartyId>| {
        let mut s = last.clone();
        let mut setup = setup_of(&s);
        setup.header.attempt = attempt;
        setup.roster = roster;
        set_setup(&mut s, &setup);
        step_msg(s)
    };
    let before = fed.transcript.len();
    fed.inject(&victim, attempt(7, vec![bank(0), bank(1)]));
    fed.inject(&victim, attempt(8, banks(3)));
    let _ = fed.run(&mut honest);
    let after = &fed.transcript[before..];
    assert!(
        refusals(after, &victim).iter().any(|(s, _)| *s == Some(step)),
        "another roster is refused: {:?}",
        all_refusals(after)
    );
    assert_nothing_for(after, &header(step, 7), "the restarted party under another roster");
    assert_eq!(
        senders(after, &header(step, 8), is_masked),
        BTreeSet::from([victim.clone()]),
        "the same roster is answered"
    );
    // Another step began: the pledged step is over for good, whatever the roster.
    let before = fed.transcript.len();
    let mut next = last.clone();
    let mut setup = setup_of(&next);
    setup.header = header(step + 1, 0);
    set_setup(&mut next, &setup);
    fed.inject(&victim, step_msg(next));
    fed.inject(&victim, attempt(9, banks(3)));
    let _ = fed.run(&mut honest);
    let after = &fed.transcript[before..];
    assert!(
        refused(after, &victim, &format!("step {step} was already unmasked")),
        "{:?}",
        all_refusals(after)
    );
    assert_nothing_for(after, &header(step, 9), "the pledged step after another began");
}

// ---- H3: inconsistent survivor lists. ----

/// What one set of views gave the coordinator.
struct SplitRun {
    /// Problems found by [`Released::exposure`] (none expected).
    problems: Vec<String>,
    /// Sets of parties whose sum the coordinator can unmask (rosters of at most 8).
    sums: Vec<Vec<PartyId>>,
    /// What it received.
    released: Released,
    setup: RoundSetup,
    threshold: usize,
}

/// Runs the first step of a bench job over `n` parties up to the uploads (the conductor's
/// unmask requests are held back), then plays `views` (each party also offered the other
/// path), and returns what the coordinator received and could compute.
fn play_split(
    spec: &JobSpec,
    certs: &Certs,
    n: usize,
    views: &BTreeMap<PartyId, View>,
) -> SplitRun {
    let h = header(0, 0);
    let mut fed = federation(spec, &no_data(n), Some(certs));
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| match secagg_of(msg) {
        Some(ServerMessage::Unmask(u)) if u.header == h => Vec::new(),
        _ => pass(to, msg),
    };
    let _ = run(&mut fed, &mut hook);
    let setup = steps_sent(&fed.transcript)
        .into_iter()
        .map(|(_, s)| setup_of(&s))
        .find(|s| s.header == h)
        .expect("the step was set up");
    assert_eq!(uploads(&fed.transcript, &h).len(), n, "everyone uploads");
    play_views(&mut fed, &setup, views, true);
    let released = Released::of(&fed.transcript, &h);
    let spec_r = round_spec(&setup);
    let (problems, sums) = released.exposure(&spec_r, &setup.roster);
    SplitRun { problems, sums, released, setup, threshold: spec_r.threshold() }
}

fn subsets(of: &[PartyId]) -> Vec<BTreeSet<PartyId>> {
    (1u32..(1 << of.len()))
        .map(|m| (0..of.len()).filter(|i| m & (1 << i) != 0).map(|i| of[i].clone()).collect())
        .collect()
}

/// The views in which `signers` are told `dropped` dropped and everyone else takes the fast
/// path.
fn split(
    all: &[PartyId],
    dropped: &BTreeSet<PartyId>,
    signers: &BTreeSet<PartyId>,
) -> BTreeMap<PartyId, View> {
    all.iter()
        .map(|p| {
            let v = if signers.contains(p) { View::Dropped(dropped.clone()) } else { View::Fast };
            (p.clone(), v)
        })
        .collect()
}

/// Plays every set of views and checks that none exposes a party; returns the most shares of
/// `target`'s self-mask seed and the most neighbours revealing their seed with `target` that
/// any one set of views obtained, and the threshold.
fn assert_no_exposure(
    spec: &JobSpec,
    certs: &Certs,
    n: usize,
    all_views: &[BTreeMap<PartyId, View>],
    target: &PartyId,
) -> (usize, usize, usize) {
    let (mut most_b, mut most_seeds, mut t) = (0, 0, 0);
    for views in all_views {
        let r = play_split(spec, certs, n, views);
        assert!(r.problems.is_empty(), "n={n} {views:?}: {:?}", r.problems);
        assert!(r.sums.len() <= 1, "n={n} {views:?}: {:?}", r.sums);
        if views.values().all(|v| *v == View::Fast) && n <= 8 {
            assert_eq!(r.sums, vec![r.setup.roster.clone()], "the honest fast path");
        }
        most_b = most_b.max(r.released.shares_of(target));
        most_seeds = most_seeds.max(r.released.seeds_of(target));
        t = r.threshold;
    }
    (most_b, most_seeds, t)
}

#[test]
fn h3_inconsistent_survivor_lists_never_give_both_secrets_of_a_party() {
    // 3 parties: every combination of views (the fast path, or a consistency check naming any
    // non-empty set of the other parties dropped), 4^3 of them.
    let n = 3;
    let certs = Certs::new(n);
    let spec = bench_spec(n, "", "", 1);
    let all = banks(n);
    let mut combos: Vec<BTreeMap<PartyId, View>> = vec![BTreeMap::new()];
    for p in &all {
        let others: Vec<PartyId> = all.iter().filter(|q| *q != p).cloned().collect();
        let options: Vec<View> = [View::Fast]
            .into_iter()
            .chain(subsets(&others).into_iter().map(View::Dropped))
            .collect();
        combos = combos
            .into_iter()
            .flat_map(|c| {
                options.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(p.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    assert_eq!(combos.len(), 64);
    let (most_b, most_seeds, t) = assert_no_exposure(&spec, &certs, n, &combos, &bank(0));
    // Each kind alone was within reach (the views do make parties release each kind for
    // bank0, every one of its pairwise seeds included); never both in one attempt.
    assert!(most_b >= t && most_seeds == n - 1, "b {most_b}, seeds {most_seeds}, t {t}");
}

#[test]
fn h3_inconsistent_survivor_lists_of_five_parties_never_give_both_secrets_of_a_party() {
    let n = 5;
    let certs = Certs::new(n);
    let spec = bench_spec(n, "", "", 1);
    let all = banks(n);
    let mut all_views = Vec::new();
    // Every split around bank0: its dropout named (with at most one other party) to any
    // non-empty set of the rest, the fast path to everyone else.
    for dropped in subsets(&all) {
        if !dropped.contains(&bank(0)) || dropped.len() > 2 {
            continue;
        }
        let rest: Vec<PartyId> = all.iter().filter(|p| !dropped.contains(*p)).cloned().collect();
        for signers in subsets(&rest) {
            all_views.push(split(&all, &dropped, &signers));
        }
    }
    assert_eq!(all_views.len(), 15 + 4 * 7);
    // Mixed views, seeded: each party gets the fast path, bank0 dropped, bank0 and another
    // dropped, or another dropped.
    let mut rng = ChaCha20Rng::seed_from_u64(33);
    for _ in 0..30 {
        let views = all
            .iter()
            .map(|p| {
                let others: Vec<&PartyId> = all.iter().filter(|q| *q != p).collect();
                let x = others[rng.random_range(0..others.len())].clone();
                let v = match (rng.random_range(0..4u8), *p == bank(0)) {
                    (0, _) | (1 | 2, true) => View::Fast,
                    (1, false) => View::Dropped(BTreeSet::from([bank(0)])),
                    (2, false) => View::Dropped(BTreeSet::from([bank(0), x])),
                    _ => View::Dropped(BTreeSet::from([x])),
                };
                (p.clone(), v)
            })
            .collect();
        all_views.push(views);
    }
    let (most_b, most_seeds, t) = assert_no_exposure(&spec, &certs, n, &all_views, &bank(0));
    assert!(most_b >= t && most_seeds == n - 1, "b {most_b}, seeds {most_seeds}, t {t}");
}

#[test]
fn h3_inconsistent_survivor_lists_in_a_secagg_plus_graph_expose_no_party() {
    let n = 20;
    let k = Graph::min_degree(n);
    let certs = Certs::new(n);
    let spec = bench_spec(n, "", &format!("degree = {k}"), 1);
    let all = banks(n);
    // The honest fast path first: the step's setup and graph (the same in every run: it depends
    // on the round context only).
    let fast: BTreeMap<PartyId, View> = all.iter().map(|p| (p.clone(), View::Fast)).collect();
    let probe = play_split(&spec, &certs, n, &fast);
    assert!(probe.problems.is_empty(), "{:?}", probe.problems);
    let everyone: BTreeSet<PartyIndex> = (0..n as PartyIndex).collect();
    assert!(probe.released.unmasks(&round_spec(&probe.setup), &probe.setup.roster, &everyone));
    let setup = probe.setup;
    let t = probe.threshold;
    let target = setup.roster[0].clone();
    let hood = neighbourhood(&setup, &target);
    assert_eq!(hood.len(), k + 1);
    let mut all_views = Vec::new();
    // The fast path to the first j members of the target's neighbourhood (itself included),
    // the consistency check naming it dropped to everyone else.
    for j in [1, t - 1, t, hood.len()] {
        let mut fast: BTreeSet<PartyId> = hood.iter().take(j).cloned().collect();
        fast.insert(target.clone());
        let signers = all.iter().filter(|p| !fast.contains(*p)).cloned().collect();
        all_views.push(split(&all, &BTreeSet::from([target.clone()]), &signers));
    }
    // All of the target's neighbours named dropped (it would stand alone) to everyone else.
    let neighbours: BTreeSet<PartyId> = hood.iter().filter(|p| **p != target).cloned().collect();
    let signers = all.iter().filter(|p| !neighbours.contains(*p)).cloned().collect();
    all_views.push(split(&all, &neighbours, &signers));
    let (most_b, most_seeds, t) = assert_no_exposure(&spec, &certs, n, &all_views, &target);
    assert!(most_b >= t && most_seeds == k, "b {most_b}, seeds {most_seeds}, t {t}");
}

// ---- M1: sparse graphs. ----

#[test]
fn m1_secagg_plus_below_the_minimum_degree_is_refused_by_the_participants() {
    let n = 20;
    let certs = Certs::new(n);
    // Refused at submit and by every party's check of the offer …
    let thin = bench_spec(n, "", "degree = 4", 1);
    let err = JobSpec::from_json(&thin.to_json()).unwrap_err().to_string();
    assert!(err.contains("secagg.degree") && err.contains("at least 12"), "{err}");
    // … and by the parties' own round policy, should a party hold such a job and the
    // coordinator run it.
    let complete = bench_spec(n, "", "", 1);
    let mut fed = federation_with(
        &thin,
        &no_data(n),
        Some(&certs),
        conductor(&complete, &no_data(n)),
        &|_, r| r,
    );
    let mut hook = edit_first_step(|s| {
        s.config.degree = Some(4);
        None
    });
    let result = run(&mut fed, &mut hook);
    let reason = "SecAgg+ degree 4 for 20 parties; at least 12 neighbours are needed";
    for p in &banks(n) {
        assert!(refused(&fed.transcript, p, reason), "{p}: {:?}", all_refusals(&fed.transcript));
    }
    assert_nothing_for(&fed.transcript, &header(0, 0), "degree 4");
    assert!(result.is_err());
}

#[test]
fn m1_a_disconnected_survivor_graph_is_refused() {
    let n = 20;
    let k = Graph::min_degree(n);
    let certs = Certs::new(n);
    let spec = bench_spec(n, "", &format!("degree = {k}"), 1);
    let h = header(0, 0);
    for path in ["consistency check", "fast path"] {
        let setup: RefCell<Option<RoundSetup>> = RefCell::new(None);
        let mut fed = federation(&spec, &no_data(n), Some(&certs));
        // Survivors: bank u and every party outside its neighbourhood, so u stands alone.
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if let Some(s) = step_of(msg) {
                *setup.borrow_mut() = Some(setup_of(&s));
            }
            let Some(ServerMessage::Unmask(real)) = secagg_of(msg) else { return pass(to, msg) };
            let st = setup.borrow().clone().unwrap();
            let graph = round_spec(&st).graph().clone();
            let name = |i: u16| st.roster[i as usize].clone();
            let hood: BTreeSet<u16> = graph.neighbourhood(0).into_iter().collect();
            let survivors: Vec<PartyId> =
                (0..n as u16).filter(|i| *i == 0 || !hood.contains(i)).map(name).collect();
            if !survivors.contains(to) {
                return Vec::new();
            }
            let me = st.roster.iter().position(|p| p == to).unwrap() as u16;
            let mine: Vec<PartyId> = graph.neighbourhood(me).into_iter().map(name).collect();
            let m = match path {
                "consistency check" => {
                    ServerMessage::Consistency(ConsistencyCheck { header: h.clone(), survivors })
                }
                // The fast path: "your whole neighbourhood survived", with the shares sealed
                // to the party, and the disconnected set as the round's survivors.
                _ => ServerMessage::Unmask(UnmaskRequest {
                    header: h.clone(),
                    survivors: mine,
                    dropped: Vec::new(),
                    all_survivors: survivors.clone(),
                    signatures: BTreeMap::new(),
                    bundles: real.bundles,
                }),
            };
            vec![(to.clone(), secagg_msg(&m))]
        };
        let _ = run(&mut fed, &mut hook);
        let t = &fed.transcript;
        let alone = setup.borrow().clone().unwrap().roster[0].clone();
        assert!(
            refused(t, &alone, "the survivors' neighbour graph is disconnected"),
            "{path}: {:?}",
            all_refusals(t)
        );
        let released = senders(t, &h, is_unmask);
        let signed = senders(t, &h, is_signature);
        assert!(released.is_empty(), "{path}: unmask shares from {released:?}");
        assert!(signed.is_empty(), "{path}: survivor sets signed by {signed:?}");
    }
}

// ---- L1: no retry after unmask shares, no re-run after a resume. ----

/// A 5-party attempt (t = 3) in which bank4 never uploads, the four others sign the survivor
/// set, and `answers` of them answer the unmask request: with fewer than 3 answers the
/// self-mask seeds cannot be rebuilt, with 3 the silent fourth survivor's round seed with bank4
/// is missing. Either way the unmask phase fails.
fn failed_unmask(answers: usize) -> SecAggServer {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let roster = banks(5);
    let keys = Keyring::for_parties(&roster, &mut rng);
    let config = SecAggConfig::new(3, 1.0, 16);
    let (mut server, setups) = SecAggServer::new(header(0, 0), config, &roster).unwrap();
    let mut clients = BTreeMap::new();
    for (p, m) in setups {
        let ServerMessage::Setup(setup) = m else { unreachable!() };
        if p == bank(4) {
            continue;
        }
        let (c, upload) =
            SecAggClient::new(p.clone(), &setup, &[0.5; 3], &keys[&p], &mut rng).unwrap();
        server.receive(&p, upload).unwrap();
        clients.insert(p, c);
    }
    let mut phase = |server: &mut SecAggServer, take: usize| {
        let Ok(ServerStep::Send(msgs)) = server.close_phase() else { panic!("a phase to answer") };
        for (p, m) in msgs.into_iter().take(take) {
            let reply = clients.get_mut(&p).unwrap().handle(&m, &keys[&p], &mut rng).unwrap();
            server.receive(&p, reply).unwrap();
        }
    };
    // The consistency check (everyone signs), then the unmask requests.
    phase(&mut server, 4);
    assert_eq!(server.phase(), Phase::Consistency);
    phase(&mut server, answers);
    assert_eq!(server.phase(), Phase::Unmask);
    let failed = server.close_phase();
    assert!(failed.is_err(), "{answers} answers: {failed:?}");
    server
}

#[test]
fn l1_after_t_unmask_answers_the_step_is_never_retried() {
    // Server: an attempt that fails in the unmask phase may be retried only while fewer than t
    // parties answered.
    for (answers, retry_allowed) in [(2, true), (3, false)] {
        let server = failed_unmask(answers);
        match server.retry() {
            Ok((next, _)) => {
                assert!(retry_allowed, "{answers} answers");
                assert_eq!(next.header().attempt, 1);
            }
            Err(e) => {
                assert!(!retry_allowed, "{answers} answers: {e}");
                assert!(e.to_string().contains("the step cannot run again"), "{e}");
            }
        }
    }

    // Conductor: bank4 misses step 0 (recovered after a consistency check), bank3 vanishes
    // before the unmask, so the unmask fails after bank0..bank2 (t = 3) answered: the job fails
    // rather than retry step 0.
    let certs = Certs::new(5);
    let spec = bench_spec(5, "min_parties = 2", "", 1);
    let mut fed = federation(&spec, &no_data(5), Some(&certs));
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        let setup = step_of(msg).map(|s| setup_of(&s));
        if *to == bank(4) && setup.is_some_and(|s| s.header == header(0, 0)) {
            return Vec::new();
        }
        if *to == bank(3) && matches!(secagg_of(msg), Some(ServerMessage::Unmask(_))) {
            return Vec::new();
        }
        pass(to, msg)
    };
    let err = run(&mut fed, &mut hook).unwrap_err();
    assert!(err.contains("the step cannot run again"), "{err}");
    let h = header(0, 0);
    assert_eq!(senders(&fed.transcript, &h, is_unmask), banks(3).into_iter().collect());
    let retried = steps_sent(&fed.transcript).iter().any(|(_, s)| setup_of(s).header.attempt > 0);
    assert!(!retried, "no second attempt of step 0 was sent");

    // A deviating coordinator retries anyway, with everyone: the parties that answered refuse,
    // so no round can form; bank3 and bank4, which released nothing, upload again, but nobody
    // signs or releases anything for the new attempt, whatever the coordinator tells them.
    let step0: Vec<(PartyId, pb::HorizontalStep)> =
        steps_sent(&fed.transcript).into_iter().filter(|(_, s)| setup_of(s).header == h).collect();
    let mut again = step0[0].1.clone();
    let mut setup = setup_of(&again);
    setup.header.attempt = 1;
    set_setup(&mut again, &setup);
    let before = fed.transcript.len();
    for p in banks(5) {
        fed.inject(&p, step_msg(again.clone()));
    }
    let _ = fed.run(&mut honest);
    let views = BTreeMap::from([
        (bank(3), View::Fast),
        (bank(4), View::Dropped(banks(3).into_iter().collect())),
    ]);
    play_views(&mut fed, &setup, &views, true);
    let after = &fed.transcript[before..];
    for p in banks(3) {
        assert!(
            refused(after, &p, "step 0 was already unmasked"),
            "{p}: {:?}",
            all_refusals(after)
        );
    }
    let h1 = header(0, 1);
    assert_eq!(senders(after, &h1, is_masked), BTreeSet::from([bank(3), bank(4)]));
    assert!(senders(after, &h1, is_signature).is_empty());
    assert!(senders(after, &h1, is_unmask).is_empty());
}

#[test]
fn l1_a_resumed_coordinator_cannot_rerun_an_unmasked_step_with_another_roster() {
    // The coordinator crashes after the parties released step 1's unmask shares but before it
    // wrote step 1's checkpoint; it resumes from step 0's checkpoint, with bank2 absent. The
    // parties, restarted from their own checkpoints, report that they answered step 1: the
    // resumed conductor opens step 2 for the task of step 1 over bank0 and bank1 (the sum over
    // all three minus this one would be bank2's vector), which they refuse as the same
    // contribution; a coordinator reusing step number 1 anyway is refused too.
    let certs = Certs::new(3);
    let spec = bench_spec(3, "min_parties = 2", "", 3);
    let banks = no_data(3);
    let saved = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording { inner: conductor(&spec, &banks), saved: saved.clone() };
    let mut fed = federation_with(&spec, &banks, Some(&certs), Box::new(recording), &|_, r| r);
    let mut crashed = false;
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if step_of(msg).is_some_and(|s| setup_of(&s).header.round.0 == 2) {
            crashed = true;
        }
        if crashed { Vec::new() } else { pass(to, msg) }
    };
    let _ = run(&mut fed, &mut hook);
    assert_eq!(fed.steps.len(), 2, "steps 0 and 1 completed");
    assert_eq!(senders(&fed.transcript, &header(1, 0), is_unmask).len(), 3);
    let step1 = steps_sent(&fed.transcript)
        .into_iter()
        .find(|(p, s)| *p == bank(0) && setup_of(s).header == header(1, 0))
        .unwrap()
        .1;
    let step0_checkpoint = saved.lock().unwrap()[0].clone();

    let resumed = restore_conductor(&spec, &step0_checkpoint.state, &step0_checkpoint.log).unwrap();
    let present: Vec<Bank> = banks[..2].to_vec();
    let sessions = present
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let ckpt = fed.checkpoints[&b.id].clone();
            (b.id.clone(), session(&spec, b, Some(&certs), Some(&ckpt), 50 + i as u64))
        })
        .collect();
    let mut again = Federation::new(job_id(), resumed, sessions);
    let result = run(&mut again, &mut honest);
    assert!(result.is_err(), "{result:?}");
    let t = &again.transcript;
    let reruns: Vec<pb::HorizontalStep> = steps_sent(t).into_iter().map(|(_, s)| s).collect();
    assert!(!reruns.is_empty(), "the resumed coordinator opens a step");
    for s in &reruns {
        let st = setup_of(s);
        assert!(st.header.round.0 >= 2, "step number {} reused", st.header.round.0);
        assert_eq!(s.task, step1.task, "the task of step 1 again");
        assert_eq!(st.roster, vec![bank(0), bank(1)]);
        assert_nothing_for(t, &st.header, "the re-run of step 1");
    }
    for p in [bank(0), bank(1)] {
        assert!(
            refused(t, &p, "this contribution was unmasked with [bank0, bank1, bank2]"),
            "{p}: {:?}",
            all_refusals(t)
        );
    }

    // Step number 1 itself, over bank0 and bank1.
    let before = again.transcript.len();
    let rerun = replay(&step1, 1, &[bank(0), bank(1)], Vec::new());
    for p in [bank(0), bank(1)] {
        again.inject(&p, step_msg(rerun.clone()));
    }
    let _ = again.run(&mut honest);
    let after = &again.transcript[before..];
    for p in [bank(0), bank(1)] {
        // Refused as an unmasked step, or (restarted on the pledge of step 1, which may have
        // been released) as a contribution bound to the pledged contributors.
        assert!(
            refused(after, &p, "step 1 was already unmasked")
                || refused(after, &p, "this contribution was unmasked with [bank0, bank1, bank2]"),
            "{p}: {:?}",
            all_refusals(after)
        );
    }
    assert_nothing_for(after, &header(1, 0), "step 1 reused");
}

// ---- L3: sizes chosen by the coordinator. ----

#[test]
fn l3_a_roster_above_max_roster_is_refused_without_allocating() {
    // A job of 4000 parties (a complete graph over them would take 4000 · 3999 entries); three
    // of them run. The coordinator names all 4000 in the roster.
    let n_job = 4000;
    assert!(n_job > MAX_ROSTER);
    let certs = Certs::new(3);
    let spec = bench_spec(n_job, "min_parties = 2", "", 1);
    let present = no_data(3);
    let mut fed = federation(&spec, &present, Some(&certs));
    let mut roster = banks(n_job);
    roster.sort();
    let mut hook = edit_first_step(|setup| {
        setup.roster = roster.clone();
        Some(banks(3).into_iter().collect())
    });
    let (_, peak) = peak_during(|| run(&mut fed, &mut hook));
    let t = &fed.transcript;
    for p in banks(3) {
        assert!(
            refused(t, &p, "4000 parties; a round takes at most 1024"),
            "{p}: {:?}",
            all_refusals(t)
        );
    }
    assert_nothing_for(t, &header(0, 0), "an oversized roster");
    let graph_bytes = n_job * (n_job - 1) * 2;
    eprintln!("L3 roster: peak {peak} bytes");
    assert!(peak < 4 << 20, "peak {peak} bytes (a complete graph alone: {graph_bytes})");
}

#[test]
fn l3_a_benchmark_dimension_above_the_cap_is_refused_without_allocating() {
    let certs = Certs::new(3);
    let spec = bench_spec(3, "", "", 1);
    let mut fed = federation(&spec, &no_data(3), Some(&certs));
    let dim = MAX_BENCH_DIM as u64 + 1;
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if let Some(mut s) = step_of(msg) {
            if let Some(pb::horizontal_task::Task::Bench(b)) =
                s.task.as_mut().and_then(|t| t.task.as_mut())
            {
                b.dim = dim;
            }
            let mut setup = setup_of(&s);
            setup.config.vector_len = dim as usize;
            set_setup(&mut s, &setup);
            return vec![(to.clone(), step_msg(s))];
        }
        pass(to, msg)
    };
    let (_, peak) = peak_during(|| run(&mut fed, &mut hook));
    let t = &fed.transcript;
    for p in banks(3) {
        assert!(
            refused(t, &p, &format!("benchmark dimension {dim} exceeds {MAX_BENCH_DIM}")),
            "{p}: {:?}",
            all_refusals(t)
        );
    }
    assert_nothing_for(t, &header(0, 0), "an oversized benchmark");
    eprintln!("L3 bench: peak {peak} bytes");
    assert!(peak < 1 << 20, "peak {peak} bytes (the vector alone: {})", dim * 8);
}

#[test]
fn l3_a_gbdt_task_repeating_nodes_or_features_is_refused_without_allocating() {
    // A level task names nodes and features by index; repeated 50,000 times (a message of
    // about 100 KB) they would make a bank build 50,000 histograms. A split on a feature the
    // model does not have would make it index out of its columns.
    let certs = Certs::new(3);
    let spec = job_spec(3, "", GBDT, "");
    let data = with_data(&[160, 120, 140]);
    let many = 50_000;
    let (_, honest_peak) = peak_during(|| {
        let mut fed = federation(&spec, &data, Some(&certs));
        run(&mut fed, &mut honest).unwrap()
    });
    for how in [
        "repeated features",
        "repeated nodes",
        "a node that is not a leaf",
        "a split on feature 99",
    ] {
        let mut fed = federation(&spec, &data, Some(&certs));
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            let Some(mut s) = step_of(msg) else { return pass(to, msg) };
            if let Some(pb::horizontal_task::Task::Gbdt(g)) =
                s.task.as_mut().and_then(|t| t.task.as_mut())
            {
                match how {
                    "repeated features" => g.features = vec![0; many],
                    "repeated nodes" => g.nodes = vec![g.nodes[0]; many],
                    "a node that is not a leaf" => g.nodes = vec![7],
                    _ => {
                        let split = pb::BinTreeSplit {
                            feature: 99,
                            left: 1,
                            right: 2,
                            ..Default::default()
                        };
                        let leaf =
                            pb::BinTreeNode { kind: Some(pb::bin_tree_node::Kind::Leaf(0.0)) };
                        g.partial = Some(pb::BinTree {
                            nodes: vec![
                                pb::BinTreeNode {
                                    kind: Some(pb::bin_tree_node::Kind::Split(split)),
                                },
                                leaf.clone(),
                                leaf,
                            ],
                        });
                        g.nodes = vec![1, 2];
                    }
                }
            }
            vec![(to.clone(), step_msg(s))]
        };
        let (result, peak) = peak_during(|| run(&mut fed, &mut hook));
        let t = &fed.transcript;
        let gbdt_step = steps_sent(t)
            .into_iter()
            .find(|(_, s)| task_kind(s) == "gbdt")
            .map(|(_, s)| setup_of(&s).header)
            .expect("a level task was sent");
        for p in banks(3) {
            assert!(
                refusals(t, &p).iter().any(|(step, r)| *step == Some(gbdt_step.round.0)
                    && (r.contains("level task") || r.contains("a split on feature 99 of 5"))),
                "{how}: {p}: {:?}",
                all_refusals(t)
            );
        }
        assert_nothing_for(t, &gbdt_step, how);
        assert!(result.is_err(), "{how}");
        // No more than the honest job's own working set (repeating the features alone would
        // add 20 MB to it; repeating nodes as well, terabytes).
        eprintln!("L3 gbdt, {how}: peak {peak} bytes, honest job {honest_peak}");
        assert!(peak <= honest_peak + (1 << 20), "{how}: peak {peak}, honest {honest_peak}");
    }
}

// ---- L4: bad channel keys from a faulty party. ----

#[test]
fn l4_bad_channel_keys_of_a_faulty_party_are_refused_and_the_honest_parties_finish_without_it() {
    let certs = Certs::new(4);
    let spec = bench_spec(4, "min_parties = 3", "", 2);
    let faulty = bank(3);
    let honest_banks = banks(3);
    // The faulty party signs whatever key it publishes with its own certificate key, so only
    // the key is wrong.
    let signer = CertSigner::from_files(&certs.paths.parties["bank3"]).unwrap();
    let mut order4 = [0u8; 32];
    order4[0] = 1;
    assert!(sa::keys::is_low_order(&[0; 32]) && sa::keys::is_low_order(&order4));
    let low_order = "channel key of bank3: the peer's channel key is of low order";
    for how in ["the zero point", "a point of order 4", "a copy of bank0's key"] {
        let mut fed = federation(&spec, &no_data(4), Some(&certs));
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if let Some(d) = directory_of(msg) {
                let key = match how {
                    "the zero point" => [0; 32].to_vec(),
                    "a point of order 4" => order4.to_vec(),
                    _ => entry_of(d, &bank(0)).public_key.clone(),
                };
                let st = channel_key_statement(&job_id(), &faulty, &key);
                let k = entry_of(d, &faulty);
                k.public_key = key;
                k.signature = signer.sign(&st).unwrap();
            }
            pass(to, msg)
        };
        let _ = run(&mut fed, &mut hook);
        let t = &fed.transcript;
        for p in &honest_banks {
            let reason = match (how, p.0.as_str()) {
                ("a copy of bank0's key", "bank0") => {
                    "channel key of bank3: it is this party's own channel key"
                }
                ("a copy of bank0's key", _) => {
                    "channel key of bank3: it is the channel key of bank0"
                }
                _ => low_order,
            };
            assert!(refused(t, p, reason), "{how}: {p}: {:?}", all_refusals(t));
            // Nothing of the directory was kept: the honest party derives no round secret, with
            // the faulty party or anyone, so it uploads nothing and seals no share.
            assert!(refused(t, p, "no verified channel key of"), "{how}: {p}");
            assert_eq!(sent_by_parties(t).iter().filter(|(q, _)| q == p).count(), 0, "{how}: {p}");
        }
        assert!(fed.steps.is_empty(), "{how}: no step completed with the bad key");
    }

    // The coordinator's driver refuses a low-order key at join (and an operator removes a
    // party whose key the others refuse): without the faulty party, the three honest ones
    // (`min_parties = 3`) finish the job, with exact sums.
    let present = no_data(3);
    let mut fed = federation(&spec, &present, Some(&certs));
    let outcome = run(&mut fed, &mut honest).unwrap();
    assert!(outcome.metrics["max_abs_error"] < 1e-6, "{:?}", outcome.metrics);
    assert_eq!(fed.steps.len(), 2);
    for s in &fed.steps {
        assert_eq!(s.contributors, honest_banks);
    }
    assert!(all_refusals(&fed.transcript).is_empty(), "{:?}", all_refusals(&fed.transcript));
}

// ---- Relayed payloads. ----

fn relay_spec() -> JobSpec {
    // bank0 streams 200 bytes to bank1 in four sealed messages (64, 64, 64, 8 bytes).
    job_spec(3, "", "kind = \"relay_bench\"\nbytes = 200\nchunk = 64", "")
}

fn relayed(msg: &mut pb::ToParty) -> Option<&mut pb::Relayed> {
    match &mut msg.body {
        Some(pb::to_party::Body::Relayed(r)) => Some(r),
        _ => None,
    }
}

/// Runs the relay job with `hook` playing the relay; the run's result and the federation.
fn relay_run(hook: &mut Hook<'_>) -> (Result<protocol::Outcome, String>, Federation) {
    let certs = Certs::new(3);
    let mut fed = federation(&relay_spec(), &no_data(3), Some(&certs));
    let r = run(&mut fed, hook);
    (r, fed)
}

/// Whether the receiver reported the whole payload.
fn delivered(t: &[Entry]) -> bool {
    t.iter().any(|e| match e {
        Entry::FromParty { msg, accepted: Ok(()), .. } => matches!(
            &msg.body,
            Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                body: Some(pb::role_message::Body::RelayBenchDone(_)),
            }))
        ),
        _ => false,
    })
}

/// The receiver's role never saw altered bytes (it checks each chunk against the seeded stream
/// and would say so).
fn role_saw_no_forgery(t: &[Entry]) -> bool {
    !all_refusals(t).iter().any(|(_, r)| r.contains("differ from the seeded stream"))
}

#[test]
fn relay_control_the_honest_relay_delivers() {
    let (r, fed) = relay_run(&mut honest);
    assert!(r.is_ok(), "{r:?}");
    assert!(delivered(&fed.transcript));
    assert!(all_refusals(&fed.transcript).is_empty());
}

#[test]
fn relay_an_altered_payload_is_refused() {
    for (what, edit) in [
        ("a flipped bit in the ciphertext", 0usize),
        ("a flipped bit in the tag", 1),
        ("a flipped last flag", 2),
        ("another stream id", 3),
    ] {
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if let Some(r) = relayed(msg)
                && r.seq == 1
            {
                match edit {
                    0 => r.ciphertext[3] ^= 0x10,
                    1 => {
                        let n = r.ciphertext.len();
                        r.ciphertext[n - 1] ^= 0x01;
                    }
                    2 => r.last = !r.last,
                    _ => r.stream ^= 1,
                }
            }
            pass(to, msg)
        };
        let (result, fed) = relay_run(&mut hook);
        let t = &fed.transcript;
        let expect =
            if edit == 3 { "message 1 arrived, expected 0" } else { "failed authentication" };
        assert!(refused(t, &bank(1), expect), "{what}: {:?}", all_refusals(t));
        assert!(role_saw_no_forgery(t), "{what}");
        assert!(!delivered(t) && result.is_err(), "{what}");
    }
}

#[test]
fn relay_a_readdressed_payload_is_refused() {
    // To another party than the one it was sealed for; or to the right one, claiming another
    // sender.
    let mut to_bank2 = |to: &PartyId, msg: &mut pb::ToParty| {
        if relayed(msg).is_some_and(|r| r.seq == 0) {
            return vec![(bank(2), msg.clone())];
        }
        pass(to, msg)
    };
    let (result, fed) = relay_run(&mut to_bank2);
    let t = &fed.transcript;
    assert!(refused(t, &bank(2), "failed authentication"), "{:?}", all_refusals(t));
    assert!(!delivered(t) && result.is_err());

    let mut from_bank2 = |to: &PartyId, msg: &mut pb::ToParty| {
        if let Some(r) = relayed(msg) {
            r.from = bank(2).0;
        }
        pass(to, msg)
    };
    let (result, fed) = relay_run(&mut from_bank2);
    let t = &fed.transcript;
    assert!(refused(t, &bank(1), "failed authentication"), "{:?}", all_refusals(t));
    assert!(role_saw_no_forgery(t));
    assert!(!delivered(t) && result.is_err());
}

#[test]
fn relay_a_replayed_payload_is_refused() {
    // Message 0 twice, and the last message again after the end: each copy is refused, the
    // stream itself arrives once.
    let last: RefCell<Option<pb::ToParty>> = RefCell::new(None);
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        let (seq, is_last) = match relayed(msg) {
            Some(r) => (r.seq, r.last),
            None => return pass(to, msg),
        };
        if is_last {
            *last.borrow_mut() = Some(msg.clone());
        }
        if seq == 0 {
            return vec![(to.clone(), msg.clone()), (to.clone(), msg.clone())];
        }
        pass(to, msg)
    };
    let (result, mut fed) = relay_run(&mut hook);
    assert!(result.is_ok() && delivered(&fed.transcript), "{result:?}");
    let before = fed.transcript.len();
    fed.inject(&bank(1), last.borrow().clone().unwrap());
    let _ = fed.run(&mut honest);
    let t = &fed.transcript;
    assert!(refused(t, &bank(1), "message 0 arrived, expected 1"), "{:?}", all_refusals(t));
    assert!(refused(&t[before..], &bank(1), "already ended"), "{:?}", all_refusals(t));
    assert!(role_saw_no_forgery(t));
}

#[test]
fn relay_a_reordered_payload_is_refused() {
    // Messages 1 and 2 swapped; then swapped with their indices rewritten to look in order.
    for renumber in [false, true] {
        let mut held: Option<(PartyId, pb::ToParty)> = None;
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            let Some(r) = relayed(msg) else { return pass(to, msg) };
            match r.seq {
                1 => {
                    held = Some((to.clone(), msg.clone()));
                    Vec::new()
                }
                2 => {
                    let (t1, mut m1) = held.take().unwrap();
                    let mut m2 = msg.clone();
                    if renumber {
                        relayed(&mut m2).unwrap().seq = 1;
                        relayed(&mut m1).unwrap().seq = 2;
                    }
                    vec![(to.clone(), m2), (t1, m1)]
                }
                _ => pass(to, msg),
            }
        };
        let (result, fed) = relay_run(&mut hook);
        let t = &fed.transcript;
        let expect =
            if renumber { "failed authentication" } else { "message 2 arrived, expected 1" };
        assert!(refused(t, &bank(1), expect), "renumber={renumber}: {:?}", all_refusals(t));
        assert!(role_saw_no_forgery(t));
        assert!(!delivered(t) && result.is_err(), "renumber={renumber}");
    }
}

#[test]
fn relay_a_truncated_payload_is_refused() {
    // The last message dropped; an earlier one passed off as the last; a ciphertext cut short.
    for how in ["drop the last", "end early", "cut the bytes"] {
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            let Some(r) = relayed(msg) else { return pass(to, msg) };
            match how {
                "drop the last" if r.last => return Vec::new(),
                "end early" if r.seq == 1 => r.last = true,
                "end early" if r.seq > 1 => return Vec::new(),
                "cut the bytes" if r.seq == 2 => r.ciphertext.truncate(20),
                _ => {}
            }
            pass(to, msg)
        };
        let (result, fed) = relay_run(&mut hook);
        let t = &fed.transcript;
        assert!(!delivered(t), "{how}: the receiver never reports a cut stream whole");
        assert!(result.unwrap_err().contains("did not arrive"), "{how}");
        if how != "drop the last" {
            assert!(refused(t, &bank(1), "failed authentication"), "{how}: {:?}", all_refusals(t));
        }
        assert!(role_saw_no_forgery(t), "{how}");
    }
}
