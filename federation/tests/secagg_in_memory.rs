//! Whole secure-aggregation federations in memory with a seeded RNG: dropouts at every
//! phase, restarts, threshold failures, rejected messages, and privacy checks on the
//! recorded transcript of everything the coordinator received.

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_crypto::secagg::{SecAggError, SecretKind};
use fedcredit_federation::secagg::in_memory::{self, AttemptEnd, Crash, Run};
use fedcredit_federation::secagg::{
    ClientMessage, Phase, RoundHeader, SecAggClient, SecAggConfig, SecAggRoundError, SecAggServer,
    ServerMessage, ServerStep, UnmaskRequest, Unsigned,
};
use fedcredit_federation::{JobId, PartyId, RoundId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CLIP: f64 = 1.0;
const FRAC_BITS: u32 = 16;

fn party(i: usize) -> PartyId {
    PartyId(format!("bank{i:02}"))
}

fn header(round: u64) -> RoundHeader {
    RoundHeader { job: JobId("credit-lr".into()), round: RoundId(round), attempt: 0 }
}

/// `n` parties with updates in [-1.5, 1.5] (so some values are clipped).
fn updates(n: usize, len: usize, rng: &mut ChaCha20Rng) -> BTreeMap<PartyId, Vec<f64>> {
    (0..n).map(|i| (party(i), (0..len).map(|_| rng.random_range(-1.5..1.5)).collect())).collect()
}

fn clipped_sum(updates: &BTreeMap<PartyId, Vec<f64>>, who: &[PartyId]) -> Vec<f64> {
    let len = updates.values().next().map_or(0, Vec::len);
    let mut out = vec![0.0; len];
    for p in who {
        for (o, x) in out.iter_mut().zip(&updates[p]) {
            *o += x.clamp(-CLIP, CLIP);
        }
    }
    out
}

fn crash(i: usize, before: Phase) -> Crash {
    Crash { party: party(i), before }
}

/// Checks the run succeeded with exactly `contributors` and their clipped sum.
fn assert_sum(run: &Run, updates: &BTreeMap<PartyId, Vec<f64>>, contributors: &[usize]) {
    let out = run.outcome.as_ref().unwrap_or_else(|e| panic!("round failed: {e}"));
    let who: Vec<PartyId> = contributors.iter().map(|&i| party(i)).collect();
    assert_eq!(out.contributors, who);
    let expect = clipped_sum(updates, &who);
    assert_eq!(out.sum.len(), expect.len());
    assert_eq!(out.error_bound, out.fixed.sum_error_bound(who.len()));
    for (i, (got, want)) in out.sum.iter().zip(&expect).enumerate() {
        assert!(
            (got - want).abs() <= out.error_bound,
            "element {i}: {got} vs {want} (bound {})",
            out.error_bound
        );
    }
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt())
}

