//! A coordinator that deviates from the protocol, in memory, against the participants' real
//! code (issue 8, item 5).
//!
//! # Threat model
//!
//! Parties are semi-honest: they run the participant code as written (one faulty party in L4
//! and L1 only sends malformed keys or shares, to make the coordinator's honest side react).
//! The coordinator may deviate arbitrarily from the protocol — alter, drop, duplicate,
//! re-address, reorder or inject any message it sends or relays — but does not collude with a
//! party and holds no party's certificate key. Every test builds a federation CA with real
//! certificates (`fedcredit_transport::tls::init_certs`), so every signature a party checks is
//! an ECDSA P-256 signature under a certificate chained to the federation CA (two controls go
//! without: the H1 control shows what an unsigned federation gives away, and the L1 check of
//! the server's retry rule drives bare state machines), then plays the
//! coordinator through the in-memory federation's intercept hook (or a conductor of its own)
//! and asserts, from the transcript, both that the attack is refused (a party's session refuses
//! the message, or the party reports the step failed, naming why) and that the coordinator
//! gained nothing: no share bundle, masked vector or unmask share it could use, never both
//! secrets of one party, never a sum that isolates one party's vector.
//!
//! # Attacks (labels of the review in issue 8)
//!
//! - **H1** key substitution: round keys replaced in `PeerKeys` (fresh keys, the victim's own,
//!   another party's, signed with the coordinator's certificate, replayed from another round);
//!   directory entries with a substituted channel key, a certificate of another CA, a
//!   certificate naming another party, the coordinator's certificate, no signature, a stranger.
//! - **H2** participant-side policy: (a) a roster naming a party outside the job, (b) a roster
//!   below `min_parties`, (c) a lowered threshold, other fraction bits, another degree, a job
//!   threshold below a majority, (d) the same contribution under roster `R` then `R ∖ {u}`
//!   (also disguised as another step, after a model update, or behind a tree that changes
//!   nothing), (e) another attempt of an unmasked step, also to a party restarted from its
//!   checkpoint.
//! - **H3** inconsistent survivor lists (fast path to some parties, consistency check naming a
//!   dropout to others), exhaustively for 3 parties, over every split around one party for 5,
//!   and around one party of a SecAgg+ graph of 20.
//! - **M1** SecAgg+ below `Graph::min_degree(n)`, and a disconnected survivor graph.
//! - **L1** no retry once `t` unmask answers were released (server, conductor, parties), and
//!   no re-run of an unmasked step by a coordinator resumed from an earlier checkpoint.
//! - **L3** a roster above `secagg::MAX_ROSTER`, a benchmark dimension above
//!   `horizontal::sync::MAX_BENCH_DIM`, a GBDT task repeating nodes and features: refused
//!   without allocating (measured by a counting allocator).
//! - **L4** low-order, equal and duplicate key adverts from a faulty party: rejected on
//!   arrival, and the honest parties finish without it.
//! - **Relay** a sealed payload altered, re-addressed, replayed, reordered or truncated by the
//!   coordinator: refused by the receiver.
//!
//! And the honest signed run trains exactly the model of the unsigned run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_crypto::secagg::{self as sa, KeysState, PublicKeys, SecretKind};
use fedcredit_federation::auth::Signer;
use fedcredit_federation::channel::channel_key_statement;
use fedcredit_federation::horizontal::sync::MAX_BENCH_DIM;
use fedcredit_federation::protocol::in_memory::{Entry, Federation, honest};
use fedcredit_federation::protocol::{
    self, CsRng, PartyAuth, Role, RoleError, RoleOutbox, restore_conductor,
};
use fedcredit_federation::secagg::{
    ClientMessage, ConsistencyCheck, MAX_ROSTER, PeerKeys, Phase, RoundHeader, RoundSetup,
    ServerMessage, SignedKeys, UnmaskRequest, Unsigned, keys_statement,
};
use fedcredit_federation::wire::{client_from_wire, client_to_wire};
use fedcredit_federation::{PartyId, RoundId};
use fedcredit_proto::pb;
use fedcredit_transport::identity::CertSigner;
use rand::SeedableRng;
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

/// Asserts that no party sent anything for `header`: the coordinator got no key, share bundle,
/// masked vector or unmask share for that attempt.
fn assert_nothing_for(t: &[Entry], header: &RoundHeader, what: &str) {
    let got: Vec<(PartyId, String)> = sent_by_parties(t)
        .into_iter()
        .filter(|(_, m)| m.header() == header)
        .map(|(p, m)| (p, format!("{:?}", m.phase())))
        .collect();
    assert!(got.is_empty(), "{what}: the coordinator received {got:?} for {header}");
}

