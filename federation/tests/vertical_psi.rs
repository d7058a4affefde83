//! The alignment stage of vertical jobs (PSI) through the protocol runtime in memory: the
//! conductor, one party session per party (the daemon's code: sealed channels, the vertical
//! role), every message in a transcript.
//!
//! - Both modes, two and three parties, unbalanced sets, a subset, an empty intersection:
//!   every party ends with rows that refer to the same ids in the same order, and both modes
//!   find the same common ids.
//! - From the transcript: no id appears in any message; the coordinator relays sealed bytes
//!   and sees only tokens or blinded values under keys it never holds (different in every
//!   run, none a keyless function of an id).
//! - A deviating coordinator (the intercept hook): a different intersection to one party is
//!   caught by the digest exchange; a value that is not the party's own, a start message that
//!   differs from the job, a forged, replayed or misattributed key payload, a second run of a
//!   finished stage are refused.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_crypto::psi::{Dst, synthetic_ids};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation, honest};
use fedcredit_federation::protocol::{self, Outcome, PartySession, split_checkpoint};
use fedcredit_federation::vertical::role::VerticalRole;
use fedcredit_federation::vertical::{Alignment, PartyTable};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::{FeatureSpec, Features};
use fedcredit_proto::pb;
use ndarray::Array2;
use prost::Message;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

const JOB: &str = "j-align";

fn job() -> JobId {
    JobId(JOB.into())
}

fn pid(s: &str) -> PartyId {
    PartyId(s.into())
}

/// A vertical `align` job over `parties` (the first holds the label) in `mode`.
fn spec(parties: &[&str], mode: &str) -> JobSpec {
    let names: Vec<String> = parties.iter().map(|p| format!("\"{p}\"")).collect();
    JobSpec::from_toml(&format!(
        "name = \"align\"\nparties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n\
         [model]\nkind = \"align\"\n[vertical]\nlabel_holder = \"{}\"\npsi = \"{mode}\"\n",
        names.join(", "),
        parties[0]
    ))
    .unwrap()
}

/// `n` 18-character codes numbered from `start`.
fn codes(start: u64, n: usize) -> Vec<String> {
    synthetic_ids(start, n).iter().map(|c| String::from_utf8(c.to_vec()).unwrap()).collect()
}

/// A table over `ids` in a seeded random row order (so no two parties share a row order),
/// one numeric column, and a label when `label`.
fn table(mut ids: Vec<String>, label: bool, seed: u64) -> PartyTable {
    ids.shuffle(&mut ChaCha20Rng::seed_from_u64(seed));
    let n = ids.len();
    let features = Features::new(
        vec![FeatureSpec::numeric("x")],
        Array2::from_shape_fn((n, 1), |(i, _)| i as f64),
    )
    .unwrap();
    PartyTable { ids, features, label: label.then(|| (0..n).map(|i| (i % 2) as f64).collect()) }
}

/// Tables of `parties`: `common` ids shared by all, then `own[i]` ids only party `i` holds.
fn tables(parties: &[&str], common: usize, own: &[usize]) -> Vec<(PartyId, PartyTable)> {
    let shared = codes(0, common);
    parties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut ids = shared.clone();
            ids.extend(codes(10_000_000 * (i as u64 + 1), own[i]));
            (pid(p), table(ids, i == 0, 77 + i as u64))
        })
        .collect()
}

fn session(spec: &JobSpec, me: &PartyId, t: &PartyTable, seed: u64) -> PartySession {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let secret = ChannelSecret::generate(&mut rng);
    let role = protocol::new_vertical_role(&job(), spec, me, t.clone(), None, None).unwrap();
    PartySession::new(job(), spec, me.clone(), role, secret, Default::default(), rng)
}

fn federation(spec: &JobSpec, tables: &[(PartyId, PartyTable)], seed: u64) -> Federation {
    let schemas =
        tables.iter().map(|(p, _)| (p.clone(), vec![FeatureSpec::numeric("x")])).collect();
    let conductor = protocol::new_conductor(&job(), spec, &schemas).unwrap();
    let sessions = tables
        .iter()
        .enumerate()
        .map(|(i, (p, t))| (p.clone(), session(spec, p, t, seed * 100 + i as u64)))
        .collect();
    Federation::new(job(), conductor, sessions)
}

type Hook<'a> = dyn FnMut(&PartyId, &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> + 'a;