#[test]
fn ten_parties_sum_exactly_and_the_transcript_reveals_nothing_else() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let n = 10;
    let len = 10_000;
    let ups = updates(n, len, &mut rng);
    let config = SecAggConfig::new(len, CLIP, FRAC_BITS);
    let run = in_memory::run(header(0), config, &ups, &[], 1, &mut rng);
    assert_sum(&run, &ups, &(0..n).collect::<Vec<_>>());
    assert_eq!(run.attempts.len(), 1);
    let attempt = &run.attempts[0];
    assert!(attempt.received.iter().all(|r| r.status.is_ok()));
    assert!(attempt.client_errors.is_empty());
    let out = run.outcome.as_ref().unwrap();
    let fp = out.fixed;
    // 10 parties × clip 1 × 2^16 needs 21 bits: 3 bytes per value on the wire.
    assert_eq!(fp.ring_bits, 21);
    assert_eq!(fp.bytes_per_element(), 3);

    // Every masked vector the coordinator received: none equals the encoded update or
    // correlates with the true one.
    let mut masked_sum = vec![0u64; len];
    let mut seen = 0;
    for r in &attempt.received {
        if let ClientMessage::MaskedInput(m) = &r.message {
            seen += 1;
            let truth = &ups[&r.from];
            let encoded = fp.encode_vec(truth);
            assert_ne!(m.masked, encoded, "{} uploaded its update in the clear", r.from);
            let equal = m.masked.iter().zip(&encoded).filter(|(a, b)| a == b).count();
            assert!(equal < 20, "{} masked vector agrees with its input in {equal} places", r.from);
            let as_f64: Vec<f64> = m.masked.iter().map(|&v| v as f64).collect();
            let decoded: Vec<f64> = fp.decode_vec(&m.masked);
            for view in [&as_f64, &decoded] {
                let r_val = pearson(view, truth);
                assert!(r_val.abs() < 0.05, "{}: correlation {r_val}", r.from);
            }
            for (s, &y) in masked_sum.iter_mut().zip(&m.masked) {
                *s = fp.add(*s, y);
            }
        }
    }
    assert_eq!(seen, n);
    // Even the plain sum of the masked vectors (self masks still in) is unrelated to the truth...
    let truth_sum = clipped_sum(&ups, &(0..n).map(party).collect::<Vec<_>>());
    let r_raw = pearson(&fp.decode_vec(&masked_sum), &truth_sum);
    assert!(r_raw.abs() < 0.05, "raw masked sum correlates: {r_raw}");
    // ...while the unmasked sum matches it almost perfectly.
    assert!(pearson(&out.sum, &truth_sum) > 0.999_999);

    // The coordinator never holds both kinds of share for one party.
    let mut b_owners = BTreeSet::new();
    let mut s_owners = BTreeSet::new();
    for r in &attempt.received {
        if let ClientMessage::Unmask(m) = &r.message {
            b_owners.extend(m.self_mask_shares.keys().cloned());
            s_owners.extend(m.mask_key_shares.keys().cloned());
        }
    }
    assert_eq!(b_owners.len(), n);
    assert!(s_owners.is_empty());

    // Share ciphertexts are 80 bytes each, one per ordered pair, and all distinct.
    let mut cts = BTreeSet::new();
    for r in &attempt.received {
        if let ClientMessage::ShareKeys(m) = &r.message {
            assert_eq!(m.ciphertexts.len(), n - 1);
            for ct in m.ciphertexts.values() {
                assert_eq!(ct.len(), 80);
                cts.insert(ct.clone());
            }
        }
    }
    assert_eq!(cts.len(), n * (n - 1));
}

#[test]
fn dropout_after_key_sharing_is_recovered_from_the_survivors() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let ups = updates(8, 500, &mut rng);
    let config = SecAggConfig::new(500, CLIP, FRAC_BITS);
    let crashes = [crash(2, Phase::MaskedInput), crash(5, Phase::MaskedInput)];
    let run = in_memory::run(header(1), config, &ups, &crashes, 1, &mut rng);
    assert_sum(&run, &ups, &[0, 1, 3, 4, 6, 7]);
    let out = run.outcome.as_ref().unwrap();
    assert_eq!(out.dropped, vec![party(2), party(5)]);
    // The coordinator got masking-key shares of the dropped parties only, and self-mask
    // shares of the survivors only.
    for r in &run.attempts[0].received {
        if let ClientMessage::Unmask(m) = &r.message {
            assert_eq!(m.mask_key_shares.keys().cloned().collect::<Vec<_>>(), out.dropped);
            assert_eq!(m.self_mask_shares.keys().cloned().collect::<Vec<_>>(), out.contributors);
        }
    }
}

#[test]
fn dropout_after_upload_is_still_in_the_sum() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let ups = updates(6, 300, &mut rng);
    let config = SecAggConfig::new(300, CLIP, FRAC_BITS);
    let crashes = [crash(0, Phase::Unmask), crash(4, Phase::MaskedInput)];
    let run = in_memory::run(header(1), config, &ups, &crashes, 1, &mut rng);
    // Party 0 uploaded and then vanished: its vector is in; party 4 never uploaded.
    assert_sum(&run, &ups, &[0, 1, 2, 3, 5]);
}

