use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tower_service::Service;

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn init_writes_every_file_with_names_and_sans() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let paths =
        init_certs(&out, &names(&["bank", "tax_bureau"]), &names(&["coord.example", "10.0.0.7"]))
            .unwrap();
    for stem in ["ca", "coordinator", "operator", "bank", "tax_bureau"] {
        assert!(out.join(format!("{stem}.pem")).is_file(), "{stem}.pem");
        assert!(out.join(format!("{stem}.key")).is_file(), "{stem}.key");
    }
    assert_eq!(paths.parties.keys().collect::<Vec<_>>(), vec!["bank", "tax_bureau"]);
    assert_eq!(paths.parties["bank"].cert, out.join("bank.pem"));
    assert_eq!(paths.coordinator.ca, out.join("ca.pem"));

    for (file, cn) in [
        ("bank.pem", "bank"),
        ("tax_bureau.pem", "tax_bureau"),
        ("operator.pem", "operator"),
        ("coordinator.pem", "coordinator"),
        ("ca.pem", CA_NAME),
    ] {
        assert_eq!(peer_name(&[cert_der(&out.join(file))]).unwrap(), cn);
    }
    let der = cert_der(&out.join("coordinator.pem"));
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let sans: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
    for want in ["localhost", "coord.example", "7f:00:00:01", "0a:00:00:07"] {
        assert!(sans.iter().any(|s| s.contains(want)), "{want} missing from {sans:?}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "coordinator.key", "bank.key"] {
            let mode = fs::metadata(out.join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}

#[test]
fn init_refuses_overwrite_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    init_certs(dir.path(), &names(&["bank"]), &[]).unwrap();
    let before = fs::read(dir.path().join("ca.pem")).unwrap();
    let err = init_certs(dir.path(), &names(&["bank"]), &[]).unwrap_err();
    assert!(matches!(&err, TransportError::Exists { path } if path.ends_with("ca.pem")), "{err}");
    assert!(err.to_string().contains("ca.pem"));
    assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), before);

    let fresh = tempfile::tempdir().unwrap();
    fs::write(fresh.path().join("tax.key"), "keep me").unwrap();
    let err = init_certs(fresh.path(), &names(&["bank", "tax"]), &[]).unwrap_err();
    assert!(err.to_string().contains("tax.key"), "{err}");
    assert!(!fresh.path().join("ca.pem").exists(), "nothing written when one file exists");

    let long = "x".repeat(65);
    for bad in ["", "coordinator", "Operator", "ca", "a/b", "bank bank", ".hidden", long.as_str()] {
        let err = init_certs(fresh.path(), &names(&[bad]), &[]).unwrap_err();
        assert!(matches!(err, TransportError::InvalidPartyName { .. }), "{bad:?}: {err}");
    }
    let err = init_certs(fresh.path(), &names(&["bank", "Bank"]), &[]).unwrap_err();
    assert!(matches!(err, TransportError::DuplicateParty { .. }), "{err}");
    let err = init_certs(fresh.path(), &names(&["bank"]), &names(&["bad host"])).unwrap_err();
    assert!(matches!(err, TransportError::InvalidHost { .. }), "{err}");
    assert!(validate_party_name(&"x".repeat(64)).is_ok());
}

#[test]
fn add_party_signs_with_the_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    init_certs(dir.path(), &names(&["bank"]), &[]).unwrap();
    let files = add_party(dir.path(), "platform").unwrap();
    assert_eq!(peer_name(&[cert_der(&files.cert)]).unwrap(), "platform");
    let leaf = cert_der(&files.cert);
    let ca = cert_der(&files.ca);
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(ca.as_ref()).unwrap();
    assert_eq!(leaf.issuer(), ca.subject());
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    let err = add_party(dir.path(), "platform").unwrap_err();
    assert!(err.to_string().contains("platform.pem"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = add_party(empty.path(), "platform").unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
}

#[test]
fn config_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_certs(dir.path(), &names(&["bank"]), &[]).unwrap();
    let mut files = paths.parties["bank"].clone();
    files.cert = dir.path().join("missing.pem");
    let err = client_tls(&files, "localhost").unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "hello").unwrap();
    let mut files = paths.coordinator.clone();
    files.ca = garbage.clone();
    let err = server_tls(&files).unwrap_err();
    assert!(matches!(&err, TransportError::NotPem { path, .. } if *path == garbage), "{err}");
    let mut files = paths.coordinator.clone();
    files.key = paths.coordinator.cert.clone();
    let err = server_tls(&files).unwrap_err();
    assert!(err.to_string().contains("coordinator.pem") && err.to_string().contains("key"));

    let parsed: TlsFiles =
        toml::from_str("ca = \"a.pem\"\ncert = \"b.pem\"\nkey = \"b.key\"\n").unwrap();
    assert_eq!(parsed.key, PathBuf::from("b.key"));
    assert!(
        toml::from_str::<TlsFiles>("ca = \"a\"\ncert = \"b\"\nkey = \"c\"\nextra = 1\n").is_err()
    );
}