/// Runs the job to its end with `hook` as the coordinator's relay.
fn run_with(
    spec: &JobSpec,
    tables: &[(PartyId, PartyTable)],
    seed: u64,
    hook: &mut Hook<'_>,
) -> (Result<Outcome, String>, Federation) {
    let mut fed = federation(spec, tables, seed);
    fed.start(hook).unwrap();
    let res = fed.run(hook);
    (res, fed)
}

fn run(spec: &JobSpec, tables: &[(PartyId, PartyTable)], seed: u64) -> (Outcome, Federation) {
    let (res, fed) = run_with(spec, tables, seed, &mut honest);
    let refused: Vec<&Entry> =
        fed.transcript.iter().filter(|e| matches!(e, Entry::Refused { .. })).collect();
    match res {
        Ok(o) => {
            assert!(refused.is_empty(), "refusals in an honest run: {refused:?}");
            (o, fed)
        }
        Err(e) => panic!("the alignment failed: {e}; refusals: {refused:?}"),
    }
}

/// A party's alignment, from the checkpoint its session last wrote.
fn alignment(fed: &Federation, spec: &JobSpec, p: &PartyId, t: &PartyTable) -> Alignment {
    let bytes = fed.checkpoints.get(p).unwrap_or_else(|| panic!("{p} wrote no checkpoint"));
    let (_, role) = split_checkpoint(bytes).unwrap();
    let r = VerticalRole::new(&job(), spec, p, t.clone(), Some(&role), None).unwrap();
    r.alignment().cloned().unwrap_or_else(|| panic!("{p} has no alignment"))
}

/// Checks that every party's rows refer to the same ids in the same order, and the same
/// agreed-order keys; returns the common ids in that order.
fn check_aligned(
    fed: &Federation,
    spec: &JobSpec,
    tables: &[(PartyId, PartyTable)],
    outcome: &Outcome,
) -> Vec<String> {
    let mut first: Option<(Vec<String>, Vec<[u8; 16]>)> = None;
    for (p, t) in tables {
        let a = alignment(fed, spec, p, t);
        assert_eq!(a.rows.len(), a.keys.len(), "{p}");
        assert!(a.keys.windows(2).all(|w| w[0] < w[1]), "{p}: keys in the agreed order");
        let ids: Vec<String> = a.rows.iter().map(|&r| t.ids[r as usize].clone()).collect();
        match &first {
            None => first = Some((ids, a.keys)),
            Some((want, keys)) => {
                assert_eq!(&ids, want, "{p}'s rows name other ids or another order");
                assert_eq!(&a.keys, keys, "{p}'s keys differ");
            }
        }
        assert_eq!(outcome.metrics[&format!("rows_{p}")], t.ids.len() as f64);
    }
    let ids = first.unwrap().0;
    assert_eq!(outcome.metrics["intersection"], ids.len() as f64);
    ids
}

/// The ids every table holds.
fn expected_common(tables: &[(PartyId, PartyTable)]) -> BTreeSet<String> {
    let mut it = tables.iter().map(|(_, t)| t.ids.iter().cloned().collect::<BTreeSet<_>>());
    let first = it.next().unwrap();
    it.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
}

fn align_both_modes(parties: &[&str], tables: &[(PartyId, PartyTable)]) -> usize {
    let want = expected_common(tables);
    let mut found = Vec::new();
    for mode in ["server-aided", "ecdh"] {
        let spec = spec(parties, mode);
        let (outcome, fed) = run(&spec, tables, 1);
        let ids = check_aligned(&fed, &spec, tables, &outcome);
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "{mode}: an id aligned twice");
        assert_eq!(set, want, "{mode}: not the common ids");
        found.push(set);
    }
    assert_eq!(found[0], found[1], "the modes found different common ids");
    want.len()
}

#[test]
fn two_and_three_parties_align_the_same_ids_in_the_same_order_in_both_modes() {
    let two = ["bank", "tax"];
    assert_eq!(align_both_modes(&two, &tables(&two, 700, &[300, 2_000])), 700);
    let three = ["bank", "tax", "platform"];
    // Pairwise overlaps beyond the three-way intersection must not count.
    let mut t = tables(&three, 500, &[200, 1_500, 90]);
    let pair_only = codes(99_000_000, 40);
    for i in [0, 1] {
        let mut ids = t[i].1.ids.clone();
        ids.extend(pair_only.iter().cloned());
        t[i].1 = table(ids, i == 0, 5 + i as u64);
    }
    assert_eq!(align_both_modes(&three, &t), 500);
}