#[test]
fn dropout_before_sharing_restarts_the_round_without_it() {
    for before in [Phase::AdvertiseKeys, Phase::ShareKeys] {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let ups = updates(5, 200, &mut rng);
        let config = SecAggConfig::new(200, CLIP, FRAC_BITS);
        let run = in_memory::run(header(2), config, &ups, &[crash(3, before)], 3, &mut rng);
        assert_eq!(run.attempts.len(), 2, "{before}");
        match &run.attempts[0].end {
            AttemptEnd::Restart(r) => {
                assert_eq!(r.excluded, vec![party(3)]);
                assert_eq!(r.roster, vec![party(0), party(1), party(2), party(4)]);
            }
            other => panic!("expected a restart, got {other:?}"),
        }
        // Attempt 0 never reached the masked-input phase: no vector was uploaded.
        assert!(
            !run.attempts[0]
                .received
                .iter()
                .any(|r| matches!(r.message, ClientMessage::MaskedInput(_)))
        );
        assert_eq!(run.attempts[1].header.attempt, 1);
        assert_eq!(run.attempts[1].roster.len(), 4);
        assert_sum(&run, &ups, &[0, 1, 2, 4]);
    }
}

#[test]
fn too_few_survivors_fail_cleanly_and_the_job_resumes() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let ups = updates(5, 100, &mut rng);
    let config = SecAggConfig::new(100, CLIP, FRAC_BITS);
    // Majority threshold of 5 is 3; three parties vanish after sharing keys.
    let crashes =
        [crash(0, Phase::MaskedInput), crash(1, Phase::MaskedInput), crash(2, Phase::MaskedInput)];
    let run = in_memory::run(header(3), config, &ups, &crashes, 1, &mut rng);
    match &run.outcome {
        Err(SecAggRoundError::ThresholdNotMet {
            got: 2,
            need: 3,
            kind: SecretKind::SelfMask,
            ..
        }) => {}
        other => panic!("expected ThresholdNotMet, got {other:?}"),
    }
    // Allowed a second attempt, the job resumes with the two parties still answering.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let ups = updates(5, 100, &mut rng);
    let run = in_memory::run(header(3), config, &ups, &crashes, 2, &mut rng);
    assert!(matches!(
        run.attempts[0].end,
        AttemptEnd::Failed(SecAggRoundError::ThresholdNotMet { .. })
    ));
    assert_eq!(run.attempts[1].roster, vec![party(3), party(4)]);
    assert_sum(&run, &ups, &[3, 4]);

    // Failure at the last step: 3 upload, only 2 answer the unmask request.
    let crashes =
        [crash(0, Phase::MaskedInput), crash(1, Phase::MaskedInput), crash(2, Phase::Unmask)];
    let run = in_memory::run(header(3), config, &ups, &crashes, 2, &mut rng);
    match &run.attempts[0].end {
        AttemptEnd::Failed(SecAggRoundError::ThresholdNotMet { got: 2, need: 3, .. }) => {}
        other => panic!("expected ThresholdNotMet at unmask, got {other:?}"),
    }
    assert_sum(&run, &ups, &[3, 4]);
}

#[test]
fn too_few_parties_for_any_round_is_a_typed_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let ups = updates(3, 10, &mut rng);
    let config = SecAggConfig::new(10, CLIP, FRAC_BITS);
    let crashes = [crash(0, Phase::AdvertiseKeys), crash(1, Phase::AdvertiseKeys)];
    let run = in_memory::run(header(0), config, &ups, &crashes, 5, &mut rng);
    assert_eq!(run.outcome, Err(SecAggRoundError::TooFewParties { have: 1, need: 2 }));
}

