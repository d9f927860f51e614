//! offline-install against a hostile registry stand-in (tests/integration/support/registry.rs) and
//! crafted bundles, each test named after the defect it closes. The tool runs as a child
//! process (bounded in time), so a hang or a stack overflow fails the test instead of
//! taking the test run down. Everything talks to 127.0.0.1 only.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::registry::{Auth, Recorder, Registry};
use support::scratch::TempDir;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha(bytes))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs offline-install with `args`, killed after `within`.
fn tool(dir: &TempDir, args: &[&str], stdin: Option<&str>, within: Duration) -> Run {
    tool_with(dir, Command::new(env!("CARGO_BIN_EXE_offline-install")), args, stdin, within, &[])
}

/// Runs offline-install with at most `kib` KiB of address space (`ulimit -v`).
fn tool_in_memory(dir: &TempDir, kib: u64, args: &[&str], within: Duration) -> Run {
    let mut sh = Command::new("sh");
    sh.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_offline-install")]);
    tool_with(dir, sh, args, None, within, &[])
}

/// Runs `program` (offline-install, or a shell that execs it) with `args` and `env`, killed after `within`.
fn tool_with(dir: &TempDir, mut program: Command, args: &[&str], stdin: Option<&str>, within: Duration, env: &[(&str, &str)]) -> Run {
    let (out, err) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let mut child = program
        .args(args)
        .envs(env.iter().copied())
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("OFFLINE_INSTALL_USERNAME")
        .env_remove("OFFLINE_INSTALL_PASSWORD")
        .env("REGISTRY_AUTH_FILE", dir.join("no-auth-file.json"))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let deadline = Instant::now() + within;
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.code(), false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run { code, stdout: std::fs::read_to_string(out).unwrap_or_default(), stderr: std::fs::read_to_string(err).unwrap_or_default(), timed_out }
}

const QUICK: Duration = Duration::from_secs(60);

// ---- crafted bundles -------------------------------------------------------------

/// One tar entry: the raw name and prefix fields, the data, and the name SHA256SUMS lists it under.
struct Chunk {
    name: Vec<u8>,
    prefix: Vec<u8>,
    data: Vec<u8>,
    listed: Option<String>,
    /// Header bytes to overwrite (offset, bytes) before the checksum: mode, owner, type.
    patch: Vec<(usize, Vec<u8>)>,
}

fn file(name: &str, data: &[u8]) -> Chunk {
    Chunk { name: name.as_bytes().to_vec(), prefix: Vec::new(), data: data.to_vec(), listed: Some(name.to_string()), patch: Vec::new() }
}

