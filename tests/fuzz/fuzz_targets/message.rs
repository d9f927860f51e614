//! The Orchestrator message decoder: any bytes decode or fail, and neither the decoded
//! message's Debug nor the error ever shows the deployment token.
#![no_main]
use libfuzzer_sys::fuzz_target;
use miniserde::json::{self, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let shown = match kubernetes_agent::message::decode(text) {
        Ok(m) => format!("{m:?}"),
        Err(e) => e.to_string(),
    };
    let _ = kubernetes_agent::message::salvage_report_target(text);
    // The token must not show, unless the same text is also in a field that may be shown.
    if let Ok(Value::Object(o)) = json::from_str::<Value>(text) {
        if let Some(Value::String(token)) = o.get("deployment_token") {
            let shown_elsewhere = o.iter().any(|(k, v)| k != "deployment_token" && json::to_string(v).contains(token.as_str()));
            if token.len() >= 8 && !shown_elsewhere {
                assert!(!shown.contains(token.as_str()), "the deployment token leaked: {shown}");
            }
        }
    }
});