#[test]
fn sparse_secagg_plus_graph_with_dropouts_at_every_phase() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let n = 24;
    let ups = updates(n, 256, &mut rng);
    let config = SecAggConfig { degree: Some(6), ..SecAggConfig::new(256, CLIP, FRAC_BITS) };
    let crashes = [
        crash(1, Phase::AdvertiseKeys),
        crash(7, Phase::MaskedInput),
        crash(12, Phase::Unmask),
        crash(20, Phase::MaskedInput),
    ];
    let run = in_memory::run(header(4), config, &ups, &crashes, 3, &mut rng);
    assert_eq!(run.attempts.len(), 2);
    let contributors: Vec<usize> = (0..n).filter(|i| ![1, 7, 20].contains(i)).collect();
    assert_sum(&run, &ups, &contributors);
    // Each party exchanged shares with its 6 neighbours only.
    for r in &run.attempts[1].received {
        if let ClientMessage::ShareKeys(m) = &r.message {
            assert_eq!(m.ciphertexts.len(), 6);
        }
    }
}

/// Drives a 4-party round by hand up to the end of the share-keys phase.
struct Manual {
    server: SecAggServer,
    clients: BTreeMap<PartyId, SecAggClient>,
    rng: ChaCha20Rng,
}

fn manual(n: usize) -> (Manual, Vec<(PartyId, ServerMessage)>) {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let ups = updates(n, 16, &mut rng);
    let config = SecAggConfig::new(16, CLIP, FRAC_BITS);
    let roster: Vec<PartyId> = ups.keys().cloned().collect();
    let (mut server, setup) = SecAggServer::new(header(9), config, &roster).unwrap();
    let mut clients = BTreeMap::new();
    for (p, msg) in &setup {
        let ServerMessage::Setup(s) = msg else { panic!("setup expected") };
        let (c, reply) = SecAggClient::new(p.clone(), s, &ups[p], &Unsigned, &mut rng).unwrap();
        server.receive(p, reply).unwrap();
        clients.insert(p.clone(), c);
    }
    let ServerStep::Send(keys) = server.close_phase().unwrap() else { panic!("send expected") };
    let mut m = Manual { server, clients, rng };
    for (p, msg) in keys {
        let reply = m.clients.get_mut(&p).unwrap().handle(&msg, &Unsigned, &mut m.rng).unwrap();
        m.server.receive(&p, reply).unwrap();
    }
    let ServerStep::Send(shares) = m.server.close_phase().unwrap() else { panic!("send expected") };
    (m, shares)
}