fn header(c: &Chunk) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..c.name.len()].copy_from_slice(&c.name);
    // As this tool writes: 0755 for the tool, 0644 for the rest, owner 0:0 without names.
    h[100..107].copy_from_slice(if c.name == b"offline-install" { b"0000755" } else { b"0000644" });
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", c.data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[345..345 + c.prefix.len()].copy_from_slice(&c.prefix);
    for (at, bytes) in &c.patch {
        h[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(&c.data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Writes the chunks, then SHA256SUMS of every listed chunk, then the end marker.
fn write_tar(path: &Path, chunks: &[Chunk]) {
    let mut out = Vec::new();
    let mut sums = String::new();
    for c in chunks {
        out.extend(header(c));
        if let Some(name) = &c.listed {
            sums.push_str(&format!("{}  {name}\n", sha(&c.data)));
        }
    }
    out.extend(header(&file("SHA256SUMS", sums.as_bytes())));
    out.extend_from_slice(&[0u8; 1024]);
    std::fs::write(path, out).unwrap();
}

fn image(layer: &str) -> (String, Vec<String>) {
    let config = format!(r#"{{"layer":"{layer}"}}"#);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        digest(config.as_bytes()),
        config.len(),
        digest(layer.as_bytes()),
        layer.len()
    );
    (manifest, vec![config, layer.to_string()])
}

fn index(children: &[&str]) -> String {
    let list: Vec<String> = children.iter().map(|c| format!(r#"{{"mediaType":"{INDEX}","digest":"{}","size":{}}}"#, digest(c.as_bytes()), c.len())).collect();
    format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{}]}}"#, list.join(","))
}

fn manifest_json(top: &str, media: &str) -> String {
    format!(
        r#"{{"format":"kubernetes-agent-offline-bundle/1","created":"2026-12-01T00:00:00Z","artifacts":[{{"role":"agent-image","source":"127.0.0.1:1/humanitec/kubernetes-agent:0.1.0","digest":"{}","mediaType":"{media}","platforms":[]}}],"module":{{"source":"m","ref":"v1.0.0","commit":"{}","file":"module/module.bundle"}}}}"#,
        digest(top.as_bytes()),
        "a".repeat(40)
    )
}

/// The chunks of a bundle holding `documents` (manifests and blobs) whose top is `top`.
fn bundle_chunks(documents: &[String], top: &str, media: &str, manifest: Option<String>) -> Vec<Chunk> {
    let mut chunks = vec![file("offline-install", b"#!/bin/sh\necho the real tool\n")];
    let mut seen = std::collections::BTreeSet::new();
    for d in documents {
        if seen.insert(sha(d.as_bytes())) {
            chunks.push(file(&format!("oci/blobs/sha256/{}", sha(d.as_bytes())), d.as_bytes()));
        }
    }
    // A git bundle header naming the module's one ref (and no pack: push's clone fails).
    chunks.push(file("module/module.bundle", format!("# v2 git bundle\n{} refs/tags/v1.0.0\n\nno pack", "a".repeat(40)).as_bytes()));
    chunks.push(file("oci/oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#));
    let idx = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media}","digest":"{}","size":{}}}]}}"#, digest(top.as_bytes()), top.len());
    chunks.push(file("oci/index.json", idx.as_bytes()));
    chunks.push(file("manifest.json", manifest.unwrap_or_else(|| manifest_json(top, media)).as_bytes()));
    chunks
}

/// A small valid bundle: one image (config + layer) as the agent image.
fn valid_chunks() -> Vec<Chunk> {
    let (m, blobs) = image("layer-bytes");
    let mut docs = blobs;
    docs.push(m.clone());
    bundle_chunks(&docs, &m, MANIFEST, None)
}

#[test]
fn a_crafted_valid_bundle_passes_verify_so_the_refusals_below_are_about_their_defect() {
    let dir = TempDir::new("offline-valid");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
}

// ---- 2. smuggling past verify ------------------------------------------------------

const EVIL: &[u8] = b"#!/bin/sh\necho EVIL\n";

/// Writes `chunks`, proves that `tar -xf bundle offline-install` extracts the EVIL tool
/// from them, then runs verify, which must refuse the bundle.
fn smuggled_then_verified(dir: &TempDir, path: &Path, chunks: &[Chunk]) -> Run {
    write_tar(path, chunks);
    let x = dir.join("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(path).arg("-C").arg(&x).arg("offline-install").status().unwrap().success());
    assert_eq!(std::fs::read(x.join("offline-install")).unwrap(), EVIL, "the attack is real: GNU tar extracts the evil bytes");
    let run = tool(dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run
}

#[test]
fn a_second_tool_hidden_by_the_ustar_prefix_field_fails_verify() {
    let dir = TempDir::new("offline-prefix");
    let path = dir.join("b.tar");
    let mut chunks = valid_chunks();
    let good = chunks.remove(0);
    // First the evil tool (unlisted), then the good one under prefix "zz": a reader that
    // ignores the prefix hashes the good bytes, while `tar -xf b.tar offline-install` extracts the evil ones.
    chunks.insert(0, Chunk { listed: None, ..file("offline-install", EVIL) });
    chunks.insert(1, Chunk { prefix: b"zz".to_vec(), ..good });
    let run = smuggled_then_verified(&dir, &path, &chunks);
    assert!(run.stderr.contains("zz/offline-install"), "{}", run.stderr);
}

#[test]
fn a_duplicate_entry_name_fails_verify() {
    let dir = TempDir::new("offline-dup");
    let path = dir.join("b.tar");
    let mut chunks = valid_chunks();
    let good = chunks.remove(0);
    chunks.insert(0, Chunk { listed: None, ..file("offline-install", b"evil") });
    chunks.insert(1, good);
    write_tar(&path, &chunks);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("appears twice"), "{}", run.stderr);
}

#[test]
fn a_second_tool_behind_a_nul_inside_its_name_fails_verify() {
    let dir = TempDir::new("offline-nul");
    let path = dir.join("b.tar");
    let mut chunks = valid_chunks();
    // Listed and hashed under "offline-install\0x" by a reader that keeps what follows a
    // NUL, extracted by GNU tar as "offline-install" (after the real one, so it wins).
    chunks.insert(1, Chunk { name: b"offline-install\0x".to_vec(), listed: Some("offline-install\0x".into()), ..file("x", EVIL) });
    let run = smuggled_then_verified(&dir, &path, &chunks);
    assert!(run.stderr.contains("NUL"), "{}", run.stderr);
}

// ---- 3. hangs and crashes ----------------------------------------------------------

/// A chain of `depth` indexes, each listing the next one twice, over one image.
fn shared_dag(depth: usize) -> (Vec<String>, String) {
    let (image_manifest, blobs) = image("shared-layer");
    let mut docs = blobs;
    docs.push(image_manifest.clone());
    let mut below = image_manifest;
    for _ in 0..depth {
        let above = index(&[&below, &below]);
        docs.push(above.clone());
        below = above;
    }
    (docs, below)
}

#[test]
fn verify_of_a_deep_manifest_dag_with_shared_children_ends_at_once() {
    let dir = TempDir::new("offline-dag40");
    let path = dir.join("b.tar");
    let (docs, top) = shared_dag(40);
    write_tar(&path, &bundle_chunks(&docs, &top, INDEX, None));
    let started = Instant::now();
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, Duration::from_secs(30));
    assert!(!run.timed_out, "verify did not finish within 30 s");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("nested deeper than 8"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_index_chain_20000_deep_fails_verify_without_overflowing_the_stack() {
    let dir = TempDir::new("offline-chain");
    let path = dir.join("b.tar");
    let (image_manifest, blobs) = image("chain-layer");
    let mut docs = blobs;
    docs.push(image_manifest.clone());
    let mut below = image_manifest;
    for _ in 0..20_000 {
        let above = index(&[&below]);
        docs.push(above.clone());
        below = above;
    }
    write_tar(&path, &bundle_chunks(&docs, &below, INDEX, None));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert!(!run.timed_out);
    assert_eq!(run.code, Some(1), "crashed? {}", run.all());
    assert!(run.stderr.contains("nested deeper than 8"), "{}", run.stderr);
}

#[test]
fn a_manifest_json_nested_50000_deep_fails_verify_without_overflowing_the_stack() {
    let dir = TempDir::new("offline-deepjson");
    let path = dir.join("b.tar");
    let (m, blobs) = image("layer-bytes");
    let mut docs = blobs;
    docs.push(m.clone());
    let deep = format!(r#"{{"format":"kubernetes-agent-offline-bundle/1","x":{}{}}}"#, "[".repeat(50_000), "]".repeat(50_000));
    write_tar(&path, &bundle_chunks(&docs, &m, MANIFEST, Some(deep)));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "crashed? {}", run.all());
    assert!(run.stderr.contains("manifest.json") && run.stderr.contains("nested deeper"), "{}", run.stderr);
}

#[test]
fn push_of_a_manifest_dag_with_shared_children_sends_each_manifest_once() {
    let dir = TempDir::new("offline-dagpush");
    let path = dir.join("b.tar");
    let (docs, top) = shared_dag(6);
    write_tar(&path, &bundle_chunks(&docs, &top, INDEX, None));
    let target = Registry::start(false);
    let run = tool(
        &dir,
        &[
            "push",
            path.to_str().unwrap(),
            "--registry",
            &format!("{}/mirror", target.host()),
            "--plain-http",
            "--git-url",
            dir.join("none.git").to_str().unwrap(),
        ],
        None,
        QUICK,
    );
    // The module is not a git bundle, so push ends with an error after the registry part.
    assert!(run.stderr.contains("module"), "{}", run.all());
    let seen = target.seen();
    let manifest_puts: Vec<&String> = seen.iter().filter(|s| s.method == "PUT" && s.path.contains("/manifests/")).map(|s| &s.path).collect();
    let unique: std::collections::BTreeSet<&String> = manifest_puts.iter().copied().collect();
    assert_eq!(manifest_puts.len(), unique.len(), "a manifest was sent twice: {manifest_puts:?}");
    assert_eq!(manifest_puts.len(), 7, "{manifest_puts:?}");
    assert!(seen.len() < 40, "{} requests for 7 manifests and 2 blobs", seen.len());
}

// ---- 5. manifest.json records -------------------------------------------------------

#[test]
fn verify_refuses_a_manifest_json_record_without_a_digest() {
    let dir = TempDir::new("offline-nodigest");
    let path = dir.join("b.tar");
    let (m, blobs) = image("layer-bytes");
    let mut docs = blobs;
    docs.push(m.clone());
    let manifest = manifest_json(&m, MANIFEST).replace(&format!(r#""digest":"{}","#, digest(m.as_bytes())), "");
    assert!(!manifest.contains(&digest(m.as_bytes())));
    write_tar(&path, &bundle_chunks(&docs, &m, MANIFEST, Some(manifest)));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("has no digest"), "{}", run.stderr);
}

// ---- 5. passwords --------------------------------------------------------------------

#[test]
fn a_registry_address_with_a_password_is_refused_without_printing_it() {
    let dir = TempDir::new("offline-userinfo");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    let run =
        tool(&dir, &["push", path.to_str().unwrap(), "--registry", "mirror:hunter2@127.0.0.1:1/x", "--plain-http", "--git-url", "/nonexistent"], None, QUICK);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(!run.all().contains("hunter2"), "{}", run.all());
    assert!(run.stderr.contains("user info"), "{}", run.stderr);
}

#[test]
fn a_source_reference_with_a_password_is_refused_without_printing_it() {
    let dir = TempDir::new("offline-srcuserinfo");
    let out = dir.join("b.tar");
    let run = tool(
        &dir,
        &[
            "bundle",
            "--output",
            out.to_str().unwrap(),
            "--agent-image",
            "u:hunter2@127.0.0.1:1/a/b:1",
            "--runner-image",
            "127.0.0.1:1/a/c:1",
            "--chart",
            "127.0.0.1:1/a/d:1",
            "--module-repo",
            "/nonexistent",
            "--module-ref",
            "v1",
        ],
        None,
        QUICK,
    );
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(!run.all().contains("hunter2"), "{}", run.all());
}

// ---- 1. files written anywhere; 5. scratch and partial ------------------------------

fn bundle_args<'a>(out: &'a str, source: &'a str, module: &'a str) -> Vec<String> {
    [
        "bundle",
        "--output",
        out,
        "--source-plain-http",
        "--agent-image",
        &format!("{source}/humanitec/kubernetes-agent:0.1.0"),
        "--runner-image",
        &format!("{source}/humanitec/runner:1.0"),
        "--chart",
        &format!("{source}/charts/agent:0.1.0"),
        "--module-repo",
        module,
        "--module-ref",
        "v1.0.0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_bundle(dir: &TempDir, out: &Path, source: &str, module: &str) -> Run {
    let args = bundle_args(out.to_str().unwrap(), source, module);
    tool(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK)
}

#[test]
fn a_blob_digest_with_a_path_is_refused_before_any_file_is_written() {
    let dir = TempDir::new("offline-pwned");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let out = dir.join("out/bundle.tar");
    let absolute = dir.join("PWNED-absolute");
    for hostile in [format!("sha256:{}", absolute.display()), "sha256:../PWNED-relative".to_string()] {
        let source = Registry::start(false);
        let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{hostile}","size":9}},"layers":[]}}"#);
        source.with(|s| {
            s.manifests.insert("0.1.0".into(), (MANIFEST.into(), manifest));
            s.any_blob = Some("ATTACKER!".into());
        });
        let run = run_bundle(&dir, &out, &source.host(), "/nonexistent");
        assert!(!absolute.exists(), "the registry wrote {}", absolute.display());
        assert!(!dir.join("out/PWNED-relative").exists() && !dir.join("PWNED-relative").exists(), "the registry wrote outside the scratch directory");
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.stderr.contains("not a digest"), "{}", run.stderr);
        assert!(!source.seen().iter().any(|s| s.path.contains("/blobs/")), "a blob was fetched by a hostile digest");
        let left: Vec<_> = std::fs::read_dir(dir.join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// A git repository with a tag v1.0.0, for `--module-repo`.
fn module_repo(dir: &TempDir) -> PathBuf {
    let repo = dir.join("module");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git").arg("-C").arg(&repo).args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"]).args(args).output().unwrap();
        assert!(ok.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&ok.stderr));
    };
    git(&["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("main.tf"), "variable \"cluster\" {}\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "module"]);
    git(&["tag", "v1.0.0"]);
    repo
}

/// A source stand-in serving `top` (and `children` by digest) under every tag the bundle asks for.
fn serve(source: &Registry, top: (&str, &str), children: &[(&str, &str)], blobs: &[String]) {
    source.with(|s| {
        for tag in ["0.1.0", "1.0"] {
            s.manifests.insert(tag.into(), (top.0.into(), top.1.into()));
        }
        for (media, body) in children {
            s.manifests.insert(digest(body.as_bytes()), (media.to_string(), body.to_string()));
        }
        for b in blobs {
            s.blobs.insert(digest(b.as_bytes()), b.clone());
        }
    });
}

#[test]
fn bundle_then_verify_then_push_mirror_every_digest() {
    let dir = TempDir::new("offline-e2e");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    let top = index(&[&child]);
    serve(&source, (INDEX, &top), &[(MANIFEST, &child)], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(!dir.join("bundle.scratch").exists() && !dir.join("bundle.partial").exists());
    let run = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let target = Registry::start(true);
    let git_target = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&git_target).status().unwrap().success());
    let ca = support::server::certs_dir().join("ca.pem");
    let run = tool(
        &dir,
        &[
            "push",
            out.to_str().unwrap(),
            "--registry",
            &format!("{}/mirror", target.host()),
            "--ca-file",
            ca.to_str().unwrap(),
            "--git-url",
            git_target.to_str().unwrap(),
        ],
        None,
        QUICK,
    );
    assert_eq!(run.code, Some(0), "{}", run.all());
    target.with(|s| {
        assert_eq!(s.manifests.get("0.1.0").map(|m| m.1.as_str()), Some(top.as_str()), "the tag points at the same index");
        assert!(s.manifests.contains_key(&digest(child.as_bytes())));
        for b in &blobs {
            assert_eq!(s.blobs.get(&digest(b.as_bytes())), Some(b));
        }
    });
    assert!(run.stdout.contains(&format!("image.repository={}/mirror/kubernetes-agent", target.host())), "{}", run.stdout);
}

#[test]
fn bundle_fails_when_an_index_child_digest_is_a_tag() {
    let dir = TempDir::new("offline-tagchild");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    let top = format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{MANIFEST}","digest":"v1","size":{}}}]}}"#, child.len());
    serve(&source, (INDEX, &top), &[], &blobs);
    source.with(|s| s.manifests.insert("v1".into(), (MANIFEST.into(), child.clone())));
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(!out.exists(), "a bundle that fails verify was kept");
    assert!(run.stderr.contains("not a digest"), "{}", run.stderr);
}

#[test]
fn a_blob_redirect_to_another_host_is_followed_without_credentials() {
    let dir = TempDir::new("offline-redirect");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(true);
    let cdn = Recorder::start(true);
    // The CDN answers every GET with one body: the manifest's only blob is its config.
    let config = "cdn-bytes".to_string();
    *cdn.body.lock().unwrap() = config.clone();
    let child =
        format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{}","size":{}}},"layers":[]}}"#, digest(config.as_bytes()), config.len());
    serve(&source, (MANIFEST, &child), &[], &[]);
    let basic = format!("Basic {}", kubernetes_agent::base64::encode(b"puller:hunter2"));
    source.with(|s| {
        s.auth = Auth::Basic(basic.clone());
        s.blob_redirect = Some(cdn.server.url());
    });
    let ca = support::server::certs_dir().join("ca.pem");
    let mut args = bundle_args(out.to_str().unwrap(), &source.host(), module.to_str().unwrap());
    args.retain(|a| a != "--source-plain-http");
    args.extend(["--source-ca-file".into(), ca.to_str().unwrap().into(), "--source-username".into(), "puller".into(), "--source-password-stdin".into()]);
    let run = tool(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), Some("hunter2\n"), QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(!cdn.seen().is_empty(), "the redirect was not followed");
    assert!(cdn.seen().iter().all(|s| s.authorization.is_none()), "credentials followed the redirect: {:?}", cdn.seen());
}

#[test]
fn bundle_refuses_an_existing_scratch_directory_and_leaves_it_alone() {
    let dir = TempDir::new("offline-scratch");
    let out = dir.join("bundle.tar");
    std::fs::create_dir_all(dir.join("bundle.scratch")).unwrap();
    std::fs::write(dir.join("bundle.scratch/keep"), "someone's file").unwrap();
    let run = run_bundle(&dir, &out, "127.0.0.1:1", "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(std::fs::read_to_string(dir.join("bundle.scratch/keep")).unwrap(), "someone's file");
    assert!(run.stderr.contains("bundle.scratch already exists"), "{}", run.stderr);
    assert!(!dir.join("bundle.partial").exists(), "it created a .partial it then left");
}

#[test]
fn bundle_refuses_an_existing_partial_file_and_leaves_it_alone() {
    let dir = TempDir::new("offline-partial");
    let out = dir.join("bundle.tar");
    std::fs::write(dir.join("bundle.partial"), "another run's bundle").unwrap();
    let run = run_bundle(&dir, &out, "127.0.0.1:1", "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(std::fs::read_to_string(dir.join("bundle.partial")).unwrap(), "another run's bundle");
    assert!(run.stderr.contains("bundle.partial already exists"), "{}", run.stderr);
    assert!(!dir.join("bundle.scratch").exists(), "it left the .scratch it created");
}

// ---- 4. credentials to other origins ---------------------------------------------------

/// `push` to a TLS stand-in as user `mirror` with password `hunter2` (on standard input).
fn push_as_mirror(dir: &TempDir, bundle: &Path, target: &Registry) -> Run {
    let ca = support::server::certs_dir().join("ca.pem");
    let registry = format!("{}/mirror", target.host());
    let args = [
        "push",
        bundle.to_str().unwrap(),
        "--registry",
        &registry,
        "--ca-file",
        ca.to_str().unwrap(),
        "--username",
        "mirror",
        "--password-stdin",
        "--git-url",
        "/nonexistent",
    ];
    tool(dir, &args, Some("hunter2\n"), QUICK)
}

#[test]
fn credentials_are_not_sent_to_a_plain_http_bearer_realm_on_another_host() {
    let dir = TempDir::new("offline-realm");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    let realm = Recorder::start(false);
    let target = Registry::start(true);
    target.with(|s| s.auth = Auth::Bearer { realm: format!("{}/token", realm.server.url()), token: "tok".into() });
    let run = push_as_mirror(&dir, &path, &target);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(realm.seen().iter().all(|s| s.authorization.is_none()), "credentials went to the http realm: {:?}", realm.seen());
    assert!(run.stderr.contains("plain HTTP"), "{}", run.stderr);
    assert!(!run.all().contains("hunter2"));
}

#[test]
fn an_upload_location_on_another_host_gets_no_credentials() {
    let dir = TempDir::new("offline-location");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    let elsewhere = Recorder::start(true);
    let target = Registry::start(true);
    let basic = format!("Basic {}", kubernetes_agent::base64::encode(b"mirror:hunter2"));
    target.with(|s| {
        s.auth = Auth::Basic(basic.clone());
        s.upload_location = Some(format!("{}/upload/elsewhere", elsewhere.server.url()));
    });
    let run = push_as_mirror(&dir, &path, &target);
    let puts: Vec<_> = elsewhere.seen().into_iter().filter(|s| s.method == "PUT").collect();
    assert!(!puts.is_empty(), "the upload never reached the other origin: {}", run.all());
    assert!(puts.iter().all(|s| s.authorization.is_none()), "credentials went to the upload location on another origin: {puts:?}");
    assert!(target.seen().iter().any(|s| s.authorization.as_deref() == Some(basic.as_str())), "the registry itself got the credentials");
}

#[test]
fn bundle_of_a_deep_index_chain_stops_at_the_depth_bound() {
    let dir = TempDir::new("offline-srcchain");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (image_manifest, blobs) = image("chain-layer");
    let mut chain = vec![image_manifest];
    for _ in 0..200 {
        let above = index(&[chain.last().unwrap()]);
        chain.push(above);
    }
    let top = chain.pop().unwrap();
    let children: Vec<(&str, &str)> = chain.iter().map(|m| (INDEX, m.as_str())).collect();
    serve(&source, (INDEX, &top), &children, &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("nested deeper than 8"), "{}", run.stderr);
    assert!(!out.exists() && !dir.join("bundle.partial").exists() && !dir.join("bundle.scratch").exists());
    let fetched = source.seen().iter().filter(|s| s.path.contains("/manifests/sha256:")).count();
    assert!(fetched <= 8, "{fetched} manifests fetched");
}

#[test]
fn source_credentials_from_the_options_are_not_offered_to_a_second_source_registry() {
    let dir = TempDir::new("offline-twosources");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let (first, second) = (Registry::start(false), Registry::start(false));
    let (child, blobs) = image("layer");
    serve(&first, (MANIFEST, &child), &[], &blobs);
    serve(&second, (MANIFEST, &child), &[], &blobs);
    second.with(|s| s.auth = Auth::Basic("Basic never-matches".into()));
    let mut args = bundle_args(out.to_str().unwrap(), &first.host(), module.to_str().unwrap());
    let chart = args.iter().position(|a| a == "--chart").unwrap() + 1;
    args[chart] = format!("{}/charts/agent:0.1.0", second.host());
    args.extend(["--source-username".into(), "puller".into(), "--source-password-stdin".into()]);
    let run = tool(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), Some("hunter2\n"), QUICK);
    assert!(second.seen().iter().all(|s| s.authorization.is_none()), "the first registry's credentials went to the second: {:?}", second.seen());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("auth file"), "{}", run.stderr);
    assert!(!out.exists() && !dir.join("bundle.partial").exists() && !dir.join("bundle.scratch").exists());
}

#[test]
fn bundle_exits_non_zero_and_keeps_nothing_when_its_own_verify_fails() {
    let dir = TempDir::new("offline-ownverify");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    // A ref git takes but verify refuses (over 255 characters): staging succeeds, the
    // final verify does not.
    let long_ref = format!("v/{}", vec!["x".repeat(100); 3].join("/"));
    assert!(Command::new("git").arg("-C").arg(&module).args(["tag", &long_ref]).status().unwrap().success());
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let mut args = bundle_args(out.to_str().unwrap(), &source.host(), module.to_str().unwrap());
    *args.last_mut().unwrap() = long_ref;
    let run = tool(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("fails its own verify"), "{}", run.stderr);
    assert!(!out.exists() && !dir.join("bundle.partial").exists() && !dir.join("bundle.scratch").exists());
}

// ---- review of issue 11 ----------------------------------------------------------------

/// `chunks` with `extra` inserted before the real entries.
fn with_first(extra: Vec<Chunk>) -> Vec<Chunk> {
    let mut chunks = extra;
    chunks.extend(valid_chunks());
    chunks
}

fn pax_chunk(records: &[(&str, &str)]) -> Chunk {
    let mut data = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while format!("{n}{body}").len() != n {
            n += 1;
        }
        data.extend(format!("{n}{body}").bytes());
    }
    Chunk { listed: None, patch: vec![(156, b"x".to_vec())], ..file("PaxHeaders/x", &data) }
}

#[test]
fn names_the_tool_never_writes_end_verify_at_the_first_one_within_little_memory() {
    let dir = TempDir::new("offline-deepnames");
    let path = dir.join("b.tar");
    // 400 pax paths of ~4 KB and 2,044 components each: the old reader stored every
    // ancestor of every name (1.7 GB) before refusing the first one.
    let mut extra = Vec::new();
    for i in 0..400 {
        extra.push(pax_chunk(&[("path", &format!("e{i:05}/{}f", "a/".repeat(2044)))]));
        extra.push(Chunk { listed: None, ..file("x", b"") });
    }
    write_tar(&path, &with_first(extra));
    let started = Instant::now();
    let run = tool_in_memory(&dir, 512 << 10, &["verify", path.to_str().unwrap()], QUICK);
    assert_eq!(run.code, Some(1), "crashed? {}", run.all());
    assert!(run.stderr.contains("over-long name") || run.stderr.contains("not an entry"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn an_entry_after_the_end_of_archive_marker_fails_verify() {
    for (case, marker) in [("one zero block", 512usize), ("the full marker", 1024)] {
        let dir = TempDir::new(&format!("offline-trailing-{marker}"));
        let path = dir.join("b.tar");
        write_tar(&path, &valid_chunks());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1024);
        bytes.extend(vec![0u8; marker]);
        bytes.extend(header(&file("offline-install", EVIL)));
        bytes.extend(vec![0u8; 1024]);
        std::fs::write(&path, &bytes).unwrap();
        // The attack is real: GNU tar -i reads on past zero blocks and extracts the evil tool.
        let x = dir.join("x");
        std::fs::create_dir_all(&x).unwrap();
        let _ = Command::new("tar").arg("-xif").arg(&path).arg("-C").arg(&x).stderr(Stdio::null()).status().unwrap();
        assert_eq!(std::fs::read(x.join("offline-install")).unwrap(), EVIL, "{case}: tar -xif extracts the evil tool");
        let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
        assert_eq!(run.code, Some(1), "{case}: {}", run.all());
        assert!(run.stderr.contains("after its end-of-archive marker"), "{case}: {}", run.stderr);
    }
}

#[test]
fn a_setuid_tool_a_foreign_owner_a_pax_owner_or_a_directory_entry_fails_verify() {
    let tool_with_meta = |patch: Vec<(usize, Vec<u8>)>| {
        let mut chunks = valid_chunks();
        chunks[0].patch = patch;
        chunks
    };
    let cases: Vec<(&str, Vec<Chunk>, &str)> = vec![
        ("setuid, foreign owner", tool_with_meta(vec![(100, b"0006777".to_vec()), (108, b"0001750".to_vec()), (265, b"nobody".to_vec())]), "mode 6777"),
        ("setuid root", tool_with_meta(vec![(100, b"0004755".to_vec())]), "mode 4755"),
        (
            "world-writable blob",
            {
                let mut c = valid_chunks();
                c[1].patch = vec![(100, b"0000777".to_vec())];
                c
            },
            "mode 777",
        ),
        (
            "pax owner",
            {
                let mut c = valid_chunks();
                c.insert(0, pax_chunk(&[("uid", "1000")]));
                c
            },
            "pax header",
        ),
        (
            "directory etc/",
            with_first(vec![Chunk { listed: None, patch: vec![(156, b"5".to_vec()), (100, b"0000777".to_vec())], ..file("etc/", b"") }]),
            "the directory \"etc\"",
        ),
        (
            "directory oci/",
            with_first(vec![Chunk { listed: None, patch: vec![(156, b"5".to_vec()), (100, b"0001777".to_vec())], ..file("oci/", b"") }]),
            "the directory \"oci\"",
        ),
    ];
    for (case, chunks, why) in cases {
        let dir = TempDir::new("offline-meta");
        let path = dir.join("b.tar");
        write_tar(&path, &chunks);
        let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
        assert_eq!(run.code, Some(1), "{case}: {}", run.all());
        assert!(run.stderr.contains(why), "{case}: {}", run.stderr);
    }
}

/// A real git bundle of `refs` of the module repository.
fn git_bundle(dir: &TempDir, module: &Path, refs: &[&str]) -> Vec<u8> {
    let file = dir.join("m.bundle");
    let _ = std::fs::remove_file(&file);
    assert!(Command::new("git").arg("-C").arg(module).args(["bundle", "create", "--quiet"]).arg(&file).args(refs).status().unwrap().success());
    std::fs::read(&file).unwrap()
}

fn head_of(module: &Path, reference: &str) -> String {
    let out = Command::new("git").arg("-C").arg(module).args(["rev-parse", reference]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `valid_chunks` with this git bundle and this module commit.
fn with_module(bundle: &[u8], commit: &str) -> Vec<Chunk> {
    let mut chunks = valid_chunks();
    for c in chunks.iter_mut() {
        if c.name == b"module/module.bundle" {
            c.data = bundle.to_vec();
        }
        if c.name == b"manifest.json" {
            c.data = String::from_utf8(c.data.clone()).unwrap().replace(&"a".repeat(40), commit).into_bytes();
        }
    }
    chunks
}

fn push_plain(dir: &TempDir, bundle: &Path, target: &Registry, git_url: &str) -> Run {
    let registry = format!("{}/mirror", target.host());
    tool(dir, &["push", bundle.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", git_url], None, QUICK)
}

#[test]
fn a_git_bundle_with_other_refs_than_the_module_ref_fails_verify_and_push_pushes_only_that_ref_at_its_commit() {
    let dir = TempDir::new("offline-gitrefs");
    let module = module_repo(&dir);
    assert!(Command::new("git").arg("-C").arg(&module).args(["branch", "evil"]).status().unwrap().success());
    let path = dir.join("b.tar");
    let commit = head_of(&module, "v1.0.0");
    // Three refs, manifest.json names one.
    write_tar(&path, &with_module(&git_bundle(&dir, &module, &["v1.0.0", "evil", "main"]), &commit));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("not exactly the module's"), "{}", run.stderr);
    // The one ref, at another commit than manifest.json says: nothing reaches the Git service.
    let target_git = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&target_git).status().unwrap().success());
    write_tar(&path, &with_module(&git_bundle(&dir, &module, &["v1.0.0"]), &"b".repeat(40)));
    let target = Registry::start(false);
    let run = push_plain(&dir, &path, &target, target_git.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("manifest.json says"), "{}", run.stderr);
    let refs = Command::new("git").arg("-C").arg(&target_git).args(["for-each-ref"]).output().unwrap();
    assert!(refs.stdout.is_empty(), "refs pushed: {}", String::from_utf8_lossy(&refs.stdout));
    // The right bundle: exactly refs/tags/v1.0.0 arrives.
    write_tar(&path, &with_module(&git_bundle(&dir, &module, &["v1.0.0"]), &commit));
    let run = push_plain(&dir, &path, &target, target_git.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let refs = Command::new("git").arg("-C").arg(&target_git).args(["for-each-ref", "--format=%(refname) %(objectname)"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&refs.stdout), format!("refs/tags/v1.0.0 {commit}\n"));
}

#[test]
fn a_bundle_changed_between_verify_and_push_uploads_no_blob_whose_bytes_differ_from_its_digest() {
    let dir = TempDir::new("offline-toctou");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    let target = Registry::start(false);
    let file = path.clone();
    target.with(|s| {
        // At the first request (verify is done), rewrite the layer in place, same size.
        s.on_request = Some(Box::new(move |_| {
            let bytes = std::fs::read(&file).unwrap();
            let at = bytes.windows(11).position(|w| w == b"layer-bytes").unwrap();
            let mut changed = bytes.clone();
            changed[at..at + 5].copy_from_slice(b"LAYER");
            std::fs::write(&file, changed).unwrap();
        }))
    });
    let run = push_plain(&dir, &path, &target, "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("changed after it was verified"), "{}", run.stderr);
    target.with(|s| {
        for (d, body) in &s.blobs {
            assert_eq!(*d, digest(body.as_bytes()), "the registry was sent bytes that are not {d}");
        }
    });
}

#[test]
fn a_git_service_that_never_answers_is_given_up_on() {
    let dir = TempDir::new("offline-gitsilent");
    let out = dir.join("bundle.tar");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let repo = format!("http://{}/x.git", silent.local_addr().unwrap());
    let args = bundle_args(out.to_str().unwrap(), &source.host(), &repo);
    let started = Instant::now();
    let run = tool_with(
        &dir,
        Command::new(env!("CARGO_BIN_EXE_offline-install")),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
        Duration::from_secs(30),
        &[("OFFLINE_INSTALL_GIT_TIMEOUT", "2")],
    );
    assert!(!run.timed_out, "still waiting for git after 30 s");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("did not finish within 2 s"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!out.exists() && !dir.join("bundle.partial").exists() && !dir.join("bundle.scratch").exists());
}

#[test]
fn a_module_url_password_with_a_slash_or_a_space_is_never_printed() {
    for password in ["pa/ss", "pa ss"] {
        let dir = TempDir::new("offline-gitpw");
        let out = dir.join("bundle.tar");
        let source = Registry::start(false);
        let (child, blobs) = image("layer");
        serve(&source, (MANIFEST, &child), &[], &blobs);
        let repo = format!("http://u:{password}@127.0.0.1:1/x.git");
        let run = run_bundle(&dir, &out, &source.host(), &repo);
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.stderr.contains("fetching module http://***@127.0.0.1:1/x.git"), "{}", run.stderr);
        assert!(!run.all().contains(password), "{password}: {}", run.all());
    }
}

#[test]
fn a_declared_blob_size_of_u64_max_fails_cleanly_and_leaves_nothing() {
    let dir = TempDir::new("offline-hugesize");
    let out = dir.join("bundle.tar");
    let source = Registry::start(false);
    let config = "cfg".to_string();
    let manifest =
        format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{}","size":{}}},"layers":[]}}"#, digest(config.as_bytes()), u64::MAX);
    serve(&source, (MANIFEST, &manifest), &[], &[config]);
    let run = run_bundle(&dir, &out, &source.host(), "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("more than the"), "{}", run.stderr);
    assert!(!out.exists() && !dir.join("bundle.partial").exists() && !dir.join("bundle.scratch").exists());
}

#[test]
fn push_keeps_its_scratch_out_of_the_bundle_directory_and_checks_it_before_uploading() {
    let dir = TempDir::new("offline-roscratch");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    // Something already named like the old scratch directory next to the bundle.
    std::fs::write(dir.join("b.push-scratch"), "someone's file").unwrap();
    let target = Registry::start(false);
    let registry = format!("{}/mirror", target.host());
    let args = ["push", path.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", "/nonexistent"];
    let tmp = dir.join("no-such-tmp").display().to_string();
    let run = tool_with(&dir, Command::new(env!("CARGO_BIN_EXE_offline-install")), &args, None, QUICK, &[("TMPDIR", &tmp)]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("scratch directory"), "{}", run.stderr);
    assert!(target.seen().is_empty(), "it uploaded before finding it has no scratch space: {:?}", target.seen());
    assert_eq!(std::fs::read_to_string(dir.join("b.push-scratch")).unwrap(), "someone's file");
    // With a temporary directory it gets as far as the module (not a git bundle here).
    let run = push_plain(&dir, &path, &target, "/nonexistent");
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(!target.seen().is_empty());
}

#[test]
fn a_blob_nothing_references_fails_verify() {
    let dir = TempDir::new("offline-unreferenced");
    let path = dir.join("b.tar");
    let extra = b"nobody points at me";
    write_tar(&path, &with_first(vec![file(&format!("oci/blobs/sha256/{}", sha(extra)), extra)]));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("referenced by no artifact"), "{}", run.stderr);
}

#[test]
fn verify_into_a_closed_pipe_does_not_panic() {
    let dir = TempDir::new("offline-epipe");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    // A pipe whose reader is gone before the tool starts: every write gets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child =
        Command::new(env!("CARGO_BIN_EXE_offline-install")).args(["verify", path.to_str().unwrap()]).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn bundle_prints_the_sha256_of_sha256sums_and_verify_prints_the_same_value() {
    let dir = TempDir::new("offline-anchor");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let anchor = |text: &str| text.lines().find_map(|l| l.strip_prefix("SHA256SUMS sha256: ")).map(String::from);
    let printed = anchor(&run.stdout).expect("bundle prints the anchor");
    let x = dir.join("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&x).arg("SHA256SUMS").status().unwrap().success());
    assert_eq!(printed, sha(&std::fs::read(x.join("SHA256SUMS")).unwrap()));
    let run = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(anchor(&run.stdout), Some(printed), "{}", run.stdout);
}

// ---- signatures and attachments (issue 16) ---------------------------------------

const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A fresh P-256 key pair and its `cosign.pub` (PEM SubjectPublicKeyInfo, lines of 64).
fn cosign_key(dir: &TempDir, name: &str) -> (ring::signature::EcdsaKeyPair, PathBuf) {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let mut der = b"\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x03\x42\x00".to_vec();
    der.extend_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
    let body = kubernetes_agent::base64::encode(&der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(&path, format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))).unwrap();
    (pair, path)
}

/// cosign's signature manifest for `image` signed by `pair`, and its payload and config blobs.
fn cosign_signature(pair: &ring::signature::EcdsaKeyPair, image: &str) -> (String, Vec<String>) {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:1/humanitec/kubernetes-agent"}},"image":{{"docker-manifest-digest":"{image}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let sig = pair.sign(&ring::rand::SystemRandom::new(), payload.as_bytes()).unwrap();
    let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#, digest(payload.as_bytes()));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"{PAYLOAD_TYPE}","digest":"{}","size":{},"annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}]}}"#,
        digest(config.as_bytes()),
        config.len(),
        digest(payload.as_bytes()),
        payload.len(),
        kubernetes_agent::base64::encode(sig.as_ref())
    );
    (manifest, vec![config, payload])
}

/// A crafted bundle of one image with `attached` (kind, subject, manifest) recorded in
/// manifest.json and listed in oci/index.json (unless `unindexed`).
fn attached_bundle(path: &Path, image_docs: (&str, &[String]), attached: &[(&str, &str, &str, &[String])], unindexed: bool) {
    let (top, blobs) = image_docs;
    let mut docs: Vec<String> = blobs.to_vec();
    docs.push(top.to_string());
    let mut records = Vec::new();
    let mut entries = vec![format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(top.as_bytes()), top.len())];
    for (kind, subject, manifest, blobs) in attached {
        docs.extend(blobs.iter().cloned());
        docs.push(manifest.to_string());
        records.push(format!(
            r#"{{"kind":"{kind}","subject":"{subject}","digest":"{}","mediaType":"{MANIFEST}","size":{}}}"#,
            digest(manifest.as_bytes()),
            manifest.len()
        ));
        if !unindexed {
            entries.push(format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(manifest.as_bytes()), manifest.len()));
        }
    }
    let manifest_json = manifest_json(top, MANIFEST).replace(r#""platforms":[]"#, &format!(r#""platforms":[],"attachments":[{}]"#, records.join(",")));
    let mut chunks = bundle_chunks(&docs, top, MANIFEST, Some(manifest_json));
    let idx = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, entries.join(","));
    for c in chunks.iter_mut().filter(|c| c.name == b"oci/index.json") {
        c.data = idx.clone().into_bytes();
    }
    write_tar(path, &chunks);
}

#[test]
fn verify_key_accepts_a_bundle_signed_by_the_key_and_refuses_another_key_naming_the_image() {
    let dir = TempDir::new("offline-signed");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (_, other) = cosign_key(&dir, "other");
    let (top, blobs) = image("layer-bytes");
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(top.as_bytes()));
    let path = dir.join("b.tar");
    attached_bundle(&path, (&top, &blobs), &[("signature", &digest(top.as_bytes()), &sig, &sig_blobs)], false);
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stdout.contains("agent-image: sha256:") && run.stdout.contains("is signed by the key"), "{}", run.stdout);
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", other.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("agent-image") && run.stderr.contains("does not verify with the key"), "{}", run.stderr);
    // push --key refuses before it connects to anything (the registry port is closed).
    let run = tool(&dir, &["push", path.to_str().unwrap(), "--key", other.to_str().unwrap(), "--registry", "127.0.0.1:1", "--git-url", "x"], None, QUICK);
    assert!(run.code == Some(1) && run.stderr.contains("does not verify with the key"), "{}", run.all());
}

#[test]
fn verify_key_refuses_an_image_with_no_signature_naming_it() {
    let dir = TempDir::new("offline-unsigned");
    let (_, key) = cosign_key(&dir, "cosign");
    let path = dir.join("b.tar");
    write_tar(&path, &valid_chunks());
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("agent-image") && run.stderr.contains("carries no signature"), "{}", run.stderr);
    // Without --key the same bundle verifies: the refusal is the signature's.
    assert_eq!(tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK).code, Some(0));
}

#[test]
fn a_signature_of_another_image_moved_onto_this_one_is_refused() {
    // A doctored but self-consistent bundle: a genuine signature of image B recorded as the
    // signature of image A.
    let dir = TempDir::new("offline-moved-sig");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (top, blobs) = image("layer-a");
    let (other, _) = image("layer-b");
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(other.as_bytes()));
    let path = dir.join("b.tar");
    attached_bundle(&path, (&top, &blobs), &[("signature", &digest(top.as_bytes()), &sig, &sig_blobs)], false);
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("signs {}", digest(other.as_bytes()))), "{}", run.stderr);
}

