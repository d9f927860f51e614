//! The operability listener, std only: `/healthz` (the process serves), `/readyz` (an
//! authenticated poll succeeded recently) and `/metrics` (Prometheus text). It serves
//! probes and a scraper, nothing else, and no client can keep it from answering them: the
//! accepting thread never reads, each connection has its own small thread and one total
//! deadline (a client trickling a byte at a time cannot extend it), and at most
//! [`MAX_CONNECTIONS`] are served at once, a new one closing the oldest. Not a web server:
//! one request per connection, no keep-alive, no body.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Whole time one connection may take, from accept to its reply written: a probe sends its
/// request at once and is answered in microseconds.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once. Beyond it a new connection shuts the oldest down, so idle
/// clients cannot fill the listener: to starve a probe they would have to open connections
/// faster than it is answered.
pub const MAX_CONNECTIONS: usize = 16;
/// Stack of a connection's thread; it formats one reply, on the heap. The memory resident
/// is what is touched, a few pages.
const CONNECTION_STACK: usize = 128 << 10;

/// The connections being served, oldest first, each with a handle to shut it down.
#[derive(Default)]
struct Open {
    next_id: u64,
    connections: Vec<(u64, TcpStream)>,
    /// Threads still running, including those of connections just shut down.
    threads: usize,
}

/// What the listener reads from the running agent.
pub trait Probe: Send + Sync + 'static {
    /// The agent is stopping: serve no more.
    fn stopping(&self) -> bool;
    /// `/readyz` answers 200.
    fn ready(&self) -> bool;
    /// The `/metrics` page.
    fn metrics(&self) -> String;
}

/// Binds `addr` and serves on a background thread. Returns the bound address.
pub fn start<P: Probe>(addr: SocketAddr, ctx: Arc<P>) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::io(format!("binding the listener on {addr} (LISTEN_ADDRESS)"), e))?;
    let bound = listener.local_addr().map_err(|e| Error::io("reading the listener address", e))?;
    std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || {
            crate::sys::stack::trim();
            let open = Arc::new(Mutex::new(Open::default()));
            for stream in listener.incoming() {
                if ctx.stopping() {
                    return;
                }
                match stream {
                    Ok(stream) => accept(stream, &open, &ctx),
                    // Out of descriptors, say: wait instead of spinning on the error.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map_err(|e| Error::io("starting the listener thread", e))?;
    Ok(bound)
}

/// Hands `stream` to a thread of its own, shutting down the oldest connection first when
/// [`MAX_CONNECTIONS`] are open. Threads are bounded too: while twice as many still run
/// (shut-down ones finish within microseconds), a new connection is closed at once.
fn accept<P: Probe>(stream: TcpStream, open: &Arc<Mutex<Open>>, ctx: &Arc<P>) {
    let id = {
        let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
        if o.threads >= 2 * MAX_CONNECTIONS {
            return;
        }
        if o.connections.len() >= MAX_CONNECTIONS {
            let (_, oldest) = o.connections.remove(0);
            let _ = oldest.shutdown(Shutdown::Both);
        }
        let Ok(handle) = stream.try_clone() else { return };
        let id = o.next_id;
        o.next_id += 1;
        o.connections.push((id, handle));
        o.threads += 1;
        id
    };
    let (thread_open, ctx) = (open.clone(), ctx.clone());
    let spawned = std::thread::Builder::new().name("listener-conn".into()).stack_size(CONNECTION_STACK).spawn(move || {
        serve(stream, &*ctx);
        let mut o = thread_open.lock().unwrap_or_else(|p| p.into_inner());
        o.connections.retain(|(i, _)| *i != id);
        o.threads -= 1;
    });
    if spawned.is_err() {
        let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
        o.connections.retain(|(i, _)| *i != id);
        o.threads -= 1;
    }
}

/// Reads one request head and answers it, all within [`CONNECTION_DEADLINE`]; a client
/// that has not sent its head by then is closed unanswered.
fn serve(mut stream: TcpStream, ctx: &dyn Probe) {
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let Some(time) = left() else { return };
        if stream.set_read_timeout(Some(time)).is_err() {
            return;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return,
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = route(path.split('?').next().unwrap_or(path), ctx);
    let reply = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    if let Some(time) = left() {
        if stream.set_write_timeout(Some(time)).is_ok() {
            let _ = stream.write_all(reply.as_bytes());
        }
    }
}

fn route(path: &str, ctx: &dyn Probe) -> (&'static str, &'static str, String) {
    match path {
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if ctx.ready() => ("200 OK", "text/plain", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "text/plain", "not ready: no authenticated poll succeeded recently (see the logs)\n".into()),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", ctx.metrics()),
        _ => ("404 Not Found", "text/plain", "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}
