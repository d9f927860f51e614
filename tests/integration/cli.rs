//! The binary as a user meets it: `render` golden files, `keygen` with openssl,
//! configuration errors, `standard`, `check`, and `--help` against the README.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::agent::{eventually, TempDir, World, RUNNER};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubernetes-agent"));
    c.env_clear().stdin(Stdio::null());
    c
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    bin().args(args).envs(env.iter().copied()).output().unwrap()
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Compares with the committed golden file; `UPDATE_GOLDEN=1` rewrites it.
fn assert_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

#[test]
fn render_of_the_orchestrators_default_jobspec_matches_golden() {
    let msg = golden("default-jobspec.message.json");
    let out = run(&["render", msg.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_golden("default-jobspec.job.json", &String::from_utf8(out.stdout).unwrap());
}

#[test]
fn render_with_pod_template_overlay_policy_and_mirrors_matches_golden() {
    let msg = std::fs::read(golden("pod-template-overlay.message.json")).unwrap();
    let policy = golden("policy.json");
    let mut child = bin()
        .args(["render", "-"])
        .envs([
            ("ORG_ID", "my-org"),
            ("RUNNER_ID", "my-runner"),
            ("JOB_NAMESPACES", "humanitec-runner-jobs"),
            ("JOB_SERVICE_ACCOUNTS", "kubernetes-runner-job"),
            ("IMAGE_MIRRORS", "ghcr.io/humanitec=registry.internal/humanitec"),
            ("JOB_POLICY_FILE", policy.to_str().unwrap()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &msg).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = String::from_utf8(out.stdout).unwrap();
    assert!(job.contains("registry.internal/humanitec/platform-orchestrator-runner:1.4.0"));
    assert!(job.contains("HTTPS_PROXY") && job.contains("TF_LOG") && job.contains("\"DEPLOYMENT_ID\""), "env merged by name");
    assert_golden("pod-template-overlay.job.json", &job);
}

#[test]
fn render_refusals_exit_2_naming_the_rule() {
    let msg = golden("default-jobspec.message.json");
    let out = run(&["render", msg.to_str().unwrap()], &[("JOB_NAMESPACES", "other")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("refused by local policy rule 'namespace-allow-list'"), "{err}");
    assert!(out.stdout.is_empty());
    let out = run(&["render", msg.to_str().unwrap()], &[("JOB_SERVICE_ACCOUNTS", "someone")]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("'service-account-allow-list'"));
}

#[test]
fn render_shows_a_pod_security_refusal_and_the_default_jobspec_passes_restricted() {
    let msg = golden("default-jobspec.message.json");
    let out = run(&["render", msg.to_str().unwrap()], &[("JOB_POD_SECURITY", "restricted")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = std::env::temp_dir().join(format!("ka-cli-pss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hostile = dir.join("sys-admin.json");
    let text = std::fs::read_to_string(&msg).unwrap().replace(r#""drop": ["#, r#""add": ["SYS_ADMIN"], "drop": ["#);
    assert!(text.contains("SYS_ADMIN"), "the fixture changed shape");
    std::fs::write(&hostile, text).unwrap();
    let out = run(&["render", hostile.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("refused by pod security level 'baseline', check 'capabilities': container 'main' adds SYS_ADMIN"), "{err}");
    assert!(out.stdout.is_empty());
    // Exempted by name, it renders; under restricted its stricter twin still refuses it.
    assert!(run(&["render", hostile.to_str().unwrap()], &[("JOB_ALLOW", "capabilities")]).status.success());
    let out = run(&["render", hostile.to_str().unwrap()], &[("JOB_ALLOW", "capabilities"), ("JOB_POD_SECURITY", "restricted")]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("check 'capabilities-restricted': container 'main' adds SYS_ADMIN"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_output_round_trips_through_openssl() {
    let dir = TempDir::new("keygen");
    let out = run(&["keygen", "--out-dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let private = dir.path().join("runner_private_key.pem");
    let public = dir.path().join("runner_public_key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    let derived =
        Command::new("openssl").args(["pkey", "-in", private.to_str().unwrap(), "-pubout"]).output().expect("openssl is installed (tests/run installs it)");
    assert!(derived.status.success(), "{}", String::from_utf8_lossy(&derived.stderr));
    assert_eq!(String::from_utf8(derived.stdout).unwrap(), std::fs::read_to_string(&public).unwrap(), "openssl derives the same public key");
    let text = Command::new("openssl").args(["pkey", "-in", private.to_str().unwrap(), "-noout", "-text"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("ED25519 Private-Key"));
    // The printed kid is the SHA-256 of the raw key, as the Orchestrator computes it.
    let raw = support::orchestrator::public_key_from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
    assert!(printed.contains(&format!("kid: {}", kubernetes_agent::orchestrator::key::kid_of(&raw))), "{printed}");
    assert!(printed.contains("-----BEGIN PUBLIC KEY-----\\n"), "one-line public key: {printed}");
    // An openssl-made key is accepted by the agent's config.
    let made = dir.path().join("openssl.pem");
    assert!(Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out", made.to_str().unwrap()]).status().unwrap().success());
    let pem = std::fs::read_to_string(&made).unwrap();
    kubernetes_agent::orchestrator::key::RunnerKey::from_pkcs8_pem(&pem, "test").unwrap();
}

#[test]
fn configuration_errors_are_one_line_exit_2_and_never_show_the_key() {
    let key = kubernetes_agent::orchestrator::key::RunnerKey::from_seed([9; 32]).private_pem();
    let broken = key.replace("-----END PRIVATE KEY-----", "");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("RUNNER_ID", "r1"), ("PRIVATE_KEY", &key)], "configuration ORG_ID: not set"),
        (&[("ORG_ID", "o"), ("RUNNER_ID", "R!"), ("PRIVATE_KEY", &key)], "configuration RUNNER_ID:"),
        (&[("ORG_ID", "o"), ("RUNNER_ID", "r1"), ("PRIVATE_KEY", &broken)], "configuration PRIVATE_KEY:"),
        (&[("ORG_ID", "o"), ("RUNNER_ID", "r1"), ("PRIVATE_KEY", &key), ("LOG_FORMAT", "xml")], "configuration LOG_FORMAT:"),
        (&[("ORG_ID", "o"), ("RUNNER_ID", "r1"), ("PRIVATE_KEY", &key)], "configuration KUBERNETES_SERVICE_HOST:"),
    ];
    for (env, expected) in cases {
        let out = run(&["remote"], env);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(err.contains("fix: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains(&key[28..70]), "the key leaked: {err}");
    }
}

#[test]
fn standard_mode_is_refused_with_an_explanation() {
    let out = run(&["standard"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("job-side mode of the upstream runner image"));
}

#[test]
fn upstream_argv_with_remote_connect_is_accepted() {
    let world = World::new(Duration::from_secs(2));
    let env: Vec<(String, String)> = world.env().into_iter().filter(|(k, _)| k != "REMOTE_URL").collect();
    let flag = format!("--remote-connect={}", world.orch.url());
    let agent = support::agent::AgentProcess::spawn(&[&flag, "remote"], &env);
    assert!(world.orch.wait_for_polls(RUNNER, 1, Duration::from_secs(20)), "{:?}", agent.logs());
}

#[test]
fn check_passes_against_the_stand_ins_and_fails_with_fixes() {
    let world = World::new(Duration::from_secs(2));
    let mut env = world.env();
    env.push(("JOB_NAMESPACES".into(), "jobs".into()));
    let out = bin().arg("check").envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("kid {}", world.key.kid())), "{text}");
    assert!(text.contains("PASS  Orchestrator reachable"), "{text}");
    assert!(text.contains("PASS  may create jobs.batch in namespace jobs"), "{text}");
    assert!(text.contains("PASS  pod security: every Job's pod must meet level 'baseline' (JOB_POD_SECURITY)\n"), "{text}");
    assert!(world.orch.polls().is_empty(), "check must not poll (it would take a message)");
    let mut strict = env.clone();
    strict.extend([("JOB_POD_SECURITY".to_string(), "restricted".to_string()), ("JOB_ALLOW".to_string(), "host-ports,sysctls".to_string())]);
    let out = bin().arg("check").envs(strict.iter().map(|(k, v)| (k, v))).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("PASS  pod security: every Job's pod must meet level 'restricted' (JOB_POD_SECURITY), exempting host-ports, sysctls (JOB_ALLOW)"),
        "{text}"
    );
    world.kube.deny("list", "events");
    let out = bin().arg("check").envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("FAIL  may list events in namespace jobs\n      fix: "), "{text}");
}

#[test]
fn help_and_readme_document_every_setting_with_its_default() {
    let out = run(&["--help"], &[]);
    let help = String::from_utf8(out.stdout).unwrap();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for s in kubernetes_agent::config::SETTINGS {
        assert!(help.contains(s.env), "--help lacks {}", s.env);
        let row = readme.lines().find(|l| l.starts_with(&format!("| `{}`", s.env))).unwrap_or_else(|| panic!("README has no row for {}", s.env));
        if !s.default.is_empty() {
            assert!(row.contains(&format!("`{}`", s.default)), "README row for {} lacks its default {}: {row}", s.env, s.default);
        }
        if !s.flag.is_empty() {
            assert!(row.contains(&format!("--{}", s.flag)), "README row for {} lacks --{}", s.env, s.flag);
        }
    }
}

#[test]
fn every_option_help_or_the_readme_names_is_taken_by_the_parser_and_every_option_it_takes_is_in_help() {
    let help = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    // The README's Commands and Configuration tables.
    let tables: String = readme.split("\n## Commands\n").nth(1).unwrap().split("\nAlso read, as other tools read them").next().unwrap().to_string();
    let options = |text: &str| -> Vec<String> {
        let mut found: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
            .map(String::from)
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let in_help = options(&help);
    let mut named = in_help.clone();
    named.extend(options(&tables));
    named.sort();
    named.dedup();
    for option in &named {
        // `version` ignores the values; an option the parser does not know exits 2.
        let args: Vec<&str> = match option.as_str() {
            "--force" => vec!["--force", "version"],
            "--help" | "--version" => vec![option.as_str()],
            other => vec![other, "x", "version"],
        };
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{option} is named in --help or the README but the parser refuses it: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The reverse: what the parser matches by name (src/cli.rs) and every setting's flag.
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli.rs")).unwrap();
    let source = source.split("const HELP_HEAD").next().unwrap();
    let mut taken: Vec<String> = source.split("Long(\"").skip(1).map(|s| format!("--{}", s.split('"').next().unwrap())).collect();
    taken.extend(kubernetes_agent::config::SETTINGS.iter().filter(|s| !s.flag.is_empty()).map(|s| format!("--{}", s.flag)));
    for option in taken {
        assert!(in_help.contains(&option), "the parser takes {option} but --help does not list it");
    }
}

/// Writes a JWT the agent really sent, with the public key, for tests/interop.py to
/// verify with an independent library (PyJWT + cryptography).
#[test]
fn jwt_sample_is_written_for_independent_verification() {
    let world = World::new(Duration::from_secs(1));
    let _agent = world.spawn(&[("TOKEN_LIFETIME", "15m")]);
    assert!(eventually(Duration::from_secs(20), || !world.orch.tokens().is_empty()));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("jwt.txt"), world.orch.tokens()[0].clone()).unwrap();
    std::fs::write(dir.join("public.pem"), world.key.public_pem()).unwrap();
    std::fs::write(dir.join("kid.txt"), world.key.kid()).unwrap();
    std::fs::write(dir.join("claims.txt"), format!("{}\n{}\n", support::agent::ORG, RUNNER)).unwrap();
}

/// Runs `cmd` with its output captured, killing it (and failing) if it is still running
/// after `within`: the defects these tests guard against are hangs and endless reads.
fn output_within(cmd: &mut Command, within: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > within {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {within:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The agent's settings with a valid key, for tests that break one setting.
fn agent_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let key = kubernetes_agent::orchestrator::key::RunnerKey::from_seed([9; 32]).private_pem();
    let mut env = vec![("ORG_ID".to_string(), "o".to_string()), ("RUNNER_ID".into(), "r1".into()), ("PRIVATE_KEY".into(), key)];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k && !(*k == "PRIVATE_KEY_FILE" && name == "PRIVATE_KEY"));
        env.push((k.to_string(), v.to_string()));
    }
    env
}

#[test]
fn configuration_values_with_line_breaks_make_one_line_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("REMOTE_URL", "https://a\nb", "configuration REMOTE_URL: 'https://a\\nb' is not an http(s) URL"),
        ("REMOTE_URL", "https://user:s3cret@a\r\nb", "configuration REMOTE_URL: 'https://***@a\\r\\nb' is not an http(s) URL"),
        ("REMOTE_URL", "user:s3cret@a\nb", "configuration REMOTE_URL: '***@a\\nb' is not an http(s) URL"),
        ("ORG_ID", "my\norg", "configuration ORG_ID: 'my\\norg' contains characters"),
        ("RUNNER_ID", "r\nx", "configuration RUNNER_ID: 'r\\nx' does not match"),
        ("LOG_FORMAT", "json\n\u{1b}[2J", "configuration LOG_FORMAT: 'json\\n\\u{1b}[2J' is not a log format"),
        ("JOB_NAMESPACES", "a,b\nc", "configuration JOB_NAMESPACES: 'b\\nc' is not a valid namespace name"),
    ];
    for (name, value, expected) in cases {
        let out = output_within(bin().arg("remote").envs(agent_env(&[(name, value)])), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with(&format!("kubernetes-agent: {expected}")), "{name}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[test]
fn a_usage_error_quoting_an_argument_with_a_line_break_stays_on_one_line() {
    let out = output_within(bin().arg("ser\nve"), Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        ["kubernetes-agent: unknown command 'ser\\nve'; run with --help for the list", "run 'kubernetes-agent --help' for usage"]
    );
}

fn os(bytes: &[u8]) -> std::ffi::OsString {
    std::os::unix::ffi::OsStringExt::from_vec(bytes.to_vec())
}

const EVERY_COMMAND: &[&[&str]] = &[&["remote"], &["check"], &["render", "MESSAGE"], &["version"], &["--help"]];

fn command_line(args: &[&str]) -> Vec<String> {
    let msg = golden("default-jobspec.message.json");
    args.iter().map(|a| if *a == "MESSAGE" { msg.display().to_string() } else { a.to_string() }).collect()
}

#[test]
fn a_non_utf8_lang_crashes_no_command() {
    for args in EVERY_COMMAND {
        let out = output_within(bin().args(command_line(args)).env("LANG", os(b"de_DE.\xff\xfe")), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let expected = if matches!(args[0], "remote" | "check") { 2 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {err}");
        if args[0] == "remote" {
            assert!(err.starts_with("kubernetes-agent: configuration ORG_ID: not set"), "{args:?}: {err}");
        }
        if args[0] == "check" {
            let out = String::from_utf8_lossy(&out.stdout);
            assert!(out.starts_with("FAIL  configuration ORG_ID: not set"), "{args:?}: {out}");
        }
    }
}

#[test]
fn a_non_utf8_private_key_is_a_one_line_error_naming_it_that_never_shows_the_key() {
    let key = kubernetes_agent::orchestrator::key::RunnerKey::from_seed([7; 32]).private_pem();
    let body = key.lines().nth(1).unwrap().to_string();
    let mut value = key.clone().into_bytes();
    value.insert(40, 0xff);
    for args in EVERY_COMMAND {
        let out =
            output_within(bin().args(command_line(args)).envs([("ORG_ID", "o"), ("RUNNER_ID", "r1")]).env("PRIVATE_KEY", os(&value)), Duration::from_secs(20));
        let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for part in [&body[..20], &body[24..]] {
            assert!(!stdout.contains(part) && !err.contains(part), "{args:?}: the key leaked: {stdout}{err}");
        }
        if matches!(args[0], "version" | "--help") {
            assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("kubernetes-agent: configuration PRIVATE_KEY: the value is not valid UTF-8"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_non_utf8_flag_value_is_a_one_line_usage_error_naming_the_flag() {
    let out = output_within(bin().arg("remote").arg("--org-id").arg(os(b"o\xff")), Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("kubernetes-agent: --org-id: value is not UTF-8"), "{err}");
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn every_file_setting_pointed_at_dev_zero_is_refused_at_its_cap_within_seconds() {
    let msg = golden("default-jobspec.message.json");
    let msg = msg.to_str().unwrap();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["remote"], "PRIVATE_KEY_FILE", "configuration PRIVATE_KEY_FILE: cannot read /dev/zero: larger than 16 KiB"),
        (&["remote"], "SSL_CERT_FILE", "configuration SSL_CERT_FILE: cannot read /dev/zero: larger than 4 MiB"),
        (&["remote"], "REMOTE_CA_FILE", "configuration REMOTE_CA_FILE: cannot read /dev/zero: larger than 4 MiB"),
        (&["render", msg], "JOB_POLICY_FILE", "configuration JOB_POLICY_FILE: cannot read /dev/zero: larger than 1 MiB"),
        (&["render", "/dev/zero"], "", "could not decode message from /dev/zero: larger than 1 MiB"),
    ];
    for (args, name, expected) in cases {
        let env = if name.is_empty() { agent_env(&[]) } else { agent_env(&[(name, "/dev/zero")]) };
        let out = output_within(bin().args(*args).envs(env), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.starts_with(&format!("kubernetes-agent: {expected}")), "{name}: {err}");
    }
    let out = output_within(bin().args(["render", "-"]).stdin(std::fs::File::open("/dev/zero").unwrap()), Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("kubernetes-agent: could not decode message from standard input: larger than 1 MiB"), "{err}");
}

#[test]
fn every_file_setting_pointed_at_a_fifo_fails_at_once_instead_of_hanging() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    mkfifo(&certs.join("ca.pem"));
    let fifo = fifo.to_str().unwrap();
    let msg = golden("default-jobspec.message.json");
    let msg = msg.to_str().unwrap();
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (&["remote"], "PRIVATE_KEY_FILE", fifo, "configuration PRIVATE_KEY_FILE:"),
        (&["remote"], "SSL_CERT_FILE", fifo, "configuration SSL_CERT_FILE: SSL_CERT_FILE / SSL_CERT_DIR hold no PEM certificate"),
        (&["remote"], "SSL_CERT_DIR", certs.to_str().unwrap(), "configuration SSL_CERT_FILE: SSL_CERT_FILE / SSL_CERT_DIR hold no PEM certificate"),
        (&["remote"], "REMOTE_CA_FILE", fifo, "configuration REMOTE_CA_FILE:"),
        (&["render", msg], "JOB_POLICY_FILE", fifo, "configuration JOB_POLICY_FILE:"),
        (&["render", fifo], "", "", "could not decode"),
    ];
    for (args, name, value, expected) in cases {
        let env = if name.is_empty() { agent_env(&[]) } else { agent_env(&[(name, value)]) };
        let out = output_within(bin().args(*args).envs(env), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.starts_with(&format!("kubernetes-agent: {expected}")), "{name}: {err}");
    }
}

#[test]
fn check_reports_every_bad_setting_at_once() {
    let out = run(&["check"], &[("RUNNER_ID", "Not-Valid"), ("POLLS", "99"), ("LISTEN_ADDRESS", "8080"), ("STARTUP_GRACE", "soon")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for name in ["ORG_ID", "RUNNER_ID", "PRIVATE_KEY", "LISTEN_ADDRESS", "POLLS", "STARTUP_GRACE", "KUBERNETES_SERVICE_HOST"] {
        assert!(stdout.contains(&format!("FAIL  configuration {name}:")), "{name} missing from:\n{stdout}");
    }
    assert!(stdout.contains("7 configuration problem(s)"), "{stdout}");
}
