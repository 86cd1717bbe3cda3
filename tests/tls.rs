//! TLS and mutual TLS on the MLLP listener and the MLLP destination, with certificates made by
//! the test (rcgen).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{adt, engine, exchange, field, make_pki, temp_dir};

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

/// The MLLP destination over mutual TLS into a second engine whose listener demands a client
/// certificate; and a destination that does not trust the receiver's CA retries, never sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_destination_over_mutual_tls() {
    use aorta::store::Store;
    use std::time::{Duration, Instant};
    let dir = temp_dir("tls-dest-pki");
    let pki = make_pki(&dir);
    let (peer, _pd) = engine(
        "tls-dest-peer",
        &format!(
            "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
            pki.server_cert, pki.server_key, pki.ca
        ),
    )
    .await;
    let peer_addr = peer.listener_addr("test").unwrap();
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = make_pki(&other_dir);
    let dest = |name: &str, ca: &str| {
        format!(
            "[destinations.{name}]\nkind = \"mllp\"\naddress = \"{peer_addr}\"\nack_timeout_secs = 5\nretry = {{ initial_ms = 50, max_ms = 200 }}\ntls = {{ ca = \"{ca}\", server_name = \"localhost\", cert = \"{}\", key = \"{}\" }}\n",
            pki.client_cert, pki.client_key
        )
    };
    let good = dest("good", &pki.ca);
    let bad = dest("bad", &other.ca);
    let routes = [(
        "r.toml",
        "from = \"test\"\n[[to]]\ndestination = \"good\"\n[[to]]\ndestination = \"bad\"\n",
    )];
    let (e, _d) = common::engine_with("tls-dest", "", &routes, &[&good, &bad]).await;
    let mut c = common::connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("MTLS-1")).await;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if !peer
            .store
            .find_by_control_id("MTLS-1")
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        assert!(Instant::now() < until, "never arrived over mutual TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = e.store.find_by_control_id("MTLS-1").await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let d = e.store.deliveries_for(m[0].id).await.unwrap();
        let bad = d.iter().find(|x| x.destination == "bad").unwrap();
        if bad.attempts > 0 {
            assert_eq!(bad.state, "queued", "retried, not sent");
            assert!(
                bad.last_error.as_deref().unwrap().contains("TLS"),
                "{:?}",
                bad.last_error
            );
            break;
        }
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        peer.store.find_by_control_id("MTLS-1").await.unwrap().len(),
        1
    );
    e.stop().await.unwrap();
    peer.stop().await.unwrap();
}