#[test]
fn an_attachment_whose_subject_is_not_in_its_artifact_graph_fails_verify() {
    let dir = TempDir::new("offline-stray-subject");
    let (pair, _) = cosign_key(&dir, "cosign");
    let (top, blobs) = image("layer-bytes");
    let stray = digest(b"an image this bundle does not hold");
    let (sig, sig_blobs) = cosign_signature(&pair, &stray);
    let path = dir.join("b.tar");
    attached_bundle(&path, (&top, &blobs), &[("signature", &stray, &sig, &sig_blobs)], false);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("not in the agent-image graph"), "{}", run.stderr);
}

#[test]
fn an_attachment_whose_manifest_names_another_subject_fails_verify() {
    // manifest.json says it is attached to the image; its own `subject` says otherwise:
    // two fields meaning one thing must agree.
    let dir = TempDir::new("offline-two-subjects");
    let (top, blobs) = image("layer-bytes");
    let elsewhere = digest(b"elsewhere");
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","artifactType":"application/vnd.cyclonedx+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{MANIFEST}","digest":"{elsewhere}","size":9}}}}"#,
        digest(b"{}")
    );
    let path = dir.join("b.tar");
    attached_bundle(&path, (&top, &blobs), &[("sbom", &digest(top.as_bytes()), &referrer, &["{}".to_string()])], false);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("names another subject"), "{}", run.stderr);
}

