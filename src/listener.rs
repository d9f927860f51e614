//! The operability listener, std only: `/healthz` (the process serves), `/readyz` (an
//! authenticated poll succeeded recently) and `/metrics` (Prometheus text). One thread,
//! one connection at a time, short timeouts: it serves probes and a scraper, nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Context;
use crate::error::{Error, Result};

/// Binds `addr` and serves on a background thread. Returns the bound address.
pub fn start(addr: SocketAddr, ctx: Arc<Context>) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::io(format!("binding the listener on {addr} (LISTEN_ADDRESS)"), e))?;
    let bound = listener.local_addr().map_err(|e| Error::io("reading the listener address", e))?;
    std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || {
            crate::stack::trim();
            for stream in listener.incoming().flatten() {
                if ctx.stop.is_stopped() {
                    return;
                }
                serve(stream, &ctx);
                crate::stack::trim();
            }
        })
        .map_err(|e| Error::io("starting the listener thread", e))?;
    Ok(bound)
}

fn serve(mut stream: TcpStream, ctx: &Context) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = route(path.split('?').next().unwrap_or(path), ctx);
    let reply = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = stream.write_all(reply.as_bytes());
}

fn route(path: &str, ctx: &Context) -> (&'static str, &'static str, String) {
    match path {
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if ctx.ready() => ("200 OK", "text/plain", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "text/plain", "not ready: no authenticated poll succeeded recently (see the logs)\n".into()),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", ctx.metrics.render(ctx.kube.requests_sent())),
        _ => ("404 Not Found", "text/plain", "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}
