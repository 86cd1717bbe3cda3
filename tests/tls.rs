//! TLS and mutual TLS on the MLLP listener and the MLLP and HTTP destinations, with
//! certificates made by the test (rcgen).

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

/// The HTTP destination over mutual TLS into an HTTPS receiver that demands a client
/// certificate: deliveries arrive with their idempotency keys. A destination without the client
/// certificate, and one that does not trust the receiver's CA, retry and never deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_destination_over_mutual_tls() {
    use aorta::store::Store;
    use axum::http::HeaderMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let dir = temp_dir("tls-http-pki");
    let pki = make_pki(&dir);
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = make_pki(&other_dir);
    // (Idempotency-Key, body) of each request received.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let r = received.clone();
    let app = axum::Router::new().fallback(move |h: HeaderMap, body: axum::body::Bytes| {
        let r = r.clone();
        async move {
            let key = h
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            r.lock().unwrap().push((key, body.to_vec()));
            "ok"
        }
    });
    let server = aorta::tls::TlsConfig {
        cert: pki.server_cert.clone().into(),
        key: pki.server_key.clone().into(),
        client_ca: Some(pki.ca.clone().into()),
    }
    .server_config()
    .unwrap();
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(aorta::admin::serve(
        socket,
        Some(server),
        16,
        app,
        std::future::pending(),
    ));
    let dest = |name: &str, tls: &str| {
        format!(
            "[destinations.{name}]\nkind = \"http\"\nurl = \"https://localhost:{port}/in\"\ntimeout_secs = 5\nretry = {{ initial_ms = 50, max_ms = 200 }}\ntls = {{ {tls} }}\n"
        )
    };
    let good = dest(
        "good",
        &format!(
            "ca = \"{}\", cert = \"{}\", key = \"{}\"",
            pki.ca, pki.client_cert, pki.client_key
        ),
    );
    let anonymous = dest("anonymous", &format!("ca = \"{}\"", pki.ca));
    let untrusting = dest(
        "untrusting",
        &format!(
            "ca = \"{}\", cert = \"{}\", key = \"{}\"",
            other.ca, pki.client_cert, pki.client_key
        ),
    );
    // The same, through a forward proxy: a CONNECT tunnel, TLS end to end inside it.
    let (proxy, proxy_log) = common::forward_proxy(None).await;
    let proxied = format!(
        "{}proxy = {{ url = \"http://{proxy}\" }}\n",
        dest(
            "proxied",
            &format!(
                "ca = \"{}\", cert = \"{}\", key = \"{}\"",
                pki.ca, pki.client_cert, pki.client_key
            ),
        )
    );
    // By address, with the name the certificate carries given (`server_name`).
    let by_address = format!(
        "[destinations.by_address]\nkind = \"http\"\nurl = \"https://127.0.0.1:{port}/in\"\ntimeout_secs = 5\nretry = {{ initial_ms = 50, max_ms = 200 }}\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\", server_name = \"localhost\" }}\n",
        pki.ca, pki.client_cert, pki.client_key
    );
    let routes = [(
        "r.toml",
        "from = \"test\"\n[[to]]\ndestination = \"good\"\n[[to]]\ndestination = \"anonymous\"\n[[to]]\ndestination = \"untrusting\"\n[[to]]\ndestination = \"proxied\"\n[[to]]\ndestination = \"by_address\"\n",
    )];
    let (e, _d) = common::engine_with(
        "tls-http",
        "",
        &routes,
        &[&good, &anonymous, &untrusting, &proxied, &by_address],
    )
    .await;
    let mut c = common::connect(e.listener_addr("test").unwrap()).await;
    for i in 0..3 {
        exchange(&mut c, &adt(&format!("HTTPS-{i}"))).await;
    }
    let until = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 9 {
        assert!(Instant::now() < until, "never arrived over mutual TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        let m = e
            .store
            .find_by_control_id(&format!("HTTPS-{i}"))
            .await
            .unwrap();
        let got = received.lock().unwrap().clone();
        assert!(
            got.iter()
                .any(|(key, body)| *key == format!("{}:good", m[0].id) && body == &m[0].raw),
            "HTTPS-{i} not received whole with its key"
        );
        assert!(
            got.iter()
                .any(|(key, body)| *key == format!("{}:proxied", m[0].id) && body == &m[0].raw),
            "HTTPS-{i} not received through the proxy"
        );
        assert!(
            got.iter()
                .any(|(key, _)| *key == format!("{}:by_address", m[0].id)),
            "HTTPS-{i} not received by address"
        );
        // The two destinations that cannot complete the handshake retry their head (strict
        // order holds the rest back); nothing was sent.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let d = e.store.deliveries_for(m[0].id).await.unwrap();
            let failing: Vec<_> = d
                .iter()
                .filter(|x| !["good", "proxied", "by_address"].contains(&x.destination.as_str()))
                .collect();
            assert_eq!(failing.len(), 2);
            for x in &failing {
                assert!(
                    x.state == "queued" || x.state == "leased",
                    "{} retried, not sent: {}",
                    x.destination,
                    x.state
                );
            }
            if i > 0 {
                break;
            }
            // Each failing destination's reason shows in its attempts. Not necessarily in the
            // last one: under TLS 1.3 the client's handshake ends before the server has
            // checked its certificate, so a request can meet the closed connection (a reset)
            // before it reads the server's alert.
            let mut reasons = Vec::new();
            for x in &failing {
                let expected = match x.destination.as_str() {
                    "anonymous" => "CertificateRequired",
                    _ => "invalid peer certificate",
                };
                let details: Vec<String> = e
                    .store
                    .attempts(x.seq)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|a| a.detail)
                    .collect();
                let seen = x.attempts > 1 && details.iter().any(|d| d.contains(expected));
                reasons.push((x.destination.clone(), seen, details));
            }
            if reasons.iter().all(|(_, seen, _)| *seen) {
                break;
            }
            assert!(
                Instant::now() < until,
                "the reasons never showed in the retries: {reasons:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        received.lock().unwrap().len(),
        9,
        "only the good destination delivers: directly, through the proxy, and by address"
    );
    // One tunnel to the receiver, asked for by name and port.
    let log = proxy_log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, format!("CONNECT localhost:{port} HTTP/1.1"));
    e.stop().await.unwrap();
}