#[test]
fn an_attachment_missing_from_oci_index_json_fails_verify() {
    let dir = TempDir::new("offline-unindexed");
    let (pair, _) = cosign_key(&dir, "cosign");
    let (top, blobs) = image("layer-bytes");
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(top.as_bytes()));
    let path = dir.join("b.tar");
    attached_bundle(&path, (&top, &blobs), &[("signature", &digest(top.as_bytes()), &sig, &sig_blobs)], true);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("name different artifacts"), "{}", run.stderr);
}

#[test]
fn two_signatures_claiming_one_tag_fail_verify() {
    let dir = TempDir::new("offline-two-sigs");
    let (pair, _) = cosign_key(&dir, "cosign");
    let (top, blobs) = image("layer-bytes");
    let subject = digest(top.as_bytes());
    let (a, a_blobs) = cosign_signature(&pair, &subject);
    let (b, b_blobs) = cosign_signature(&pair, &subject);
    let path = dir.join("b.tar");
    attached_bundle(&path, (&top, &blobs), &[("signature", &subject, &a, &a_blobs), ("signature", &subject, &b, &b_blobs)], false);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("two attachments claim the tag"), "{}", run.stderr);
}

#[test]
fn one_image_under_three_names_carries_and_mirrors_its_signature_in_each_repository() {
    // Found by the real-registry test: the agent and runner images were the same digest in
    // two repositories, and verify refused the bundle because both carried the tag
    // sha256-<hex>.sig (tags are per repository). The stand-in serves one manifest under
    // every repository's name, so all three artifacts here are that one image.
    let dir = TempDir::new("offline-sig-e2e");
    let (pair, key) = cosign_key(&dir, "cosign");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (top, blobs) = image("layer");
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(top.as_bytes()));
    let tag = format!("sha256-{}.sig", sha(top.as_bytes()));
    source.with(|s| {
        s.manifests.insert(tag.clone(), (MANIFEST.into(), sig.clone()));
        for b in &sig_blobs {
            s.blobs.insert(digest(b.as_bytes()), b.clone());
        }
    });
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.matches(r#""kind": "signature""#).count(), 3, "{}", run.stdout);
    let run = tool(&dir, &["verify", out.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&git_target).status().unwrap().success());
    let args = [
        "push",
        out.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--registry",
        &target.host(),
        "--plain-http",
        "--git-url",
        git_target.to_str().unwrap(),
    ];
    let run = tool(&dir, &args, None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    target.with(|s| {
        assert_eq!(s.manifests.get(&tag).map(|m| m.1.as_str()), Some(sig.as_str()), "the signature is mirrored under its tag");
        for b in &sig_blobs {
            assert_eq!(s.blobs.get(&digest(b.as_bytes())), Some(b));
        }
    });
    let pushed: Vec<String> = target.seen().iter().filter(|r| r.method == "PUT" && r.path.ends_with(&tag)).map(|r| r.path.clone()).collect();
    assert_eq!(pushed.len(), 3, "one .sig per repository: {pushed:?}");
}

/// An OCI 1.1 referrer of `subject` (a manifest with `subject` and `artifactType`) and its blob.
fn referrer(subject: &str, size: usize, note: &str) -> (String, String) {
    let blob = format!(r#"{{"note":"{note}"}}"#);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","artifactType":"application/vnd.example.note+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.example.note+json","digest":"{}","size":{}}}],"subject":{{"mediaType":"{MANIFEST}","digest":"{subject}","size":{size}}}}}"#,
        digest(b"{}"),
        digest(blob.as_bytes()),
        blob.len()
    );
    (manifest, blob)
}

/// A source serving one image, and `referrers` of it through the referrers API.
fn source_with_referrers(referrers: &[(String, String)]) -> (Registry, String) {
    let source = Registry::start(false);
    let (top, blobs) = image("layer");
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let list: Vec<String> =
        referrers.iter().map(|(m, _)| format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(m.as_bytes()), m.len())).collect();
    source.with(|s| {
        s.manifests
            .insert(format!("referrers/{}", digest(top.as_bytes())), (INDEX.into(), format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, list.join(","))));
        s.blobs.insert(digest(b"{}"), "{}".into());
        for (m, blob) in referrers {
            s.manifests.insert(digest(m.as_bytes()), (MANIFEST.into(), m.clone()));
            s.blobs.insert(digest(blob.as_bytes()), blob.clone());
        }
    });
    (source, top)
}

