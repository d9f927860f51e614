//! The Orchestrator message decoder: any bytes decode or fail (depth and size bounded by
//! the decoder itself, so the deepest input is just an error), a decoded message's names
//! can only build request paths with no `..`, `/` or query in them, and neither the
//! decoded message's Debug nor the error ever shows the deployment token.
#![no_main]
use kubernetes_agent::kube::request;
use kubernetes_agent::orchestrator::message::{self, Message};
use libfuzzer_sys::fuzz_target;
use miniserde::json::{self, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let decoded = message::decode(text);
    if let Ok(Message::CheckJobStatus(m)) = &decoded {
        let path = request::get_job(&m.namespace, &m.job_id).path_and_query;
        assert_eq!(path, format!("/apis/batch/v1/namespaces/{}/jobs/{}", m.namespace, m.job_id));
        assert!(path.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'/'), "{path}");
        assert!(!path.contains("//") && !path.contains(".."), "{path}");
    }
    let shown = match &decoded {
        Ok(m) => format!("{m:?}"),
        Err(e) => e.to_string(),
    };
    if let Some((id, _)) = message::salvage_report_target(text) {
        // The id goes into the Orchestrator's results URL and into log lines.
        assert!(message::is_deployment_id(&id), "{id:?}");
    }
    // The token must not show, unless the same text is also in a field that may be shown.
    if let Ok(Value::Object(o)) = kubernetes_agent::json::parse(text, "fuzz input") {
        if let Some(Value::String(token)) = o.get("deployment_token") {
            let shown_elsewhere = o.iter().any(|(k, v)| k != "deployment_token" && json::to_string(v).contains(token.as_str()));
            if token.len() >= 8 && !shown_elsewhere {
                assert!(!shown.contains(token.as_str()), "the deployment token leaked: {shown}");
            }
        }
    }
});
