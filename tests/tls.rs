//! TLS and mutual TLS on the MLLP listener, with certificates made by the test (rcgen).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{adt, engine, exchange, field, temp_dir};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["sending-system".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    Pki {
        ca: write("ca.pem", ca.as_ref().pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener() {
    let dir = temp_dir("tls-pki");
    let pki = make_pki(&dir);
    let (e, _d) = engine(
        "tls",
        &format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}",
            pki.server_cert, pki.server_key
        ),
    )
    .await;
    let addr = e.listener_addr("test").unwrap();
    let client = aorta::tls::client_config(Path::new(&pki.ca), None).unwrap();
    let mut s = tls_connect(addr, client).await.unwrap();
    let ack = exchange(&mut s, &adt("TLS-1")).await;
    assert_eq!(field(&ack, "MSA-1"), "AA");
    assert_eq!(field(&ack, "MSA-2"), "TLS-1");
    // A plain-TCP client gets no ACK from a TLS listener.
    let mut plain = common::connect(addr).await;
    tokio::io::AsyncWriteExt::write_all(&mut plain, &aorta::mllp::codec::frame(&adt("PLAIN")))
        .await
        .unwrap();
    assert!(common::read_frame(&mut plain).await.is_none());
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_listener() {
    let dir = temp_dir("mtls-pki");
    let pki = make_pki(&dir);
    let (e, _d) = engine(
        "mtls",
        &format!(
            "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
            pki.server_cert, pki.server_key, pki.ca
        ),
    )
    .await;
    let addr = e.listener_addr("test").unwrap();
    let with_cert = aorta::tls::client_config(
        Path::new(&pki.ca),
        Some((Path::new(&pki.client_cert), Path::new(&pki.client_key))),
    )
    .unwrap();
    let mut s = tls_connect(addr, with_cert).await.unwrap();
    assert_eq!(
        field(&exchange(&mut s, &adt("MTLS-1")).await, "MSA-1"),
        "AA"
    );

    // Without a client certificate the handshake (or the first read) fails: no ACK, nothing journaled.
    let without = aorta::tls::client_config(Path::new(&pki.ca), None).unwrap();
    if let Ok(mut s) = tls_connect(addr, without).await {
        let _ =
            tokio::io::AsyncWriteExt::write_all(&mut s, &aorta::mllp::codec::frame(&adt("NOCERT")))
                .await;
        assert!(common::read_frame(&mut s).await.is_none());
    }
    use aorta::store::Store;
    assert!(e
        .store
        .find_by_control_id("NOCERT")
        .await
        .unwrap()
        .is_empty());
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_over_tls() {
    let dir = temp_dir("admin-tls");
    let pki = make_pki(&dir);
    let file = dir.join("aorta.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\npath = \"{}\"\n[routes]\ndir = \"{}\"\n[admin]\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            dir.join("j.db").display(),
            dir.join("routes").display(),
            pki.server_cert,
            pki.server_key
        ),
    )
    .unwrap();
    let config = aorta::config::Config::load(&file, false).unwrap();
    let e = aorta::daemon::start(&config).await.unwrap();
    let client = aorta::tls::client_config(Path::new(&pki.ca), None).unwrap();
    let mut s = tls_connect(e.admin.unwrap(), client).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    e.stop().await.unwrap();
}