#[test]
fn referrers_from_the_api_are_carried_and_listed_in_the_tag_schema_index_of_a_registry_without_it() {
    let dir = TempDir::new("offline-referrers");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let (top, _) = image("layer");
    let (source, _) = source_with_referrers(&[referrer(&digest(top.as_bytes()), top.len(), "scanned")]);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.matches(r#""kind": "referrer""#).count(), 3, "{}", run.stdout);
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&git_target).status().unwrap().success());
    let args = ["push", out.to_str().unwrap(), "--registry", &target.host(), "--plain-http", "--git-url", git_target.to_str().unwrap()];
    let run = tool(&dir, &args, None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let (r, blob) = referrer(&digest(top.as_bytes()), top.len(), "scanned");
    target.with(|s| {
        assert_eq!(s.manifests.get(&digest(r.as_bytes())).map(|m| m.1.as_str()), Some(r.as_str()), "the referrer is pushed by digest");
        assert_eq!(s.blobs.get(&digest(blob.as_bytes())), Some(&blob));
        let index = &s.manifests.get(&format!("sha256-{}", sha(top.as_bytes()))).expect("the referrers tag schema index").1;
        assert!(index.contains(&digest(r.as_bytes())) && index.contains("application/vnd.example.note+json"), "{index}");
    });
}

