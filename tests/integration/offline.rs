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
        // The upload state file goes to the current directory: each test's own.
        .current_dir(dir.path())
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
fn a_registry_that_is_plain_http_untrusted_or_not_there_fails_naming_the_option_that_fixes_it() {
    let dir = TempDir::new("offline-unreachable");
    let module = module_repo(&dir);
    let plain = Registry::start(false);
    let tls = Registry::start(true);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    for (i, (source, expected)) in [
        // (This stand-in closes the connection on a TLS hello; docker-registry answers it in
        // plain HTTP, which tests/offline_install_test.py checks.)
        (plain.host(), "if it serves plain HTTP, give --plain-http (bundle: --source-plain-http)"),
        (tls.host(), "the registry's certificate is not trusted or not for this host: give its CA with --ca-file (bundle: --source-ca-file)"),
        (closed, "is the registry up and reachable at that host and port"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.join(format!("b{i}.tar"));
        let mut args = bundle_args(out.to_str().unwrap(), &source, module.to_str().unwrap());
        args.retain(|a| a != "--source-plain-http");
        let run = tool(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK);
        assert_eq!(run.code, Some(1), "{}", run.all());
        let line = run.stderr.lines().find(|l| l.starts_with("offline-install: ")).unwrap_or_else(|| panic!("no error line: {}", run.all()));
        assert!(line.contains(&format!("https://{source}/v2/")) && line.contains(expected), "{line}");
    }
}

#[test]
fn a_module_repository_git_cannot_read_fails_naming_what_to_check() {
    let dir = TempDir::new("offline-git-fails");
    let out = dir.join("bundle.tar");
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    let top = index(&[&child]);
    serve(&source, (INDEX, &top), &[(MANIFEST, &child)], &blobs);
    let missing = dir.join("no-such-module.git");
    let run = run_bundle(&dir, &out, &source.host(), missing.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    let line = run.stderr.lines().find(|l| l.starts_with("offline-install: ")).unwrap_or_else(|| panic!("no error line: {}", run.all()));
    assert!(
        line.contains("git said: ") && line.contains("(check the URL, that the Git service is reachable from here, and git's credentials for it)"),
        "{line}"
    );
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
            // (Every request runs the hook: once nothing is left to change, it changes nothing.)
            if let Some(at) = bytes.windows(11).position(|w| w == b"layer-bytes") {
                let mut changed = bytes.clone();
                changed[at..at + 5].copy_from_slice(b"LAYER");
                std::fs::write(&file, changed).unwrap();
            }
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

/// A crafted `bundle --platform` bundle: the agent index `top` (listing `kept`, each an
/// image with its blobs) narrowed from `original` (carried as a blob, recorded as
/// `narrowedFrom` unless `recorded` is false), with `sig` attached as the signature of
/// `original`.
fn narrowed_bundle(path: &Path, top: &str, kept: &[(String, Vec<String>)], original: &str, sig: &(String, Vec<String>), recorded: bool) {
    let mut docs: Vec<String> = Vec::new();
    for (m, blobs) in kept {
        docs.extend(blobs.iter().cloned());
        docs.push(m.clone());
    }
    docs.extend([top.to_string(), original.to_string()]);
    docs.extend(sig.1.iter().cloned());
    docs.push(sig.0.clone());
    let narrowed = format!(r#","narrowedFrom":{{"mediaType":"{INDEX}","digest":"{}","size":{}}}"#, digest(original.as_bytes()), original.len());
    let record = format!(
        r#""platforms":["linux/amd64"]{},"attachments":[{{"kind":"signature","subject":"{}","digest":"{}","mediaType":"{MANIFEST}","size":{}}}]"#,
        if recorded { narrowed.as_str() } else { "" },
        digest(original.as_bytes()),
        digest(sig.0.as_bytes()),
        sig.0.len()
    );
    let json = manifest_json(top, INDEX).replace(r#""platforms":[]"#, &record);
    let mut chunks = bundle_chunks(&docs, top, INDEX, Some(json));
    let idx = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{INDEX}","digest":"{}","size":{}}},{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}]}}"#,
        digest(top.as_bytes()),
        top.len(),
        digest(sig.0.as_bytes()),
        sig.0.len()
    );
    for c in chunks.iter_mut().filter(|c| c.name == b"oci/index.json") {
        c.data = idx.clone().into_bytes();
    }
    if !recorded {
        // Without the record nothing references the original index: it is left out.
        chunks.retain(|c| c.name != format!("oci/blobs/sha256/{}", sha(original.as_bytes())).into_bytes());
    }
    write_tar(path, &chunks);
}

/// An index of `children` (image manifests), each with a linux platform of the given architecture.
fn platform_index(children: &[(&str, &str)]) -> String {
    let list: Vec<String> = children
        .iter()
        .map(|(m, arch)| {
            format!(
                r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                digest(m.as_bytes()),
                m.len()
            )
        })
        .collect();
    format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{}]}}"#, list.join(","))
}

/// [`platform_index`] as `bundle --platform` writes the index it narrows (miniserde: keys sorted).
fn narrowed_platform_index(children: &[(&str, &str)]) -> String {
    let list: Vec<String> = children
        .iter()
        .map(|(m, arch)| {
            format!(
                r#"{{"digest":"{}","mediaType":"{MANIFEST}","platform":{{"architecture":"{arch}","os":"linux"}},"size":{}}}"#,
                digest(m.as_bytes()),
                m.len()
            )
        })
        .collect();
    format!(r#"{{"manifests":[{}],"mediaType":"{INDEX}","schemaVersion":2}}"#, list.join(","))
}

#[test]
fn a_platform_bundle_passes_verify_key_through_the_signed_index_it_narrowed_and_only_with_its_platforms() {
    // bundle --platform rewrites the index, whose new digest no signature covers: verify
    // --key refused every such bundle. The source's signed index now comes along, and the
    // key checks it; the new index may list only platforms the signed one lists.
    let dir = TempDir::new("offline-narrowed");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (amd64, arm64, riscv) = (image("amd64-layer"), image("arm64-layer"), image("riscv-layer"));
    let original = platform_index(&[(&amd64.0, "amd64"), (&arm64.0, "arm64")]);
    let sig = cosign_signature(&pair, &digest(original.as_bytes()));
    let path = dir.join("narrowed.tar");
    let top = narrowed_platform_index(&[(&amd64.0, "amd64")]);
    narrowed_bundle(&path, &top, std::slice::from_ref(&amd64), &original, &sig, true);
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let line = format!("agent-image: {} keeps platforms of {}, which is signed by the key", digest(top.as_bytes()), digest(original.as_bytes()));
    assert!(run.stdout.contains(&line), "{}", run.stdout);
    let listed = tool(&dir, &["list", path.to_str().unwrap()], None, QUICK);
    assert!(listed.stdout.contains(&format!("(narrowed by --platform from the index {})", digest(original.as_bytes()))), "{}", listed.all());
    // A platform the signed index does not list, smuggled into the new one.
    let path = dir.join("smuggled.tar");
    let top = narrowed_platform_index(&[(&amd64.0, "amd64"), (&riscv.0, "riscv64")]);
    narrowed_bundle(&path, &top, &[amd64.clone(), riscv.clone()], &original, &sig, true);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("lists {}, which that index does not", digest(riscv.0.as_bytes()))), "{}", run.stderr);
    // The right platforms, but something else changed (here an annotation added).
    let path = dir.join("annotated.tar");
    let rebuilt = narrowed_platform_index(&[(&amd64.0, "amd64")]);
    let annotated = rebuilt.replacen(r#""manifests""#, r#""annotations":{"x":"y"},"manifests""#, 1);
    narrowed_bundle(&path, &annotated, std::slice::from_ref(&amd64), &original, &sig, true);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("is not that index with only its platforms kept (that would be {})", digest(rebuilt.as_bytes()))), "{}", run.stderr);
    // Without the record, the signature of another index stands for nothing.
    let path = dir.join("unrecorded.tar");
    let top = narrowed_platform_index(&[(&amd64.0, "amd64")]);
    narrowed_bundle(&path, &top, std::slice::from_ref(&amd64), &original, &sig, false);
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("it is attached to {}, which is not in the agent-image graph", digest(original.as_bytes()))), "{}", run.stderr);
}