// ---- The honest signed run. ----

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
    // Every key advert of the signed run is signed; none of the unsigned run's is.
    let signatures = |f: &Federation| -> Vec<bool> {
        sent_by_parties(&f.transcript)
            .into_iter()
            .filter_map(|(_, m)| match m {
                ClientMessage::AdvertiseKeys(a) => Some(!a.signature.is_empty()),
                _ => None,
            })
            .collect()
    };
    assert!(!signatures(&signed).is_empty() && signatures(&signed).iter().all(|s| *s));
    assert!(signatures(&plain).iter().all(|s| !*s));
}

// ---- H1: substituted keys. ----

/// Holds back the `PeerKeys` of each attempt until every party's has passed, then lets `edit`
/// rewrite them (recipient → message, with the attempt's setup) and sends them all.
fn peer_keys_hook<'a>(
    mut edit: impl FnMut(&RoundSetup, &mut BTreeMap<PartyId, PeerKeys>) + 'a,
) -> impl FnMut(&PartyId, &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> + 'a {
    let key = |h: &RoundHeader| (h.round.0, h.attempt);
    let mut setups: BTreeMap<(u64, u32), RoundSetup> = BTreeMap::new();
    let mut held: BTreeMap<(u64, u32), BTreeMap<PartyId, PeerKeys>> = BTreeMap::new();
    move |to, msg| {
        if let Some(s) = step_of(msg) {
            let setup = setup_of(&s);
            setups.insert(key(&setup.header), setup);
        }
        let Some(ServerMessage::PeerKeys(pk)) = secagg_of(msg) else { return pass(to, msg) };
        let h = key(&pk.header);
        let setup = setups[&h].clone();
        let batch = held.entry(h).or_default();
        batch.insert(to.clone(), pk);
        if batch.len() < setup.roster.len() {
            return Vec::new();
        }
        let mut batch = held.remove(&h).unwrap_or_default();
        edit(&setup, &mut batch);
        batch.into_iter().map(|(p, m)| (p, secagg_msg(&ServerMessage::PeerKeys(m)))).collect()
    }
}

