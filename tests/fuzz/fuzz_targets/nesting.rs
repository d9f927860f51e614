//! Deep and wide documents from a few bytes: the input is a repeat count, an opening
//! unit, a middle and a closing unit (split by 0x01), expanded to
//! `open × n + middle + close × n` with n up to 600,000, so a 20-byte input nests far
//! deeper than any stack survives. The expansion is fed, as a create-job's JobSpec and as
//! a bare document, to every reader at the boundary: the bounded parser, the message
//! decoder, the flat top-level reader, the renderer and the pretty printer. None may
//! crash, and whatever the parser accepts is within its bounds.
#![no_main]
use kubernetes_agent::json::{self, Shape, MAX_DEPTH};
use kubernetes_agent::orchestrator::message::{self, Message};
use kubernetes_agent::render::{self, JobPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let n = (u32::from_le_bytes([data[0], data[1], data[2], 0]) % 600_001) as usize;
    let Ok(rest) = std::str::from_utf8(&data[3..]) else { return };
    let mut parts = rest.splitn(3, '\u{1}');
    let (open, middle, close) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if (open.len() + close.len()).saturating_mul(n) > 4 << 20 {
        return;
    }
    let doc = format!("{}{middle}{}", open.repeat(n), close.repeat(n));
    if let Ok(v) = json::parse(&doc, "fuzz document") {
        let shape = Shape::of(&doc);
        assert!(shape.depth <= MAX_DEPTH && shape.refusal().is_none(), "{shape:?}");
        let _ = kubernetes_agent::json::pretty(&v);
        let _ = v.clone();
    }
    let body = format!(r#"{{"action":"create-job","job_id":"d-1","namespace":"jobs","deployment_token":"t","configuration":{{"template":{doc}}}}}"#);
    let _ = message::salvage_report_target(&body);
    if let Ok(Message::CreateJob(m)) = message::decode(&body) {
        let _ = render::render(&m.job_id, &m.namespace, m.configuration, &JobPolicy::default());
    }
});