#[test]
fn a_referrer_naming_another_subject_is_refused_by_bundle() {
    // The referrers answer is not content-addressed: a registry may list anything in it.
    let dir = TempDir::new("offline-referrer-elsewhere");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let (source, _) = source_with_referrers(&[referrer(&digest(b"another image"), 9, "stray")]);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("its manifest names another subject (or none): refused"), "{}", run.stderr);
}

#[test]
fn more_referrers_than_the_bound_are_refused_by_bundle() {
    let dir = TempDir::new("offline-referrer-flood");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let (top, _) = image("layer");
    let many: Vec<(String, String)> = (0..65).map(|i| referrer(&digest(top.as_bytes()), top.len(), &format!("n{i}"))).collect();
    let (source, _) = source_with_referrers(&many);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("more than the 64"), "{}", run.stderr);
    let fetched = source.seen().iter().filter(|r| r.path.contains("/manifests/sha256:")).count();
    assert_eq!(fetched, 0, "no referrer was fetched before the list was refused");
}

#[test]
fn bundle_refuses_key_rather_than_ignoring_it() {
    // --key is checked by verify and push; bundle given one must not look as if it checked.
    let dir = TempDir::new("offline-bundle-key");
    let out = dir.join("b.tar");
    let mut args = bundle_args(out.to_str().unwrap(), "127.0.0.1:1", "/nonexistent");
    args.extend(["--key".to_string(), "cosign.pub".to_string()]);
    let run = tool(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("--key is for verify and push"), "{}", run.stderr);
    assert!(!out.exists());
}

