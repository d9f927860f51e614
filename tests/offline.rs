//! offline-install against a hostile registry stand-in (tests/support/registry.rs) and
//! crafted bundles, each test named after the defect it closes. The tool runs as a child
//! process (bounded in time), so a hang or a stack overflow fails the test instead of
//! taking the test run down. Everything talks to 127.0.0.1 only.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::registry::{Auth, Recorder, Registry};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha(bytes))
}

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ka-offline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
fn tool(dir: &Dir, args: &[&str], stdin: Option<&str>, within: Duration) -> Run {
    tool_with(dir, Command::new(env!("CARGO_BIN_EXE_offline-install")), args, stdin, within, &[])
}

/// Runs offline-install with at most `kib` KiB of address space (`ulimit -v`).
fn tool_in_memory(dir: &Dir, kib: u64, args: &[&str], within: Duration) -> Run {
    let mut sh = Command::new("sh");
    sh.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_offline-install")]);
    tool_with(dir, sh, args, None, within, &[])
}

/// Runs `program` (offline-install, or a shell that execs it) with `args` and `env`, killed after `within`.
fn tool_with(dir: &Dir, mut program: Command, args: &[&str], stdin: Option<&str>, within: Duration, env: &[(&str, &str)]) -> Run {
    let (out, err) = (dir.path("stdout.txt"), dir.path("stderr.txt"));
    let mut child = program
        .args(args)
        // The upload state file goes to the current directory: each test's own.
        .current_dir(&dir.0)
        .envs(env.iter().copied())
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("OFFLINE_INSTALL_USERNAME")
        .env_remove("OFFLINE_INSTALL_PASSWORD")
        .env("REGISTRY_AUTH_FILE", dir.path("no-auth-file.json"))
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
    let dir = Dir::new("valid");
    let path = dir.path("b.tar");
    write_tar(&path, &valid_chunks());
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
}

// ---- 2. smuggling past verify ------------------------------------------------------

const EVIL: &[u8] = b"#!/bin/sh\necho EVIL\n";

