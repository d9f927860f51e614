//! The weight the agent gives a message (`json::Shape::weight`, what its memory budget
//! counts) bounds the heap that handling the message really takes, measured with a
//! counting allocator over decode → render → the Job's JSON, for the shapes that cost
//! the most per byte: tiny objects, tiny scalars, many keys, deep nesting, long strings.
//! One test in its own binary, so no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kubernetes_agent::json::{Shape, MAX_CONTAINERS, MAX_DEPTH, MAX_VALUES};
use kubernetes_agent::orchestrator::message::{self, Message};
use kubernetes_agent::render::{self, JobPolicy};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap growth while `body` (built inside the window, as the agent receives it) is
/// decoded, rendered and written out, and the weight the agent gives it.
fn measure(make: impl FnOnce() -> String) -> (usize, usize, String) {
    let policy = JobPolicy::default();
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let body = make();
    let weight = Shape::of(&body).weight();
    let outcome = match message::decode(&body) {
        Ok(Message::CreateJob(m)) => {
            drop(body);
            match render::render(&m.job_id, &m.namespace, m.configuration, &policy) {
                Ok(job) => format!("rendered {} bytes", miniserde::json::to_string(&job).len()),
                Err(e) => format!("refused: {e}"),
            }
        }
        Ok(_) => "a check".to_string(),
        Err(e) => format!("not decoded: {e}"),
    };
    (PEAK.load(Ordering::SeqCst) - before, weight, outcome)
}

fn create_job(extra: &str) -> String {
    format!(
        r#"{{"action":"create-job","job_id":"d-1","namespace":"jobs","deployment_token":"deploy-token","configuration":{{"template":{{"spec":{{"containers":[{{"name":"main","image":"x"}}]}}}},"x":{extra}}}}}"#
    )
}

/// A create-job whose runner container carries 1,000 env values (each held as a secret
/// while the message is handled).
fn env_values() -> String {
    let env: Vec<String> = (0..1_000).map(|i| format!(r#"{{"name":"V{i}","value":"secret-value-of-some-length-{i}"}}"#)).collect();
    format!(
        r#"{{"action":"create-job","job_id":"d-1","namespace":"jobs","deployment_token":"deploy-token","configuration":{{"template":{{"spec":{{"containers":[{{"name":"main","image":"x","env":[{}]}}]}}}}}}}}"#,
        env.join(",")
    )
}

/// A named way to build a message body.
type Case = (&'static str, Box<dyn FnOnce() -> String>);

#[test]
fn the_weight_of_a_message_bounds_the_memory_its_handling_takes() {
    let cases: Vec<Case> = vec![
        ("a 60 KB string", Box::new(|| create_job(&format!("\"{}\"", "p".repeat(60 << 10))))),
        ("tiny objects", Box::new(|| create_job(&format!("[{}{{\"a\":0}}]", "{\"a\":0},".repeat(MAX_CONTAINERS - 20))))),
        ("tiny scalars", Box::new(|| create_job(&format!("[{}0]", "0,".repeat(MAX_VALUES - 40))))),
        ("many keys", Box::new(|| create_job(&format!("{{{}\"z\":0}}", (0..(MAX_VALUES / 2 - 40)).map(|i| format!("\"{i}\":0,")).collect::<String>())))),
        ("deep nesting", Box::new(|| create_job(&format!("{}0{}", "[{\"a\":".repeat((MAX_DEPTH - 8) / 2), "}]".repeat((MAX_DEPTH - 8) / 2))))),
        ("env values", Box::new(env_values)),
    ];
    for (what, make) in cases {
        let (peak, weight, outcome) = measure(make);
        assert!(outcome.starts_with("rendered"), "{what}: {outcome}");
        assert!(peak <= weight, "{what}: handling took {peak} bytes, weighed {weight}");
        eprintln!("{what}: peak {peak} bytes, weight {weight} ({:.0} %)", 100.0 * peak as f64 / weight as f64);
    }
}