#[test]
fn an_index_listing_one_child_many_times_looks_up_its_attachments_once() {
    // The walk visits a repeated child once; the attachment lookups did once per listing
    // (five requests each: a hostile index of 4 MiB repeats one child 40,000 times).
    let dir = TempDir::new("offline-repeated-child");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    let top = index(&vec![child.as_str(); 50]);
    serve(&source, (INDEX, &top), &[(MANIFEST, &child)], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let sig = format!("/manifests/sha256-{}.sig", sha(child.as_bytes()));
    let lookups = source.seen().iter().filter(|r| r.path.ends_with(&sig)).count();
    assert_eq!(lookups, 3, "once per artifact (agent, runner, chart), not once per listing");
}

/// A layer tar holding `sbom` at the agent image's SBOM path.
fn sbom_layer(sbom: &str) -> String {
    let mut layer = header(&file("opt/runner/kubernetes-agent.cdx.json", sbom.as_bytes()));
    layer.extend_from_slice(&[0u8; 1024]);
    String::from_utf8(layer).unwrap()
}

/// A second platform's manifest with the same config and layers as `first`, and the index
/// of both (children typed as image manifests).
fn second_platform(first: &str) -> (String, String) {
    let second = first.replacen(r#""schemaVersion":2"#, r#""schemaVersion":2,"annotations":{"platform":"arm64"}"#, 1);
    let child = |m: &str| format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(m.as_bytes()), m.len());
    let top = format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{},{}]}}"#, child(first), child(&second));
    (second, top)
}

