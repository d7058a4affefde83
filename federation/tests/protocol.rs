//! Whole horizontal jobs through the protocol runtime in memory: the conductor, one party
//! session per bank (the daemon's code), typed protobuf messages and model updates. The model
//! equals the one the trainer and participants produce directly; a party killed mid-job and
//! restarted from its checkpoint ends with the same model.

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_federation::horizontal::in_memory::Federation as Direct;
use fedcredit_federation::horizontal::{Outcome, Trainer};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation, honest};
use fedcredit_federation::protocol::{self, PartySession, split_checkpoint};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::Dataset;
use fedcredit_proto::pb;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod common;
use common::*;

fn session(
    spec: &JobSpec,
    me: &PartyId,
    train: Dataset,
    valid: Option<Dataset>,
    checkpoint: Option<&[u8]>,
    seed: u64,
) -> PartySession {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (secret, role_bytes) = match checkpoint {
        Some(b) => {
            let (s, r) = split_checkpoint(b).unwrap();
            (s, Some(r))
        }
        None => (ChannelSecret::generate(&mut rng), None),
    };
    let role = protocol::new_role(spec, me, Some(train), valid, role_bytes.as_deref()).unwrap();
    PartySession::new(JobId("j1".into()), spec, me.clone(), role, secret, Default::default(), rng)
}

fn federation(spec: &JobSpec, banks: &[(PartyId, Dataset, Option<Dataset>)]) -> Federation {
    let schemas = banks.iter().map(|(p, _, _)| (p.clone(), specs())).collect();
    let conductor = protocol::new_conductor(&JobId("j1".into()), spec, &schemas).unwrap();
    let sessions = banks
        .iter()
        .enumerate()
        .map(|(i, (p, t, v))| (p.clone(), session(spec, p, t.clone(), v.clone(), None, i as u64)))
        .collect();
    Federation::new(JobId("j1".into()), conductor, sessions)
}

fn direct(spec: &JobSpec, banks: Vec<(PartyId, Dataset, Option<Dataset>)>) -> Outcome {
    let mut trainer = Trainer::new(spec, specs()).unwrap();
    let mut fed = Direct::new(spec, banks, true).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    loop {
        if let Some(out) = fed.step(&mut trainer, &mut rng).unwrap() {
            return out;
        }
    }
}

#[test]
fn protocol_runs_give_the_trainers_models_for_every_kind() {
    for model in [
        "kind = \"gbdt\"\nn_trees = 4\nmax_depth = 3\nmax_bins = 32",
        "kind = \"logistic\"",
        "kind = \"scorecard\"",
    ] {
        let spec = job(model);
        let banks = parties(&[300, 200, 250], true);
        let want = direct(&spec, banks.clone());
        let mut fed = federation(&spec, &banks);
        fed.start(&mut honest).unwrap();
        let got = fed.run(&mut honest).unwrap();
        assert_eq!(got.artifact_json, want.artifact_json, "{model}");
        // No refusal anywhere, and no trees re-sent: each finished tree reaches each bank once.
        assert!(!fed.transcript.iter().any(|e| matches!(e, Entry::Refused { .. })), "{model}");
        let trees_sent = fed
            .transcript
            .iter()
            .filter_map(|e| match e {
                Entry::ToParty { msg, .. } => match &msg.body {
                    Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
                        body: Some(pb::conductor_message::Body::Horizontal(s)),
                    })) => Some(
                        s.updates
                            .iter()
                            .filter(|u| matches!(u.body, Some(pb::model_update::Body::Tree(_))))
                            .count(),
                    ),
                    _ => None,
                },
                _ => None,
            })
            .sum::<usize>();
        if model.contains("gbdt") {
            // Each of the 4 trees reaches each of the 3 banks exactly once.
            assert_eq!(trees_sent, 4 * 3);
        }
    }
}

#[test]
fn a_bank_killed_mid_job_and_restarted_from_its_checkpoint_ends_with_the_same_model() {
    let spec = job("kind = \"gbdt\"\nn_trees = 4\nmax_depth = 3\nmax_bins = 32\neval_every = 0");
    let banks = parties(&[300, 200, 250], true);
    let mut reference = federation(&spec, &banks);
    reference.start(&mut honest).unwrap();
    let want = reference.run(&mut honest).unwrap();

    let mut fed = federation(&spec, &banks);
    fed.max_deliveries = 60;
    fed.start(&mut honest).unwrap();
    // Run part of the job, then kill bank1 in the middle of a step.
    let early = fed.run(&mut honest);
    assert!(
        early.as_ref().is_err_and(|e| e.contains("deliveries")),
        "the job should still be running: {:?}",
        early.err()
    );
    let victim = party(1);
    fed.crash(&victim);
    let ckpt = fed.checkpoints.get(&victim).cloned().expect("bank1 wrote a checkpoint");
    let (_, train, valid) = banks[1].clone();
    let restarted = session(&spec, &victim, train, valid, Some(&ckpt), 99);
    fed.rejoin(victim, restarted, &mut honest);
    fed.max_deliveries = 10_000_000;
    let got = fed.run(&mut honest).unwrap();
    assert!(got.artifact_json == want.artifact_json, "the model differs from an uninterrupted run");
    let last = fed.steps.last().unwrap();
    assert!(last.contributors.contains(&party(1)), "the restarted bank took part again");
}
