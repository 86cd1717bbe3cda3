//! Starting an engine for a test: a temporary directory with a configuration and a journal,
//! listeners on 127.0.0.1:0, and a raw MLLP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aorta::config::Config;
use aorta::daemon::{self, Running};
use aorta::mllp::codec::frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aorta-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts an engine whose single listener `test` has the extra TOML keys in `listener_extra`,
/// with no routes.
pub async fn engine(name: &str, listener_extra: &str) -> (Running, PathBuf) {
    engine_with(name, listener_extra, &[], &[]).await
}

/// Starts an engine with routes (`(file name, text)` under `DIR/routes`, tables under
/// `DIR/routes/tables`) and destinations (names; kind `file`).
pub async fn engine_with(
    name: &str,
    listener_extra: &str,
    routes: &[(&str, &str)],
    destinations: &[&str],
) -> (Running, PathBuf) {
    engine_watching(name, listener_extra, routes, destinations, false).await
}

/// [`engine_with`], with `routes.watch` set as given.
pub async fn engine_watching(
    name: &str,
    listener_extra: &str,
    routes: &[(&str, &str)],
    destinations: &[&str],
    watch: bool,
) -> (Running, PathBuf) {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("routes/tables")).unwrap();
    for (file, text) in routes {
        std::fs::write(dir.join("routes").join(file), text).unwrap();
    }
    let mut toml = format!(
        "[store]\npath = \"{}\"\n[admin]\nbind = \"127.0.0.1:0\"\n[routes]\ndir = \"{}\"\ntables = \"{}\"\nwatch = {watch}\n",
        dir.join("journal.db").display(),
        dir.join("routes").display(),
        dir.join("routes/tables").display(),
    );
    for d in destinations {
        if d.starts_with('[') {
            // A whole destination table, given as TOML.
            toml.push_str(d);
            toml.push('\n');
        } else {
            // A file destination in the test's directory.
            toml.push_str(&format!(
                "[destinations.{d}]\nkind = \"file\"\ndirectory = \"{}\"\n",
                dir.join("out").join(d).display()
            ));
        }
    }
    toml.push_str(&format!(
        "[listeners.test]\nkind = \"mllp\"\nbind = \"127.0.0.1:0\"\n{listener_extra}\n"
    ));
    let file = dir.join("aorta.toml");
    std::fs::write(&file, toml).unwrap();
    let config = Config::load(&file, false).unwrap_or_else(|e| panic!("{e}"));
    (daemon::start(&config).await.unwrap(), dir)
}

/// Sends one framed message and reads one framed answer (payload without framing).
pub async fn exchange<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO, payload: &[u8]) -> Vec<u8> {
    io.write_all(&frame(payload)).await.unwrap();
    read_frame(io).await.expect("an answer")
}

/// Reads one frame; `None` when the connection closes or nothing comes within 5 s.
pub async fn read_frame<IO: AsyncRead + Unpin>(io: &mut IO) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), io.read(&mut byte)).await {
            Ok(Ok(1)) => {}
            _ => return None,
        }
        buf.push(byte[0]);
        if buf.ends_with(&[0x1c, 0x0d]) {
            let start = buf.iter().position(|&b| b == 0x0b)?;
            return Some(buf[start + 1..buf.len() - 2].to_vec());
        }
    }
}

/// Connects to an address.
pub async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// A field of an encoded message.
pub fn field(msg: &[u8], path: &str) -> String {
    let m = aorta::hl7::Message::parse(msg)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(msg)));
    m.get(&aorta::hl7::Path::parse(path).unwrap())
        .unwrap_or_default()
        .into_owned()
}

/// An ADT^A01 with this control id.
pub fn adt(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rPID|1||123^^^H^MR||DOE^JOHN\r").into_bytes()
}

