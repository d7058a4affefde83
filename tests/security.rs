//! The coordinator's transport security against clients that misbehave, over real sockets:
//! mutual TLS 1.3 (RFC 8446) with the federation CA, the certificate name as the only party
//! identity, the operator-only control API, and per-message checks on the participant
//! stream (membership, field validation, frame size) that answer with a reason and leave
//! running jobs unharmed.
//!
//! One local federation serves every check: daemons bank1 and bank2, a hand-driven bank3
//! (the generated gRPC client, frames sent by hand) and `mallory`, a party of the federation
//! that is in no job.

mod common;

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_federation::auth::Signer;
use fedcredit_federation::channel::channel_key_statement;
use fedcredit_transport::identity::CertSigner;

use common::{
    BenchJob, RawParty, masked_upload, operator, party_files, rounds, rt, run_job, step_setup,
};
use fedcredit_ops::ControlClient;
use fedcredit_ops::OpsError;
use fedcredit_ops::client::ClientConfig;
use fedcredit_ops::launch::{LocalFederation, PartySetup};
use fedcredit_proto::pb;
use fedcredit_transport::stream::MAX_FRAME;
use fedcredit_transport::tls::TlsFiles;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A control call with `cfg`; the error it ends with (connect or first call).
async fn control_error(cfg: &ClientConfig) -> String {
    match ControlClient::connect(cfg).await {
        Err(e) => format!("connect: {e}"),
        Ok(mut c) => match c.jobs().await {
            Err(e) => format!("call: {e}"),
            Ok(jobs) => panic!("the control API answered: {} jobs", jobs.len()),
        },
    }
}

/// Opening the participant stream on a fresh connection with `tls`; the error it ends with.
async fn stream_error(fed: &LocalFederation, tls: ClientTlsConfig, hello: &str) -> String {
    let ep = Endpoint::from_shared(fed.url()).unwrap().tls_config(tls).unwrap();
    let ch = match ep.connect().await {
        Err(e) => return format!("connect: {e:?}"),
        Ok(ch) => ch,
    };
    let mut raw = match RawParty::open(ch, hello).await {
        Err(s) => return format!("open: {:?}: {}", s.code(), s.message()),
        Ok(r) => r,
    };
    match raw.next().await {
        Err(s) => format!("first read: {:?}: {}", s.code(), s.message()),
        Ok(m) => panic!("the coordinator accepted the stream: {m:?}"),
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// TLS to the coordinator trusting the federation CA, presenting `identity` (if any).
fn tls_with(ca: &std::path::Path, identity: Option<&TlsFiles>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)))
        .domain_name("localhost");
    if let Some(f) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(read(&f.cert), read(&f.key)));
    }
    tls
}

/// Only the greeting and answers: nothing about any job.
fn is_welcome_or_ack(m: &pb::CoordinatorMessage) -> bool {
    use pb::coordinator_message::Body;
    matches!(m.body, Some(Body::Ack(_) | Body::Welcome(_)))
}

