//! A tiny HTTP/1.1 server for the stand-ins: TLS (rustls, the committed test
//! certificates) or plain, thread per connection, keep-alive, `Content-Length` bodies
//! only. Binds port 0 on loopback, and stops when dropped. Handlers may block (long polls)
//! or ask for the connection to be dropped without a reply (a fault).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The connection it came on, to see whether the client has closed it meanwhile.
    pub peer: Option<Arc<TcpStream>>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// True once the client closed the connection (or sent anything more: a client
    /// waiting for this reply sends nothing, so bytes can only be TLS's close_notify).
    pub fn client_gone(&self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(peer) = &self.peer else { return false };
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local buffer on a socket this server owns.
        let n = unsafe { libc::recv(peer.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock
    }
}

/// What a handler answers.
pub enum Reply {
    /// A full response.
    Full { status: u16, headers: Vec<(String, String)>, body: String },
    /// Close the connection without answering (a dropped connection).
    Drop,
    /// Send the headers and half of the body, then close (a reset mid-body).
    Truncate { status: u16, body: String },
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::Full { status, headers: vec![("Content-Type".into(), "application/json".into())], body: body.into() }
    }

    pub fn empty(status: u16) -> Reply {
        Reply::Full { status, headers: Vec::new(), body: String::new() }
    }

    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Full { status, mut headers, body } => {
                headers.push((name.into(), value.into()));
                Reply::Full { status, headers, body }
            }
            other => other,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// The committed test certificates.
pub fn certs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

pub fn tls_config() -> Arc<rustls::ServerConfig> {
    let dir = certs_dir();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// A running server; stops accepting when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub tls: bool,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(handler: Handler, tls: bool) -> Server {
        Server::start_on("127.0.0.1:0", handler, tls)
    }

    pub fn start_on(bind: &str, handler: Handler, tls: bool) -> Server {
        let listener = TcpListener::bind(bind).expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let tls_config = tls.then(tls_config);
        let (stop2, conns2) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                conns2.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let tls_config = tls_config.clone();
                let stop3 = stop2.clone();
                std::thread::spawn(move || serve_connection(stream, handler, tls_config, stop3));
            }
        });
        Server { addr, tls, stop, connections }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_connection(stream: TcpStream, handler: Handler, tls: Option<Arc<rustls::ServerConfig>>, stop: Arc<AtomicBool>) {
    // Bounds every connection: an idle keep-alive connection is closed after this.
    stream.set_read_timeout(Some(Duration::from_secs(90))).ok();
    stream.set_nodelay(true).ok();
    let peer = stream.try_clone().ok().map(Arc::new);
    match tls {
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else { return };
            let tls_stream = rustls::StreamOwned::new(conn, stream);
            serve_stream(tls_stream, handler, stop, peer);
        }
        None => serve_stream(stream, handler, stop, peer),
    }
}

fn serve_stream<S: Read + Write>(stream: S, handler: Handler, stop: Arc<AtomicBool>, peer: Option<Arc<TcpStream>>) {
    let mut reader = BufReader::new(stream);
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(mut request) = read_request(&mut reader) else { return };
        request.peer = peer.clone();
        let close = request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let reply = handler(&request);
        let stream = reader.get_mut();
        let ok = match reply {
            Reply::Drop => return,
            Reply::Full { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).and_then(|()| stream.flush()).is_ok()
            }
            Reply::Truncate { status, body } => {
                let head = format!("HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", reason(status), body.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body.as_bytes()[..body.len() / 2])).and_then(|()| stream.flush());
                return;
            }
        };
        if !ok || close {
            return;
        }
    }
}

fn read_request<R: BufRead>(reader: &mut R) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len.min(64 << 20)];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (target, BTreeMap::new()),
    };
    Some(Request { method, path, query, headers, body: String::from_utf8_lossy(&body).into_owned(), peer: None })
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
