//! The Kubernetes Status parser: any body and code give a Status, classified without panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let code = u16::from_le_bytes([data[0], data[1]]);
    let body = String::from_utf8_lossy(&data[2..]);
    let status = kubernetes_agent::kube::Status::parse(code, &body);
    let _ = status.reason();
    let _ = status.is_transient();
    let _ = status.to_string();
});