#[test]
fn peer_name_rejects_missing_or_garbage_certificates() {
    assert!(matches!(peer_name(&[]), Err(TransportError::NoPeerCertificate)));
    let junk = CertificateDer::from(vec![1u8, 2, 3]);
    assert!(matches!(peer_name(&[junk]), Err(TransportError::BadPeerCertificate { .. })));
}

/// A minimal gRPC-shaped service: answers every call with the caller's certificate name in
/// the `x-peer` header (or `-` when there is none).
#[derive(Clone, Debug)]
struct WhoAmI;

impl NamedService for WhoAmI {
    const NAME: &'static str = "fedcredit.test.WhoAmI";
}

impl Service<http::Request<Body>> for WhoAmI {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let name = request_identity(&tonic::Request::from_http(req)).unwrap_or_else(|| "-".into());
        Box::pin(async move {
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .header("grpc-status", "0")
                .header("x-peer", name)
                .body(Body::empty())
                .unwrap_or_default();
            Ok(response)
        })
    }
}

/// Connects with `tls` and makes one call; the peer name the server saw, or the error.
async fn who_am_i(port: u16, tls: ClientTlsConfig) -> Result<String, String> {
    let call = async {
        let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?;
        let mut channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
        std::future::poll_fn(|cx| channel.poll_ready(cx)).await.map_err(|e| e.to_string())?;
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("https://127.0.0.1:{port}/fedcredit.test.WhoAmI/Call"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let response = channel.call(req).await.map_err(|e| format!("call: {e:?}"))?;
        response
            .headers()
            .get("x-peer")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "no x-peer header".to_owned())
    };
    // A guard against hanging, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), call).await.map_err(|_| "timed out".to_owned())?
}

#[tokio::test]
async fn mutual_tls_binds_identity_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ours = init_certs(&dir.path().join("ours"), &names(&["bank", "tax"]), &[]).unwrap();
    let theirs = init_certs(&dir.path().join("theirs"), &names(&["bank"]), &[]).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .tls_config(server_tls(&ours.coordinator).unwrap())
        .unwrap()
        .add_service(WhoAmI)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    let server = tokio::spawn(server);

    let bank = client_tls(&ours.parties["bank"], "localhost").unwrap();
    assert_eq!(who_am_i(port, bank).await, Ok("bank".to_owned()));
    let tax = client_tls(&ours.parties["tax"], "localhost").unwrap();
    assert_eq!(who_am_i(port, tax).await, Ok("tax".to_owned()));
    let operator = client_tls(&ours.operator, "localhost").unwrap();
    assert_eq!(who_am_i(port, operator).await, Ok("operator".to_owned()));

    // No client certificate: the handshake (or the first call) fails.
    let ca = fs::read(&ours.ca_cert).unwrap();
    let anonymous =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    let refused = who_am_i(port, anonymous).await;
    assert!(refused.is_err(), "a client without a certificate got {refused:?}");

    // A certificate named "bank" but from another CA is refused too.
    let mut impostor_files = theirs.parties["bank"].clone();
    impostor_files.ca = ours.ca_cert.clone();
    let impostor = client_tls(&impostor_files, "localhost").unwrap();
    let refused = who_am_i(port, impostor).await;
    assert!(refused.is_err(), "a client from another CA got {refused:?}");

    // And a client that trusts another CA refuses our coordinator.
    let wrong_trust = client_tls(&theirs.parties["bank"], "localhost").unwrap();
    assert!(who_am_i(port, wrong_trust).await.is_err());

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
