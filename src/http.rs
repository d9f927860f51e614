//! The one place that turns a method, URL, headers and body into a ureq call, for both
//! peers (the Orchestrator and the Kubernetes API). It fixes the hazards of ureq once:
//! status codes come back as values (never as errors, so `Status` bodies survive), every
//! call has a timeout, and every body read is capped. It knows nothing about either API.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Splits a URL's authority (after any `user:password@`), `host`, `host:port`, `[v6]` or
/// `[v6]:port`, into its host (without brackets) and whether it was bracketed; `None` when
/// the brackets are unbalanced or a port is given that is not a number from 1 to 65535.
/// The host may be empty: callers decide what a host must look like.
pub fn split_host_port(authority: &str) -> Option<(&str, bool)> {
    let (host, port, bracketed) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, "")) => (ip, None, true),
            Some((ip, port)) => (ip, Some(port.strip_prefix(':')?), true),
            None => return None,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port), false),
            None => (authority, None, false),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n > 0 && n < 65536));
    port_ok.then_some((host, bracketed))
}

/// Where the trust anchors for a peer come from.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Mozilla's roots as compiled into webpki-roots (the image has no system store).
    WebPki,
    /// Exactly these certificates (DER), e.g. the cluster CA or a private CA bundle.
    Specific(Arc<Vec<Vec<u8>>>),
    /// Mozilla's roots and these certificates too (a private CA added to the public ones).
    WebPkiAnd(Arc<Vec<Vec<u8>>>),
}

/// How to build an agent for one peer.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Trust anchors.
    pub trust: Trust,
    /// The proxy, or `None` for a direct connection.
    pub proxy: Option<ureq::Proxy>,
    /// Upper bound on one whole call: connect, send, receive, read the body.
    pub timeout: Duration,
    /// Redirects followed (0 for the agent's peers; registries send blobs elsewhere).
    pub redirects: u32,
}

/// Builds a ureq agent from `settings`.
pub fn agent(settings: &AgentSettings) -> ureq::Agent {
    let roots = match &settings.trust {
        Trust::WebPki => RootCerts::WebPki,
        Trust::Specific(ders) => RootCerts::new_with_certs(&ders.iter().map(|d| Certificate::from_der(d).to_owned()).collect::<Vec<_>>()),
        Trust::WebPkiAnd(ders) => {
            let mut all: Vec<Certificate<'static>> = webpki_roots_as_certificates().into_iter().map(|d| Certificate::from_der(&d).to_owned()).collect();
            all.extend(ders.iter().map(|d| Certificate::from_der(d).to_owned()));
            RootCerts::new_with_certs(&all)
        }
    };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(settings.timeout))
        .timeout_connect(Some(settings.timeout.min(Duration::from_secs(10))))
        .proxy(settings.proxy.clone())
        .max_redirects(settings.redirects)
        // ureq keeps an input and an output buffer at each layer of a connection (TCP and
        // TLS), so its 128 KiB defaults cost more resident memory than all else. Bodies
        // stream through the buffers; only a response's header block and a request's header
        // block (a service-account token is a few KiB) must fit at once. Response headers
        // are capped at 7 KiB, below the 8 KiB input buffer so that a larger block fails
        // with an error that says so (at exactly the buffer's size ureq only reports a
        // disconnect); nginx, in front of most APIs, passes 4-8 KiB by default.
        .input_buffer_size(8 << 10)
        .output_buffer_size(8 << 10)
        .max_response_header_size(7 << 10)
        .user_agent(concat!("kubernetes-agent/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .new_agent()
}

/// webpki-roots as certificates, so they can sit in one root list with a private CA
/// (ureq takes either the compiled-in roots or a list of certificates, not both).
/// webpki-roots ships trust anchors (subject, key, name constraints), not certificates,
/// so each anchor is wrapped in a minimal unsigned v3 certificate carrying exactly those
/// three fields. rustls reads only those fields from a root (it never checks a root's
/// own signature or validity), and a unit test proves every anchor survives the round trip.
pub fn webpki_roots_as_certificates() -> Vec<Vec<u8>> {
    // ecdsa-with-SHA256; any algorithm will do as nothing verifies this signature.
    const ALGORITHM: [u8; 12] = [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .map(|anchor| {
            let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01];
            tbs.extend_from_slice(&ALGORITHM);
            tbs.extend(der(0x30, &anchor.subject));
            tbs.extend_from_slice(&[0x30, 0x00]);
            tbs.extend(der(0x30, &anchor.subject));
            tbs.extend(der(0x30, &anchor.subject_public_key_info));
            if let Some(nc) = &anchor.name_constraints {
                let mut ext = der(0x06, &[0x55, 0x1d, 0x1e]);
                ext.extend(der(0x04, &der(0x30, nc)));
                tbs.extend(der(0xa3, &der(0x30, &der(0x30, &ext))));
            }
            let mut cert = der(0x30, &tbs);
            cert.extend_from_slice(&ALGORITHM);
            cert.extend_from_slice(&[0x03, 0x01, 0x00]);
            der(0x30, &cert)
        })
        .collect()
}

/// One DER TLV.
fn der(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// Reads a PEM CA bundle file; `Err` says why it is unusable (unreadable, or no
/// certificate in it), for the caller to wrap with the setting that named the file.
pub fn read_certificates(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = crate::file::read_capped(path, crate::file::CA_BUNDLE_CAP, "a CA bundle").map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    pem_certificates(&pem).ok_or_else(|| format!("{} holds no PEM certificate", path.display()))
}

/// Parses every certificate in a PEM bundle; `None` when there is none.
pub fn pem_certificates(pem: &[u8]) -> Option<Vec<Vec<u8>>> {
    let certs: Vec<Vec<u8>> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c.der().to_vec()),
            _ => None,
        })
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// One finished exchange.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After` in seconds, when the peer sent one as a number.
    pub retry_after: Option<u64>,
    /// The body, at most the cap given to [`call`].
    pub body: String,
}