#[test]
fn messages_for_the_wrong_round_party_or_phase_are_rejected() {
    let (mut m, shares) = manual(5);
    assert_eq!(m.server.phase(), Phase::MaskedInput);
    let (p0, msg0) = shares[0].clone();
    let reply = m.clients.get_mut(&p0).unwrap().handle(&msg0, &Unsigned, &mut m.rng).unwrap();

    // Another attempt's header.
    let mut wrong = reply.clone();
    if let ClientMessage::MaskedInput(x) = &mut wrong {
        x.header.attempt = 7;
    }
    assert!(matches!(m.server.receive(&p0, wrong), Err(SecAggRoundError::WrongRound { .. })));
    // Another job.
    let mut wrong = reply.clone();
    if let ClientMessage::MaskedInput(x) = &mut wrong {
        x.header.job = JobId("other".into());
    }
    assert!(matches!(m.server.receive(&p0, wrong), Err(SecAggRoundError::WrongRound { .. })));
    // A sender outside the roster.
    assert_eq!(
        m.server.receive(&PartyId("mallory".into()), reply.clone()),
        Err(SecAggRoundError::UnknownParty { party: PartyId("mallory".into()) })
    );
    // A vector of the wrong length.
    let mut short = reply.clone();
    if let ClientMessage::MaskedInput(x) = &mut short {
        x.masked.pop();
    }
    assert!(matches!(m.server.receive(&p0, short), Err(SecAggRoundError::InvalidMessage { .. })));
    // Accepted once, then a duplicate.
    assert!(!m.server.receive(&p0, reply.clone()).unwrap().phase_complete);
    assert!(matches!(
        m.server.receive(&p0, reply.clone()),
        Err(SecAggRoundError::Duplicate { .. })
    ));
    assert_eq!(m.server.pending(), vec![party(1), party(2), party(3), party(4)]);

    // A client rejects a server message for another round and stays usable.
    let (p1, msg1) = shares[1].clone();
    let mut bad = msg1.clone();
    if let ServerMessage::Shares(s) = &mut bad {
        s.header.round = RoundId(99);
    }
    let c1 = m.clients.get_mut(&p1).unwrap();
    assert!(matches!(
        c1.handle(&bad, &Unsigned, &mut m.rng),
        Err(SecAggRoundError::WrongRound { .. })
    ));
    // A message for a later phase is rejected as early, without changing the state.
    let early = ServerMessage::Unmask(UnmaskRequest {
        header: header(9),
        survivors: vec![],
        dropped: vec![],
        all_survivors: vec![],
        signatures: Default::default(),
    });
    assert!(matches!(
        c1.handle(&early, &Unsigned, &mut m.rng),
        Err(SecAggRoundError::WrongPhase { .. })
    ));
    let reply1 = c1.handle(&msg1, &Unsigned, &mut m.rng).unwrap();
    assert!(m.server.receive(&p1, reply1).is_ok());
    let (p3, msg3) = shares[3].clone();
    let reply3 = m.clients.get_mut(&p3).unwrap().handle(&msg3, &Unsigned, &mut m.rng).unwrap();
    assert!(m.server.receive(&p3, reply3).is_ok());

    // Parties 2 and 4 do not upload in time; close the phase at the "deadline".
    let ServerStep::Send(unmask) = m.server.close_phase().unwrap() else { panic!("send expected") };
    assert_eq!(m.server.completed(Phase::MaskedInput), Some(&[party(0), party(1), party(3)][..]));
    assert_eq!(m.server.members(), vec![party(0), party(1), party(3)]);
    // The late upload of party 2 is refused as too late...
    let (p2, msg2) = shares[2].clone();
    let late = m.clients.get_mut(&p2).unwrap().handle(&msg2, &Unsigned, &mut m.rng).unwrap();
    assert!(matches!(m.server.receive(&p2, late), Err(SecAggRoundError::TooLate { .. })));
    // ...and as it is not a survivor, its signature in the consistency check (the phase that
    // follows when someone dropped) is refused too.
    assert_eq!(m.server.phase(), Phase::Consistency);
    let fake = ClientMessage::Consistency(fedcredit_federation::secagg::ConsistencySignature {
        header: header(9),
        signature: vec![],
    });
    assert!(matches!(m.server.receive(&p2, fake), Err(SecAggRoundError::NotAMember { .. })));
    assert_eq!(unmask.len(), 3);
}

#[test]
fn tampered_share_ciphertext_is_rejected_and_the_round_survives() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let ups = updates(6, 64, &mut rng);
    let config = SecAggConfig::new(64, CLIP, FRAC_BITS);
    let victim = party(3);
    let mut tamper = |to: &PartyId, msg: &mut ServerMessage| {
        if let ServerMessage::Shares(s) = msg
            && *to == party(3)
            && let Some(ct) = s.ciphertexts.get_mut(&party(1))
        {
            ct[10] ^= 0x80;
        }
    };
    let run = in_memory::run_with(header(5), config, &ups, &[], 1, &mut rng, &mut tamper);
    let errors = &run.attempts[0].client_errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, victim);
    // Party 1 is roster index 1 and party 3 is index 3.
    assert_eq!(errors[0].1, SecAggRoundError::Crypto(SecAggError::Decryption { from: 1, to: 3 }));
    // The victim aborted before uploading; the others finish without it.
    assert_sum(&run, &ups, &[0, 1, 2, 4, 5]);
}