/// Writes `chunks`, proves that `tar -xf bundle offline-install` extracts the EVIL tool
/// from them, then runs verify, which must refuse the bundle.
fn smuggled_then_verified(dir: &Dir, path: &Path, chunks: &[Chunk]) -> Run {
    write_tar(path, chunks);
    let x = dir.path("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(path).arg("-C").arg(&x).arg("offline-install").status().unwrap().success());
    assert_eq!(std::fs::read(x.join("offline-install")).unwrap(), EVIL, "the attack is real: GNU tar extracts the evil bytes");
    let run = tool(dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run
}

#[test]
fn a_second_tool_hidden_by_the_ustar_prefix_field_fails_verify() {
    let dir = Dir::new("prefix");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("dup");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("nul");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("dag40");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("chain");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("deepjson");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("dagpush");
    let path = dir.path("b.tar");
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
            dir.path("none.git").to_str().unwrap(),
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
    let dir = Dir::new("nodigest");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("userinfo");
    let path = dir.path("b.tar");
    write_tar(&path, &valid_chunks());
    let run =
        tool(&dir, &["push", path.to_str().unwrap(), "--registry", "mirror:hunter2@127.0.0.1:1/x", "--plain-http", "--git-url", "/nonexistent"], None, QUICK);
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(!run.all().contains("hunter2"), "{}", run.all());
    assert!(run.stderr.contains("user info"), "{}", run.stderr);
}

#[test]
fn a_source_reference_with_a_password_is_refused_without_printing_it() {
    let dir = Dir::new("srcuserinfo");
    let out = dir.path("b.tar");
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

fn run_bundle(dir: &Dir, out: &Path, source: &str, module: &str) -> Run {
    let args = bundle_args(out.to_str().unwrap(), source, module);
    tool(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK)
}

#[test]
fn a_blob_digest_with_a_path_is_refused_before_any_file_is_written() {
    let dir = Dir::new("pwned");
    std::fs::create_dir_all(dir.path("out")).unwrap();
    let out = dir.path("out/bundle.tar");
    let absolute = dir.path("PWNED-absolute");
    for hostile in [format!("sha256:{}", absolute.display()), "sha256:../PWNED-relative".to_string()] {
        let source = Registry::start(false);
        let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{hostile}","size":9}},"layers":[]}}"#);
        source.with(|s| {
            s.manifests.insert("0.1.0".into(), (MANIFEST.into(), manifest));
            s.any_blob = Some("ATTACKER!".into());
        });
        let run = run_bundle(&dir, &out, &source.host(), "/nonexistent");
        assert!(!absolute.exists(), "the registry wrote {}", absolute.display());
        assert!(!dir.path("out/PWNED-relative").exists() && !dir.path("PWNED-relative").exists(), "the registry wrote outside the scratch directory");
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.stderr.contains("not a digest"), "{}", run.stderr);
        assert!(!source.seen().iter().any(|s| s.path.contains("/blobs/")), "a blob was fetched by a hostile digest");
        let left: Vec<_> = std::fs::read_dir(dir.path("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// A git repository with a tag v1.0.0, for `--module-repo`.
fn module_repo(dir: &Dir) -> PathBuf {
    let repo = dir.path("module");
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
    let dir = Dir::new("e2e");
    let out = dir.path("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    let top = index(&[&child]);
    serve(&source, (INDEX, &top), &[(MANIFEST, &child)], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(!dir.path("bundle.scratch").exists() && !dir.path("bundle.partial").exists());
    let run = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let target = Registry::start(true);
    let git_target = dir.path("target.git");
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
    let dir = Dir::new("tagchild");
    let out = dir.path("bundle.tar");
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
    let dir = Dir::new("redirect");
    let out = dir.path("bundle.tar");
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
    let dir = Dir::new("scratch");
    let out = dir.path("bundle.tar");
    std::fs::create_dir_all(dir.path("bundle.scratch")).unwrap();
    std::fs::write(dir.path("bundle.scratch/keep"), "someone's file").unwrap();
    let run = run_bundle(&dir, &out, "127.0.0.1:1", "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(std::fs::read_to_string(dir.path("bundle.scratch/keep")).unwrap(), "someone's file");
    assert!(run.stderr.contains("bundle.scratch already exists"), "{}", run.stderr);
    assert!(!dir.path("bundle.partial").exists(), "it created a .partial it then left");
}

#[test]
fn bundle_refuses_an_existing_partial_file_and_leaves_it_alone() {
    let dir = Dir::new("partial");
    let out = dir.path("bundle.tar");
    std::fs::write(dir.path("bundle.partial"), "another run's bundle").unwrap();
    let run = run_bundle(&dir, &out, "127.0.0.1:1", "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(std::fs::read_to_string(dir.path("bundle.partial")).unwrap(), "another run's bundle");
    assert!(run.stderr.contains("bundle.partial already exists"), "{}", run.stderr);
    assert!(!dir.path("bundle.scratch").exists(), "it left the .scratch it created");
}

// ---- 4. credentials to other origins ---------------------------------------------------

/// `push` to a TLS stand-in as user `mirror` with password `hunter2` (on standard input).
fn push_as_mirror(dir: &Dir, bundle: &Path, target: &Registry) -> Run {
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
    let dir = Dir::new("realm");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("location");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("srcchain");
    let out = dir.path("bundle.tar");
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
    assert!(!out.exists() && !dir.path("bundle.partial").exists() && !dir.path("bundle.scratch").exists());
    let fetched = source.seen().iter().filter(|s| s.path.contains("/manifests/sha256:")).count();
    assert!(fetched <= 8, "{fetched} manifests fetched");
}

#[test]
fn source_credentials_from_the_options_are_not_offered_to_a_second_source_registry() {
    let dir = Dir::new("twosources");
    let out = dir.path("bundle.tar");
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
    assert!(!out.exists() && !dir.path("bundle.partial").exists() && !dir.path("bundle.scratch").exists());
}

#[test]
fn bundle_exits_non_zero_and_keeps_nothing_when_its_own_verify_fails() {
    let dir = Dir::new("ownverify");
    let out = dir.path("bundle.tar");
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
    assert!(!out.exists() && !dir.path("bundle.partial").exists() && !dir.path("bundle.scratch").exists());
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
    let dir = Dir::new("deepnames");
    let path = dir.path("b.tar");
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
        let dir = Dir::new(&format!("trailing-{marker}"));
        let path = dir.path("b.tar");
        write_tar(&path, &valid_chunks());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1024);
        bytes.extend(vec![0u8; marker]);
        bytes.extend(header(&file("offline-install", EVIL)));
        bytes.extend(vec![0u8; 1024]);
        std::fs::write(&path, &bytes).unwrap();
        // The attack is real: GNU tar -i reads on past zero blocks and extracts the evil tool.
        let x = dir.path("x");
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
        let dir = Dir::new("meta");
        let path = dir.path("b.tar");
        write_tar(&path, &chunks);
        let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
        assert_eq!(run.code, Some(1), "{case}: {}", run.all());
        assert!(run.stderr.contains(why), "{case}: {}", run.stderr);
    }
}

/// A real git bundle of `refs` of the module repository.
fn git_bundle(dir: &Dir, module: &Path, refs: &[&str]) -> Vec<u8> {
    let file = dir.path("m.bundle");
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

fn push_plain(dir: &Dir, bundle: &Path, target: &Registry, git_url: &str) -> Run {
    let registry = format!("{}/mirror", target.host());
    tool(dir, &["push", bundle.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", git_url], None, QUICK)
}

#[test]
fn a_git_bundle_with_other_refs_than_the_module_ref_fails_verify_and_push_pushes_only_that_ref_at_its_commit() {
    let dir = Dir::new("gitrefs");
    let module = module_repo(&dir);
    assert!(Command::new("git").arg("-C").arg(&module).args(["branch", "evil"]).status().unwrap().success());
    let path = dir.path("b.tar");
    let commit = head_of(&module, "v1.0.0");
    // Three refs, manifest.json names one.
    write_tar(&path, &with_module(&git_bundle(&dir, &module, &["v1.0.0", "evil", "main"]), &commit));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("not exactly the module's"), "{}", run.stderr);
    // The one ref, at another commit than manifest.json says: nothing reaches the Git service.
    let target_git = dir.path("target.git");
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
    let dir = Dir::new("toctou");
    let path = dir.path("b.tar");
    write_tar(&path, &valid_chunks());
    let target = Registry::start(false);
    let file = path.clone();
    target.with(|s| {
        // At the first request (verify is done), rewrite the layer in place, same size.
        // (Every request runs the hook: once nothing is left to change, it changes nothing.)
        s.on_request = Some(Box::new(move |_| {
            let bytes = std::fs::read(&file).unwrap();
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
    let dir = Dir::new("gitsilent");
    let out = dir.path("bundle.tar");
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
    assert!(!out.exists() && !dir.path("bundle.partial").exists() && !dir.path("bundle.scratch").exists());
}

#[test]
fn a_module_url_password_with_a_slash_or_a_space_is_never_printed() {
    for password in ["pa/ss", "pa ss"] {
        let dir = Dir::new("gitpw");
        let out = dir.path("bundle.tar");
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
    let dir = Dir::new("hugesize");
    let out = dir.path("bundle.tar");
    let source = Registry::start(false);
    let config = "cfg".to_string();
    let manifest =
        format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"digest":"{}","size":{}}},"layers":[]}}"#, digest(config.as_bytes()), u64::MAX);
    serve(&source, (MANIFEST, &manifest), &[], &[config]);
    let run = run_bundle(&dir, &out, &source.host(), "/nonexistent");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("more than the"), "{}", run.stderr);
    assert!(!out.exists() && !dir.path("bundle.partial").exists() && !dir.path("bundle.scratch").exists());
}

#[test]
fn push_keeps_its_scratch_out_of_the_bundle_directory_and_checks_it_before_uploading() {
    let dir = Dir::new("roscratch");
    let path = dir.path("b.tar");
    write_tar(&path, &valid_chunks());
    // Something already named like the old scratch directory next to the bundle.
    std::fs::write(dir.path("b.push-scratch"), "someone's file").unwrap();
    let target = Registry::start(false);
    let registry = format!("{}/mirror", target.host());
    let args = ["push", path.to_str().unwrap(), "--registry", &registry, "--plain-http", "--git-url", "/nonexistent"];
    let tmp = dir.path("no-such-tmp").display().to_string();
    let run = tool_with(&dir, Command::new(env!("CARGO_BIN_EXE_offline-install")), &args, None, QUICK, &[("TMPDIR", &tmp)]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("scratch directory"), "{}", run.stderr);
    assert!(target.seen().is_empty(), "it uploaded before finding it has no scratch space: {:?}", target.seen());
    assert_eq!(std::fs::read_to_string(dir.path("b.push-scratch")).unwrap(), "someone's file");
    // With a temporary directory it gets as far as the module (not a git bundle here).
    let run = push_plain(&dir, &path, &target, "/nonexistent");
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(!target.seen().is_empty());
}

#[test]
fn a_blob_nothing_references_fails_verify() {
    let dir = Dir::new("unreferenced");
    let path = dir.path("b.tar");
    let extra = b"nobody points at me";
    write_tar(&path, &with_first(vec![file(&format!("oci/blobs/sha256/{}", sha(extra)), extra)]));
    let run = tool(&dir, &["verify", path.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("referenced by no artifact"), "{}", run.stderr);
}

#[test]
fn verify_into_a_closed_pipe_does_not_panic() {
    let dir = Dir::new("epipe");
    let path = dir.path("b.tar");
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
    let dir = Dir::new("anchor");
    let out = dir.path("bundle.tar");
    let module = module_repo(&dir);
    let source = Registry::start(false);
    let (child, blobs) = image("layer");
    serve(&source, (MANIFEST, &child), &[], &blobs);
    let run = run_bundle(&dir, &out, &source.host(), module.to_str().unwrap());
    assert_eq!(run.code, Some(0), "{}", run.all());
    let anchor = |text: &str| text.lines().find_map(|l| l.strip_prefix("SHA256SUMS sha256: ")).map(String::from);
    let printed = anchor(&run.stdout).expect("bundle prints the anchor");
    let x = dir.path("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&x).arg("SHA256SUMS").status().unwrap().success());
    assert_eq!(printed, sha(&std::fs::read(x.join("SHA256SUMS")).unwrap()));
    let run = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(anchor(&run.stdout), Some(printed), "{}", run.stdout);
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
fn layer_bundle(dir: &Dir, len: usize) -> (PathBuf, String) {
    let path = dir.path("b.tar");
    let layer = letters(len, 7);
    let (config, m) = layered_image(std::slice::from_ref(&layer));
    write_tar(&path, &bundle_chunks(&[config, layer.clone(), m.clone()], &m, MANIFEST, None));
    (path, layer)
}

/// `push` in 64 KiB chunks with the state file in the test's directory; over TLS as user
/// `mirror` (password `hunter2` on standard input) when `tls`, else plain HTTP.
fn push_chunked(dir: &Dir, bundle: &Path, target: &Registry, tls: bool, extra: &[&str]) -> Run {
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
    let dir = Dir::new("chunks");
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
    assert!(!dir.path(STATE).exists(), "the state file outlived the uploads");
}

#[test]
fn a_push_cut_midway_through_a_chunk_resumes_from_the_registrys_offset_and_resends_no_acknowledged_byte() {
    let dir = Dir::new("resume");
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
    let state = std::fs::read_to_string(dir.path(STATE)).expect("the interrupted upload is in the state file");
    assert!(!state.contains("hunter2") && !state.contains(&basic[6..]) && !state.contains("Basic"), "{state}");
    target.with(|s| s.cut_patch = None);
    let run = push_chunked(&dir, &path, &target, true, &["--jobs", "1"]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(run.stderr.contains(&format!("resuming at byte {kept}")), "{}", run.all());
    let second: Vec<_> = patches_of(&target, layer.len()).into_iter().skip(first.len()).collect();
    assert_eq!(second.first().map(|p| p.0), Some(kept), "not resumed at the registry's offset: {second:?}");
    assert_eq!(second.iter().map(|p| p.2 as u64).sum::<u64>(), layer.len() as u64 - kept, "{second:?}");
    target.with(|s| assert_eq!(s.blobs.get(&digest(layer.as_bytes())), Some(&layer)));
    assert!(!dir.path(STATE).exists());
    assert!(!run.all().contains("hunter2"));
}

#[test]
fn a_push_interrupted_between_chunks_resumes_on_a_registry_that_seals_offsets_in_its_urls() {
    let dir = Dir::new("between");
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
    let dir = Dir::new("sealed");
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
    assert!(!dir.path(STATE).exists());
}

#[test]
fn a_state_file_pointing_at_another_origin_or_repository_gets_no_request_and_no_credentials() {
    let dir = Dir::new("hostilestate");
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
    std::fs::write(dir.path(STATE), state.join("\n") + "\n").unwrap();
    let run = push_chunked(&dir, &path, &target, true, &[]);
    assert!(run.stderr.contains("unpacking the module bundle"), "{}", run.all());
    assert!(elsewhere.seen().is_empty(), "the state file steered requests to another origin: {:?}", elsewhere.seen());
    assert!(!target.seen().iter().any(|s| s.path.contains("/other/")), "the state file steered a request to another repository");
    assert!(run.stderr.contains("ignored"), "{}", run.all());
    target.with(|s| assert_eq!(s.blobs.get(&d), Some(&layer)));
}

#[test]
fn a_registry_without_chunked_uploads_gets_whole_blobs_and_is_told_once() {
    let dir = Dir::new("nochunks");
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
fn layers_bundle(dir: &Dir, n: usize, len: usize, indexed: bool) -> (PathBuf, Vec<String>) {
    let path = dir.path("b.tar");
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
    let dir = Dir::new("parallelfail");
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
    let dir = Dir::new("parallelorder");
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
    let dir = Dir::new("heldwhole");
    let (path, layer) = layer_bundle(&dir, 200_000);
    let target = Registry::start(false);
    target.with(|s| {
        s.lenient_state = true;
        s.fail_put = Some(100_000);
    });
    // Every chunk of the layer goes up, its closing PUT fails: the registry holds it whole.
    let run = push_chunked(&dir, &path, &target, false, &["--jobs", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(dir.path(STATE).exists(), "{}", run.all());
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

/// `bundle --jobs 4` of six 100 KB layers into `dir`'s bundle.tar, the layer numbered
/// `missing` (if any) absent from the source; returns the run and the layers.
fn bundle_in_parallel(dir: &Dir, missing: Option<usize>) -> (Run, Vec<String>) {
    let module = module_repo(dir);
    let source = Registry::start(false);
    let layers = serve_layers(&source, 6, 100_000);
    if let Some(i) = missing {
        source.with(|s| s.blobs.remove(&digest(layers[i].as_bytes())));
    }
    let mut args = bundle_args(dir.path("bundle.tar").to_str().unwrap(), &source.host(), module.to_str().unwrap());
    args.extend(["--jobs".to_string(), "4".to_string()]);
    (tool(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, QUICK), layers)
}

#[test]
fn bundle_fetches_blobs_in_parallel_into_a_bundle_that_verifies() {
    let dir = Dir::new("bundlejobs");
    let out = dir.path("bundle.tar");
    let (run, layers) = bundle_in_parallel(&dir, None);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stderr.contains("fetching agent-image: ") && run.stderr.contains(" MiB in "), "no progress line: {}", run.stderr);
    let run = tool(&dir, &["verify", out.to_str().unwrap()], None, QUICK);
    assert_eq!(run.code, Some(0), "{}", run.all());
    let listing = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    for l in &layers {
        assert_eq!(names.matches(&sha(l.as_bytes())).count(), 1, "{names}");
    }
    assert!(!dir.path("bundle.scratch").exists() && !dir.path("bundle.partial").exists());
}

#[test]
fn a_failing_fetch_among_parallel_ones_fails_the_bundle_and_leaves_nothing() {
    let dir = Dir::new("bundlejobsfail");
    let out = dir.path("bundle.tar");
    let (run, layers) = bundle_in_parallel(&dir, Some(2));
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stderr.contains(&digest(layers[2].as_bytes())) && run.stderr.contains("BLOB_UNKNOWN"),
        "the first error is not the one reported: {}",
        run.all()
    );
    assert!(!out.exists() && !dir.path("bundle.scratch").exists() && !dir.path("bundle.partial").exists());
    assert!(!run.stdout.contains("wrote"), "{}", run.stdout);
}

#[test]
fn a_state_dir_that_is_not_a_directory_is_refused_before_anything_is_pushed() {
    let dir = Dir::new("nostatedir");
    let (path, _) = layer_bundle(&dir, 1000);
    let target = Registry::start(false);
    let registry = format!("{}/mirror", target.host());
    let missing = dir.path("no-such-dir").display().to_string();
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