#[test]
fn coordinator_refuses_and_rejects_misbehaving_clients() {
    let dir = tempfile::tempdir().unwrap();
    let parties: Vec<PartySetup> = ["bank1", "bank2"]
        .iter()
        .map(|n| PartySetup::new(*n, dir.path().join("no-data.csv")))
        .collect();
    // bank3 (driven by hand below) is a party of the federation; mallory is in no job.
    let fed = common::launch_with(dir.path(), &parties, &["bank3"], true, "");
    let certs = dir.path().join("certs");
    for name in ["bank3", "mallory"] {
        fedcredit_transport::tls::add_party(&certs, name).unwrap();
    }
    let other = tempfile::tempdir().unwrap();
    let other_certs = fedcredit_transport::tls::init_certs(
        &other.path().join("certs"),
        &["bank1".to_string()],
        &[],
    )
    .unwrap();
    let ca = certs.join("ca.pem");

    rt().block_on(async {
        // 1. No client certificate: neither the participant stream nor Control.
        let e = stream_error(&fed, tls_with(&ca, None), "bank1").await;
        eprintln!("no certificate, participant stream: {e}");
        let ch = Endpoint::from_shared(fed.url())
            .unwrap()
            .tls_config(tls_with(&ca, None))
            .unwrap()
            .connect()
            .await;
        let e = match ch {
            Err(e) => format!("connect: {e:?}"),
            Ok(ch) => match pb::control_client::ControlClient::new(ch)
                .list_jobs(pb::ListJobsRequest {})
                .await
            {
                Err(s) => format!("call: {:?}: {}", s.code(), s.message()),
                Ok(r) => panic!("control answered without a certificate: {r:?}"),
            },
        };
        eprintln!("no certificate, control: {e}");
        // Plain text against the TLS port fails too.
        let e = control_error(&ClientConfig::insecure(fed.url().replace("https", "http"))).await;
        eprintln!("plain text, control: {e}");

        // 2. A certificate from another CA (same names): refused.
        let foreign_bank1 = &other_certs.parties["bank1"];
        let e = stream_error(&fed, tls_with(&ca, Some(foreign_bank1)), "bank1").await;
        eprintln!("foreign CA, participant stream: {e}");
        let foreign_operator = TlsFiles { ca: ca.clone(), ..other_certs.operator.clone() };
        let e = control_error(&ClientConfig {
            url: fed.url(),
            tls: Some(foreign_operator),
            server_name: "localhost".into(),
        })
        .await;
        eprintln!("foreign CA, control: {e}");

        // 3. bank1's certificate claiming to be bank2.
        let bank1 = party_files(&fed, "bank1");
        let status = RawParty::connect(&fed, &bank1, "bank2").await.unwrap_err();
        eprintln!("bank1 says Hello bank2: {:?}: {}", status.code(), status.message());
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().contains("bank1") && status.message().contains("bank2"),
            "{}",
            status.message()
        );

        // 4. A party's certificate on the control API.
        let mut as_bank1 = ControlClient::connect(&ClientConfig {
            url: fed.url(),
            tls: Some(bank1.clone()),
            server_name: "localhost".into(),
        })
        .await
        .expect("TLS with a federation certificate");
        match as_bank1.jobs().await {
            Err(OpsError::Status(s)) => {
                eprintln!("bank1 on Control: {:?}: {}", s.code(), s.message());
                assert_eq!(s.code(), Code::PermissionDenied);
                assert!(s.message().contains("bank1"), "{}", s.message());
            }
            other => panic!("bank1 used the control API: {other:?}"),
        }

        let mut mallory =
            RawParty::connect(&fed, &party_files(&fed, "mallory"), "mallory").await.unwrap();

        // 6. mallory (in no job) joins a running round: rejected; the job goes on. bank3 is a
        // member driven by hand: it joins, then keeps round 0 open until mallory's answer came.
        let mut bank3 =
            RawParty::connect(&fed, &party_files(&fed, "bank3"), "bank3").await.unwrap();
        let mut client = operator(&fed).await;
        let mut spec = BenchJob::new(&["bank1", "bank2", "bank3"], 1000, 3);
        spec.min_parties = Some(2);
        let job = client.submit(&spec.toml()).await.unwrap();
        let offer = bank3
            .wait_for(|m| match &m.body {
                Some(pb::coordinator_message::Body::JobOffer(o)) if o.job_id == job.id => {
                    Some(o.clone())
                }
                _ => None,
            })
            .await;
        // A reply without a channel key is refused (peers could not mask with bank3).
        let bare =
            pb::JobReply { job_id: offer.job_id.clone(), accepted: true, ..Default::default() };
        let seq = bank3.send(pb::participant_message::Body::JobReply(bare)).await;
        let ack = bank3.ack(seq).await;
        eprintln!("reply without a channel key: {:?}: {}", ack.outcome(), ack.reason);
        assert_eq!(ack.outcome(), pb::ack::Outcome::Rejected);
        assert!(ack.reason.contains("channel key"), "{}", ack.reason);
        // With its signed channel key it joins.
        let signer = CertSigner::from_files(&party_files(&fed, "bank3")).unwrap();
        let pk = ChannelSecret::from_bytes([7; 32]).public();
        let statement = channel_key_statement(
            &fedcredit_federation::JobId(offer.job_id.clone()),
            &fedcredit_federation::PartyId("bank3".into()),
            &pk,
        );
        let reply = pb::JobReply {
            job_id: offer.job_id.clone(),
            accepted: true,
            channel_key: Some(pb::ChannelKey {
                certificate: signer.certificate().to_vec(),
                public_key: pk.to_vec(),
                signature: signer.sign(&statement).unwrap(),
            }),
            ..Default::default()
        };
        bank3.send(pb::participant_message::Body::JobReply(reply.clone())).await;
        let setup = bank3.wait_for(step_setup).await;
        let header = setup.header.clone().unwrap();
        eprintln!("round open: {header:?}, roster {:?}", setup.roster);
        assert!(setup.roster.contains(&"bank3".to_string()));

        // 5. A malformed message from a member of the open round: a masked vector whose length
        // does not match its packed bytes is rejected naming the field.
        let seq = bank3.send(masked_upload(header.clone(), 4, 9)).await;
        let ack = bank3.ack(seq).await;
        eprintln!("malformed upload: {:?}: {}", ack.outcome(), ack.reason);
        assert_eq!(ack.outcome(), pb::ack::Outcome::Rejected);
        assert!(ack.reason.contains("masked_input.len"), "{}", ack.reason);
        let seq = mallory.send(masked_upload(header.clone(), 3, 9)).await;
        let ack = mallory.ack(seq).await;
        eprintln!("mallory's upload in an open round: {:?}: {}", ack.outcome(), ack.reason);
        assert_eq!(ack.outcome(), pb::ack::Outcome::Rejected);
        assert!(ack.reason.contains("mallory"), "{}", ack.reason);
        // Its bid to join the job is refused too.
        let seq = mallory.send(pb::participant_message::Body::JobReply(reply)).await;
        let ack = mallory.ack(seq).await;
        eprintln!("mallory's JobReply: {:?}: {}", ack.outcome(), ack.reason);
        assert_eq!(ack.outcome(), pb::ack::Outcome::Rejected);
        bank3.close();
        let end = common::follow(&mut client, &job.id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let rs = rounds(&mut client, &job.id).await;
        assert_eq!(rs.len(), 3);
        assert_eq!(rs[0].dropped, ["bank3"], "round 0 went on without the silent bank3");
        for r in &rs {
            assert_eq!(r.contributors, ["bank1", "bank2"]);
        }
        let audit = client.audit(Some(&job.id), 1000).await.unwrap();
        let mallory_entries: Vec<_> = audit.iter().filter(|a| a.party == "mallory").collect();
        eprintln!("audit entries of mallory: {}", mallory_entries.len());
        assert!(mallory_entries.iter().all(|a| a.outcome.starts_with("rejected")));

        // mallory heard nothing of the job (no offer, round start or relayed keys).
        assert!(mallory.backlog.iter().all(is_welcome_or_ack), "{:?}", mallory.backlog);

        // 7. An oversized frame: the stream ends with an error; the coordinator serves on.
        let big = pb::ParticipantFrame {
            body: Some(pb::participant_frame::Body::Chunk(pb::Chunk {
                message_id: 1,
                index: 0,
                count: 2,
                data: vec![0u8; MAX_FRAME + 1024],
            })),
        };
        mallory.send_frame(big).await;
        let end = loop {
            match mallory.next().await {
                Ok(Some(m)) => eprintln!("after the oversized frame: {m:?}"),
                other => break other,
            }
        };
        eprintln!("oversized frame: {end:?}");
        let status = end.expect_err("the stream ends with an error status");
        assert!(
            matches!(
                status.code(),
                Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
            ),
            "{status:?}"
        );
        let spec = BenchJob::new(&["bank1", "bank2"], 1000, 2);
        let end = run_job(&mut client, &spec.toml()).await;
        assert_eq!(end.state, "succeeded", "{}", end.error);
        eprintln!("a later job: {}", end.state);
    });
}