/// A plain HTTP/1.1 GET with extra header lines (each ending in CRLF); the whole response.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut s = connect(addr).await;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Waits until the route loop has routed everything journaled (no `received` left), so counts
/// by status are stable.
pub async fn settle(store: &aorta::store::SqliteStore) {
    use aorta::store::{Status, Store};
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while store.count(Status::Received).await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < until,
            "routing did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The attempts recorded for delivery `seq`, once there are at least `n` (or after 10 s, what
/// there is).
pub async fn attempts_for(
    store: &aorta::store::SqliteStore,
    seq: i64,
    n: usize,
) -> Vec<aorta::store::Attempt> {
    use aorta::store::Store;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = store.attempts(seq).await.unwrap();
        if a.len() >= n || std::time::Instant::now() > until {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Node.js test tools' directory (`tests/fhir`), its npm packages installed when missing
/// (one installer at a time across test processes).
pub fn fhir_tools() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir");
    // A package's directory appears while `npm ci` is still extracting it, so another test
    // process would run the tools half-installed: a marker written after `npm ci` succeeded
    // (or a finished install that `.ci/run` made) says they are ready.
    let marker = dir.join("node_modules/.aorta-installed");
    let ready = || marker.is_file();
    let lock = dir.join(".npm-install-lock");
    let until = std::time::Instant::now() + Duration::from_secs(600);
    while !ready() {
        if std::fs::create_dir(&lock).is_ok() {
            let installed = dir.join("node_modules/.package-lock.json").is_file()
                && dir.join("node_modules/@medplum/fhir-router").is_dir();
            let status = if installed {
                // Installed by `.ci/run` (or an earlier run) before any test started.
                Ok(std::process::ExitStatus::default())
            } else {
                std::process::Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(&dir)
                    .status()
            };
            let ok = status.as_ref().is_ok_and(|s| s.success());
            if ok {
                std::fs::write(&marker, b"").unwrap();
            }
            let _ = std::fs::remove_dir(&lock);
            assert!(
                status
                    .expect("npm (Node.js) runs the FHIR test tools")
                    .success(),
                "npm ci in tests/fhir failed"
            );
        } else {
            assert!(
                std::time::Instant::now() < until,
                "waited too long for npm ci"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    dir
}

/// A real FHIR R4 server on loopback (Medplum's FHIR router, `tests/fhir/server.mjs`); stopped
/// when dropped.
pub struct FhirServer {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl FhirServer {
    /// Starts one, requiring `token` as a bearer token when given.
    pub fn start(token: Option<&str>) -> FhirServer {
        use std::io::BufRead;
        let dir = fhir_tools();
        let mut cmd = std::process::Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .stdout(std::process::Stdio::piped());
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd.spawn().expect("node starts the FHIR server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("FHIR server said {line:?}: {e}"));
        FhirServer {
            child,
            port: v["port"].as_u64().unwrap() as u16,
        }
    }

    /// Its base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// A GET on the server (path after the port), as JSON.
    pub async fn get(&self, path: &str, token: Option<&str>) -> serde_json::Value {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut r = reqwest::Client::new().get(format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let body = r.send().await.unwrap().bytes().await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// Makes the next `count` FHIR requests fail with `status` (and `Retry-After: 0`).
    pub async fn fail(&self, status: u16, count: u32) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/__fail", self.port))
            .body(format!(
                "{{\"status\": {status}, \"count\": {count}, \"retryAfter\": 0}}"
            ))
            .send()
            .await
            .unwrap();
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Test certificates: a CA, a server certificate for `localhost` and a client certificate, as
/// PEM files (paths).
pub struct Pki {
    /// The CA certificate.
    pub ca: String,
    /// The server certificate.
    pub server_cert: String,
    /// Its key.
    pub server_key: String,
    /// The client certificate.
    pub client_cert: String,
    /// Its key.
    pub client_key: String,
}

/// Makes the certificates in `dir`.
pub fn make_pki(dir: &std::path::Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
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

/// What a [`forward_proxy`] saw: the first request line of each connection (`CONNECT host:port
/// HTTP/1.1`, or an absolute-form request) and its `Proxy-Authorization`.
pub type ProxyLog = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A forward HTTP proxy on 127.0.0.1:0: `CONNECT` opens a tunnel; a plain request in absolute
/// form is passed on, with the rest of the connection, to the host it names. With `auth`, a
/// connection without that `Proxy-Authorization` value gets a 407 and is closed.
pub async fn forward_proxy(auth: Option<&str>) -> (SocketAddr, ProxyLog) {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let log: ProxyLog = Default::default();
    let (l, auth) = (log.clone(), auth.map(str::to_string));
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = socket.accept().await else {
                return;
            };
            let (l, auth) = (l.clone(), auth.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read_u8().await {
                        Ok(b) => head.push(b),
                        Err(_) => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                let given = text.lines().find_map(|h| {
                    let (k, v) = h.split_once(':')?;
                    k.eq_ignore_ascii_case("proxy-authorization")
                        .then(|| v.trim().to_string())
                });
                l.lock().unwrap().push((line.clone(), given.clone()));
                if auth.is_some() && given != auth {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let mut parts = line.split(' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let host = if method == "CONNECT" {
                    target.to_string()
                } else {
                    let rest = target.strip_prefix("http://").unwrap_or(target);
                    rest.split('/').next().unwrap_or_default().to_string()
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(&host).await else {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                if method == "CONNECT" {
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                } else if server.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, log)
}