#[test]
fn unbalanced_sets_and_a_subset_align() {
    // 1k ids at the bank, all of them among the platform's 100k.
    let two = ["bank", "platform"];
    let t = tables(&two, 1_000, &[0, 99_000]);
    assert_eq!(align_both_modes(&two, &t), 1_000);
    // Three parties, 1k, 100k and 5k; 600 common.
    let three = ["bank", "platform", "tax"];
    let t = tables(&three, 600, &[400, 99_400, 4_400]);
    let spec = spec(&three, "server-aided");
    let (outcome, fed) = run(&spec, &t, 2);
    let ids = check_aligned(&fed, &spec, &t, &outcome);
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected_common(&t));
    let spec = self::spec(&three, "ecdh");
    let (outcome, fed) = run(&spec, &t, 3);
    assert_eq!(check_aligned(&fed, &spec, &t, &outcome).len(), 600);
}

#[test]
fn disjoint_sets_align_no_rows() {
    for parties in [&["bank", "tax"][..], &["bank", "tax", "platform"]] {
        let t = tables(parties, 0, &[300, 500, 100]);
        for mode in ["server-aided", "ecdh"] {
            let spec = spec(parties, mode);
            let (outcome, fed) = run(&spec, &t, 4);
            assert!(check_aligned(&fed, &spec, &t, &outcome).is_empty(), "{mode}");
            assert_eq!(outcome.metrics["intersection"], 0.0);
        }
    }
}

/// What a transcript shows the coordinator.
#[derive(Default)]
struct CoordinatorView {
    /// 16-byte values in protocol messages (tokens, truncated points, intersections).
    values: HashSet<[u8; 16]>,
    /// Values sent back to each party (the intersection).
    returned: BTreeMap<PartyId, usize>,
    /// Values each party sent.
    received: BTreeMap<PartyId, usize>,
    /// Sealed messages relayed.
    sealed: usize,
}

/// The PSI body of a coordinator message, for a deviating coordinator's hook to alter.
fn psi_step_mut(msg: &mut pb::ToParty) -> Option<&mut pb::psi_step::Body> {
    match &mut msg.body {
        Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
            body:
                Some(pb::conductor_message::Body::Vertical(pb::VerticalStep {
                    body: Some(pb::vertical_step::Body::Psi(pb::PsiStep { body: Some(b) })),
                    ..
                })),
        })) => Some(b),
        _ => None,
    }
}

fn psi_step(msg: &pb::ToParty) -> Option<&pb::psi_step::Body> {
    match &msg.body {
        Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
            body:
                Some(pb::conductor_message::Body::Vertical(pb::VerticalStep {
                    body: Some(pb::vertical_step::Body::Psi(pb::PsiStep { body: Some(b) })),
                    ..
                })),
        })) => Some(b),
        _ => None,
    }
}

/// Reads the transcript as the coordinator sees it, checking that every message is of a kind
/// the mode allows.
fn coordinator_view(fed: &Federation, collects: bool) -> CoordinatorView {
    let mut view = CoordinatorView::default();
    let add = |bytes: &[u8], view: &mut CoordinatorView| {
        assert_eq!(bytes.len() % 16, 0);
        for c in bytes.chunks_exact(16) {
            view.values.insert(c.try_into().unwrap());
        }
        bytes.len() / 16
    };
    for e in &fed.transcript {
        match e {
            Entry::ToParty { to, msg } => match &msg.body {
                Some(pb::to_party::Body::Relayed(_)) => view.sealed += 1,
                Some(pb::to_party::Body::Directory(_)) => {}
                Some(pb::to_party::Body::Protocol(_)) => match psi_step(msg) {
                    Some(pb::psi_step::Body::Start(_)) => {}
                    Some(pb::psi_step::Body::Intersection(v)) => {
                        assert!(collects, "two-party ECDH: the coordinator sent values");
                        let n = add(&v.values, &mut view);
                        *view.returned.entry(to.clone()).or_default() += n;
                    }
                    None => panic!("the coordinator sent {msg:?}"),
                },
                None => panic!("an empty message"),
            },
            Entry::FromParty { from, msg, .. } => match &msg.body {
                Some(pb::from_party::Body::Sealed(_)) => {}
                Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                    body: Some(pb::role_message::Body::Vertical(r)),
                })) => match &r.body {
                    Some(pb::vertical_report::Body::Psi(pb::PsiReport { body: Some(b) })) => {
                        match b {
                            pb::psi_report::Body::Values(v) => {
                                assert!(collects, "two-party ECDH: a party sent values");
                                let n = add(&v.values, &mut view);
                                *view.received.entry(from.clone()).or_default() += n;
                            }
                            pb::psi_report::Body::Progress(_) => {}
                            pb::psi_report::Body::Aligned(a) => assert_eq!(a.digest.len(), 32),
                        }
                    }
                    other => panic!("{from} sent {other:?}"),
                },
                other => panic!("{from} sent {other:?}"),
            },
            Entry::Refused { party, reason } => panic!("{party} refused: {reason}"),
        }
    }
    view
}

