//! Whole secure-aggregation federations in memory with a seeded RNG: dropouts at every
//! phase, restarts, threshold failures, rejected messages, and privacy checks on the
//! recorded transcript of everything the coordinator received.

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_crypto::secagg::{SecAggError, SecretKind};
use fedcredit_federation::secagg::in_memory::{self, AttemptEnd, Crash, Keyring, Run};
use fedcredit_federation::secagg::{
    ClientMessage, Phase, RoundHeader, SecAggClient, SecAggConfig, SecAggRoundError, SecAggServer,
    ServerMessage, ServerStep, UnmaskRequest,
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

    // The coordinator never holds both kinds of secret for one party: on the fast path only
    // self-mask shares of survivors.
    let mut b_owners = BTreeSet::new();
    let mut seed_pairs = 0;
    for r in &attempt.received {
        if let ClientMessage::Unmask(m) = &r.message {
            b_owners.extend(m.self_mask_shares.keys().cloned());
            seed_pairs += m.pair_seeds.len();
        }
    }
    assert_eq!(b_owners.len(), n);
    assert_eq!(seed_pairs, 0);

    // Share ciphertexts are 48 bytes each, one per ordered pair, and all distinct.
    let mut cts = BTreeSet::new();
    for r in &attempt.received {
        if let ClientMessage::MaskedInput(m) = &r.message {
            assert_eq!(m.bundles.len(), n - 1);
            for ct in m.bundles.values() {
                assert_eq!(ct.len(), 48);
                cts.insert(ct.clone());
            }
        }
    }
    assert_eq!(cts.len(), n * (n - 1));
}

/// Parties that never upload are recovered in the same attempt: after the survivors sign the
/// survivor set, each reveals its round seed with the dropped ones, never a share of theirs.
#[test]
fn dropouts_before_the_upload_are_recovered_from_the_survivors() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let ups = updates(8, 500, &mut rng);
    let config = SecAggConfig::new(500, CLIP, FRAC_BITS);
    let crashes = [crash(2, Phase::MaskedInput), crash(5, Phase::MaskedInput)];
    let run = in_memory::run(header(1), config, &ups, &crashes, 1, &mut rng);
    assert_sum(&run, &ups, &[0, 1, 3, 4, 6, 7]);
    assert_eq!(run.attempts.len(), 1);
    let out = run.outcome.as_ref().unwrap();
    assert_eq!(out.dropped, vec![party(2), party(5)]);
    let mut signed = 0;
    for r in &run.attempts[0].received {
        match &r.message {
            ClientMessage::Consistency(_) => signed += 1,
            ClientMessage::Unmask(m) => {
                assert_eq!(m.pair_seeds.keys().cloned().collect::<Vec<_>>(), out.dropped);
                assert_eq!(
                    m.self_mask_shares.keys().cloned().collect::<Vec<_>>(),
                    out.contributors
                );
            }
            _ => {}
        }
    }
    assert_eq!(signed, 6, "every survivor signed the survivor set");
}

#[test]
fn dropout_after_upload_is_still_in_the_sum() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let ups = updates(6, 300, &mut rng);
    let config = SecAggConfig::new(300, CLIP, FRAC_BITS);
    // Party 0 uploads and vanishes; party 4 never uploads and is not party 0's... every party
    // is a neighbour on the complete graph, so 0's seed with 4 would be needed: only 0 drops.
    let crashes = [crash(0, Phase::Unmask)];
    let run = in_memory::run(header(1), config, &ups, &crashes, 1, &mut rng);
    assert_sum(&run, &ups, &[0, 1, 2, 3, 4, 5]);
}

#[test]
fn too_few_survivors_fail_cleanly_and_the_job_resumes() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let ups = updates(5, 100, &mut rng);
    let config = SecAggConfig::new(100, CLIP, FRAC_BITS);
    // Majority threshold of 5 is 3; three parties never upload.
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

    // Failure at the last step: 3 upload, only 2 answer the unmask request. Fewer than the
    // threshold answered, so nothing was revealed and a retry is allowed.
    let crashes =
        [crash(0, Phase::MaskedInput), crash(1, Phase::MaskedInput), crash(2, Phase::Unmask)];
    let run = in_memory::run(header(3), config, &ups, &crashes, 2, &mut rng);
    match &run.attempts[0].end {
        AttemptEnd::Failed(SecAggRoundError::ThresholdNotMet { got: 2, need: 3, .. })
        | AttemptEnd::Failed(SecAggRoundError::Refused(_)) => {}
        other => panic!("expected a failure at unmask, got {other:?}"),
    }
    assert_sum(&run, &ups, &[3, 4]);
}