#[test]
fn platforms_sharing_a_layer_fetch_it_again_once_for_the_sbom() {
    let dir = TempDir::new("offline-shared-layer");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (amd64, blobs) = image("shared-layer");
    let (arm64, top) = second_platform(&amd64);
    serve(&source, (INDEX, &top), &[(MANIFEST, &amd64), (MANIFEST, &arm64)], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let layer = format!("/blobs/{}", digest(b"shared-layer"));
    let fetches = source.seen().iter().filter(|r| r.method == "GET" && r.path.ends_with(&layer)).count();
    assert_eq!(fetches, 2, "once for the bundle, once to look for the SBOM in it");
}

#[test]
fn a_manifest_json_record_with_more_attachments_than_the_bound_fails_verify() {
    let dir = TempDir::new("offline-many-attachments");
    let (m, blobs) = image("layer-bytes");
    let mut docs = blobs;
    docs.push(m.clone());
    let record = format!(r#"{{"kind":"signature","subject":"{0}","digest":"{0}","mediaType":"{MANIFEST}","size":1}}"#, digest(m.as_bytes()));
    let many = vec![record; 1025].join(",");
    let json = manifest_json(&m, MANIFEST).replace(r#""platforms":[]"#, &format!(r#""platforms":[],"attachments":[{many}]"#));
    let path = dir.join("b.tar");
    write_tar(&path, &bundle_chunks(&docs, &m, MANIFEST, Some(json)));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("more than 1024 attachments"), "{}", run.stderr);
}

#[test]
fn the_sbom_is_found_in_a_platform_manifest_its_index_calls_an_index() {
    // What a manifest is, its own bytes say: a descriptor's media type is the index's claim.
    let dir = TempDir::new("offline-sbom-layer");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let sbom = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;
    let (child, blobs) = image(&sbom_layer(sbom));
    let top = index(&[&child]);
    assert!(top.contains(&format!(r#""mediaType":"{INDEX}","digest":"{}""#, digest(child.as_bytes()))));
    serve(&source, (INDEX, &top), &[(MANIFEST, &child)], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.matches(r#""kind": "sbom""#).count(), 1, "{}", run.stdout);
    let listed = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&format!("oci/blobs/sha256/{}", sha(sbom.as_bytes()))), "the SBOM's bytes are a blob");
}

#[test]
fn a_target_with_the_referrers_api_gets_the_sbom_as_a_referrer_not_under_a_tag() {
    let dir = TempDir::new("offline-referrers-target");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let sbom = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;
    let (top, blobs) = image(&sbom_layer(sbom));
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let push = |target: &Registry| {
        let git_target = dir.join(format!("target-{}.git", target.host().replace(':', "-")));
        assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&git_target).status().unwrap().success());
        let args = ["push", out.to_str().unwrap(), "--registry", &target.host(), "--plain-http", "--git-url", git_target.to_str().unwrap()];
        let run = tool(&dir, &args, None, QUICK);
        assert_eq!(run.code, Some(0), "{}", run.all());
    };
    let tag = format!("sha256-{}.sbom", sha(top.as_bytes()));
    // With the referrers API (the stand-in answers it for the image): by digest only.
    let capable = Registry::start(false);
    capable.with(|s| {
        s.manifests
            .insert(format!("referrers/{}", digest(top.as_bytes())), (INDEX.into(), format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[]}}"#)));
    });
    push(&capable);
    capable.with(|s| {
        assert!(!s.manifests.contains_key(&tag), "no tag where the registry indexes referrers itself");
        let referrer =
            s.manifests.values().find(|(_, body)| body.contains(r#""artifactType":"application/vnd.cyclonedx+json""#)).expect("the SBOM artifact by digest");
        assert!(referrer.1.contains(&format!(r#""digest":"{}""#, digest(top.as_bytes()))), "its subject is the image: {}", referrer.1);
        assert_eq!(s.blobs.get(&digest(sbom.as_bytes())).map(String::as_str), Some(sbom));
    });
    // Without it (docker-registry 2.8): under the tag.
    let plain = Registry::start(false);
    push(&plain);
    plain.with(|s| assert!(s.manifests.get(&tag).is_some_and(|m| m.1.contains("application/vnd.cyclonedx+json")), "the .sbom tag fallback"));
}

#[test]
fn platforms_sharing_an_sbom_layer_each_get_the_sbom_attached_and_it_is_stored_once() {
    // The layer is searched once; the second platform's SBOM artifact is made from what the
    // first search found (its digest and size), so one SBOM at most is held in memory.
    let dir = TempDir::new("offline-shared-sbom");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let sbom = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;
    let (amd64, blobs) = image(&sbom_layer(sbom));
    let (arm64, top) = second_platform(&amd64);
    serve(&source, (INDEX, &top), &[(MANIFEST, &amd64), (MANIFEST, &arm64)], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    for platform in [&amd64, &arm64] {
        assert!(run.stdout.contains(&format!("\"subject\": \"{}\"", digest(platform.as_bytes()))), "{}", run.stdout);
    }
    assert_eq!(run.stdout.matches(r#""kind": "sbom""#).count(), 2, "{}", run.stdout);
    let listed = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    let name = format!("oci/blobs/sha256/{}", sha(sbom.as_bytes()));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().filter(|l| *l == name).count(), 1);
}

#[test]
fn referrers_listed_in_the_tag_schema_index_of_a_source_without_the_api_are_carried() {
    let dir = TempDir::new("offline-referrers-tag-schema");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (top, blobs) = image("layer");
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let (r, blob) = referrer(&digest(top.as_bytes()), top.len(), "from-the-tag");
    let listing = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}]}}"#,
        digest(r.as_bytes()),
        r.len()
    );
    source.with(|s| {
        s.manifests.insert(format!("sha256-{}", sha(top.as_bytes())), (INDEX.into(), listing));
        s.manifests.insert(digest(r.as_bytes()), (MANIFEST.into(), r.clone()));
        s.blobs.insert(digest(b"{}"), "{}".into());
        s.blobs.insert(digest(blob.as_bytes()), blob.clone());
    });
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stdout.contains(&format!("\"digest\": \"{}\"", digest(r.as_bytes()))) && run.stdout.contains(r#""kind": "referrer""#), "{}", run.stdout);
}

#[test]
fn an_agent_image_without_the_sbom_is_bundled_with_a_note_that_none_is_carried() {
    let dir = TempDir::new("offline-no-sbom");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (top, blobs) = image("layer");
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stderr.contains("no SBOM: no platform of") && !run.stdout.contains(r#""kind": "sbom""#), "{}", run.all());
}