/// Panics if any id of `tables` appears, as its 18 bytes, anywhere in any message.
fn assert_no_id_in(fed: &Federation, tables: &[(PartyId, PartyTable)]) {
    let ids: HashSet<[u8; 18]> = tables
        .iter()
        .flat_map(|(_, t)| t.ids.iter().map(|i| <[u8; 18]>::try_from(i.as_bytes()).unwrap()))
        .collect();
    let mut scanned = 0usize;
    for e in &fed.transcript {
        let bytes = match e {
            Entry::ToParty { msg, .. } => msg.encode_to_vec(),
            Entry::FromParty { msg, .. } => msg.encode_to_vec(),
            Entry::Refused { .. } => continue,
        };
        scanned += bytes.len();
        for w in bytes.windows(18) {
            assert!(!ids.contains(<&[u8; 18]>::try_from(w).unwrap()), "an id in a message");
        }
    }
    assert!(scanned > 0);
}

/// Values a coordinator could compute from an id without any party's key: an unkeyed hash,
/// the ids' hash to ristretto255 (blinding with key 1), an HMAC under a zero key.
fn keyless_values(ids: &[String]) -> HashSet<[u8; 16]> {
    let dst = Dst::for_job(JOB);
    let zero = fedcredit_crypto::psi::TokenKey::derive(&[0u8; 32], JOB.as_bytes());
    let mut out = HashSet::new();
    for id in ids {
        let h = Sha256::digest(id.as_bytes());
        out.insert(h[..16].try_into().unwrap());
        let p = dst.hash_to_group(id.as_bytes()).compress().to_bytes();
        out.insert(p[..16].try_into().unwrap());
    }
    out.extend(fedcredit_crypto::psi::tokens(ids, &zero));
    out
}

#[test]
fn the_transcript_shows_no_id_and_the_coordinator_only_sealed_bytes_or_keyed_values() {
    for (parties, mode) in [
        (&["bank", "tax"][..], "ecdh"),
        (&["bank", "tax", "platform"][..], "ecdh"),
        (&["bank", "tax"][..], "server-aided"),
        (&["bank", "tax", "platform"][..], "server-aided"),
    ] {
        let t = tables(parties, 300, &[200, 900, 50]);
        let spec = spec(parties, mode);
        let collects = mode == "server-aided" || parties.len() > 2;
        let all_ids: Vec<String> = t.iter().flat_map(|(_, t)| t.ids.iter().cloned()).collect();
        let mut seen = Vec::new();
        for seed in [11, 12] {
            let (outcome, fed) = run(&spec, &t, seed);
            assert_eq!(outcome.metrics["intersection"], 300.0);
            assert_no_id_in(&fed, &t);
            let view = coordinator_view(&fed, collects);
            assert!(view.sealed > 0, "{mode}: nothing went between parties");
            if collects {
                // The coordinator holds each party's set size in values, and returns only
                // the common ones, to every party.
                for (p, tab) in &t {
                    assert_eq!(view.received[p], tab.ids.len(), "{mode}: {p}'s set");
                    assert_eq!(view.returned[p], 300, "{mode}: the intersection to {p}");
                }
                assert!(
                    view.values.is_disjoint(&keyless_values(&all_ids)),
                    "{mode}: the coordinator saw a value it could compute from an id"
                );
            } else {
                assert!(view.values.is_empty(), "{mode}: the coordinator saw values");
            }
            seen.push(view.values);
        }
        if collects {
            // Fresh keys in every run: the same ids give unrelated values, so nothing the
            // coordinator sees in one job helps it in another.
            assert!(seen[0].is_disjoint(&seen[1]), "{mode}: values repeat across runs");
        }
    }
}