#[test]
fn too_few_parties_for_any_round_is_a_typed_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let ups = updates(3, 10, &mut rng);
    let config = SecAggConfig::new(10, CLIP, FRAC_BITS);
    let crashes = [crash(0, Phase::MaskedInput), crash(1, Phase::MaskedInput)];
    let run = in_memory::run(header(0), config, &ups, &crashes, 5, &mut rng);
    assert!(
        matches!(
            run.outcome,
            Err(SecAggRoundError::TooFewParties { have: 1, need: 2 })
                | Err(SecAggRoundError::ThresholdNotMet { .. })
        ),
        "{:?}",
        run.outcome
    );
}

#[test]
fn sparse_secagg_plus_graph_with_dropouts_at_every_phase() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let n = 24;
    let ups = updates(n, 256, &mut rng);
    let config = SecAggConfig { degree: Some(10), ..SecAggConfig::new(256, CLIP, FRAC_BITS) };
    let crashes =
        [crash(1, Phase::MaskedInput), crash(7, Phase::MaskedInput), crash(20, Phase::MaskedInput)];
    let run = in_memory::run(header(4), config, &ups, &crashes, 3, &mut rng);
    let contributors: Vec<usize> = (0..n).filter(|i| ![1, 7, 20].contains(i)).collect();
    assert_sum(&run, &ups, &contributors);
    // Each party sealed shares for its 10 neighbours only.
    for r in &run.attempts.last().unwrap().received {
        if let ClientMessage::MaskedInput(m) = &r.message {
            assert_eq!(m.bundles.len(), 10);
        }
    }
}

/// Drives an `n`-party round by hand up to the uploads.
struct Manual {
    server: SecAggServer,
    clients: BTreeMap<PartyId, SecAggClient>,
    uploads: Vec<(PartyId, ClientMessage)>,
    keys: BTreeMap<PartyId, Keyring>,
    rng: ChaCha20Rng,
}

fn manual(n: usize) -> Manual {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let ups = updates(n, 16, &mut rng);
    let config = SecAggConfig::new(16, CLIP, FRAC_BITS);
    let roster: Vec<PartyId> = ups.keys().cloned().collect();
    let keys = Keyring::for_parties(&roster, &mut rng);
    let (server, setup) = SecAggServer::new(header(9), config, &roster).unwrap();
    let mut clients = BTreeMap::new();
    let mut uploads = Vec::new();
    for (p, msg) in &setup {
        let ServerMessage::Setup(s) = msg else { panic!("setup expected") };
        let (c, reply) = SecAggClient::new(p.clone(), s, &ups[p], &keys[p], &mut rng).unwrap();
        uploads.push((p.clone(), reply));
        clients.insert(p.clone(), c);
    }
    Manual { server, clients, uploads, keys, rng }
}