#[test]
fn unmask_requests_are_answered_once_and_never_for_both_secrets() {
    let (mut m, shares) = manual(4);
    for (p, msg) in &shares {
        let reply = m.clients.get_mut(p).unwrap().handle(msg, &Unsigned, &mut m.rng).unwrap();
        m.server.receive(p, reply).unwrap();
    }
    let ServerStep::Send(requests) = m.server.close_phase().unwrap() else {
        panic!("send expected")
    };
    // A coordinator that asks bank00 for both shares of bank01 (calling it dropped without
    // a consistency check) is refused, and bank00 answers nothing more this attempt.
    let all: Vec<PartyId> = (0..4).map(party).collect();
    let both = ServerMessage::Unmask(UnmaskRequest {
        header: header(9),
        survivors: all.clone(),
        dropped: vec![party(1)],
        all_survivors: all,
        signatures: Default::default(),
    });
    let c0 = m.clients.get_mut(&party(0)).unwrap();
    assert!(matches!(c0.handle(&both, &Unsigned, &mut m.rng), Err(SecAggRoundError::Refused(_))));
    assert_eq!(c0.phase(), Phase::Aborted);
    let (_, proper0) = requests.iter().find(|(p, _)| *p == party(0)).unwrap();
    assert!(matches!(
        c0.handle(proper0, &Unsigned, &mut m.rng),
        Err(SecAggRoundError::WrongPhase { .. })
    ));

    // bank01 answers its proper request once; a second request (claiming bank02 dropped,
    // to obtain its masking key after its self-mask share) is refused.
    let (_, proper1) = requests.iter().find(|(p, _)| *p == party(1)).unwrap();
    let c1 = m.clients.get_mut(&party(1)).unwrap();
    let reply = c1.handle(proper1, &Unsigned, &mut m.rng).unwrap();
    let ClientMessage::Unmask(r) = &reply else { panic!("unmask reply expected") };
    assert_eq!(r.self_mask_shares.len(), 4);
    assert!(r.mask_key_shares.is_empty());
    assert_eq!(c1.phase(), Phase::Done);
    let second = ServerMessage::Unmask(UnmaskRequest {
        header: header(9),
        survivors: vec![party(0), party(1), party(3)],
        dropped: vec![party(2)],
        all_survivors: vec![],
        signatures: Default::default(),
    });
    assert!(matches!(
        c1.handle(&second, &Unsigned, &mut m.rng),
        Err(SecAggRoundError::WrongPhase { .. })
    ));
    m.server.receive(&party(1), reply).unwrap();
    // Bank02 and bank03 answer too: 3 of 4 responses meet the threshold of 3.
    for i in [2, 3] {
        let (_, req) = requests.iter().find(|(p, _)| *p == party(i)).unwrap();
        let reply =
            m.clients.get_mut(&party(i)).unwrap().handle(req, &Unsigned, &mut m.rng).unwrap();
        m.server.receive(&party(i), reply).unwrap();
    }
    assert!(matches!(m.server.close_phase(), Ok(ServerStep::Done(_))));
    assert!(matches!(m.server.close_phase(), Err(SecAggRoundError::NotNow { .. })));
    assert!(matches!(m.server.retry(), Err(SecAggRoundError::NotNow { .. })));
}