#[test]
fn bundle_platform_carries_the_index_it_narrows_and_that_index_signature() {
    let dir = TempDir::new("offline-narrowing");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let (pair, _) = cosign_key(&dir, "cosign");
    let source = Registry::start(false);
    let (amd64, arm64) = (image("amd64-layer"), image("arm64-layer"));
    let original = platform_index(&[(&amd64.0, "amd64"), (&arm64.0, "arm64")]);
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(original.as_bytes()));
    let mut blobs = [amd64.1.clone(), arm64.1.clone(), sig_blobs].concat();
    blobs.dedup();
    serve(&source, (INDEX, &original), &[(MANIFEST, &amd64.0), (MANIFEST, &arm64.0)], &blobs);
    source.with(|s| {
        s.manifests.insert(format!("sha256-{}.sig", sha(original.as_bytes())), (MANIFEST.into(), sig.clone()));
    });
    let run = run_bundle_with(&dir, &out, &source.host(), module.to_str().unwrap(), &["--platform", "linux/amd64"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let narrowed = format!(
        r#""narrowedFrom": {{
        "digest": "{}","#,
        digest(original.as_bytes())
    );
    assert!(run.stdout.contains(&narrowed), "{}", run.stdout);
    let signature = format!(r#""digest": "{}""#, digest(sig.as_bytes()));
    assert!(run.stdout.contains(&signature), "the index's signature is not carried: {}", run.stdout);
    let listed = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&format!("oci/blobs/sha256/{}", sha(original.as_bytes()))), "the index narrowed is a blob");
    assert_eq!(tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK).code, Some(0));
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
fn one_image_under_three_names_carries_and_mirrors_its_signature_in_each_repository_and_key_binds_it_to_its_name() {
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
    let run = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    // The one signature names the agent's repository: under --key it cannot stand for the
    // runner image (found by the attack review: a signed image could take another's role).
    let run = tool(&dir, &["verify", out.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("runner-image") && run.stderr.contains("not as .../runner"), "{}", run.stderr);
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&git_target).status().unwrap().success());
    let args = ["push", out.to_str().unwrap(), "--registry", &target.host(), "--plain-http", "--git-url", git_target.to_str().unwrap()];
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
    // The runner's and the chart's (the agent image carries only its signatures and its SBOM).
    assert_eq!(run.stdout.matches(r#""kind": "referrer""#).count(), 2, "{}", run.stdout);
    assert!(run.stderr.contains("1 attachment(s) of the agent image left behind"), "{}", run.stderr);
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

// ---- issue 15 (15a): parts, streaming, differential bundles, list ---------------------

/// A small stand-in for the tool inside parted bundles (the real one is 40 MB in a debug
/// build): 300 KB of varied bytes, so 64 KiB parts make five of them.
fn small_tool(dir: &TempDir) -> PathBuf {
    let path = dir.join("small-tool");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn run_bundle_with(dir: &TempDir, out: &Path, source: &str, module: &str, extra: &[&str]) -> Run {
    let mut args = bundle_args(out.to_str().unwrap(), source, module);
    // An option of `extra` replaces the default's value (an option is taken once).
    if let Some(i) = args.iter().position(|a| a == "--module-ref").filter(|_| extra.contains(&"--module-ref")) {
        args.drain(i..i + 2);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    tool(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK)
}

/// The files in `dir` whose names start with `prefix`, sorted.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

/// A bundle at `out` of one image (from the stand-in returned) and the module (whose
/// repository is returned), with the small tool and `extra` options.
fn small_bundle(dir: &TempDir, out: &Path, extra: &[&str]) -> (PathBuf, Registry) {
    let module = module_repo(dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let tool_path = small_tool(dir);
    let run = run_bundle_with(dir, out, &source.host(), module.to_str().unwrap(), &[&["--tool", tool_path.to_str().unwrap()], extra].concat());
    assert_eq!(run.code, Some(0), "{}", run.all());
    (module, source)
}

/// A bundle of one image and the module, in 64 KiB parts, under `dir/parts/b.tar.*`.
fn parted_bundle(dir: &TempDir) -> (PathBuf, Registry) {
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    let out = dir.join("parts/b.tar");
    let (_, source) = small_bundle(dir, &out, &["--max-part-size", "64K"]);
    (out, source)
}

#[test]
fn a_bundle_in_parts_is_the_single_file_bundle_cut_and_verifies_lists_and_pushes_from_its_parts() {
    let dir = TempDir::new("offline-parts-e2e");
    let (out, _source) = parted_bundle(&dir);
    let names = names_starting(&dir.join("parts"), "b.tar");
    assert_eq!(names, ["b.tar.001", "b.tar.002", "b.tar.003", "b.tar.004", "b.tar.005", "b.tar.parts"], "{names:?}");
    for n in &names[..4] {
        assert_eq!(std::fs::metadata(dir.join(format!("parts/{n}"))).unwrap().len(), 64 << 10, "{n}");
    }
    // cat and tar alone take the tool out; the joined file is the ordinary bundle.
    let taken = Command::new("sh").args(["-c", "cat \"$0\".0* | tar -xOf - offline-install", out.to_str().unwrap()]).output().unwrap();
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    assert_eq!(taken.stdout, std::fs::read(dir.join("small-tool")).unwrap());
    let joined = dir.join("joined.tar");
    assert!(Command::new("sh").args(["-c", "cat \"$0\".0* > \"$1\"", out.to_str().unwrap(), joined.to_str().unwrap()]).status().unwrap().success());
    let anchor = |text: &str| text.lines().find_map(|l| l.strip_prefix("SHA256SUMS sha256: ")).map(String::from);
    let parted = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(parted.code, Some(0), "{}", parted.all());
    assert!(parted.stdout.contains("5 parts") && parted.stdout.contains("b.tar.parts sha256: "), "{}", parted.stdout);
    let single = tool(&dir, &["verify", joined.to_str().unwrap()], None, QUICK);
    assert_eq!(single.code, Some(0), "{}", single.all());
    assert_eq!(anchor(&parted.stdout), anchor(&single.stdout));
    let index_anchor = sha(&std::fs::read(dir.join("parts/b.tar.parts")).unwrap());
    assert!(parted.stdout.contains(&index_anchor), "verify prints the index's sha256: {}", parted.stdout);
    let listed = tool(&dir, &["list", out.to_str().unwrap()], None, QUICK);
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    assert!(listed.stdout.contains("agent-image") && listed.stdout.contains("blobs carried: 2") && listed.stdout.contains("complete"), "{}", listed.stdout);
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&git_target).status().unwrap().success());
    let run = push_plain(&dir, &out, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let (_, blobs) = image("layer");
    target.with(|s| {
        for b in &blobs {
            assert_eq!(s.blobs.get(&digest(b.as_bytes())), Some(b));
        }
    });
}

/// Copies the parts and the index of `out` into a fresh directory `name` and returns the copy's FILE.
fn copy_parts(dir: &TempDir, out: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for n in names_starting(out.parent().unwrap(), "b.tar") {
        std::fs::copy(out.parent().unwrap().join(&n), to.join(&n)).unwrap();
    }
    to.join("b.tar")
}

#[test]
fn each_kind_of_part_damage_and_each_hostile_index_is_named_before_anything_is_pushed() {
    let dir = TempDir::new("offline-parts-damage");
    let (out, _source) = parted_bundle(&dir);
    let index = std::fs::read_to_string(dir.join("parts/b.tar.parts")).unwrap();
    let lines: Vec<&str> = index.lines().collect();
    type Damage = Box<dyn Fn(&Path)>;
    let part = |file: &Path, n: usize| file.with_file_name(format!("b.tar.{n:03}"));
    let write_index = |text: String| -> Damage { Box::new(move |f: &Path| std::fs::write(f.with_file_name("b.tar.parts"), &text).unwrap()) };
    let cases: Vec<(&str, Damage, String)> = vec![
        ("missing", Box::new(move |f: &Path| std::fs::remove_file(part(f, 3)).unwrap()), "b.tar.003 is missing".into()),
        (
            "truncated",
            Box::new(move |f: &Path| std::fs::OpenOptions::new().write(true).open(part(f, 3)).unwrap().set_len(1000).unwrap()),
            "b.tar.003 is truncated: 1000 bytes, the index says 65536".into(),
        ),
        (
            "longer",
            Box::new(move |f: &Path| {
                use std::io::Write;
                std::fs::OpenOptions::new().append(true).open(part(f, 5)).unwrap().write_all(b"x").unwrap()
            }),
            "b.tar.005 is".into(),
        ),
        (
            "altered",
            Box::new(move |f: &Path| {
                let mut b = std::fs::read(part(f, 2)).unwrap();
                b[100] ^= 1;
                std::fs::write(part(f, 2), b).unwrap()
            }),
            "b.tar.002 has the wrong checksum".into(),
        ),
        (
            "symlink",
            Box::new(move |f: &Path| {
                let real = f.with_file_name("elsewhere");
                std::fs::rename(part(f, 3), &real).unwrap();
                std::os::unix::fs::symlink(&real, part(f, 3)).unwrap();
            }),
            "b.tar.003 is a symlink".into(),
        ),
        (
            "fifo",
            Box::new(move |f: &Path| {
                std::fs::remove_file(part(f, 3)).unwrap();
                assert!(Command::new("mkfifo").arg(part(f, 3)).status().unwrap().success());
            }),
            "b.tar.003 is not a regular file".into(),
        ),
        ("an extra part", Box::new(move |f: &Path| std::fs::write(part(f, 6), b"more").unwrap()), "b.tar.006 exists too".to_string()),
        ("an index that leaves the last part out", write_index(lines[..lines.len() - 1].join("\n") + "\n"), "b.tar.005 exists too".into()),
        (
            "an index with two parts swapped",
            write_index([&lines[..2], &[lines[3], lines[2]], &lines[4..]].concat().join("\n") + "\n"),
            "b.tar.001 has the wrong checksum".into(),
        ),
        ("an index naming a path", write_index(index.replacen(" 65536\n", " 65536 ../b.tar\n", 1)), "is not '<sha256 hex> <size>'".into()),
        (
            "an index whose sizes overflow",
            write_index(format!("{}\n{}\n{} {}\n{} 1\n", lines[0], lines[1], "a".repeat(64), u64::MAX, "b".repeat(64))),
            "past 2^64".into(),
        ),
        ("an index with a huge size", write_index(index.replacen(" 65536\n", " 99999999999999999999999\n", 1)), "not '<sha256 hex> <size>'".into()),
        (
            "an index that is a symlink",
            Box::new(move |f: &Path| {
                let real = f.with_file_name("index-elsewhere");
                std::fs::rename(f.with_file_name("b.tar.parts"), &real).unwrap();
                std::os::unix::fs::symlink(&real, f.with_file_name("b.tar.parts")).unwrap();
            }),
            "is a symlink".into(),
        ),
        (
            "an index that is a FIFO",
            Box::new(move |f: &Path| {
                std::fs::remove_file(f.with_file_name("b.tar.parts")).unwrap();
                assert!(Command::new("mkfifo").arg(f.with_file_name("b.tar.parts")).status().unwrap().success());
            }),
            "is not a regular file".into(),
        ),
        ("an index too large", write_index(format!("{index}{}", format!("{} 1\n", "c".repeat(64)).repeat(3000))), "larger than 131072 bytes".into()),
    ];
    for (i, (case, damage, said)) in cases.iter().enumerate() {
        let file = copy_parts(&dir, &out, &format!("case{i}"));
        damage(&file);
        let target = Registry::start(false);
        let run = push_plain(&dir, &file, &target, "/nonexistent");
        assert!(!run.timed_out, "{case}: hung");
        assert_eq!(run.code, Some(1), "{case}: {}", run.all());
        assert!(run.stderr.contains(said.as_str()), "{case}: wanted {said:?} in {}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{case}: one line: {}", run.stderr);
        assert!(target.seen().is_empty(), "{case}: the registry was asked before the parts were checked: {:?}", target.seen());
        eprintln!("{case}: {}", run.stderr.trim());
        let run = tool(&dir, &["verify", file.to_str().unwrap()], None, QUICK);
        assert!(run.code == Some(1) && run.stderr.contains(said.as_str()), "{case}: verify: {}", run.all());
    }
}

#[test]
fn bundle_in_parts_refuses_an_existing_part_and_leaves_no_part_behind_when_it_fails() {
    let dir = TempDir::new("offline-parts-claim");
    let out = dir.join("b.tar");
    std::fs::write(dir.join("b.tar.001"), "someone's").unwrap();
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let run = run_bundle_with(&dir, &out, &source.host(), "/nonexistent", &["--max-part-size", "64K"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("b.tar.001 already exists"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("b.tar.001")).unwrap(), "someone's");
    std::fs::remove_file(dir.join("b.tar.001")).unwrap();
    // A stale index from a killed run: refused before anything is fetched, not after.
    std::fs::write(dir.join("b.tar.parts.partial"), "stale").unwrap();
    let run = run_bundle_with(&dir, &out, &source.host(), "/nonexistent", &["--max-part-size", "64K"]);
    assert!(run.code == Some(1) && run.stderr.contains("b.tar.parts.partial already exists"), "{}", run.all());
    assert!(!source.seen().iter().any(|s| s.path.contains("/blobs/")), "it fetched before refusing");
    std::fs::remove_file(dir.join("b.tar.parts.partial")).unwrap();
    // The module cannot be cloned: every part written so far (the 40 MB tool's) is removed.
    let run = run_bundle_with(&dir, &out, &source.host(), "/nonexistent", &["--max-part-size", "1M"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("cloning the module"), "{}", run.stderr);
    assert!(names_starting(&dir.0, "b.").is_empty(), "left behind: {:?}", names_starting(&dir.0, "b."));
    for bad in ["1K", "12X", "99999999999999999999G"] {
        let run = run_bundle_with(&dir, &out, &source.host(), "/nonexistent", &["--max-part-size", bad]);
        assert_eq!(run.code, Some(2), "{bad}: {}", run.all());
        assert!(run.stderr.contains("--max-part-size"), "{bad}: {}", run.stderr);
    }
}

#[test]
fn bundle_with_one_job_streams_each_blob_into_the_output_without_a_copy_in_its_scratch_directory() {
    let dir = TempDir::new("offline-stream");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let scratch = dir.join("bundle.scratch");
    let staged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_staged = staged.clone();
    source.with(|s| {
        // While each request is answered, what lies in the scratch directory?
        s.on_request = Some(Box::new(move |_| {
            for e in std::fs::read_dir(&scratch).into_iter().flatten().flatten() {
                seen_staged.lock().unwrap().push(e.file_name().to_string_lossy().into_owned());
            }
        }))
    });
    let run = run_bundle_with(&dir, &out, &source.host(), module.to_str().unwrap(), &["--jobs", "1"]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let staged = staged.lock().unwrap().clone();
    assert!(staged.iter().all(|n| n.len() != 64), "blobs were staged in the scratch directory: {staged:?}");
    assert!(run.stdout.contains("scratch space used: "), "{}", run.stdout);
}

/// An image of two layers (and its config), for the differential tests.
fn two_layers(a: &str, b: &str) -> (String, Vec<String>) {
    let config = format!(r#"{{"layers":["{a}","{b}"]}}"#);
    let layer = |l: &str| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#, digest(l.as_bytes()), l.len());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{},{}]}}"#,
        digest(config.as_bytes()),
        config.len(),
        layer(a),
        layer(b)
    );
    (manifest, vec![config, a.to_string(), b.to_string()])
}

fn git_in(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(repo).args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"]).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The entry names of a tar file.
fn tar_names(path: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn a_differential_bundle_carries_only_the_changed_layer_and_is_pushed_only_onto_its_base() {
    let dir = TempDir::new("offline-since");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (old_top, old_blobs) = two_layers("base-layer", "app-layer-1");
    serve(&source, (MANIFEST, &old_top), &[], &old_blobs);
    let tool_path = small_tool(&dir);
    let small = ["--tool", tool_path.to_str().unwrap(), "--module-ref", "main"];
    let old = dir.join("old.tar");
    let run = run_bundle_with(&dir, &old, &source.host(), module.to_str().unwrap(), &small);
    assert_eq!(run.code, Some(0), "{}", run.all());
    // The next version: one layer changed, one commit more.
    let (new_top, new_blobs) = two_layers("base-layer", "app-layer-2");
    serve(&source, (MANIFEST, &new_top), &[], &new_blobs);
    std::fs::write(module.join("more.tf"), "output \"x\" { value = 1 }\n").unwrap();
    git_in(&module, &["add", "."]);
    git_in(&module, &["commit", "--quiet", "-m", "more"]);
    let old_commit = git_in(&module, &["rev-parse", "main~1"]);
    let new = dir.join("new.tar");
    let run = run_bundle_with(&dir, &new, &source.host(), module.to_str().unwrap(), &[&small[..], &["--since", old.to_str().unwrap()]].concat());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let blobs: Vec<String> = tar_names(&new).into_iter().filter_map(|n| n.strip_prefix("oci/blobs/sha256/").map(String::from)).collect();
    let mut expected = vec![sha(new_top.as_bytes()), sha(new_blobs[0].as_bytes()), sha(b"app-layer-2")];
    expected.sort();
    let mut got = blobs.clone();
    got.sort();
    assert_eq!(got, expected, "the manifest, the new config and the changed layer, and nothing else");
    let verified = tool(&dir, &["verify", new.to_str().unwrap()], None, QUICK);
    assert_eq!(verified.code, Some(0), "{}", verified.all());
    let old_anchor = tool(&dir, &["verify", old.to_str().unwrap()], None, QUICK)
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA256SUMS sha256: ").map(String::from))
        .unwrap();
    assert!(verified.stdout.contains(&format!("differential: it needs the base bundle with SHA256SUMS sha256: {old_anchor}")), "{}", verified.stdout);
    assert!(verified.stdout.contains(&old_commit), "{}", verified.stdout);
    let listed = tool(&dir, &["list", new.to_str().unwrap()], None, QUICK);
    assert!(listed.stdout.contains("in the base: 1") && listed.stdout.contains(&old_anchor), "{}", listed.stdout);
    // Onto an empty target: refused, naming the missing layer and commit, nothing uploaded.
    let empty = Registry::start(false);
    let empty_git = dir.join("empty.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", empty_git.to_str().unwrap()]);
    let run = push_plain(&dir, &new, &empty, empty_git.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("blob {} of the agent-image", digest(b"base-layer"))), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("commit {old_commit} of the module")) && run.stderr.contains("nothing was pushed"), "{}", run.stderr);
    assert!(empty.seen().iter().all(|s| s.method == "HEAD"), "it uploaded onto a target without the base: {:?}", empty.seen());
    assert!(git_in(&empty_git, &["for-each-ref"]).is_empty());
    // Onto the base: the old bundle first, then the differential one.
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", git_target.to_str().unwrap()]);
    let run = push_plain(&dir, &old, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let run = push_plain(&dir, &new, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    target.with(|s| {
        assert_eq!(s.manifests.get("0.1.0").map(|m| m.1.as_str()), Some(new_top.as_str()));
        for b in &new_blobs {
            assert_eq!(s.blobs.get(&digest(b.as_bytes())), Some(b));
        }
    });
    assert_eq!(git_in(&git_target, &["rev-parse", "refs/heads/main"]), git_in(&module, &["rev-parse", "main"]));
}

/// A copy of the bundle `from` with the blob `old` replaced by `new` (the same length) and
/// each text entry's mention of `old`'s digest, and the digest of every manifest that names
/// it, changed to match; SHA256SUMS written anew: what someone who can write a bundle does.
fn doctored_copy(from: &Path, to: &Path, old: &[u8], new: &[u8]) {
    assert_eq!(old.len(), new.len(), "a blob of the same length keeps every size");
    let bytes = std::fs::read(from).unwrap();
    let mut reader = std::fs::File::open(from).unwrap();
    let entries = kubernetes_agent::offline::tar::index_of(&mut reader, bytes.len() as u64, &|_, _| true).unwrap();
    let mut data: Vec<(String, Vec<u8>)> =
        entries.iter().filter(|e| e.name != "SHA256SUMS").map(|e| (e.name.clone(), bytes[e.offset as usize..(e.offset + e.size) as usize].to_vec())).collect();
    // Each swap renames a blob; the manifests naming it change, so their digests too.
    let mut swaps = vec![(old.to_vec(), new.to_vec())];
    while let Some((was, now)) = swaps.pop() {
        let (was_hex, now_hex) = (sha(&was), sha(&now));
        for (name, body) in data.iter_mut() {
            if *name == format!("oci/blobs/sha256/{was_hex}") {
                (*name, *body) = (format!("oci/blobs/sha256/{now_hex}"), now.clone());
            } else if let Ok(text) = std::str::from_utf8(body) {
                if text.contains(&was_hex) {
                    let changed = text.replace(&was_hex, &now_hex).into_bytes();
                    if name.starts_with("oci/blobs/") {
                        swaps.push((body.clone(), changed.clone()));
                    }
                    *body = changed;
                }
            }
        }
    }
    let chunks: Vec<Chunk> = data.iter().map(|(name, body)| file(name, body)).collect();
    write_tar(to, &chunks);
}

#[test]
fn a_differential_bundle_cannot_attach_a_made_up_sbom_to_an_agent_image_whose_layers_are_in_its_base() {
    // verify finds the SBOM again in the agent layers the bundle carries; a differential
    // bundle leaves them to its base, so push reads them from the target instead.
    let dir = TempDir::new("offline-since-sbom");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let genuine = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"name":"ring"}]}"#;
    let forged = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"name":"xxxx"}]}"#;
    let (top, blobs) = image(&sbom_layer(genuine));
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let tool_path = small_tool(&dir);
    let small = ["--tool", tool_path.to_str().unwrap(), "--module-ref", "main"];
    let old = dir.join("old.tar");
    let run = run_bundle_with(&dir, &old, &source.host(), module.to_str().unwrap(), &small);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let new = dir.join("new.tar");
    let run = run_bundle_with(&dir, &new, &source.host(), module.to_str().unwrap(), &[&small[..], &["--since", old.to_str().unwrap()]].concat());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(!tar_names(&new).contains(&format!("oci/blobs/sha256/{}", sha(sbom_layer(genuine).as_bytes()))), "the layer is the base's");
    let verified = tool(&dir, &["verify", new.to_str().unwrap()], None, QUICK);
    assert_eq!(verified.code, Some(0), "{}", verified.all());
    assert!(verified.stdout.contains("is checked by push, in the layers the target holds"), "{}", verified.stdout);
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", git_target.to_str().unwrap()]);
    assert_eq!(push_plain(&dir, &old, &target, git_target.to_str().unwrap()).code, Some(0));
    let forged_bundle = dir.join("forged.tar");
    doctored_copy(&new, &forged_bundle, genuine.as_bytes(), forged.as_bytes());
    assert_eq!(tool(&dir, &["verify", forged_bundle.to_str().unwrap()], None, QUICK).code, Some(0), "verify cannot see the layers: push must");
    let before = target.seen().len();
    let run = push_plain(&dir, &forged_bundle, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    let refusal = format!("it is not the image's own /opt/runner/kubernetes-agent.cdx.json (sha256 {}, in its layer)", sha(genuine.as_bytes()));
    assert!(run.stderr.contains(&refusal), "{}", run.stderr);
    let written: Vec<_> = target.seen()[before..].iter().filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD")).cloned().collect();
    assert!(written.is_empty(), "the forged bundle wrote to the target: {written:?}");
    let run = push_plain(&dir, &new, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stderr.contains(&format!("is /opt/runner/kubernetes-agent.cdx.json from its own layer (sha256 {})", sha(genuine.as_bytes()))),
        "{}",
        run.stderr
    );
}

#[test]
fn a_differential_manifest_that_lies_about_its_base_fails_verify() {
    let dir = TempDir::new("offline-since-lies");
    let (m, blobs) = image("layer-bytes");
    let layer = digest(blobs[1].as_bytes());
    let with_base = |base: &str, carry_layer: bool| {
        let docs: Vec<String> = if carry_layer { vec![blobs[0].clone(), blobs[1].clone(), m.clone()] } else { vec![blobs[0].clone(), m.clone()] };
        let manifest = manifest_json(&m, MANIFEST).replacen("\"created\"", &format!("\"base\":{base},\"created\""), 1);
        bundle_chunks(&docs, &m, MANIFEST, Some(manifest))
    };
    let anchor = "c".repeat(64);
    let path = dir.join("b.tar");
    for (case, base, carry, said) in [
        ("a missing blob the base does not omit", format!(r#"{{"anchor":"{anchor}","omits":[]}}"#), false, "blob ".to_string() + &layer + " is missing"),
        ("an omitted blob that is carried", format!(r#"{{"anchor":"{anchor}","omits":["{layer}"]}}"#), true, format!("its base omits {layer}")),
        (
            "an omitted blob nothing references",
            format!(r#"{{"anchor":"{anchor}","omits":["{layer}","{}"]}}"#, digest(b"other")),
            false,
            "which it carries or no artifact references".into(),
        ),
        ("a field that asks to skip checks", format!(r#"{{"anchor":"{anchor}","omits":[],"trusted":true}}"#), true, "unknown field".into()),
        (
            "a prerequisite the git bundle does not have",
            format!(r#"{{"anchor":"{anchor}","omits":[],"moduleCommit":"{}"}}"#, "b".repeat(40)),
            true,
            "as its base says".into(),
        ),
    ] {
        write_tar(&path, &with_base(&base, carry));
        let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
        assert_eq!(run.code, Some(1), "{case}: {}", run.all());
        assert!(run.stderr.contains(&said), "{case}: wanted {said:?} in {}", run.stderr);
    }
    // The one honest form verifies.
    write_tar(&path, &with_base(&format!(r#"{{"anchor":"{anchor}","omits":["{layer}"]}}"#), false));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
}

#[test]
fn list_prints_what_a_bundle_holds_without_hashing_but_refuses_a_hostile_tar() {
    let dir = TempDir::new("offline-list");
    let path = dir.join("b.tar");
    // A changed byte in the layer: list does not hash (verify does), so it still lists.
    write_tar(&path, &valid_chunks());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(11).position(|w| w == b"layer-bytes").unwrap();
    bytes[at] = b'L';
    std::fs::write(&path, &bytes).unwrap();
    let run = tool(&dir, &["list", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let (m, _) = image("layer-bytes");
    for want in ["agent-image: 127.0.0.1:1/humanitec/kubernetes-agent:0.1.0", &digest(m.as_bytes()), "blobs carried: 2 (", "not verified", "complete"] {
        assert!(run.stdout.contains(want), "{want}: {}", run.stdout);
    }
    assert_eq!(tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK).code, Some(1));
    // An entry the tool never writes: refused by list as by verify.
    write_tar(&path, &with_first(vec![file("etc/passwd", b"root::0:0")]));
    let run = tool(&dir, &["list", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("is not an entry this archive may hold"), "{}", run.stderr);
}

/// A `git` first in PATH that logs every `*.bundle` file under `$TMPDIR` (and every
/// `*.bundle` argument) to `$FAKE_GIT_LOG`, then runs the real git.
fn logging_git(dir: &TempDir) -> (String, PathBuf) {
    let real = Command::new("sh").args(["-c", "command -v git"]).output().unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nfind \"$TMPDIR\" -type f -name '*.bundle' >> \"$FAKE_GIT_LOG\"\nfor a in \"$@\"; do case \"$a\" in *.bundle) echo \"arg $a\" >> \"$FAKE_GIT_LOG\";; esac; done\nexec {real} \"$@\"\n"
    );
    std::fs::write(bin.join("git"), script).unwrap();
    assert!(Command::new("chmod").arg("755").arg(bin.join("git")).status().unwrap().success());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let log = dir.join("git.log");
    std::fs::write(&log, "").unwrap();
    (path, log)
}

#[test]
fn push_streams_the_module_into_git_without_a_copy_of_its_git_bundle_on_disk() {
    let dir = TempDir::new("offline-nocopy");
    let out = dir.join("bundle.tar");
    let (module, _source) = small_bundle(&dir, &out, &[]);
    let (path, log) = logging_git(&dir);
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", git_target.to_str().unwrap()]);
    let registry = format!("{}/mirror", target.host());
    let args = ["push", out.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", git_target.to_str().unwrap()];
    let env = [("PATH", path.as_str()), ("TMPDIR", tmp.to_str().unwrap()), ("FAKE_GIT_LOG", log.to_str().unwrap())];
    let run = tool_with(&dir, Command::new(env!("CARGO_BIN_EXE_offline-install")), &args, None, QUICK, &env);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "", "git saw a copy of the module's git bundle on disk");
    assert_eq!(git_in(&git_target, &["rev-parse", "refs/tags/v1.0.0^{commit}"]), head_of(&module, "v1.0.0"));
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "push left its scratch directory behind");
}

#[test]
fn a_module_pack_changed_after_verify_pushes_no_ref() {
    let dir = TempDir::new("offline-packchange");
    let out = dir.join("bundle.tar");
    let (_module, _source) = small_bundle(&dir, &out, &[]);
    let target = Registry::start(false);
    let file = out.clone();
    target.with(|s| {
        // Once verify is done (the first request), flip a byte of the pack inside the bundle.
        s.on_request = Some(Box::new(move |_| {
            let mut bytes = std::fs::read(&file).unwrap();
            let header = bytes.windows(15).position(|w| w == b"# v2 git bundle").unwrap();
            let pack = header + bytes[header..].windows(4).position(|w| w == b"PACK").unwrap();
            if bytes[pack + 40] != b'!' {
                bytes[pack + 40] = b'!';
                std::fs::write(&file, bytes).unwrap();
            }
        }))
    });
    let git_target = dir.join("target.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", git_target.to_str().unwrap()]);
    let run = push_plain(&dir, &out, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("module"), "{}", run.stderr);
    assert_eq!(git_in(&git_target, &["for-each-ref"]), "", "a ref was pushed from a changed bundle");
}

#[test]
fn a_layer_the_base_holds_only_in_another_repository_is_carried_so_the_differential_bundle_still_pushes() {
    let dir = TempDir::new("offline-since-repos");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    // The agent image (and the chart, which shares its tag in the stand-in) has the layer
    // "shared"; the old runner image does not, the new one does.
    let (agent, agent_blobs) = two_layers("shared", "agent-only");
    let (old_runner, old_runner_blobs) = image("runner-1");
    let (new_runner, new_runner_blobs) = two_layers("shared", "runner-2");
    let put = |runner: &str, blobs: &[String]| {
        source.with(|s| {
            s.manifests.insert("0.1.0".into(), (MANIFEST.into(), agent.clone()));
            s.manifests.insert("1.0".into(), (MANIFEST.into(), runner.to_string()));
            for b in agent_blobs.iter().chain(blobs) {
                s.blobs.insert(digest(b.as_bytes()), b.clone());
            }
        })
    };
    put(&old_runner, &old_runner_blobs);
    let tool_path = small_tool(&dir);
    let small = ["--tool", tool_path.to_str().unwrap()];
    let old = dir.join("old.tar");
    let run = run_bundle_with(&dir, &old, &source.host(), module.to_str().unwrap(), &small);
    assert_eq!(run.code, Some(0), "{}", run.all());
    put(&new_runner, &new_runner_blobs);
    let new = dir.join("new.tar");
    let run = run_bundle_with(&dir, &new, &source.host(), module.to_str().unwrap(), &[&small[..], &["--since", old.to_str().unwrap()]].concat());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(tar_names(&new).contains(&format!("oci/blobs/sha256/{}", sha(b"shared"))), "the runner's repository never had it: it must be carried");
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", git_target.to_str().unwrap()]);
    let run = push_plain(&dir, &old, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let run = push_plain(&dir, &new, &target, git_target.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    target.with(|s| assert_eq!(s.manifests.get("1.0").map(|m| m.1.as_str()), Some(new_runner.as_str())));
}

#[test]
fn a_bundle_that_is_a_fifo_is_refused_at_once_and_one_behind_a_symlink_is_read_from_its_target() {
    let dir = TempDir::new("offline-single-kinds");
    let fifo = dir.join("fifo.tar");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for command in ["verify", "list", "push"] {
        let mut args = vec![command, fifo.to_str().unwrap()];
        if command == "push" {
            args.extend(["--registry", "127.0.0.1:1", "--git-url", "/nonexistent"]);
        }
        let run = tool(&dir, &args, None, Duration::from_secs(10));
        assert!(!run.timed_out, "{command} blocked on a FIFO");
        assert_eq!(run.code, Some(1), "{command}: {}", run.all());
        assert!(run.stderr.contains("is not a regular file"), "{command}: {}", run.stderr);
    }
    let real = dir.join("real.tar");
    write_tar(&real, &valid_chunks());
    let link = dir.join("link.tar");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let run = tool(&dir, &["verify", link.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
}

#[test]
fn list_over_parts_checks_their_sizes_but_hashes_nothing() {
    let dir = TempDir::new("offline-list-parts");
    let (out, _source) = parted_bundle(&dir);
    let altered = copy_parts(&dir, &out, "altered");
    // A byte of the tool's data (after its 512-byte header) changed.
    let mut bytes = std::fs::read(altered.with_file_name("b.tar.001")).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(altered.with_file_name("b.tar.001"), bytes).unwrap();
    let run = tool(&dir, &["list", altered.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stdout.contains("5 parts") && run.stdout.contains("not verified"), "{}", run.stdout);
    let missing = copy_parts(&dir, &out, "missing");
    std::fs::remove_file(missing.with_file_name("b.tar.004")).unwrap();
    let run = tool(&dir, &["list", missing.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("b.tar.004 is missing"), "{}", run.stderr);
}

/// Runs offline-install with `args` and returns its run and its peak resident set size in
/// KiB (`VmHWM` of its own process, sampled every 5 ms: it only grows, so the last sample
/// before the exit is the peak; git's memory is its own and not counted).
fn tool_peak_rss(dir: &TempDir, args: &[&str], within: Duration) -> (Option<i32>, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offline-install"))
        .args(args)
        .env("REGISTRY_AUTH_FILE", dir.join("no-auth-file.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    let mut peak = 0;
    let code = loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok());
        peak = peak.max(hwm.unwrap_or(0));
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (code, std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default(), peak)
}

#[test]
fn bundle_and_push_of_a_large_module_stay_within_a_few_mib_of_memory() {
    let dir = TempDir::new("offline-bigmodule");
    let module = module_repo(&dir);
    // 32 MiB that do not compress: the git bundle is as large.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..32u64 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(module.join("blob.bin"), noise).unwrap();
    git_in(&module, &["add", "."]);
    git_in(&module, &["commit", "--quiet", "-m", "big"]);
    git_in(&module, &["tag", "-f", "v1.0.0"]);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let tool_path = small_tool(&dir);
    let out = dir.join("bundle.tar");
    let mut args = bundle_args(out.to_str().unwrap(), &source.host(), module.to_str().unwrap());
    args.extend(["--tool".to_string(), tool_path.display().to_string()]);
    let (code, stderr, peak) = tool_peak_rss(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::metadata(&out).unwrap().len() > 32 << 20);
    eprintln!("bundle of a 32 MiB module: peak RSS {peak} KiB");
    assert!(peak > 0 && peak < 16 << 10, "bundle held {peak} KiB at its peak");
    let target = Registry::start(false);
    let git_target = dir.join("target.git");
    git_in(&dir.0, &["init", "--quiet", "--bare", git_target.to_str().unwrap()]);
    let registry = format!("{}/mirror", target.host());
    let push = ["push", out.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", git_target.to_str().unwrap()];
    let (code, stderr, peak) = tool_peak_rss(&dir, &push, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    eprintln!("push of a 32 MiB module: peak RSS {peak} KiB");
    assert!(peak > 0 && peak < 16 << 10, "push held {peak} KiB at its peak");
    assert_eq!(git_in(&git_target, &["rev-parse", "refs/tags/v1.0.0^{commit}"]), head_of(&module, "v1.0.0"));
}

#[test]
fn a_differential_bundle_can_follow_a_parted_base_and_be_cut_into_parts_itself() {
    let dir = TempDir::new("offline-since-parts");
    std::fs::create_dir_all(dir.join("old")).unwrap();
    let old = dir.join("old/b.tar");
    let (module, source) = small_bundle(&dir, &old, &["--max-part-size", "64K", "--module-ref", "main"]);
    let (next, next_blobs) = image("layer-2");
    serve(&source, (MANIFEST, &next), &[], &next_blobs);
    std::fs::write(module.join("more.tf"), "locals {}\n").unwrap();
    git_in(&module, &["add", "."]);
    git_in(&module, &["commit", "--quiet", "-m", "more"]);
    std::fs::create_dir_all(dir.join("new")).unwrap();
    let new = dir.join("new/b.tar");
    let tool_path = dir.join("small-tool");
    let args = ["--tool", tool_path.to_str().unwrap(), "--max-part-size", "64K", "--module-ref", "main", "--since", old.to_str().unwrap()];
    let run = run_bundle_with(&dir, &new, &source.host(), module.to_str().unwrap(), &args);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let run = tool(&dir, &["verify", new.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stdout.contains("differential") && run.stdout.contains("b.tar.parts sha256: "), "{}", run.stdout);
}

// ---- issue 15b: chunked, resumable uploads --------------------------------------------

/// `len` bytes of letters that do not repeat with a short period, so a chunk sent at the
/// wrong offset is a different blob.
fn letters(len: usize, seed: u32) -> String {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (b'a' + ((x >> 16) % 26) as u8) as char
        })
        .collect()
}

/// A small config and an image manifest naming it and `layers`.
fn layered_image(layers: &[String]) -> (String, String) {
    let config = r#"{"small":"config"}"#.to_string();
    let described: Vec<String> = layers
        .iter()
        .map(|l| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#, digest(l.as_bytes()), l.len()))
        .collect();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        digest(config.as_bytes()),
        config.len(),
        described.join(",")
    );
    (config, m)
}

/// A bundle whose agent image has one layer of `len` bytes; returns its path and the layer.
fn layer_bundle(dir: &TempDir, len: usize) -> (PathBuf, String) {
    let path = dir.join("b.tar");
    let layer = letters(len, 7);
    let (config, m) = layered_image(std::slice::from_ref(&layer));
    write_tar(&path, &bundle_chunks(&[config, layer.clone(), m.clone()], &m, MANIFEST, None));
    (path, layer)
}

/// `push` in 64 KiB chunks with the state file in the test's directory; over TLS as user
/// `mirror` (password `hunter2` on standard input) when `tls`, else plain HTTP.
fn push_chunked(dir: &TempDir, bundle: &Path, target: &Registry, tls: bool, extra: &[&str]) -> Run {
    let ca = support::server::certs_dir().join("ca.pem");
    let registry = format!("{}/mirror", target.host());
    let state_dir = dir.0.display().to_string();
    let mut args =
        vec!["push", bundle.to_str().unwrap(), "--registry", &registry, "--git-url", "/nonexistent", "--chunk-size", "64K", "--state-dir", &state_dir];
    if tls {
        args.extend(["--ca-file", ca.to_str().unwrap(), "--username", "mirror", "--password-stdin"]);
    } else {
        args.push("--plain-http");
    }
    args.extend(extra);
    tool(dir, &args, tls.then_some("hunter2\n"), QUICK)
}

/// The PATCHes of the upload sessions of the `len`-byte layer (the one blob over a chunk:
/// a session with a whole chunk, or one that ends at its end), as (start, end, body length,
/// status; 0 for a PATCH cut unanswered).
fn patches_of(target: &Registry, len: usize) -> Vec<(u64, u64, usize, u16)> {
    target.with(|s| {
        let sessions: std::collections::BTreeSet<String> = s
            .patches
            .iter()
            .filter(|p| p.2 as u64 == CHUNK || p.1.rsplit('-').next().and_then(|e| e.parse::<usize>().ok()) == Some(len - 1))
            .map(|p| p.0.clone())
            .collect();
        s.patches
            .iter()
            .filter(|p| sessions.contains(&p.0))
            .map(|p| {
                let (a, b) = p.1.split_once('-').unwrap();
                (a.parse().unwrap(), b.parse().unwrap(), p.2, p.3)
            })
            .collect()
    })
}

const CHUNK: u64 = 64 << 10;
const STATE: &str = "offline-install-uploads";

#[test]
fn chunks_of_the_chunk_size_cover_a_blob_exactly_and_the_put_closes_it() {
    let dir = TempDir::new("offline-chunks");
    let (path, layer) = layer_bundle(&dir, 200_000);
    let target = Registry::start(false);
    let run = push_chunked(&dir, &path, &target, false, &[]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    let ranges: Vec<(u64, u64, usize, u16)> = patches_of(&target, layer.len());
    assert_eq!(
        ranges,
        vec![
            (0, CHUNK - 1, CHUNK as usize, 202),
            (CHUNK, 2 * CHUNK - 1, CHUNK as usize, 202),
            (2 * CHUNK, 3 * CHUNK - 1, CHUNK as usize, 202),
            (3 * CHUNK, 199_999, 200_000 - 3 * CHUNK as usize, 202)
        ]
    );
    target.with(|s| assert_eq!(s.blobs.get(&digest(layer.as_bytes())), Some(&layer)));
    assert!(!dir.join(STATE).exists(), "the state file outlived the uploads");
}

#[test]
fn a_push_cut_midway_through_a_chunk_resumes_from_the_registrys_offset_and_resends_no_acknowledged_byte() {
    let dir = TempDir::new("offline-resume");
    let (path, layer) = layer_bundle(&dir, 300_000);
    let target = Registry::start(true);
    let basic = format!("Basic {}", kubernetes_agent::base64::encode(b"mirror:hunter2"));
    target.with(|s| {
        s.auth = Auth::Basic(basic.clone());
        s.lenient_state = true;
        s.cut_patch = Some(3);
    });
    let run = push_chunked(&dir, &path, &target, true, &["--jobs", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let first = patches_of(&target, layer.len());
    let acknowledged: u64 = first.iter().filter(|p| p.3 == 202).map(|p| p.2 as u64).sum();
    let cut = first.iter().find(|p| p.3 == 0).expect("a PATCH of the layer was cut");
    let kept = acknowledged + cut.2 as u64 / 2;
    let state = std::fs::read_to_string(dir.join(STATE)).expect("the interrupted upload is in the state file");
    assert!(!state.contains("hunter2") && !state.contains(&basic[6..]) && !state.contains("Basic"), "{state}");
    target.with(|s| s.cut_patch = None);
    let run = push_chunked(&dir, &path, &target, true, &["--jobs", "1"]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(run.stderr.contains(&format!("resuming at byte {kept}")), "{}", run.all());
    let second: Vec<_> = patches_of(&target, layer.len()).into_iter().skip(first.len()).collect();
    assert_eq!(second.first().map(|p| p.0), Some(kept), "not resumed at the registry's offset: {second:?}");
    assert_eq!(second.iter().map(|p| p.2 as u64).sum::<u64>(), layer.len() as u64 - kept, "{second:?}");
    target.with(|s| assert_eq!(s.blobs.get(&digest(layer.as_bytes())), Some(&layer)));
    assert!(!dir.join(STATE).exists());
    assert!(!run.all().contains("hunter2"));
}

#[test]
fn a_push_interrupted_between_chunks_resumes_on_a_registry_that_seals_offsets_in_its_urls() {
    let dir = TempDir::new("offline-between");
    let (path, layer) = layer_bundle(&dir, 300_000);
    let target = Registry::start(false);
    target.with(|s| s.fail_patch = Some(4));
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let first = patches_of(&target, layer.len());
    let acknowledged: u64 = first.iter().filter(|p| p.3 == 202).map(|p| p.2 as u64).sum();
    assert!(acknowledged > 0 && acknowledged % CHUNK == 0, "{first:?}");
    target.with(|s| s.fail_patch = None);
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    let second: Vec<_> = patches_of(&target, layer.len()).into_iter().skip(first.len()).collect();
    assert_eq!(second.first().map(|p| p.0), Some(acknowledged), "{second:?}\n{}", run.all());
    target.with(|s| assert_eq!(s.blobs.get(&digest(layer.as_bytes())), Some(&layer)));
}

#[test]
fn a_chunk_cut_midway_on_a_registry_that_seals_offsets_starts_that_blob_again_and_says_why() {
    let dir = TempDir::new("offline-sealed");
    let (path, layer) = layer_bundle(&dir, 300_000);
    let target = Registry::start(false);
    target.with(|s| s.cut_patch = Some(3));
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    target.with(|s| s.cut_patch = None);
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(run.stderr.contains("could not be resumed") && run.stderr.contains("BLOB_UPLOAD_INVALID"), "{}", run.all());
    target.with(|s| assert_eq!(s.blobs.get(&digest(layer.as_bytes())), Some(&layer)));
    assert!(!dir.join(STATE).exists());
}

#[test]
fn a_state_file_pointing_at_another_origin_or_repository_gets_no_request_and_no_credentials() {
    let dir = TempDir::new("offline-hostilestate");
    let (path, layer) = layer_bundle(&dir, 100_000);
    let elsewhere = Recorder::start(true);
    let target = Registry::start(true);
    let basic = format!("Basic {}", kubernetes_agent::base64::encode(b"mirror:hunter2"));
    target.with(|s| s.auth = Auth::Basic(basic.clone()));
    let ours = format!("https://{}", target.host());
    let theirs = elsewhere.server.url();
    let d = digest(layer.as_bytes());
    let repo = "mirror/kubernetes-agent";
    let state = [
        "offline-install upload state 1".to_string(),
        // Our origin and repository, an upload URL on another origin.
        format!("{ours}\t{repo}\t{d}\t{theirs}/v2/{repo}/blobs/uploads/x?_state=0"),
        // Our origin, another repository's upload on our registry.
        format!("{ours}\t{repo}\t{d}\t{ours}/v2/other/blobs/uploads/x?_state=0"),
        // Another origin's entry for the same blob.
        format!("{theirs}\t{repo}\t{d}\t{theirs}/v2/{repo}/blobs/uploads/x?_state=0"),
    ];
    std::fs::write(dir.join(STATE), state.join("\n") + "\n").unwrap();
    let run = push_chunked(&dir, &path, &target, true, &[]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(elsewhere.seen().is_empty(), "the state file steered requests to another origin: {:?}", elsewhere.seen());
    assert!(!target.seen().iter().any(|s| s.path.contains("/other/")), "the state file steered a request to another repository");
    assert!(run.stderr.contains("ignored"), "{}", run.all());
    target.with(|s| assert_eq!(s.blobs.get(&d), Some(&layer)));
}

#[test]
fn a_registry_without_chunked_uploads_gets_whole_blobs_and_is_told_once() {
    let dir = TempDir::new("offline-nochunks");
    let (path, layer) = layer_bundle(&dir, 150_000);
    let target = Registry::start(false);
    target.with(|s| s.no_chunks = true);
    let run = push_chunked(&dir, &path, &target, false, &[]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert_eq!(run.stderr.matches("does not take chunked uploads").count(), 1, "{}", run.all());
    target.with(|s| {
        assert_eq!(s.blobs.get(&digest(layer.as_bytes())), Some(&layer));
        assert_eq!(s.blobs.len(), 2, "config and layer: {:?}", s.blobs.keys());
        assert!(s.patches.iter().all(|p| p.3 == 405), "{:?}", s.patches);
    });
}

/// A bundle whose agent image has `n` layers of `len` bytes each (under an index when
/// `indexed`); returns its path and the layers.
fn layers_bundle(dir: &TempDir, n: usize, len: usize, indexed: bool) -> (PathBuf, Vec<String>) {
    let path = dir.join("b.tar");
    let layers: Vec<String> = (0..n).map(|i| letters(len, i as u32 + 100)).collect();
    let (config, m) = layered_image(&layers);
    let mut docs = vec![config];
    docs.extend(layers.iter().cloned());
    docs.push(m.clone());
    if indexed {
        let top = index(&[&m]).replace(&format!(r#""mediaType":"{INDEX}","digest""#), &format!(r#""mediaType":"{MANIFEST}","digest""#));
        docs.push(top.clone());
        write_tar(&path, &bundle_chunks(&docs, &top, INDEX, None));
    } else {
        write_tar(&path, &bundle_chunks(&docs, &m, MANIFEST, None));
    }
    (path, layers)
}

#[test]
fn a_failing_transfer_among_parallel_ones_stops_the_push_before_any_manifest_and_is_reported() {
    let dir = TempDir::new("offline-parallelfail");
    let (path, layers) = layers_bundle(&dir, 8, 100_000, false);
    let target = Registry::start(false);
    target.with(|s| s.fail_patch = Some(5));
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "4"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("injected failure") && run.stderr.contains("HTTP 500"), "the first error is not the one reported: {}", run.all());
    assert!(!run.all().contains("done:") && !run.stdout.contains("Use these values"), "{}", run.all());
    target.with(|s| assert!(s.manifests.is_empty(), "a manifest was pushed before all its blobs: {:?}", s.manifests.keys()));
    // Nothing started after the failure was seen: fewer sessions than layers were finished.
    let finished = target.with(|s| layers.iter().filter(|l| s.blobs.contains_key(&digest(l.as_bytes()))).count());
    assert!(finished < layers.len(), "{finished}");
    // The rerun finishes the job: the interrupted sessions resume, the finished blobs are skipped.
    target.with(|s| s.fail_patch = None);
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "4"]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    target.with(|s| {
        for l in &layers {
            assert_eq!(s.blobs.get(&digest(l.as_bytes())), Some(l));
        }
        assert!(s.manifests.contains_key("0.1.0"));
    });
}

#[test]
fn manifests_go_up_only_after_every_blob_they_name_with_parallel_jobs() {
    let dir = TempDir::new("offline-parallelorder");
    let (path, layers) = layers_bundle(&dir, 6, 150_000, true);
    let target = Registry::start(false);
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "4"]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    let seen = target.seen();
    let last_blob_put = seen.iter().rposition(|s| s.method == "PUT" && s.path.contains("/blobs/uploads/")).unwrap();
    let first_manifest_put = seen.iter().position(|s| s.method == "PUT" && s.path.contains("/manifests/")).unwrap();
    assert!(last_blob_put < first_manifest_put, "a manifest went up before a blob: {seen:?}");
    target.with(|s| assert!(layers.iter().all(|l| s.blobs.get(&digest(l.as_bytes())) == Some(l))));
    assert!(run.stderr.contains("agent-image: ") && run.stderr.contains(" MiB in "), "no progress line: {}", run.stderr);
}

#[test]
fn a_resumed_blob_the_registry_already_holds_whole_is_checked_against_the_bundle_before_it_is_closed() {
    let dir = TempDir::new("offline-heldwhole");
    let (path, layer) = layer_bundle(&dir, 200_000);
    let target = Registry::start(false);
    target.with(|s| {
        s.lenient_state = true;
        s.fail_put = Some(100_000);
    });
    // Every chunk of the layer goes up, its closing PUT fails: the registry holds it whole.
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(dir.join(STATE).exists(), "{}", run.all());
    assert_eq!(target.with(|s| s.uploads.values().map(String::len).max()), Some(layer.len()), "{}", run.all());
    let file = path.clone();
    let needle = layer.as_bytes()[..32].to_vec();
    target.with(|s| {
        s.fail_put = None;
        // After the rerun's verify, the layer changes in the bundle (same size).
        s.on_request = Some(Box::new(move |_| {
            let mut bytes = std::fs::read(&file).unwrap();
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle.as_slice()) {
                bytes[at] = if bytes[at] == b'z' { b'y' } else { b'z' };
                std::fs::write(&file, bytes).unwrap();
            }
        }));
    });
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("changed after it was verified"), "{}", run.all());
    // The registry's bytes are the right ones, so a PUT would have stored the layer.
    target.with(|s| assert!(!s.blobs.contains_key(&digest(layer.as_bytes())), "the session was closed without checking the bundle's bytes"));
}

/// A source stand-in serving one image of `n` layers of `len` bytes under every tag the
/// bundle asks for; returns the layers.
fn serve_layers(source: &Registry, n: usize, len: usize) -> Vec<String> {
    let layers: Vec<String> = (0..n).map(|i| letters(len, i as u32 + 500)).collect();
    let (config, m) = layered_image(&layers);
    let mut blobs = vec![config];
    blobs.extend(layers.iter().cloned());
    serve(source, (MANIFEST, &m), &[], &blobs);
    layers
}

/// `bundle --jobs JOBS` of six 100 KB layers into `dir`'s bundle.tar, the layer numbered
/// `missing` (if any) absent from the source; returns the run and the layers.
fn bundle_six_layers(dir: &TempDir, missing: Option<usize>, jobs: &str) -> (Run, Vec<String>) {
    let module = module_repo(dir);
    let source = Registry::start(false);
    let layers = serve_layers(&source, 6, 100_000);
    if let Some(i) = missing {
        source.with(|s| s.blobs.remove(&digest(layers[i].as_bytes())));
    }
    let mut args = bundle_args(dir.join("bundle.tar").to_str().unwrap(), &source.host(), module.to_str().unwrap());
    args.extend(["--jobs".to_string(), jobs.to_string()]);
    (tool(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK), layers)
}

#[test]
fn a_bundle_of_many_layers_holds_each_once_and_verifies() {
    for jobs in ["1", "4"] {
        let dir = TempDir::new(&format!("offline-bundlejobs-{jobs}"));
        let out = dir.join("bundle.tar");
        let (run, layers) = bundle_six_layers(&dir, None, jobs);
        assert_eq!(run.code, Some(0), "{}", run.all());
        if jobs == "4" {
            assert!(run.stderr.contains("fetching agent-image: ") && run.stderr.contains(" MiB in "), "no progress line: {}", run.stderr);
        }
        check_six_layers(&dir, &out, &layers);
    }
}

fn check_six_layers(dir: &TempDir, out: &Path, layers: &[String]) {
    let run = tool(dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let listing = Command::new("tar").arg("-tf").arg(out).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    for l in layers {
        assert_eq!(names.matches(&sha(l.as_bytes())).count(), 1, "{names}");
    }
    assert!(!dir.join("bundle.scratch").exists() && !dir.join("bundle.partial").exists());
}

#[test]
fn a_failing_fetch_fails_the_bundle_names_the_blob_and_leaves_nothing() {
    let dir = TempDir::new("offline-bundlejobsfail");
    let out = dir.join("bundle.tar");
    let (run, layers) = bundle_six_layers(&dir, Some(2), "4");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&digest(layers[2].as_bytes())) && run.stderr.contains("BLOB_UNKNOWN"), "the failing blob is not named: {}", run.all());
    assert!(!out.exists() && !dir.join("bundle.scratch").exists() && !dir.join("bundle.partial").exists());
    assert!(!run.stdout.contains("wrote"), "{}", run.stdout);
}

#[test]
fn a_state_dir_that_is_not_a_directory_is_refused_before_anything_is_pushed() {
    let dir = TempDir::new("offline-nostatedir");
    let (path, _) = layer_bundle(&dir, 1000);
    let target = Registry::start(false);
    let registry = format!("{}/mirror", target.host());
    let missing = dir.join("no-such-dir").display().to_string();
    let args = ["push", path.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", "/nonexistent", "--state-dir", &missing];
    let run = tool(&dir, &args, None, QUICK);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("--state-dir") && run.stderr.contains("is not a directory"), "{}", run.stderr);
    assert!(target.seen().is_empty(), "it pushed with nowhere to keep its state: {:?}", target.seen());
    for bad in [["--chunk-size", "1K"], ["--chunk-size", "2G"], ["--jobs", "0"], ["--jobs", "33"]] {
        let run =
            tool(&dir, &["push", path.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", "/nonexistent", bad[0], bad[1]], None, QUICK);
        assert_eq!(run.code, Some(2), "{bad:?}: {}", run.all());
        assert!(run.stderr.contains(bad[0]), "{bad:?}: {}", run.stderr);
    }
    assert!(target.seen().is_empty());
}

// ---- found by the attack review of the merged tool ------------------------------------

#[test]
fn a_one_byte_blob_is_pushed_whole_not_in_a_chunk_the_registry_cannot_confirm() {
    // distribution answers `Range: 0-0` for both 0 and 1 byte held, so a 1-byte chunk was
    // never confirmed and every rerun failed the same way.
    let dir = TempDir::new("offline-onebyte");
    let (m, blobs) = image("x");
    let mut docs = blobs.clone();
    docs.push(m.clone());
    let path = dir.join("b.tar");
    write_tar(&path, &bundle_chunks(&docs, &m, MANIFEST, None));
    let target = Registry::start(false);
    let run = push_plain(&dir, &path, &target, "/nonexistent");
    assert!(target.with(|s| s.blobs.contains_key(&digest(b"x"))), "the 1-byte layer was not stored: {}", run.all());
    assert!(target.with(|s| s.patches.is_empty()), "a blob of at most one chunk went up in chunks: {:?}", target.with(|s| s.patches.clone()));
}

/// [`cosign_signature`] with a chosen `docker-reference`.
fn cosign_signature_as(pair: &ring::signature::EcdsaKeyPair, image: &str, reference: &str) -> (String, Vec<String>) {
    let (m, blobs) = cosign_signature(pair, image);
    let old = "127.0.0.1:1/humanitec/kubernetes-agent";
    if reference == old {
        return (m, blobs);
    }
    // Re-sign a payload naming `reference`.
    let payload = blobs[1].replace(old, reference);
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

/// A bundle of several signed artifacts (role, source, top, blobs, sig, sig blobs) with a real module.
/// One artifact of [`signed_bundle`]: role, source, top manifest, its blobs, signature manifest, its blobs.
type SignedArtifact<'a> = (&'a str, &'a str, &'a str, &'a [String], &'a str, &'a [String]);

fn signed_bundle(path: &Path, artifacts: &[SignedArtifact], module: &[u8], commit: &str) {
    let mut docs: Vec<String> = Vec::new();
    let mut records = Vec::new();
    let mut entries = Vec::new();
    for (role, source, top, blobs, sig, sig_blobs) in artifacts {
        docs.extend(blobs.iter().cloned());
        docs.push(top.to_string());
        docs.extend(sig_blobs.iter().cloned());
        docs.push(sig.to_string());
        entries.push(format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(top.as_bytes()), top.len()));
        entries.push(format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(sig.as_bytes()), sig.len()));
        records.push(format!(
            r#"{{"role":"{role}","source":"{source}","digest":"{}","mediaType":"{MANIFEST}","platforms":[],"attachments":[{{"kind":"signature","subject":"{}","digest":"{}","mediaType":"{MANIFEST}","size":{}}}]}}"#,
            digest(top.as_bytes()),
            digest(top.as_bytes()),
            digest(sig.as_bytes()),
            sig.len()
        ));
    }
    let mj = format!(
        r#"{{"format":"kubernetes-agent-offline-bundle/1","created":"2026-12-01T00:00:00Z","artifacts":[{}],"module":{{"source":"m","ref":"v1.0.0","commit":"{commit}","file":"module/module.bundle"}}}}"#,
        records.join(",")
    );
    let first = artifacts[0].2;
    let mut chunks = bundle_chunks(&docs, first, MANIFEST, Some(mj));
    let idx = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, entries.join(","));
    for c in chunks.iter_mut() {
        if c.name == b"oci/index.json" {
            c.data = idx.clone().into_bytes();
        }
        if c.name == b"module/module.bundle" {
            c.data = module.to_vec();
        }
    }
    write_tar(path, &chunks);
}

fn bare_git(dir: &TempDir) -> PathBuf {
    let target_git = dir.join("target.git");
    assert!(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&target_git).status().unwrap().success());
    target_git
}

#[test]
fn push_key_pushes_the_module_only_at_the_commit_given_and_verify_key_says_the_module_is_not_signed() {
    // A doctored bundle (consistent SHA256SUMS) with a genuinely signed image and an
    // attacker's module: push --key had pushed the module, and verify --key had said the
    // bundle held what the key's owner signed.
    let dir = TempDir::new("offline-module-key");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (top, blobs) = image("layer-bytes");
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(top.as_bytes()));
    let module = module_repo(&dir);
    let expected = head_of(&module, "v1.0.0");
    std::fs::write(module.join("main.tf"), "resource \"null_resource\" \"x\" {}\n").unwrap();
    let g = |args: &[&str]| {
        assert!(Command::new("git").arg("-C").arg(&module).args(["-c", "user.name=t", "-c", "user.email=t@e.invalid"]).args(args).status().unwrap().success())
    };
    g(&["commit", "--quiet", "-am", "evil"]);
    g(&["tag", "-f", "v1.0.0"]);
    let evil = head_of(&module, "v1.0.0");
    let path = dir.join("b.tar");
    signed_bundle(
        &path,
        &[("agent-image", "127.0.0.1:1/humanitec/kubernetes-agent:0.1.0", &top, &blobs, &sig, &sig_blobs)],
        &git_bundle(&dir, &module, &["v1.0.0"]),
        &evil,
    );
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stdout.contains("is covered by no signature") && !run.stdout.contains("the bundle holds what the key's owner signed"), "{}", run.stdout);
    let run = tool(&dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap(), "--module-commit", &expected], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("is commit {evil}, not the \"{expected}\"")), "{}", run.stderr);
    let target = Registry::start(false);
    let git = bare_git(&dir);
    let registry = format!("{}/mirror", target.host());
    let push = |extra: &[&str]| {
        let mut args =
            vec!["push", path.to_str().unwrap(), "--key", key.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", git.to_str().unwrap()];
        args.extend(extra);
        tool(&dir, &args, None, QUICK)
    };
    let run = push(&[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("--module-commit"), "{}", run.stderr);
    let run = push(&["--module-commit", &expected]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(target.seen().is_empty(), "something was pushed: {:?}", target.seen());
    let show = Command::new("git").arg("-C").arg(&git).args(["rev-parse", "--verify", "--quiet", "v1.0.0"]).output().unwrap();
    assert!(!show.status.success(), "the attacker's module reached the git target");
    let run = push(&["--module-commit", &evil]);
    assert_eq!(run.code, Some(0), "the commit given is pushed: {}", run.all());
}

/// A bundle of a signed agent image and a signed runner image whose record says `runner_source`
/// (its signature names `runner_reference`); returns its path.
fn agent_and_runner_bundle(dir: &TempDir, runner_source: &str, runner_reference: &str) -> PathBuf {
    let (pair, _) = cosign_key(dir, "cosign");
    let (agent, agent_blobs) = image("agent-layer");
    let (runner, runner_blobs) = image("runner-layer");
    let (asig, asig_blobs) = cosign_signature_as(&pair, &digest(agent.as_bytes()), "127.0.0.1:1/humanitec/kubernetes-agent");
    let (rsig, rsig_blobs) = cosign_signature_as(&pair, &digest(runner.as_bytes()), runner_reference);
    let module = module_repo(dir);
    let commit = head_of(&module, "v1.0.0");
    let path = dir.join("b.tar");
    signed_bundle(
        &path,
        &[
            ("agent-image", "127.0.0.1:1/humanitec/kubernetes-agent:0.1.0", &agent, &agent_blobs, &asig, &asig_blobs),
            ("runner-image", runner_source, &runner, &runner_blobs, &rsig, &rsig_blobs),
        ],
        &git_bundle(dir, &module, &["v1.0.0"]),
        &commit,
    );
    path
}

#[test]
fn two_artifacts_mirroring_to_one_repository_name_fail_verify() {
    // Mirrored under HOST/PATH/<name>: a doctored runner record of another path but the
    // agent's name made push overwrite the agent's tag with the runner image.
    let dir = TempDir::new("offline-one-name");
    let path = agent_and_runner_bundle(&dir, "127.0.0.1:1/other/kubernetes-agent:0.1.0", "127.0.0.1:1/other/kubernetes-agent");
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("both mirror to the repository name"), "{}", run.stderr);
}

#[test]
fn an_artifact_under_an_attachment_tag_fails_verify() {
    // An artifact tagged sha256-<hex>.sig would replace a signature in the mirror.
    let dir = TempDir::new("offline-sig-tag");
    let tag = format!("sha256-{}.sig", sha(image("agent-layer").0.as_bytes()));
    let source = format!("127.0.0.1:1/humanitec/platform-orchestrator-runner:{tag}");
    let path = agent_and_runner_bundle(&dir, &source, "127.0.0.1:1/humanitec/platform-orchestrator-runner");
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("is an attachment's"), "{}", run.stderr);
}

/// A bundle (consistent SHA256SUMS) of an agent image whose layer holds `in_layer` at the
/// SBOM path, with `attached` attached to it as the SBOM artifact `bundle` makes; its
/// layer's media type says tar+gzip when `gzip` (the bytes stay a plain tar).
fn sbom_bundle(dir: &TempDir, path: &Path, in_layer: &str, attached: &str, gzip: bool) {
    let (mut image_manifest, blobs) = image(&sbom_layer(in_layer));
    if gzip {
        image_manifest = image_manifest.replace("layer.v1.tar\"", "layer.v1.tar+gzip\"");
    }
    let artifact = sbom_artifact_of(attached, MANIFEST, &image_manifest);
    let mut docs = blobs;
    docs.extend([image_manifest.clone(), "{}".to_string(), attached.to_string()]);
    agent_bundle(dir, path, &docs, (&image_manifest, MANIFEST), &[("sbom", digest(image_manifest.as_bytes()), artifact)], "", "");
}

/// A `gzip` in `dir`/bin running the shell `script`; returns a PATH that finds it first (set on
/// the child only).
fn fake_gzip(dir: &TempDir, script: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("gzip");
    std::fs::write(&fake, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// The SBOM artifact `bundle` makes (miniserde's objects keep their keys sorted) of the
/// file `sbom` for the subject manifest `subject` of media type `subject_media`.
fn sbom_artifact_of(sbom: &str, subject_media: &str, subject: &str) -> String {
    format!(
        r#"{{"artifactType":"application/vnd.cyclonedx+json","config":{{"digest":"{}","mediaType":"application/vnd.oci.empty.v1+json","size":2}},"layers":[{{"annotations":{{"org.opencontainers.image.title":"kubernetes-agent.cdx.json"}},"digest":"{}","mediaType":"application/vnd.cyclonedx+json","size":{}}}],"mediaType":"{MANIFEST}","schemaVersion":2,"subject":{{"digest":"{}","mediaType":"{subject_media}","size":{}}}}}"#,
        digest(b"{}"),
        digest(sbom.as_bytes()),
        sbom.len(),
        digest(subject.as_bytes()),
        subject.len()
    )
}

/// One attachment of [`agent_bundle`]: its kind, its subject's digest, its manifest.
type Attached = (&'static str, String, String);

/// A crafted bundle (consistent SHA256SUMS, a real module) of the agent record `top` (of
/// `media`) with `attachments`, `docs` carried as blobs, `record` appended to the agent's
/// record and `extra` to manifest.json's top level (a base record); returns the module's commit.
fn agent_bundle(dir: &TempDir, path: &Path, docs: &[String], (top, media): (&str, &str), attachments: &[Attached], record: &str, extra: &str) -> String {
    let module = if dir.join("module").exists() { dir.join("module") } else { module_repo(dir) };
    let commit = head_of(&module, "v1.0.0");
    let mut all: Vec<String> = docs.to_vec();
    let (mut records, mut entries) = (Vec::new(), vec![format!(r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#, digest(top.as_bytes()), top.len())]);
    for (kind, subject, m) in attachments {
        all.push(m.clone());
        records.push(format!(r#"{{"kind":"{kind}","subject":"{subject}","digest":"{}","mediaType":"{MANIFEST}","size":{}}}"#, digest(m.as_bytes()), m.len()));
        entries.push(format!(r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}"#, digest(m.as_bytes()), m.len()));
    }
    let json = format!(
        r#"{{"format":"kubernetes-agent-offline-bundle/1","created":"2026-12-01T00:00:00Z","artifacts":[{{"role":"agent-image","source":"127.0.0.1:1/humanitec/kubernetes-agent:0.1.0","digest":"{}","mediaType":"{media}","platforms":[]{record},"attachments":[{}]}}],"module":{{"source":"m","ref":"v1.0.0","commit":"{commit}","file":"module/module.bundle"}}{extra}}}"#,
        digest(top.as_bytes()),
        records.join(",")
    );
    let mut chunks = bundle_chunks(&all, top, media, Some(json));
    let git = git_bundle(dir, &module, &["v1.0.0"]);
    for c in chunks.iter_mut() {
        if c.name == b"oci/index.json" {
            c.data = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, entries.join(",")).into_bytes();
        }
        if c.name == b"module/module.bundle" {
            c.data = git.clone();
        }
    }
    write_tar(path, &chunks);
    commit
}

const GENUINE_SBOM: &str = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"name":"ring","version":"0.17.8"}]}"#;
const FORGED_SBOM: &str = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;

fn verify_key(dir: &TempDir, path: &Path, key: &Path) -> Run {
    tool(dir, &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, QUICK)
}

fn push_key(dir: &TempDir, path: &Path, target: &Registry, key: &Path, commit: &str) -> Run {
    let git = bare_git(dir);
    let registry = format!("{}/mirror", target.host());
    let args = [
        "push",
        path.to_str().unwrap(),
        "--registry",
        &registry,
        "--plain-http",
        "--git-url",
        git.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--module-commit",
        commit,
    ];
    tool(dir, &args, None, QUICK)
}

#[test]
fn a_made_up_base_record_cannot_switch_off_the_sbom_check() {
    // Reproduced by review: a base record "omitting" one blob (here the config) made verify
    // skip the SBOM check, and push --key mirrored a forged SBOM of the signed image.
    let dir = TempDir::new("offline-sbom-base");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (m, blobs) = image(&sbom_layer(GENUINE_SBOM));
    let (config, layer) = (blobs[0].clone(), blobs[1].clone());
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(m.as_bytes()));
    let mut docs = vec![layer, m.clone(), "{}".to_string(), FORGED_SBOM.to_string()];
    docs.extend(sig_blobs);
    let base = format!(r#","base":{{"anchor":"{}","omits":["{}"]}}"#, "0".repeat(64), digest(config.as_bytes()));
    let path = dir.join("forged.tar");
    let d = digest(m.as_bytes());
    let attached = [("sbom", d.clone(), sbom_artifact_of(FORGED_SBOM, MANIFEST, &m)), ("signature", d, sig)];
    let commit = agent_bundle(&dir, &path, &docs, (&m, MANIFEST), &attached, "", &base);
    let target = Registry::start(false);
    target.with(|s| {
        s.blobs.insert(digest(config.as_bytes()), config.clone());
    });
    let run = push_key(&dir, &path, &target, &key, &commit);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stderr.contains(&format!("it is not the image's own /opt/runner/kubernetes-agent.cdx.json (sha256 {}", sha(GENUINE_SBOM.as_bytes()))),
        "{}",
        run.stderr
    );
    assert!(!target.with(|s| s.blobs.contains_key(&digest(FORGED_SBOM.as_bytes()))), "the forged SBOM reached the target");
}

#[test]
fn an_sbom_is_judged_by_its_content_whatever_manifest_json_calls_it_and_however_deep() {
    // Reproduced by the second review: a forged SBOM artifact recorded as an attestation, as a
    // platform's signature, typed through its config (no artifactType), as SPDX, or nested
    // inside an index-typed referrer passed verify --key and was mirrored beside the image.
    let dir = TempDir::new("offline-sbom-content");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (m, blobs) = image(&sbom_layer(GENUINE_SBOM));
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(m.as_bytes()));
    let d = digest(m.as_bytes());
    let forged = sbom_artifact_of(FORGED_SBOM, MANIFEST, &m);
    let by_config = forged
        .replace(r#""artifactType":"application/vnd.cyclonedx+json","#, "")
        .replace("application/vnd.oci.empty.v1+json", "application/vnd.cyclonedx+json");
    let spdx = forged.replace("application/vnd.cyclonedx+json", "application/spdx+json; version=2.3");
    let nested = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}]}}"#,
        digest(forged.as_bytes()),
        forged.len()
    );
    for (case, kind, manifest, extra) in [
        ("attestation", "attestation", forged.clone(), None),
        ("config-typed referrer", "referrer", by_config, None),
        ("SPDX referrer", "referrer", spdx, None),
        ("nested in an index referrer", "referrer", nested, Some(forged.clone())),
    ] {
        let mut docs = blobs.clone();
        docs.extend([m.clone(), "{}".to_string(), FORGED_SBOM.to_string()]);
        docs.extend(sig_blobs.iter().cloned());
        docs.extend(extra);
        let attached = [(kind, d.clone(), manifest), ("signature", d.clone(), sig.clone())];
        let path = dir.join("b.tar");
        agent_bundle(&dir, &path, &docs, (&m, MANIFEST), &attached, "", "");
        let run = verify_key(&dir, &path, &key);
        assert_eq!(run.code, Some(1), "{case}: {}", run.all());
        assert!(run.stderr.contains("the agent image carries only its cosign signatures and the SBOM bundle makes"), "{case}: {}", run.stderr);
    }
}

#[test]
fn the_agent_image_carries_only_its_signatures_and_its_sbom_and_its_graph_nothing_with_a_subject() {
    // Reproduced by the third review: an SBOM inside an in-toto attestation (.att, or a
    // sigstore-bundle or BuildKit referrer) or a plain JSON referrer titled sbom.cdx.json passed
    // verify --key beside the signed image; a forged SBOM artifact listed as a child of the
    // agent's index was PUT with its subject, a referrer of the genuine platform manifest.
    let dir = TempDir::new("offline-agent-allow");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (m, blobs) = image(&sbom_layer(GENUINE_SBOM));
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(m.as_bytes()));
    let d = digest(m.as_bytes());
    let subject = format!(r#","subject":{{"mediaType":"{MANIFEST}","digest":"{d}","size":{}}}"#, m.len());
    let title = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.title":"sbom.cdx.json"}}}}]{subject}}}"#,
        digest(b"{}"),
        digest(FORGED_SBOM.as_bytes()),
        FORGED_SBOM.len()
    );
    let mut docs = blobs.clone();
    docs.extend([m.clone(), "{}".to_string(), FORGED_SBOM.to_string()]);
    docs.extend(sig_blobs.iter().cloned());
    for (kind, manifest) in [("referrer", title.clone()), ("attestation", title.replace(&subject, ""))] {
        let path = dir.join("b.tar");
        agent_bundle(&dir, &path, &docs, (&m, MANIFEST), &[(kind, d.clone(), manifest), ("signature", d.clone(), sig.clone())], "", "");
        let run = verify_key(&dir, &path, &key);
        assert_eq!(run.code, Some(1), "{kind}: {}", run.all());
        assert!(run.stderr.contains("the agent image carries only its cosign signatures"), "{kind}: {}", run.stderr);
    }
    // A forged SBOM artifact as a child of the agent's own index (no key: the anchor's case).
    let forged = sbom_artifact_of(FORGED_SBOM, MANIFEST, &m);
    let top = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{MANIFEST}","digest":"{d}","size":{}}},{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}]}}"#,
        m.len(),
        digest(forged.as_bytes()),
        forged.len()
    );
    let mut docs = blobs;
    docs.extend([m.clone(), top.clone(), forged.clone(), "{}".to_string(), FORGED_SBOM.to_string()]);
    let path = dir.join("child.tar");
    agent_bundle(&dir, &path, &docs, (&top, INDEX), &[], "", "");
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let refusal = format!("the manifest {} of the agent-image graph: it names a subject or is an SBOM", digest(forged.as_bytes()));
    assert!(run.stderr.contains(&refusal), "{}", run.stderr);
}

#[test]
fn bundle_takes_no_sbom_from_an_image_whose_upper_layer_it_cannot_read_and_its_bundle_verifies() {
    // Reproduced by the second review: bundle skipped an unreadable layer and took the SBOM
    // from below it, and its own verify (which refuses an unreadable layer) then refused the
    // bundle: no bundle at all of such an image.
    let dir = TempDir::new("offline-sbom-upper");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (top, blobs) = two_layers(&sbom_layer(GENUINE_SBOM), "a layer typed tar that is no tar");
    serve(&source, (MANIFEST, &top), &[], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stderr.contains("no SBOM is taken from this image"), "{}", run.stderr);
    assert!(!run.stdout.contains(r#""kind": "sbom""#), "{}", run.stdout);
    assert_eq!(tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK).code, Some(0));
}

#[test]
fn a_cyclonedx_referrer_beside_the_agent_sbom_fails_verify() {
    // Reproduced by review: a second, forged SBOM recorded as a plain referrer went unchecked
    // and was listed among the signed image's referrers in the mirror.
    let dir = TempDir::new("offline-sbom-referrer");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (m, blobs) = image(&sbom_layer(GENUINE_SBOM));
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(m.as_bytes()));
    let forged = sbom_artifact_of(FORGED_SBOM, MANIFEST, &m);
    let mut docs = blobs;
    docs.extend([m.clone(), "{}".to_string(), GENUINE_SBOM.to_string(), FORGED_SBOM.to_string()]);
    docs.extend(sig_blobs);
    let d = digest(m.as_bytes());
    let attached = [("sbom", d.clone(), sbom_artifact_of(GENUINE_SBOM, MANIFEST, &m)), ("referrer", d.clone(), forged.clone()), ("signature", d, sig)];
    let path = dir.join("referrer.tar");
    agent_bundle(&dir, &path, &docs, (&m, MANIFEST), &attached, "", "");
    let run = verify_key(&dir, &path, &key);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stderr.contains(&format!("the referrer {} of the agent-image: the agent image carries only its cosign signatures", digest(forged.as_bytes()))),
        "{}",
        run.stderr
    );
}

#[test]
fn an_sbom_attached_to_the_agent_index_or_to_the_index_it_narrowed_fails_verify() {
    // Reproduced by review: a forged SBOM on the index went unchecked and was mirrored under
    // sha256-<index>.sbom, where `cosign download sbom MIRROR:TAG` finds it.
    let dir = TempDir::new("offline-sbom-index");
    let (pair, key) = cosign_key(&dir, "cosign");
    let (m, blobs) = image(&sbom_layer(GENUINE_SBOM));
    let other = image("arm64-layer");
    let refusal = "not of one of the agent's platform manifests";
    // On the index itself.
    let top = platform_index(&[(&m, "amd64")]);
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(top.as_bytes()));
    let mut docs = blobs.clone();
    docs.extend([m.clone(), top.clone(), "{}".to_string(), GENUINE_SBOM.to_string(), FORGED_SBOM.to_string()]);
    docs.extend(sig_blobs.clone());
    let (dm, dt) = (digest(m.as_bytes()), digest(top.as_bytes()));
    let attached = [
        ("sbom", dm, sbom_artifact_of(GENUINE_SBOM, MANIFEST, &m)),
        ("sbom", dt.clone(), sbom_artifact_of(FORGED_SBOM, INDEX, &top)),
        ("signature", dt.clone(), sig),
    ];
    let path = dir.join("index.tar");
    agent_bundle(&dir, &path, &docs, (&top, INDEX), &attached, "", "");
    let run = verify_key(&dir, &path, &key);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("it is an SBOM of {dt}, {refusal}")), "{}", run.stderr);
    // On the source index a --platform bundle narrowed, the genuine SBOM dropped.
    let original = platform_index(&[(&m, "amd64"), (&other.0, "arm64")]);
    let (sig, sig_blobs) = cosign_signature(&pair, &digest(original.as_bytes()));
    let top = narrowed_platform_index(&[(&m, "amd64")]);
    let mut docs = blobs;
    docs.extend([m.clone(), top.clone(), original.clone(), "{}".to_string(), FORGED_SBOM.to_string()]);
    docs.extend(sig_blobs);
    let od = digest(original.as_bytes());
    let narrowed = format!(r#","narrowedFrom":{{"mediaType":"{INDEX}","digest":"{od}","size":{}}}"#, original.len());
    let attached = [("signature", od.clone(), sig), ("sbom", od.clone(), sbom_artifact_of(FORGED_SBOM, INDEX, &original))];
    let path = dir.join("narrowed.tar");
    agent_bundle(&dir, &path, &docs, (&top, INDEX), &attached, &narrowed, "");
    let run = verify_key(&dir, &path, &key);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&format!("it is an SBOM of {od}, {refusal}")), "{}", run.stderr);
}

#[test]
fn verify_key_and_push_key_refuse_an_unsigned_bundle_before_they_inflate_any_layer() {
    // Reproduced by review: the SBOM search ran before the signatures, so an unsigned bundle
    // of gzip bombs (2 MB each, 2 GiB inflated) held verify --key for 7 s per MB. A gzip on
    // PATH that never ends stands in: running it at all would time the run out.
    let dir = TempDir::new("offline-sbom-first");
    let (_, key) = cosign_key(&dir, "cosign");
    let path_var = fake_gzip(&dir, "exec sleep 600");
    let path = dir.join("unsigned.tar");
    sbom_bundle(&dir, &path, GENUINE_SBOM, GENUINE_SBOM, true);
    let offline = || Command::new(env!("CARGO_BIN_EXE_offline-install"));
    let run =
        tool_with(&dir, offline(), &["verify", path.to_str().unwrap(), "--key", key.to_str().unwrap()], None, Duration::from_secs(30), &[("PATH", &path_var)]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("carries no signature"), "{}", run.stderr);
    let git = bare_git(&dir);
    let args = [
        "push",
        path.to_str().unwrap(),
        "--registry",
        "127.0.0.1:1",
        "--git-url",
        git.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--module-commit",
        &"a".repeat(40),
    ];
    let run = tool_with(&dir, offline(), &args, None, Duration::from_secs(30), &[("PATH", &path_var)]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("carries no signature"), "{}", run.stderr);
}

#[test]
fn an_sbom_whose_subject_is_not_the_image_as_it_is_fails_verify() {
    // Reproduced by review: the expected artifact was built from the subject descriptor the
    // attachment itself gave, so one claiming another media type and size passed.
    let dir = TempDir::new("offline-sbom-subject");
    let (m, blobs) = image(&sbom_layer(GENUINE_SBOM));
    let odd = sbom_artifact_of(GENUINE_SBOM, MANIFEST, &m)
        .replace(&format!(r#""mediaType":"{MANIFEST}","size":{}}}}}"#, m.len()), r#""mediaType":"application/x-anything","size":1}}"#);
    assert!(odd.contains("application/x-anything"), "{odd}");
    let mut docs = blobs;
    docs.extend([m.clone(), "{}".to_string(), GENUINE_SBOM.to_string()]);
    let path = dir.join("odd.tar");
    agent_bundle(&dir, &path, &docs, (&m, MANIFEST), &[("sbom", digest(m.as_bytes()), odd)], "", "");
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("it is not the image's own /opt/runner/kubernetes-agent.cdx.json"), "{}", run.stderr);
}

#[test]
fn a_layer_gzip_cannot_read_fails_the_check_of_the_sbom_attached_to_its_image() {
    // Reproduced by review: a layer the search could not read counted as holding no SBOM,
    // and the attached one passed as 'the source's, carried as found'.
    let dir = TempDir::new("offline-sbom-unreadable");
    let path = dir.join("b.tar");
    sbom_bundle(&dir, &path, GENUINE_SBOM, FORGED_SBOM, true);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("searched for opt/runner/kubernetes-agent.cdx.json: it is not a tar stream"), "{}", run.stderr);
}

#[test]
fn an_agent_sbom_that_is_not_the_file_in_the_image_layer_fails_verify_and_push() {
    // A doctored bundle (consistent SHA256SUMS) could attach a made-up SBOM to the genuine,
    // signed agent image: verify --key passed it and push mirrored it beside the image,
    // where an auditor reads it. verify now finds the SBOM again in the layer it carries.
    let dir = TempDir::new("offline-sbom-forged");
    let genuine = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"name":"ring"}]}"#;
    let forged = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;
    let path = dir.join("forged.tar");
    sbom_bundle(&dir, &path, genuine, forged, false);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let refusal = format!("it is not the image's own /opt/runner/kubernetes-agent.cdx.json (sha256 {}, in its layer)", sha(genuine.as_bytes()));
    assert!(run.stderr.contains(&refusal), "{}", run.stderr);
    let target = Registry::start(false);
    let git = bare_git(&dir);
    let registry = format!("{}/mirror", target.host());
    let run = tool(&dir, &["push", path.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", git.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains(&refusal), "{}", run.stderr);
    assert!(target.seen().is_empty(), "something was pushed: {:?}", target.seen());
    let path = dir.join("genuine.tar");
    sbom_bundle(&dir, &path, genuine, genuine, false);
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let line = format!("is /opt/runner/kubernetes-agent.cdx.json from its own layer (sha256 {})", sha(genuine.as_bytes()));
    assert!(run.stdout.contains(&line), "{}", run.stdout);
}

#[test]
fn the_sbom_search_stops_reading_gzip_once_the_layer_tar_ends() {
    // A small layer can inflate a thousandfold (a gzip bomb): 28 MB of gzip'd zeros, 6 GB
    // inflated, took verify 26 s when everything gzip wrote was read to its end; an image
    // of a few such layers takes hours. A gzip that writes the tar's end marker and then
    // zeros forever stands in for it here: the search must stop at the end marker.
    let dir = TempDir::new("offline-sbom-bomb");
    let path_var = fake_gzip(&dir, "head -c 1024 /dev/zero\nexec cat /dev/zero");
    let sbom = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;
    let path = dir.join("b.tar");
    sbom_bundle(&dir, &path, sbom, sbom, true);
    let program = Command::new(env!("CARGO_BIN_EXE_offline-install"));
    let run = tool_with(&dir, program, &["verify", path.to_str().unwrap()], None, Duration::from_secs(30), &[("PATH", &path_var)]);
    // Ended (not killed at 30 s), and refused: an SBOM is attached, and the tar gzip gave
    // ends without its file.
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("no layer of that image holds /opt/runner/kubernetes-agent.cdx.json"), "{}", run.stderr);
}

#[test]
fn the_sbom_search_reads_each_agent_layer_as_it_arrives_and_stages_none_on_disk() {
    // A hostile source can declare layers of up to 64 GiB: the search had downloaded each
    // whole into bundle.scratch/ (a 32 MiB file here) before reading it.
    let dir = TempDir::new("offline-sbom-disk");
    let out = dir.join("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let big = "x".repeat(32 << 20);
    let (child, blobs) = image(&big);
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let scratch = dir.join("bundle.scratch");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop, watched) = (done.clone(), scratch.clone());
    let watcher = std::thread::spawn(move || {
        let mut peak = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            for e in std::fs::read_dir(&watched).into_iter().flatten().flatten() {
                peak = peak.max(e.metadata().map_or(0, |m| if m.is_file() { m.len() } else { 0 }));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    });
    let run = run_bundle_with(&dir, &out, &source.host(), module.to_str().unwrap(), &["--jobs", "1"]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = watcher.join().unwrap();
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stderr.contains("no SBOM"), "{}", run.stderr);
    assert!(peak < 1 << 20, "a {peak}-byte file sat in bundle.scratch/");
}

#[test]
fn parallel_fetches_keep_at_most_the_largest_blob_in_scratch() {
    // Item 2's bound with `--jobs 4`: blobs wait in bundle.scratch/ for their turn in the
    // output, never more than the largest one's bytes at a time.
    let dir = TempDir::new("offline-jobs-room");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let mut layers: Vec<String> = (0..6).map(|i| letters(300_000, i + 900)).collect();
    layers.push(letters(1_000_000, 999));
    let (config, m) = layered_image(&layers);
    let mut blobs = vec![config];
    blobs.extend(layers.iter().cloned());
    serve(&source, (MANIFEST, &m), &[], &blobs);
    // Every answer waits a little, so fetches overlap: each file in bundle.scratch/ then
    // stands for the blob it is becoming, counted at its full size.
    source.with(|s| s.on_request = Some(Box::new(|_| std::thread::sleep(Duration::from_millis(40)))));
    let sizes: std::collections::HashMap<String, u64> = layers.iter().map(|l| (sha(l.as_bytes()), l.len() as u64)).collect();
    let scratch = dir.join("bundle.scratch");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop, watched) = (done.clone(), scratch.clone());
    let watcher = std::thread::spawn(move || {
        let mut peak = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            let staged: u64 =
                std::fs::read_dir(&watched).into_iter().flatten().flatten().filter_map(|e| sizes.get(&*e.file_name().to_string_lossy()).copied()).sum();
            peak = peak.max(staged);
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    });
    let mut args = bundle_args(dir.join("bundle.tar").to_str().unwrap(), &source.host(), module.to_str().unwrap());
    args.extend(["--jobs".to_string(), "4".to_string()]);
    let run = tool(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = watcher.join().unwrap();
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(peak > 0, "the watcher saw no blob in bundle.scratch/: the test measured nothing");
    assert!(peak <= 1_000_000, "{peak} bytes of blobs waited in bundle.scratch/ at once, more than the largest blob");
    let run = tool(&dir, &["verify", dir.join("bundle.tar").to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
}