#[test]
fn messages_for_the_wrong_round_party_or_phase_are_rejected() {
    let mut m = manual(5);
    assert_eq!(m.server.phase(), Phase::MaskedInput);
    let (p0, reply) = m.uploads[0].clone();

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
    // A vector of the wrong length, or shares not sealed to exactly its neighbours.
    let mut short = reply.clone();
    if let ClientMessage::MaskedInput(x) = &mut short {
        x.masked.pop();
    }
    assert!(matches!(m.server.receive(&p0, short), Err(SecAggRoundError::InvalidMessage { .. })));
    let mut missing = reply.clone();
    if let ClientMessage::MaskedInput(x) = &mut missing {
        x.bundles.remove(&party(1));
    }
    assert!(matches!(m.server.receive(&p0, missing), Err(SecAggRoundError::InvalidMessage { .. })));
    // Accepted once, then a duplicate.
    assert!(!m.server.receive(&p0, reply.clone()).unwrap().phase_complete);
    assert!(matches!(
        m.server.receive(&p0, reply.clone()),
        Err(SecAggRoundError::Duplicate { .. })
    ));
    assert_eq!(m.server.pending(), vec![party(1), party(2), party(3), party(4)]);

    // A client rejects a server message for another round and stays usable; a message for a
    // phase it is not in (an unmask request before any consistency check, naming a dropped
    // party) aborts it.
    let c1 = m.clients.get_mut(&party(1)).unwrap();
    let bad = ServerMessage::Consistency(fedcredit_federation::secagg::ConsistencyCheck {
        header: RoundHeader { round: RoundId(99), ..header(9) },
        survivors: vec![],
    });
    assert!(matches!(
        c1.handle(&bad, &m.keys[&party(1)], &mut m.rng),
        Err(SecAggRoundError::WrongRound { .. })
    ));
    for i in [1, 3] {
        let (p, r) = m.uploads[i].clone();
        assert!(m.server.receive(&p, r).is_ok());
    }

    // Parties 2 and 4 do not upload in time; close the phase at the "deadline".
    let ServerStep::Send(checks) = m.server.close_phase().unwrap() else { panic!("send expected") };
    assert_eq!(m.server.completed(Phase::MaskedInput), Some(&[party(0), party(1), party(3)][..]));
    assert_eq!(m.server.phase(), Phase::Consistency);
    assert_eq!(m.server.members(), vec![party(0), party(1), party(3)]);
    assert_eq!(checks.len(), 3);
    // The late upload of party 2 is refused as too late...
    let (p2, late) = m.uploads[2].clone();
    assert!(matches!(m.server.receive(&p2, late), Err(SecAggRoundError::TooLate { .. })));
    // ...and as it is not a survivor, its signature in the consistency check is refused too.
    let fake = ClientMessage::Consistency(fedcredit_federation::secagg::ConsistencySignature {
        header: header(9),
        signature: vec![],
    });
    assert!(matches!(m.server.receive(&p2, fake), Err(SecAggRoundError::NotAMember { .. })));
}

#[test]
fn tampered_share_ciphertext_is_rejected_and_the_round_survives() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let ups = updates(6, 64, &mut rng);
    let config = SecAggConfig::new(64, CLIP, FRAC_BITS);
    let victim = party(3);
    let mut tamper = |to: &PartyId, msg: &mut ServerMessage| {
        if let ServerMessage::Unmask(s) = msg
            && *to == party(3)
            && let Some(ct) = s.bundles.get_mut(&party(1))
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
    // The victim refused to answer the unmask request; its vector is in the sum anyway
    // (its self mask comes back from the other five's shares).
    assert_sum(&run, &ups, &[0, 1, 2, 3, 4, 5]);
}