/// The hook of a coordinator that hands `victim` an intersection without its last value.
fn short_intersection(
    victim: PartyId,
) -> impl FnMut(&PartyId, &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> {
    move |to, msg| {
        if *to == victim
            && let Some(pb::psi_step::Body::Intersection(v)) = psi_step_mut(msg)
        {
            v.total -= 1;
            v.values.truncate(v.values.len() - 16);
        }
        vec![(to.clone(), msg.clone())]
    }
}

#[test]
fn a_different_intersection_to_one_party_is_caught_by_the_digests() {
    for (parties, mode) in [
        (&["bank", "tax"][..], "server-aided"),
        (&["bank", "tax", "platform"][..], "server-aided"),
        (&["bank", "tax", "platform"][..], "ecdh"),
    ] {
        let t = tables(parties, 200, &[10, 20, 30]);
        let spec = spec(parties, mode);
        let mut hook = short_intersection(pid("tax"));
        let (res, fed) = run_with(&spec, &t, 5, &mut hook);
        let err = res.expect_err("the job must fail");
        assert!(err.contains("not handed the same intersection"), "{mode}: {err}");
        assert!(err.contains("199 rows") && err.contains("200 rows"), "{mode}: {err}");
        // Nobody reported an alignment, and nobody kept one.
        for (p, tab) in &t {
            let kept = fed.checkpoints.get(p).and_then(|b| {
                let (_, role) = split_checkpoint(b).ok()?;
                VerticalRole::new(&job(), &spec, p, tab.clone(), Some(&role), None)
                    .ok()?
                    .alignment()
                    .cloned()
            });
            assert!(kept.is_none(), "{mode}: {p} kept an alignment");
        }
    }
}

#[test]
fn an_intersection_value_that_is_not_the_partys_own_is_refused() {
    let parties = ["bank", "tax", "platform"];
    let t = tables(&parties, 50, &[10, 20, 30]);
    let spec = spec(&parties, "server-aided");
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if to.0 == "platform"
            && let Some(pb::psi_step::Body::Intersection(v)) = psi_step_mut(msg)
        {
            // The largest possible value: not a token of platform's (with overwhelming
            // probability), and still in ascending order.
            let n = v.values.len();
            v.values[n - 16..].copy_from_slice(&[0xff; 16]);
        }
        vec![(to.clone(), msg.clone())]
    };
    let (res, fed) = run_with(&spec, &t, 6, &mut hook);
    let err = res.expect_err("the job must fail");
    assert!(err.starts_with("platform: value 49 of the intersection"), "{err}");
    assert!(err.contains("not one of this party's"), "{err}");
    assert!(
        fed.transcript.iter().any(|e| matches!(e, Entry::FromParty {
            from,
            msg: pb::FromParty {
                body: Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                    body: Some(pb::role_message::Body::Vertical(pb::VerticalReport {
                        body: Some(pb::vertical_report::Body::Failed(_)),
                        ..
                    })),
                })),
                ..
            },
            ..
        } if from.0 == "platform")),
        "platform reported the failure"
    );
}

#[test]
fn a_start_that_differs_from_the_job_is_refused() {
    let parties = ["bank", "tax", "platform"];
    let t = tables(&parties, 20, &[1, 2, 3]);
    let spec = spec(&parties, "ecdh");
    type Tamper = fn(&mut pb::PsiStart);
    let cases: [(Tamper, &str); 3] = [
        (
            |s| s.mode = "server-aided".into(),
            "asks for `server-aided` alignment, but the job says `ecdh`",
        ),
        (|s| s.parties.swap(1, 2), "the coordinator's parties [bank, platform, tax] differ"),
        (
            |s| {
                s.parties.pop();
            },
            "differ from the job's [bank, tax, platform]",
        ),
    ];
    for (tamper, want) in cases {
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if to.0 == "tax"
                && let Some(pb::psi_step::Body::Start(s)) = psi_step_mut(msg)
            {
                tamper(s);
            }
            vec![(to.clone(), msg.clone())]
        };
        let (res, _) = run_with(&spec, &t, 7, &mut hook);
        let err = res.expect_err("the job must fail");
        assert!(err.starts_with("tax: ") && err.contains(want), "{err}");
        assert!(!err.starts_with("tax: tax:"), "{err}");
    }
}

