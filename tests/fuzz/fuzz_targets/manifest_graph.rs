//! THE manifest graph walk: the input describes a DAG of up to 48 manifests (children
//! and blobs per node, with knobs for a wrong size, a bad digest string and deep JSON),
//! built into real documents with real digests; or (first byte odd) is one raw manifest
//! document. A knob makes a blob's digest one of the manifests' (the aliasing of review
//! finding 10). The walk must end without panic; visit each digest at most once as a blob
//! and once as a manifest, and fetch each child at most once; visit bottom-up (everything a
//! manifest names before it, as what it names it); and walk every manifest of an honest
//! graph whose longest path is within MAX_DEPTH.
#![no_main]
use std::collections::{HashMap, HashSet};

use kubernetes_agent::offline::digest::Digest;
use kubernetes_agent::offline::graph::{self, Step};
use kubernetes_agent::offline::registry::Manifest;
use libfuzzer_sys::fuzz_target;

const MT: &str = "application/vnd.oci.image.index.v1+json";

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    if data[0] % 2 == 1 {
        let top = Manifest::new(MT.into(), data[1..].to_vec());
        let copy = top.clone();
        let mut visits = 0;
        let _ = graph::walk(top, &mut |_| Ok(copy.clone()), &mut |_| {
            visits += 1;
            assert!(visits <= graph::MAX_MANIFESTS + graph::MAX_BLOBS);
            Ok(())
        });
        return;
    }
    // Node i (0 = top) lists children among nodes i+1.. and blobs 0..8.
    let nodes: Vec<&[u8]> = data[1..].split(|&b| b == 0xff).take(48).collect();
    let n = nodes.len();
    let mut docs: Vec<Option<Manifest>> = vec![None; n];
    let mut depth = vec![1usize; n];
    let mut reach: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    let mut hostile = false;
    for i in (0..n).rev() {
        let spec = nodes[i];
        let mut children = Vec::new();
        let mut blobs = Vec::new();
        for &b in spec.iter().take(16) {
            match b & 0xc0 {
                0x00 if n > i + 1 => {
                    let j = i + 1 + (b as usize & 0x3f) % (n - i - 1);
                    let m = docs[j].as_ref().unwrap();
                    let size = if b & 0x20 != 0 && spec.len() > 20 { m.bytes.len() + 1 } else { m.bytes.len() };
                    hostile |= size != m.bytes.len();
                    children.push(format!(r#"{{"digest":"{}","size":{size}}}"#, m.digest));
                    depth[i] = depth[i].max(depth[j] + 1);
                    let below = reach[j].clone();
                    reach[i].insert(j);
                    reach[i].extend(below);
                }
                0x40 => blobs.push(format!(r#"{{"digest":"{}","size":{}}}"#, Digest::of(&[b & 7]), 1)),
                0x80 if b & 0x3f == 0x3e && n > i + 1 => {
                    // A layer whose digest is a manifest's: still a blob, and that manifest still a manifest.
                    let m = docs[n - 1].as_ref().unwrap();
                    blobs.push(format!(r#"{{"digest":"{}","size":{}}}"#, m.digest, m.bytes.len()));
                }
                0x80 if b & 0x3f == 0x3f => {
                    hostile = true;
                    children.push(r#"{"digest":"sha256:../../x","size":1}"#.to_string());
                }
                0xc0 if b & 0x3f == 0x3f => {
                    hostile = true;
                    blobs.push(format!("{}1{}", "[".repeat(40), "]".repeat(40)));
                }
                _ => {}
            }
        }
        let body = format!(r#"{{"schemaVersion":2,"manifests":[{}],"layers":[{}]}}"#, children.join(","), blobs.join(","));
        docs[i] = Some(Manifest::new(MT.into(), body.into_bytes()));
    }
    let store: HashMap<Digest, Manifest> = docs.iter().flatten().map(|m| (m.digest.clone(), m.clone())).collect();
    let top = docs[0].clone().unwrap();
    let mut fetched = HashSet::new();
    let mut visited = HashSet::new();
    let mut order: Vec<(Digest, bool)> = Vec::new();
    let result = graph::walk(
        top.clone(),
        &mut |d| {
            assert!(fetched.insert(d.digest.clone()), "{} fetched twice", d.digest);
            store.get(&d.digest).cloned().ok_or_else(|| kubernetes_agent::Error::Decode { document: "fuzz".into(), why: "missing".into() })
        },
        &mut |step| {
            let (d, manifest) = match step {
                Step::Blob(b) => (b.digest.clone(), false),
                Step::Manifest(m, parsed) => {
                    for c in &parsed.children {
                        assert!(visited.contains(&(c.digest.clone(), true)), "{} visited before the manifests it names", m.digest);
                    }
                    for c in &parsed.blobs {
                        assert!(visited.contains(&(c.digest.clone(), false)), "{} visited before the blobs it names", m.digest);
                    }
                    (m.digest.clone(), true)
                }
            };
            assert!(visited.insert((d.clone(), manifest)), "{d} visited twice");
            order.push((d, manifest));
            Ok(())
        },
    );
    if result.is_ok() {
        assert_eq!(order.last().map(|(d, _)| d), Some(&top.digest), "the top manifest comes last");
        let walked = order.iter().filter(|(_, m)| *m).count();
        let distinct: HashSet<&Digest> = reach[0].iter().map(|&j| &docs[j].as_ref().unwrap().digest).collect();
        assert_eq!(walked, distinct.len() + 1, "not every manifest was walked");
    }
    if !hostile && depth[0] <= graph::MAX_DEPTH {
        assert!(result.is_ok(), "an honest graph {} deep was refused", depth[0]);
    }
});