/// Over TLS the connection limit counts handshakes too: with one slot held, a second client's
/// handshake does not even start until the first connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_keeps_its_connection_limit() {
    use std::time::Duration;
    let dir = temp_dir("tls-limit-pki");
    let pki = make_pki(&dir);
    let server = aorta::tls::TlsConfig {
        cert: pki.server_cert.clone().into(),
        key: pki.server_key.clone().into(),
        client_ca: None,
    }
    .server_config()
    .unwrap();
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(aorta::admin::serve(
        socket,
        Some(server),
        1,
        app,
        std::future::pending(),
    ));
    let client = aorta::tls::client_config(Path::new(&pki.ca), None).unwrap();
    let first = tls_connect(addr, client.clone()).await.unwrap();
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        tls_connect(addr, client.clone()),
    )
    .await;
    assert!(
        waiting.is_err(),
        "a second TLS connection was served beyond the limit"
    );
    drop(first);
    let mut second = tokio::time::timeout(Duration::from_secs(10), tls_connect(addr, client))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = second.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

/// HTTP/2 over TLS: the destination offers only `h2` in ALPN. A receiver agreeing to it gets
/// every delivery as HTTP/2 on one connection; one that speaks HTTP/1.1 only is refused
/// before any request, with the reason, and the delivery waits to be retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_destination_over_tls_agrees_h2_by_alpn() {
    use aorta::store::Store;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let dir = temp_dir("tls-http2-pki");
    let pki = make_pki(&dir);
    let config = aorta::tls::TlsConfig {
        cert: pki.server_cert.clone().into(),
        key: pki.server_key.clone().into(),
        client_ca: None,
    }
    .server_config()
    .unwrap();
    // The HTTP/2 receiver.
    let mut h2_config = (*config).clone();
    h2_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(h2_config));
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h2_port = socket.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<(String, axum::http::Version)>>> = Arc::default();
    let opened = Arc::new(AtomicUsize::new(0));
    let (g, o) = (got.clone(), opened.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = socket.accept().await else {
                return;
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            o.fetch_add(1, Ordering::SeqCst);
            let g = g.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let g = g.clone();
                    async move {
                        let version = req.version();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        g.lock().unwrap().push((field(&body, "MSH-10"), version));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
            );
        }
    });
    // The HTTP/1.1-only receiver (the engine's own HTTPS server, no ALPN).
    let app = axum::Router::new().fallback(|| async { "ok" });
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h1_port = socket.local_addr().unwrap().port();
    tokio::spawn(aorta::admin::serve(
        socket,
        Some(config),
        16,
        app,
        std::future::pending(),
    ));
    let dest = |name: &str, port: u16| {
        format!(
            "[destinations.{name}]\nkind = \"http\"\nurl = \"https://localhost:{port}/in\"\ntimeout_secs = 5\nhttp2 = true\nconcurrency = 2\norder_key = \"PID-3-1\"\nretry = {{ initial_ms = 50, max_ms = 200 }}\ntls = {{ ca = \"{}\" }}\n",
            pki.ca
        )
    };
    let routes = [(
        "r.toml",
        "from = \"test\"\n[[to]]\ndestination = \"h2\"\n[[to]]\ndestination = \"h1\"\n",
    )];
    let (e, _d) = common::engine_with(
        "tls-http2",
        "",
        &routes,
        &[&dest("h2", h2_port), &dest("h1", h1_port)],
    )
    .await;
    let mut c = common::connect(e.listener_addr("test").unwrap()).await;
    for i in 0..6 {
        exchange(&mut c, &adt(&format!("H2TLS-{i}"))).await;
    }
    let until = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 6 {
        assert!(Instant::now() < until, "never arrived over HTTP/2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = got.lock().unwrap().clone();
    assert!(got.iter().all(|(_, v)| *v == axum::http::Version::HTTP_2));
    let mut ids: Vec<_> = got.iter().map(|(i, _)| i.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..6).map(|i| format!("H2TLS-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    // The HTTP/1.1 receiver: refused at the handshake, the reason recorded.
    let m = e.store.find_by_control_id("H2TLS-0").await.unwrap();
    let d = e.store.deliveries_for(m[0].id).await.unwrap();
    let h1 = d.iter().find(|d| d.destination == "h1").unwrap();
    let attempts = common::attempts_for(&e.store, h1.seq, 1).await;
    let first = attempts.first().expect("an attempt recorded");
    assert_eq!(first.outcome, "retry");
    let why = first.detail.clone().unwrap_or_default();
    assert!(why.contains("does not offer HTTP/2"), "{why}");
    e.stop().await.unwrap();
}