/// The sealed token-key payload of `from` to `to` in step `step`, as `from`'s session seals
/// it (a twin of `from`'s session in `fed`, built from the same seed, that has accepted the
/// directory), relayed as the coordinator would.
fn sealed_key(
    fed: &Federation,
    spec: &JobSpec,
    tables: &[(PartyId, PartyTable)],
    seed: u64,
    (from, to): (&str, &str),
    step: u64,
    secret: [u8; 32],
) -> pb::ToParty {
    let payload = pb::Payload {
        body: Some(pb::payload::Body::Vertical(pb::VerticalPayload {
            step,
            body: Some(pb::vertical_payload::Body::Psi(pb::PsiPayload {
                body: Some(pb::psi_payload::Body::TokenKey(pb::PsiTokenKey {
                    secret: secret.to_vec(),
                })),
            })),
        })),
    };
    let peers = tables
        .iter()
        .map(|(p, _)| pb::PeerEntry {
            party: p.0.clone(),
            key: Some(fed.session(p).unwrap().channel_key().unwrap()),
        })
        .collect();
    let at = tables.iter().position(|(p, _)| p.0 == from).unwrap();
    let mut twin = session(spec, &pid(from), &tables[at].1, seed * 100 + at as u64);
    let dir = pb::ToParty {
        job_id: JOB.into(),
        body: Some(pb::to_party::Body::Directory(pb::PeerDirectory { peers })),
    };
    twin.handle(dir).unwrap();
    let sealed = twin.seal(&[pid(to)], 4242, 0, true, &payload).unwrap();
    let Some(pb::from_party::Body::Sealed(s)) = sealed.body else { panic!("not sealed") };
    pb::ToParty {
        job_id: JOB.into(),
        body: Some(pb::to_party::Body::Relayed(pb::Relayed {
            from: from.into(),
            stream: s.stream,
            seq: s.seq,
            last: s.last,
            ciphertext: s.ciphertexts[to].clone(),
        })),
    }
}

#[test]
fn forged_replayed_or_misattributed_key_payloads_are_refused() {
    let parties = ["bank", "tax", "platform"];
    let t = tables(&parties, 100, &[5, 6, 7]);
    let spec = spec(&parties, "server-aided");

    // The coordinator makes up a key "from the bank", and re-addresses the bank's key to tax
    // to platform: the channel refuses both (it can neither forge nor re-address a seal); the
    // alignment still succeeds with the bank's real key.
    let mut to_tax: Option<pb::ToParty> = None;
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        let mut out = vec![(to.clone(), msg.clone())];
        if let Some(pb::to_party::Body::Relayed(r)) = &msg.body
            && r.from == "bank"
            && to.0 == "tax"
            && to_tax.is_none()
        {
            to_tax = Some(msg.clone());
            out.push((pid("platform"), msg.clone()));
            let mut forged = r.clone();
            forged.ciphertext = vec![7u8; r.ciphertext.len()];
            out.push((
                pid("platform"),
                pb::ToParty { job_id: JOB.into(), body: Some(pb::to_party::Body::Relayed(forged)) },
            ));
        }
        out
    };
    let (res, fed) = run_with(&spec, &t, 8, &mut hook);
    let outcome = res.expect("the forgeries change nothing");
    assert_eq!(outcome.metrics["intersection"], 100.0);
    let refusals: Vec<&String> = fed
        .transcript
        .iter()
        .filter_map(|e| match e {
            Entry::Refused { party, reason } if party.0 == "platform" => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");

    // A token key that tax really sealed (an authenticated peer, not the label holder): the
    // party refuses it and the job fails naming why, before platform sends any token.
    let mut fed = federation(&spec, &t, 9);
    fed.start(&mut honest).unwrap();
    let forged = sealed_key(&fed, &spec, &t, 9, ("tax", "platform"), 0, [3u8; 32]);
    fed.inject(&pid("platform"), forged);
    let err = fed.run(&mut honest).expect_err("the job must fail");
    assert!(
        err.contains("platform: tax sent a token key, but only the label holder bank draws it"),
        "{err}"
    );
}

#[test]
fn a_finished_alignment_is_not_run_again() {
    let parties = ["bank", "tax"];
    let t = tables(&parties, 30, &[3, 4]);
    let spec = spec(&parties, "server-aided");
    let (_, mut fed) = run(&spec, &t, 10);
    let start = pb::ToParty {
        job_id: JOB.into(),
        body: Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
            body: Some(pb::conductor_message::Body::Vertical(pb::VerticalStep {
                step: 7,
                body: Some(pb::vertical_step::Body::Psi(pb::PsiStep {
                    body: Some(pb::psi_step::Body::Start(pb::PsiStart {
                        mode: "server-aided".into(),
                        parties: vec!["bank".into(), "tax".into()],
                    })),
                })),
            })),
        })),
    };
    let before = fed.transcript.len();
    fed.inject(&pid("tax"), start);
    let _ = fed.run(&mut honest);
    let refused = fed.transcript[before..].iter().find_map(|e| match e {
        Entry::Refused { party, reason } if party.0 == "tax" => Some(reason.clone()),
        _ => None,
    });
    let reason = refused.expect("tax refused the second run");
    assert!(reason.contains("the align stage has already finished here"), "{reason}");
}