/// Performs one request. `Err` carries a human-readable transport failure (including a
/// body over `cap` bytes); any HTTP status is `Ok`. `timeout`, when given, replaces the
/// agent's own for this call.
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    cap: u64,
    timeout: Option<Duration>,
) -> Result<Reply, String> {
    let result = match (method, body) {
        ("GET", _) => {
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(t) = timeout {
                req = req.config().timeout_global(Some(t)).build();
            }
            req.call()
        }
        ("POST", body) => {
            let mut req = agent.post(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(t) = timeout {
                req = req.config().timeout_global(Some(t)).build();
            }
            match body {
                Some(b) => req.header("Content-Type", "application/json").send(b),
                None => req.send_empty(),
            }
        }
        (other, _) => return Err(format!("unsupported method {other}")),
    };
    let mut response = result.map_err(describe)?;
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let body = response.body_mut().with_config().limit(cap).read_to_string().map_err(|e| match e {
        ureq::Error::BodyExceedsLimit(limit) => format!("reply body larger than {limit} bytes (HTTP {status}); refusing to read it"),
        other => format!("reading the reply body (HTTP {status}): {}", describe(other)),
    })?;
    Ok(Reply { status, retry_after, body })
}

/// ureq errors in our words; URLs carry no secrets, so they may appear.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::Io(io) => match io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls) => format!("TLS failed: {tls} (is the right CA configured?)"),
            None => format!("connection failed: {io}"),
        },
        ureq::Error::HostNotFound => "host not found (DNS)".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Tls(msg) => format!("TLS failed: {msg}"),
        ureq::Error::Rustls(err) => format!("TLS failed: {err} (is the right CA configured?)"),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_webpki_root_survives_the_certificate_round_trip() {
        let certs = webpki_roots_as_certificates();
        let mut store = rustls::RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(certs.into_iter().map(rustls::pki_types::CertificateDer::from));
        assert_eq!((added, ignored), (webpki_roots::TLS_SERVER_ROOTS.len(), 0));
        assert_eq!(store.roots, webpki_roots::TLS_SERVER_ROOTS.to_vec());
        assert!(webpki_roots::TLS_SERVER_ROOTS.iter().any(|a| a.name_constraints.is_some()), "the name-constraint path is exercised");
    }
}