fn fresh_keys(setup: &RoundSetup, as_party: &PartyId, seed: u64) -> (KeysState, PublicKeys) {
    let spec = round_spec(setup);
    let i = setup.roster.iter().position(|p| p == as_party).unwrap();
    sa::advertise(&spec, i as u16, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap()
}

#[test]
fn h1_substituted_round_keys_are_refused_and_no_share_bundle_leaves_the_victim() {
    let certs = Certs::new(3);
    let spec = bench_spec(3, "", "", 2);
    let banks = no_data(3);
    let (victim, neighbour, other) = (bank(0), bank(1), bank(2));
    let coordinator = CertSigner::from_files(&certs.paths.coordinator).unwrap();

    // Control, without certificates: the coordinator hands bank0 and bank2 keys of its own in
    // place of bank1's, and opens the share bundles they encrypt to "bank1".
    {
        // The coordinator's keys for "bank1", the attempt, and bank1's real neighbours' keys.
        type Fake = (KeysState, RoundSetup, BTreeMap<u16, PublicKeys>);
        let fake: RefCell<Option<Fake>> = RefCell::new(None);
        let mut fed = federation(&spec, &banks, None);
        let mut hook = peer_keys_hook(|setup, batch| {
            if setup.header != header(0, 0) {
                return;
            }
            let (state, keys) = fresh_keys(setup, &neighbour, 7);
            let real = batch[&neighbour].keys.clone();
            let idx = |p: &PartyId| setup.roster.iter().position(|q| q == p).unwrap() as u16;
            let peers = real.iter().map(|(p, k)| (idx(p), k.keys)).collect();
            for p in [&victim, &other] {
                let k = batch.get_mut(p).unwrap().keys.get_mut(&neighbour).unwrap();
                k.keys = keys;
            }
            *fake.borrow_mut() = Some((state, setup.clone(), peers));
        });
        let _ = run(&mut fed, &mut hook);
        let (state, setup, peers) = fake.borrow_mut().take().unwrap();
        let mut received = BTreeMap::new();
        for (from, m) in sent_by_parties(&fed.transcript) {
            if let ClientMessage::ShareKeys(s) = m
                && s.header == header(0, 0)
                && from != neighbour
            {
                let i = setup.roster.iter().position(|q| *q == from).unwrap() as u16;
                received.insert(i, s.ciphertexts[&neighbour].clone());
            }
        }
        assert_eq!(received.len(), 2, "without signatures the victims encrypt to the fake key");
        let (shared, _) = state.share_keys(&peers, &mut ChaCha20Rng::seed_from_u64(8)).unwrap();
        let input = setup.config.input(3).unwrap();
        let opened = shared.mask_input(&received, &vec![0; input.vector_len], &input);
        assert!(opened.is_ok(), "the coordinator opens the victims' share bundles: {opened:?}");
    }

    // With certificates, every substitution is refused by the victim before it shares.
    type Edit = Box<dyn Fn(&RoundSetup, &mut BTreeMap<PartyId, PeerKeys>)>;
    let replayed: Arc<Mutex<Option<SignedKeys>>> = Arc::new(Mutex::new(None));
    let sign_as_coordinator = move |setup: &RoundSetup, keys: &PublicKeys| {
        let st = keys_statement(&round_spec(setup), &bank(1), keys);
        coordinator.sign(&st).unwrap()
    };
    let variants: Vec<(&str, u64, &str, Edit)> = vec![
        (
            "fresh keys under bank1's signature",
            0,
            "round keys of bank1: signature does not verify",
            Box::new(|setup, batch| {
                let (_, keys) = fresh_keys(setup, &bank(1), 9);
                batch.get_mut(&bank(0)).unwrap().keys.get_mut(&bank(1)).unwrap().keys = keys;
            }),
        ),
        (
            "fresh keys, unsigned",
            0,
            "round keys of bank1 is not signed",
            Box::new(|setup, batch| {
                let (_, keys) = fresh_keys(setup, &bank(1), 10);
                let k = SignedKeys { keys, signature: Vec::new() };
                batch.get_mut(&bank(0)).unwrap().keys.insert(bank(1), k);
            }),
        ),
        (
            "the victim's own keys as bank1's",
            0,
            "round keys of bank1: signature does not verify",
            Box::new(|_, batch| {
                let own = batch[&bank(1)].keys[&bank(0)].clone();
                batch.get_mut(&bank(0)).unwrap().keys.insert(bank(1), own);
            }),
        ),
        (
            "bank2's signed keys as bank1's",
            0,
            "round keys of bank1: signature does not verify",
            Box::new(|_, batch| {
                let b2 = batch[&bank(0)].keys[&bank(2)].clone();
                batch.get_mut(&bank(0)).unwrap().keys.insert(bank(1), b2);
            }),
        ),
        (
            "fresh keys signed with the coordinator's certificate key",
            0,
            "round keys of bank1: signature does not verify",
            Box::new(move |setup, batch| {
                let (_, keys) = fresh_keys(setup, &bank(1), 11);
                let k = SignedKeys { keys, signature: sign_as_coordinator(setup, &keys) };
                batch.get_mut(&bank(0)).unwrap().keys.insert(bank(1), k);
            }),
        ),
        (
            "bank1's signed keys of the previous round",
            1,
            "round keys of bank1: signature does not verify",
            Box::new({
                let replayed = replayed.clone();
                move |setup, batch| {
                    let mut r = replayed.lock().unwrap();
                    if setup.header.round.0 == 0 {
                        *r = Some(batch[&bank(0)].keys[&bank(1)].clone());
                    } else if let Some(old) = r.clone() {
                        batch.get_mut(&bank(0)).unwrap().keys.insert(bank(1), old);
                    }
                }
            }),
        ),
    ];
    for (what, round, reason, edit) in variants {
        let mut fed = federation(&spec, &banks, Some(&certs));
        // Up to the attacked round (the replay records round 0's keys, then attacks round 1).
        let mut hook = peer_keys_hook(|setup, batch| {
            if setup.header.round.0 <= round {
                edit(setup, batch);
            }
        });
        let result = run(&mut fed, &mut hook);
        let t = &fed.transcript;
        let h = header(round, 0);
        assert!(refused(t, &victim, reason), "{what}: {:?}", all_refusals(t));
        // The victim shared nothing: no share bundle (so nothing the coordinator could open),
        // no masked vector, no unmask share.
        let answers: Vec<_> =
            answers_for(t, &victim, &h).iter().map(ClientMessage::phase).collect();
        assert_eq!(answers, vec![Phase::AdvertiseKeys], "{what}: the victim only advertised");
        assert!(result.is_err(), "{what}: the step cannot complete without the victim");
        assert_eq!(fed.steps.len() as u64, round, "{what}: the rounds before it completed");
        // The honest parties were not attacked and shared normally.
        assert!(senders(t, &h, is_shares).contains(&other), "{what}");
    }
}

#[test]
fn h1_directory_entries_with_substituted_keys_or_foreign_certificates_are_refused() {
    let certs = Certs::new(3);
    let foreign = Certs::new(3);
    let spec = job_spec(3, "", "kind = \"relay_bench\"\nbytes = 200\nchunk = 64", "");
    let banks = no_data(3);
    let (sender, receiver) = (bank(0), bank(1));
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let coordinator_key = ChannelSecret::generate(&mut rng).public().to_vec();
    let statement = |key: &[u8]| channel_key_statement(&job_id(), &receiver, key);
    let foreign_signer = CertSigner::from_files(&foreign.paths.parties["bank1"]).unwrap();
    let coordinator_signer = CertSigner::from_files(&certs.paths.coordinator).unwrap();

    type Edit<'a> = Box<dyn Fn(&mut pb::PeerDirectory) + 'a>;
    let entry = |d: &mut pb::PeerDirectory, p: &PartyId| -> usize {
        d.peers.iter().position(|e| e.party == p.0).unwrap()
    };
    let variants: Vec<(&str, &str, Edit<'_>)> = vec![
        (
            "a substituted channel key",
            "channel key of bank1: channel key of bank1: signature does not verify",
            Box::new(|d| {
                let i = entry(d, &receiver);
                d.peers[i].key.as_mut().unwrap().public_key = coordinator_key.clone();
            }),
        ),
        (
            "a certificate of another CA",
            "not issued by the federation CA",
            Box::new(|d| {
                let i = entry(d, &receiver);
                d.peers[i].key = Some(pb::ChannelKey {
                    certificate: foreign_signer.certificate().to_vec(),
                    public_key: coordinator_key.clone(),
                    signature: foreign_signer.sign(&statement(&coordinator_key)).unwrap(),
                });
            }),
        ),
        (
            "a certificate naming another party",
            "it names `bank2`",
            Box::new(|d| {
                let i = entry(d, &receiver);
                let j = entry(d, &bank(2));
                d.peers[i].key = d.peers[j].key.clone();
            }),
        ),
        (
            "the coordinator's own certificate",
            "certificate presented for bank1",
            Box::new(|d| {
                let i = entry(d, &receiver);
                d.peers[i].key = Some(pb::ChannelKey {
                    certificate: coordinator_signer.certificate().to_vec(),
                    public_key: coordinator_key.clone(),
                    signature: coordinator_signer.sign(&statement(&coordinator_key)).unwrap(),
                });
            }),
        ),
        (
            "an unsigned entry",
            "channel key of bank1 is not signed",
            Box::new(|d| {
                let i = entry(d, &receiver);
                d.peers[i].key.as_mut().unwrap().signature.clear();
            }),
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

    // Control: the honest relay delivers and the sender seals to the receiver.
    let mut fed = federation(&spec, &banks, Some(&certs));
    run(&mut fed, &mut honest).unwrap();
    assert!(sealed_by(&fed.transcript, &sender) > 0);

    for (what, reason, edit) in variants {
        let mut fed = federation(&spec, &banks, Some(&certs));
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if to == &sender
                && let Some(pb::to_party::Body::Directory(d)) = &mut msg.body
            {
                edit(d);
            }
            pass(to, msg)
        };
        let result = run(&mut fed, &mut hook);
        let t = &fed.transcript;
        assert!(refused(t, &sender, reason), "{what}: {:?}", all_refusals(t));
        // Nothing of the directory was kept: the sender has no key to seal to, and the
        // coordinator never receives a ciphertext from it.
        assert!(refused(t, &sender, "no verified channel key for bank1"), "{what}");
        assert_eq!(sealed_by(t, &sender), 0, "{what}");
        assert!(result.is_err(), "{what}");
    }
}

/// Sealed messages `party` handed the coordinator.
fn sealed_by(t: &[Entry], party: &PartyId) -> usize {
    t.iter()
        .filter(|e| {
            matches!(e, Entry::FromParty { from, msg, .. }
                if from == party && matches!(msg.body, Some(pb::from_party::Body::Sealed(_))))
        })
        .count()
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
    spec: &fedcredit_federation::job::JobSpec,
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
    // A job whose own threshold is below a majority: the participants refuse it even from an
    // honest coordinator.
    let weak = bench_spec(5, "", "threshold = 2", 1);
    assert_setup_refused(
        &weak,
        &certs,
        5,
        &all,
        "threshold 2 for neighbourhoods of 5; at least 3 (a majority) is needed",
        |_| None,
    );
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

// ---- H3: inconsistent survivor lists. ----

/// One way to split the survivors: `signers` get a consistency check naming `dropped` as gone
/// (then an unmask request with the signatures they produced); everyone else gets the fast
/// path (nobody dropped).
#[derive(Debug, Clone)]
struct Split {
    dropped: BTreeSet<PartyId>,
    signers: BTreeSet<PartyId>,
}

/// What a split gave the coordinator.
struct SplitRun {
    /// Problems found by [`Released::exposure`] (none expected).
    problems: Vec<String>,
    /// Sets of parties whose sum the coordinator can unmask (rosters of at most 8).
    sums: Vec<Vec<PartyId>>,
    /// The shares it received.
    released: Released,
    setup: RoundSetup,
    threshold: usize,
}

/// Plays `split` on the first step of a bench job over `n` parties and returns what the
/// coordinator received and could compute.
fn play_split(
    spec: &fedcredit_federation::job::JobSpec,
    certs: &Certs,
    n: usize,
    split: &Split,
) -> SplitRun {
    let h = header(0, 0);
    let setup: RefCell<Option<RoundSetup>> = RefCell::new(None);
    let held: RefCell<BTreeMap<PartyId, UnmaskRequest>> = RefCell::new(BTreeMap::new());
    let mut fed = federation(spec, &no_data(n), Some(certs));
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if let Some(s) = step_of(msg) {
            let st = setup_of(&s);
            if st.header == h {
                *setup.borrow_mut() = Some(st);
            }
        }
        match secagg_of(msg) {
            Some(ServerMessage::Unmask(u)) if u.header == h => {
                held.borrow_mut().insert(to.clone(), u.clone());
                if split.signers.contains(to) {
                    let roster = setup.borrow().as_ref().unwrap().roster.clone();
                    let survivors =
                        roster.into_iter().filter(|p| !split.dropped.contains(p)).collect();
                    let c = ConsistencyCheck { header: h.clone(), survivors };
                    vec![(to.clone(), secagg_msg(&ServerMessage::Consistency(c)))]
                } else {
                    pass(to, msg)
                }
            }
            _ => pass(to, msg),
        }
    };
    let _ = run(&mut fed, &mut hook);
    let setup = setup.into_inner().expect("the step was set up");
    let spec_r = round_spec(&setup);
    let graph = spec_r.graph();
    let signed: Vec<PartyId> =
        setup.roster.iter().filter(|p| !split.dropped.contains(*p)).cloned().collect();
    let signatures: BTreeMap<PartyId, Vec<u8>> = sent_by_parties(&fed.transcript)
        .into_iter()
        .filter_map(|(p, m)| match m {
            ClientMessage::Consistency(c) if c.header == h => Some((p, c.signature)),
            _ => None,
        })
        .collect();
    // The signed path for the signers; and each party also gets the other path, in case it
    // answers twice.
    for (i, p) in setup.roster.iter().enumerate() {
        let hood: Vec<PartyId> = graph
            .neighbourhood(i as u16)
            .iter()
            .map(|&v| setup.roster[v as usize].clone())
            .collect();
        let slow = UnmaskRequest {
            header: h.clone(),
            survivors: hood.iter().filter(|q| signed.contains(q)).cloned().collect(),
            dropped: hood.iter().filter(|q| !signed.contains(q)).cloned().collect(),
            all_survivors: signed.clone(),
            signatures: signatures.clone(),
        };
        let fast = held.borrow().get(p).cloned();
        let order: Vec<UnmaskRequest> = if split.signers.contains(p) {
            [Some(slow)].into_iter().chain([fast]).flatten().collect()
        } else {
            [fast, Some(slow)].into_iter().flatten().collect()
        };
        for m in order {
            fed.inject(p, secagg_msg(&ServerMessage::Unmask(m)));
        }
    }
    let _ = fed.run(&mut honest);
    let released = Released::of(&fed.transcript, &h);
    let (problems, sums) = released.exposure(&spec_r, &setup.roster);
    let t = spec_r.threshold();
    for u in &setup.roster {
        let (b, s) =
            (released.count(u, SecretKind::SelfMask), released.count(u, SecretKind::MaskKey));
        assert!(b < t || s < t, "{split:?}: {b} shares of b_{u} and {s} of s_{u}, threshold {t}");
    }
    SplitRun { problems, sums, released, setup, threshold: t }
}

fn subsets(of: &[PartyId]) -> Vec<BTreeSet<PartyId>> {
    (1u32..(1 << of.len()))
        .map(|m| (0..of.len()).filter(|i| m & (1 << i) != 0).map(|i| of[i].clone()).collect())
        .collect()
}

#[test]
fn h3_inconsistent_survivor_lists_never_give_both_secrets_of_a_party() {
    for n in [3, 5] {
        let certs = Certs::new(n);
        let spec = bench_spec(n, "", "", 1);
        let all = banks(n);
        let mut splits = Vec::new();
        // 3 parties: every split. 5 parties: every split whose dropouts include bank0.
        for dropped in subsets(&all) {
            if dropped.len() == n || (n == 5 && (!dropped.contains(&bank(0)) || dropped.len() > 2))
            {
                continue;
            }
            let rest: Vec<PartyId> =
                all.iter().filter(|p| !dropped.contains(*p)).cloned().collect();
            for signers in subsets(&rest) {
                splits.push(Split { dropped: dropped.clone(), signers });
            }
        }
        // The most shares of bank0's two secrets any split collected.
        let (mut most_b, mut most_s) = (0, 0);
        let mut t = 0;
        for split in &splits {
            let r = play_split(&spec, &certs, n, split);
            assert!(r.problems.is_empty(), "n={n} {split:?}: {:?}", r.problems);
            assert!(r.sums.len() <= 1, "n={n} {split:?}: {:?}", r.sums);
            most_b = most_b.max(r.released.count(&bank(0), SecretKind::SelfMask));
            most_s = most_s.max(r.released.count(&bank(0), SecretKind::MaskKey));
            t = r.threshold;
        }
        // Each kind alone was within reach (the splits do make parties release both kinds);
        // never both in one attempt.
        assert!(most_b >= t && most_s >= t, "n={n}: b {most_b}, s {most_s}, t {t}");
        eprintln!("H3, {n} parties: {} splits, none exposes a party", splits.len());
    }
}

#[test]
fn h3_inconsistent_survivor_lists_in_a_secagg_plus_graph_expose_no_party() {
    let n = 20;
    let k = fedcredit_crypto::secagg::Graph::min_degree(n);
    let certs = Certs::new(n);
    let spec = bench_spec(n, "", &format!("degree = {k}"), 1);
    let all = banks(n);
    // The graph of step 0 (the same for every run: it depends on the round context only).
    let probe = Split { dropped: BTreeSet::new(), signers: BTreeSet::new() };
    let setup = play_split(&spec, &certs, n, &probe).setup;
    let graph = round_spec(&setup).graph().clone();
    let u = 0u16;
    let hood: Vec<PartyId> =
        graph.neighbourhood(u).iter().map(|&v| setup.roster[v as usize].clone()).collect();
    let target = setup.roster[u as usize].clone();
    let t = round_spec(&setup).threshold();
    let mut splits = Vec::new();
    // The fast path to the first j members of u's neighbourhood (u included), the consistency
    // check naming u dropped to everyone else.
    for j in [1, t - 1, t, hood.len()] {
        let fast: BTreeSet<PartyId> = hood.iter().take(j).cloned().collect();
        let mut fast = fast;
        fast.insert(target.clone());
        splits.push(Split {
            dropped: BTreeSet::from([target.clone()]),
            signers: all.iter().filter(|p| !fast.contains(*p)).cloned().collect(),
        });
    }
    // All of u's neighbours named dropped (u would stand alone), to everyone else.
    let neighbours: BTreeSet<PartyId> = hood.iter().filter(|p| **p != target).cloned().collect();
    splits.push(Split {
        dropped: neighbours.clone(),
        signers: all.iter().filter(|p| !neighbours.contains(*p)).cloned().collect(),
    });
    let (mut most_b, mut most_s) = (0, 0);
    for split in &splits {
        let r = play_split(&spec, &certs, n, split);
        assert!(r.problems.is_empty(), "{split:?}: {:?}", r.problems);
        most_b = most_b.max(r.released.count(&target, SecretKind::SelfMask));
        most_s = most_s.max(r.released.count(&target, SecretKind::MaskKey));
    }
    assert!(most_b >= t && most_s >= t, "b {most_b}, s {most_s}, t {t}");
}

// ---- M1: sparse graphs. ----

#[test]
fn m1_secagg_plus_below_the_minimum_degree_is_refused_by_the_participants() {
    let n = 20;
    let certs = Certs::new(n);
    let spec = bench_spec(n, "", "degree = 4", 1);
    let mut fed = federation(&spec, &no_data(n), Some(&certs));
    let result = run(&mut fed, &mut honest);
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
    let k = fedcredit_crypto::secagg::Graph::min_degree(n);
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
            let Some(ServerMessage::Unmask(_)) = secagg_of(msg) else { return pass(to, msg) };
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
                // The fast path: "your whole neighbourhood survived", with the disconnected
                // set as the round's survivors.
                _ => ServerMessage::Unmask(UnmaskRequest {
                    header: h.clone(),
                    survivors: mine,
                    dropped: Vec::new(),
                    all_survivors: survivors.clone(),
                    signatures: BTreeMap::new(),
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
        let signed = senders(t, &h, |m| matches!(m, ClientMessage::Consistency(_)));
        assert!(released.is_empty(), "{path}: unmask shares from {released:?}");
        assert!(signed.is_empty(), "{path}: survivor sets signed by {signed:?}");
    }
}

// ---- L1: no retry after unmask shares, no re-run after a resume. ----

/// A party whose unmask answer carries a wrong share of one masking key (a fault, so that the
/// unmask phase fails after `t` answers).
#[derive(Debug)]
struct WrongShare {
    inner: Box<dyn Role>,
}

impl Role for WrongShare {
    fn receive(
        &mut self,
        msg: pb::ConductorMessage,
        auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        self.inner.receive(msg, auth, rng, out)?;
        for m in &mut out.messages {
            if let Some(pb::role_message::Body::Secagg(w)) = &mut m.body
                && let Ok(ClientMessage::Unmask(mut u)) = client_from_wire(w.clone())
            {
                for share in u.mask_key_shares.values_mut() {
                    let mut y = *share.y();
                    y[10] ^= 0x40;
                    *share = fedcredit_crypto::secagg::Share::from_parts(share.x(), y);
                }
                *w = client_to_wire(&ClientMessage::Unmask(u), 64);
            }
        }
        Ok(())
    }
    fn payload(
        &mut self,
        from: &PartyId,
        payload: pb::Payload,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        self.inner.payload(from, payload, rng, out)
    }
    fn state_version(&self) -> u64 {
        self.inner.state_version()
    }
    fn checkpoint(&self) -> Vec<u8> {
        self.inner.checkpoint()
    }
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

    // Conductor: bank2 drops after sharing (its forwarded shares never arrive), bank1's answer
    // carries a wrong share, so the unmask fails after both survivors answered: the job fails
    // rather than retry step 0.
    let certs = Certs::new(3);
    let spec = bench_spec(3, "min_parties = 2", "", 1);
    let wrap = |p: &PartyId, r: Box<dyn Role>| -> Box<dyn Role> {
        if *p == bank(1) { Box::new(WrongShare { inner: r }) } else { r }
    };
    let mut fed =
        federation_with(&spec, &no_data(3), Some(&certs), conductor(&spec, &no_data(3)), &wrap);
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| match secagg_of(msg) {
        Some(ServerMessage::Shares(_)) if *to == bank(2) => Vec::new(),
        _ => pass(to, msg),
    };
    let result = run(&mut fed, &mut hook);
    let err = result.unwrap_err();
    assert!(err.contains("the step cannot run again"), "{err}");
    assert_eq!(
        senders(&fed.transcript, &header(0, 0), is_unmask),
        BTreeSet::from([bank(0), bank(1)])
    );
    let retried = steps_sent(&fed.transcript).iter().any(|(_, s)| setup_of(s).header.attempt > 0);
    assert!(!retried, "no second attempt of step 0 was sent");

    // A deviating coordinator retries anyway, with everyone: the parties that answered refuse,
    // so no round can form and the coordinator gets no masked vector.
    let step0 = steps_sent(&fed.transcript)
        .into_iter()
        .filter(|(_, s)| setup_of(s).header == header(0, 0))
        .collect::<Vec<_>>();
    let before = fed.transcript.len();
    for (p, mut s) in step0 {
        let mut setup = setup_of(&s);
        setup.header.attempt = 1;
        set_setup(&mut s, &setup);
        fed.inject(&p, step_msg(s));
    }
    let _ = fed.run(&mut honest);
    let after = &fed.transcript[before..];
    for p in [bank(0), bank(1)] {
        assert!(
            refused(after, &p, "step 0 was already unmasked"),
            "{p}: {:?}",
            all_refusals(after)
        );
    }
    let masked = senders(after, &header(0, 1), is_masked);
    assert!(masked.is_empty(), "masked vectors from {masked:?}");
    assert!(senders(after, &header(0, 1), is_advert).iter().all(|p| *p == bank(2)));
}

/// A 5-party attempt (t = 3) in which bank4 drops after sharing and `answers` survivors answer
/// the unmask request, the first with a wrong share: the unmask phase fails.
fn failed_unmask(answers: usize) -> fedcredit_federation::secagg::SecAggServer {
    use fedcredit_federation::secagg::{SecAggClient, SecAggConfig, SecAggServer, ServerStep};
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let roster = banks(5);
    let config = SecAggConfig::new(3, 1.0, 16);
    let (mut server, setups) = SecAggServer::new(header(0, 0), config, &roster).unwrap();
    let mut clients = BTreeMap::new();
    for (p, m) in setups {
        let ServerMessage::Setup(setup) = m else { unreachable!() };
        let (c, advert) =
            SecAggClient::new(p.clone(), &setup, &[0.5; 3], &Unsigned, &mut rng).unwrap();
        server.receive(&p, advert).unwrap();
        clients.insert(p, c);
    }
    let dropped = bank(4);
    let mut answered = 0;
    loop {
        let msgs = match server.close_phase() {
            Ok(ServerStep::Send(msgs)) => msgs,
            Ok(other) => panic!(
                "unexpected with {answers} answers ({answered} answered, t = {}): {other:?}",
                server.threshold()
            ),
            Err(_) => return server,
        };
        for (p, m) in msgs {
            if p == dropped && !matches!(m, ServerMessage::PeerKeys(_)) {
                continue;
            }
            if let ServerMessage::Unmask(_) = m {
                if answered == answers {
                    continue;
                }
                answered += 1;
            }
            let mut reply = clients.get_mut(&p).unwrap().handle(&m, &Unsigned, &mut rng).unwrap();
            if let ClientMessage::Unmask(u) = &mut reply
                && answered == 1
            {
                for share in u.mask_key_shares.values_mut() {
                    let mut y = *share.y();
                    y[10] ^= 0x40;
                    *share = fedcredit_crypto::secagg::Share::from_parts(share.x(), y);
                }
            }
            server.receive(&p, reply).unwrap();
        }
    }
}

#[test]
fn l1_a_resumed_coordinator_cannot_rerun_an_unmasked_step_with_another_roster() {
    // The coordinator crashes after the parties released step 1's unmask shares but before it
    // wrote step 1's checkpoint; it resumes from step 0's checkpoint, with bank2 absent, and
    // opens step 1 again over bank0 and bank1 (the sum over all three minus this one would be
    // bank2's vector). The parties, restarted from their own checkpoints, refuse.
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
    let step0_checkpoint = saved.lock().unwrap()[0].clone();

    let resumed = restore_conductor(&spec, &step0_checkpoint).unwrap();
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
    let reruns: Vec<RoundSetup> = steps_sent(t)
        .into_iter()
        .map(|(_, s)| setup_of(&s))
        .filter(|s| s.header.round.0 == 1)
        .collect();
    assert!(!reruns.is_empty(), "the resumed coordinator opens step 1 again");
    for p in [bank(0), bank(1)] {
        assert!(refused(t, &p, "step 1 was already unmasked"), "{p}: {:?}", all_refusals(t));
    }
    for s in &reruns {
        assert_nothing_for(t, &s.header, "the re-run of step 1");
    }
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

// ---- L4: bad key adverts. ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advert {
    /// Honest, but tells the faulty party its keys.
    Spy,
    LowOrder,
    Equal,
    CopyOfBank0,
}

/// A party whose key advert is bad (re-signed with its own certificate key, so only the keys
/// are wrong).
#[derive(Debug)]
struct BadKeys {
    inner: Box<dyn Role>,
    me: PartyId,
    how: Advert,
    spied: Arc<Mutex<Option<PublicKeys>>>,
    setup: Option<RoundSetup>,
}

impl Role for BadKeys {
    fn receive(
        &mut self,
        msg: pb::ConductorMessage,
        auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        if let Some(pb::conductor_message::Body::Horizontal(s)) = &msg.body {
            self.setup = Some(setup_of(s));
        }
        self.inner.receive(msg, auth, rng, out)?;
        for m in &mut out.messages {
            let Some(pb::role_message::Body::Secagg(w)) = &mut m.body else { continue };
            let Ok(ClientMessage::AdvertiseKeys(mut a)) = client_from_wire(w.clone()) else {
                continue;
            };
            match self.how {
                Advert::Spy => {
                    *self.spied.lock().unwrap() = Some(a.keys);
                    continue;
                }
                Advert::LowOrder => a.keys.c = [0; 32],
                Advert::Equal => a.keys.s = a.keys.c,
                Advert::CopyOfBank0 => a.keys.c = self.spied.lock().unwrap().unwrap().c,
            }
            let setup = self.setup.as_ref().unwrap();
            let st = keys_statement(&round_spec(setup), &self.me, &a.keys);
            a.signature = auth.sign(&st).unwrap();
            *w = client_to_wire(&ClientMessage::AdvertiseKeys(a), 64);
        }
        Ok(())
    }
    fn payload(
        &mut self,
        from: &PartyId,
        payload: pb::Payload,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        self.inner.payload(from, payload, rng, out)
    }
    fn state_version(&self) -> u64 {
        self.inner.state_version()
    }
    fn checkpoint(&self) -> Vec<u8> {
        self.inner.checkpoint()
    }
}

#[test]
fn l4_bad_key_adverts_are_rejected_on_arrival_and_the_honest_parties_finish() {
    assert!(fedcredit_crypto::secagg::keys::is_low_order(&[0; 32]));
    let certs = Certs::new(4);
    let spec = bench_spec(4, "min_parties = 3", "", 2);
    let faulty = bank(3);
    for (how, reason) in [
        (Advert::LowOrder, "a public key is of low order"),
        (Advert::Equal, "its two public keys are equal"),
        (Advert::CopyOfBank0, "a public key equals one bank0 advertised"),
    ] {
        let spied = Arc::new(Mutex::new(None));
        let wrap = |p: &PartyId, r: Box<dyn Role>| -> Box<dyn Role> {
            let how = match p.0.as_str() {
                "bank0" => Advert::Spy,
                "bank3" => how,
                _ => return r,
            };
            Box::new(BadKeys { inner: r, me: p.clone(), how, spied: spied.clone(), setup: None })
        };
        let banks = no_data(4);
        let mut fed = federation_with(&spec, &banks, Some(&certs), conductor(&spec, &banks), &wrap);
        let outcome = run(&mut fed, &mut honest);
        assert!(outcome.is_ok(), "{how:?}: {outcome:?}");
        let t = &fed.transcript;
        let rejected = t.iter().any(|e| {
            matches!(e, Entry::FromParty { from, accepted: Err(r), .. }
                if *from == faulty && r.contains(reason))
        });
        assert!(rejected, "{how:?}: the server rejects the advert on arrival");
        // The honest parties never failed, and never saw the bad keys.
        let honest_refusals: Vec<_> =
            all_refusals(t).into_iter().filter(|(p, _)| *p != faulty).collect();
        assert!(honest_refusals.is_empty(), "{how:?}: {honest_refusals:?}");
        let relayed_bad = sent_to_parties(t)
            .iter()
            .any(|(_, m)| matches!(m, ServerMessage::PeerKeys(k) if k.keys.contains_key(&faulty)));
        assert!(!relayed_bad, "{how:?}: the bad keys were relayed");
        for s in &fed.steps {
            assert_eq!(s.contributors, banks[..3].iter().map(|b| b.id.clone()).collect::<Vec<_>>());
            assert!(s.dropped.contains(&faulty) || s.attempts == 1);
        }
    }
}

// ---- Relayed payloads. ----

fn relay_spec() -> fedcredit_federation::job::JobSpec {
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