#[test]
fn unmask_requests_are_answered_once_and_never_for_both_secrets() {
    let mut m = manual(4);
    for (p, r) in m.uploads.clone() {
        m.server.receive(&p, r).unwrap();
    }
    let ServerStep::Send(requests) = m.server.close_phase().unwrap() else {
        panic!("send expected")
    };
    // A coordinator that asks bank00 about bank01 as dropped (for its seed with it) while
    // everyone uploaded, without a consistency check, is refused; bank00 answers nothing more.
    let all: Vec<PartyId> = (0..4).map(party).collect();
    let (_, proper0) = requests.iter().find(|(p, _)| *p == party(0)).unwrap();
    let ServerMessage::Unmask(req0) = proper0 else { panic!("unmask expected") };
    let both = ServerMessage::Unmask(UnmaskRequest {
        survivors: all.clone(),
        dropped: vec![party(1)],
        ..req0.clone()
    });
    let c0 = m.clients.get_mut(&party(0)).unwrap();
    assert!(matches!(
        c0.handle(&both, &m.keys[&party(0)], &mut m.rng),
        Err(SecAggRoundError::Refused(_))
    ));
    assert_eq!(c0.phase(), Phase::Aborted);
    assert!(matches!(
        c0.handle(proper0, &m.keys[&party(0)], &mut m.rng),
        Err(SecAggRoundError::WrongPhase { .. })
    ));

    // bank01 answers its proper request once; a second request is refused.
    let (_, proper1) = requests.iter().find(|(p, _)| *p == party(1)).unwrap();
    let c1 = m.clients.get_mut(&party(1)).unwrap();
    let reply = c1.handle(proper1, &m.keys[&party(1)], &mut m.rng).unwrap();
    let ClientMessage::Unmask(r) = &reply else { panic!("unmask reply expected") };
    assert_eq!(r.self_mask_shares.len(), 4);
    assert!(r.pair_seeds.is_empty());
    assert_eq!(c1.phase(), Phase::Done);
    assert!(matches!(
        c1.handle(proper1, &m.keys[&party(1)], &mut m.rng),
        Err(SecAggRoundError::WrongPhase { .. })
    ));
    m.server.receive(&party(1), reply).unwrap();
    // Bank02 and bank03 answer too: 3 of 4 responses meet the threshold of 3.
    for i in [2, 3] {
        let (_, req) = requests.iter().find(|(p, _)| *p == party(i)).unwrap();
        let reply = m
            .clients
            .get_mut(&party(i))
            .unwrap()
            .handle(req, &m.keys[&party(i)], &mut m.rng)
            .unwrap();
        m.server.receive(&party(i), reply).unwrap();
    }
    assert!(matches!(m.server.close_phase(), Ok(ServerStep::Done(_))));
    assert!(matches!(m.server.close_phase(), Err(SecAggRoundError::NotNow { .. })));
    assert!(matches!(m.server.retry(), Err(SecAggRoundError::NotNow { .. })));
}

#[test]
fn old_attempt_messages_are_rejected_after_a_retry() {
    let mut m = manual(4);
    // Only two upload: below the threshold of 3, the attempt fails without revealing anything.
    for (p, r) in m.uploads.iter().take(2).cloned() {
        m.server.receive(&p, r).unwrap();
    }
    assert!(m.server.close_phase().is_err());
    let (mut next, setup2) = m.server.retry().unwrap();
    assert_eq!(next.header().attempt, 1);
    assert_eq!(setup2.len(), 2);
    for (p, reply) in m.uploads.iter().take(2).cloned() {
        assert!(matches!(next.receive(&p, reply), Err(SecAggRoundError::WrongRound { .. })));
    }
    // A party left out is not in the new roster at all.
    let ServerMessage::Setup(s) = &setup2[0].1 else { panic!() };
    let ups = updates(4, 16, &mut m.rng);
    assert_eq!(
        SecAggClient::new(party(3), s, &ups[&party(3)], &m.keys[&party(3)], &mut m.rng)
            .unwrap_err(),
        SecAggRoundError::NotAMember { party: party(3), phase: Phase::MaskedInput }
    );
}

#[test]
fn every_message_round_trips_through_serde() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let ups = updates(4, 32, &mut rng);
    let config = SecAggConfig::new(32, CLIP, FRAC_BITS);
    let run = in_memory::run(header(7), config, &ups, &[crash(2, Phase::MaskedInput)], 1, &mut rng);
    assert!(run.outcome.is_ok(), "{:?}", run.outcome);
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
    // Masked input, consistency (a party dropped), unmask.
    assert_eq!(kinds.len(), 3);
}

#[test]
fn debug_output_redacts_secrets_and_updates() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let config = SecAggConfig::new(4, CLIP, FRAC_BITS);
    let roster = vec![party(0), party(1), party(2)];
    let keys = Keyring::for_parties(&roster, &mut rng);
    let (_, setup) = SecAggServer::new(header(8), config, &roster).unwrap();
    let ServerMessage::Setup(s) = &setup[0].1 else { panic!() };
    let secret_update = [0.123_456_789, -0.987_654_321, 0.5, 0.25];
    let (client, _) =
        SecAggClient::new(party(0), s, &secret_update, &keys[&party(0)], &mut rng).unwrap();
    let printed = format!("{client:?} {client:#?}");
    assert!(printed.contains("<redacted>"));
    let fp = config.fixed_point(3).unwrap();
    for x in secret_update {
        assert!(!printed.contains(&x.to_string()));
        assert!(!printed.contains(&format!(" {},", fp.encode(x))));
    }
}