/// Whether `msg` carries a chunk of the intersection.
fn is_intersection(msg: &pb::ToParty) -> bool {
    matches!(psi_step(msg), Some(pb::psi_step::Body::Intersection(_)))
}

/// No party kept an alignment.
fn assert_none_kept(fed: &Federation, spec: &JobSpec, t: &[(PartyId, PartyTable)], what: &str) {
    for (p, tab) in t {
        let kept = fed.checkpoints.get(p).and_then(|b| {
            let (_, role) = split_checkpoint(b).ok()?;
            VerticalRole::new(&job(), spec, p, tab.clone(), Some(&role), None)
                .ok()?
                .alignment()
                .cloned()
        });
        assert!(kept.is_none(), "{what}: {p} kept an alignment");
    }
}

#[test]
fn replayed_or_tampered_chunks_are_refused() {
    // A chunk of the intersection sent twice: the party refuses the repeat and the job fails.
    let parties = ["bank", "tax", "platform"];
    let t = tables(&parties, 40, &[5, 6, 7]);
    let spec = spec(&parties, "server-aided");
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        let mut out = vec![(to.clone(), msg.clone())];
        if to.0 == "tax" && is_intersection(msg) {
            out.push((to.clone(), msg.clone()));
        }
        out
    };
    let (res, _) = run_with(&spec, &t, 12, &mut hook);
    let err = res.expect_err("the job must fail");
    assert!(
        err.contains("tax: the coordinator sent more of an intersection that was complete"),
        "{err}"
    );
    // (The first copy was the true intersection: the others may have aligned on it before the
    // repeat arrived; the job fails all the same.)

    // A chunk of the intersection moved to another offset: refused as out of order.
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if to.0 == "platform"
            && let Some(pb::psi_step::Body::Intersection(v)) = psi_step_mut(msg)
        {
            v.offset += 1;
        }
        vec![(to.clone(), msg.clone())]
    };
    let (res, fed) = run_with(&spec, &t, 13, &mut hook);
    let err = res.expect_err("the job must fail");
    assert!(err.contains("platform: a chunk of the intersection starts at value 1"), "{err}");
    assert_none_kept(&fed, &spec, &t, "shifted intersection");

    // A relayed chunk of blinded points with one bit flipped (two-party ECDH, where the
    // points travel only between the parties): the receiver's channel refuses it, nothing
    // after it in the stream is accepted, and the job cannot finish.
    for parties in [&["bank", "tax"][..], &["bank", "tax", "platform"]] {
        let t = tables(parties, 40, &[5, 6, 7]);
        let spec = self::spec(parties, "ecdh");
        let mut flipped = false;
        let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
            if to.0 == "tax"
                && !flipped
                && let Some(pb::to_party::Body::Relayed(r)) = &mut msg.body
                && r.from == "bank"
            {
                r.ciphertext[0] ^= 1;
                flipped = true;
            }
            vec![(to.clone(), msg.clone())]
        };
        let (res, fed) = run_with(&spec, &t, 14, &mut hook);
        assert!(res.is_err(), "{parties:?}: the job must fail");
        assert!(
            fed.transcript
                .iter()
                .any(|e| matches!(e, Entry::Refused { party, .. } if party.0 == "tax")),
            "{parties:?}: tax refused the chunk"
        );
        assert_none_kept(&fed, &spec, &t, "flipped points");
    }
}