#[test]
fn old_attempt_messages_are_rejected_after_a_restart() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let ups = updates(4, 8, &mut rng);
    let config = SecAggConfig::new(8, CLIP, FRAC_BITS);
    let roster: Vec<PartyId> = ups.keys().cloned().collect();
    let (mut server, setup) = SecAggServer::new(header(6), config, &roster).unwrap();
    let mut old = Vec::new();
    for (p, msg) in setup.iter().take(3) {
        let ServerMessage::Setup(s) = msg else { panic!() };
        let (_, reply) = SecAggClient::new(p.clone(), s, &ups[p], &Unsigned, &mut rng).unwrap();
        server.receive(p, reply.clone()).unwrap();
        old.push((p.clone(), reply));
    }
    let ServerStep::Restart(r) = server.close_phase().unwrap() else { panic!("restart expected") };
    assert_eq!(r.excluded, vec![party(3)]);
    let (mut next, setup2) = server.retry().unwrap();
    assert_eq!(next.header().attempt, 1);
    assert_eq!(setup2.len(), 3);
    for (p, reply) in old {
        assert!(matches!(next.receive(&p, reply), Err(SecAggRoundError::WrongRound { .. })));
    }
    // The excluded party is not in the new roster at all.
    let ServerMessage::Setup(s) = &setup2[0].1 else { panic!() };
    let (_, reply) = SecAggClient::new(party(0), s, &ups[&party(0)], &Unsigned, &mut rng).unwrap();
    assert_eq!(
        next.receive(&party(3), reply),
        Err(SecAggRoundError::UnknownParty { party: party(3) })
    );
    assert_eq!(
        SecAggClient::new(party(3), s, &ups[&party(3)], &Unsigned, &mut rng).unwrap_err(),
        SecAggRoundError::NotAMember { party: party(3), phase: Phase::AdvertiseKeys }
    );
}

#[test]
fn every_message_round_trips_through_serde() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let ups = updates(4, 32, &mut rng);
    let config = SecAggConfig { degree: Some(2), ..SecAggConfig::new(32, CLIP, FRAC_BITS) };
    let run = in_memory::run(header(7), config, &ups, &[crash(2, Phase::MaskedInput)], 1, &mut rng);
    assert!(run.outcome.is_ok());
    let attempt = &run.attempts[0];
    let mut kinds = BTreeSet::new();
    for r in &attempt.received {
        let json = serde_json::to_string(&r.message).unwrap();
        let back: ClientMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r.message);
        kinds.insert(r.message.phase());
    }
    for (_, m) in &attempt.sent {
        let json = serde_json::to_string(m).unwrap();
        let back: ServerMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, m);
    }
    // Keys, shares, masked input, consistency (a party dropped), unmask.
    assert_eq!(kinds.len(), 5);
}

#[test]
fn debug_output_redacts_secrets_and_updates() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let config = SecAggConfig::new(4, CLIP, FRAC_BITS);
    let roster = vec![party(0), party(1), party(2)];
    let (_, setup) = SecAggServer::new(header(8), config, &roster).unwrap();
    let ServerMessage::Setup(s) = &setup[0].1 else { panic!() };
    let secret_update = [0.123_456_789, -0.987_654_321, 0.5, 0.25];
    let (client, _) = SecAggClient::new(party(0), s, &secret_update, &Unsigned, &mut rng).unwrap();
    let printed = format!("{client:?} {client:#?}");
    assert!(printed.contains("<redacted>"));
    let fp = config.fixed_point(3).unwrap();
    for x in secret_update {
        assert!(!printed.contains(&x.to_string()));
        assert!(!printed.contains(&format!(" {},", fp.encode(x))));
    }
    // Shares in an unmask answer print redacted too.
    let (mut m, shares) = manual(3);
    for (p, msg) in &shares {
        let reply = m.clients.get_mut(p).unwrap().handle(msg, &Unsigned, &mut m.rng).unwrap();
        m.server.receive(p, reply).unwrap();
    }
    let ServerStep::Send(requests) = m.server.close_phase().unwrap() else { panic!() };
    let (p, req) = &requests[0];
    let reply = m.clients.get_mut(p).unwrap().handle(req, &Unsigned, &mut m.rng).unwrap();
    let ClientMessage::Unmask(r) = &reply else { panic!() };
    let printed = format!("{reply:?}");
    assert!(printed.contains("<redacted>"));
    for share in r.self_mask_shares.values() {
        assert!(!printed.contains(&format!("{:?}", share.y())));
    }
    assert!(format!("{:?}", m.server).contains("<redacted>"));
}
