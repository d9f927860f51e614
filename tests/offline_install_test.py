"""offline-install end to end, all on loopback, with real components:

- a source registry (Debian's docker-registry, plain HTTP) seeded with the multi-arch image
  tests/image_test.py built (pushed by skopeo, under the agent's and a runner's name) and
  the chart pushed by real Helm; a module repository made with git;
- two target registries: plain HTTP, and TLS with the test CA plus htpasswd basic auth;
  a real Git server (git daemon with receive-pack) as the module's target;
- bundle -> verify -> push (with the tool taken out of the bundle, as on the far side);
  skopeo sees the same digests in the targets; Helm pulls the mirrored chart and renders
  it; git clone of the mirrored module has the ref; a second push uploads no blob; a
  bundle with one flipped byte is refused before anything is pushed; a wrong password
  fails with a clear message and a non-zero exit.

Expects the release musl build (tests/run) and target/image/kubernetes-agent.oci.tar.
Prints 'N passed, N failed'.
"""
import hashlib
import json
import os
import shutil
import urllib.request

from helm_python import chart as helm_chart
from helm_python import registry as helm_registry

from checks import check, finish
from registries import (CERTS, IMAGE, PASSWORD, ROOT, TOOL, WORK, TokenServer, blob_puts, free_port, git_daemon, module_repo,
                        raw_digest, registry, run, stop_all)


def bundle_output(stdout):
    """bundle's standard output: 'wrote FILE (N bytes)', manifest.json, then the trust anchor line."""
    body = stdout.split("\n", 1)[1]
    text, anchor = body.split("\nSHA256SUMS sha256: ", 1)
    return json.loads(text), anchor.split("\n", 1)[0]


def main():
    assert os.path.exists(TOOL), f"{TOOL} is missing: build the release musl binaries first"
    assert os.path.exists(IMAGE), f"{IMAGE} is missing: run tests/image_test.py first"
    source, _ = registry("source")
    plain, plain_log = registry("plain")
    secure, secure_log = registry("secure", tls=True, auth=True)
    token_server = TokenServer(WORK)
    tokened, tokened_log = registry("tokened", tls=True, token=token_server)

    # Seed the source: the image (all platforms) under two names, the chart by real Helm.
    for repo in ("humanitec/kubernetes-agent:0.1.0", "humanitec/platform-orchestrator-runner:1.4.0"):
        run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", f"oci-archive:{IMAGE}", f"docker://{source}/{repo}"])
    packaged = helm_chart.Chart.load(os.path.join(ROOT, "k8s", "humanitec-kubernetes-agent-runner")).save(WORK)
    helm_registry.push(packaged, f"oci://{source}/humanitec/charts", plain_http=True)

    # The module repository, and the Git server it is mirrored to.
    module, commit = module_repo()
    git_url = git_daemon("git")

    bundle_file = os.path.join(WORK, "agent-bundle.tar")
    source_agent = f"{source}/humanitec/kubernetes-agent:0.1.0"
    source_chart = f"{source}/humanitec/charts/humanitec-kubernetes-agent-runner:0.1.0"

    anchors = {}

    def bundle():
        out = run([TOOL, "bundle", "--output", bundle_file, "--source-plain-http", "--agent-image", source_agent,
                   "--runner-image", f"{source}/humanitec/platform-orchestrator-runner:1.4.0", "--chart", f"oci://{source_chart}",
                   "--module-repo", module, "--module-ref", "v1.0.0"])
        manifest, anchors["bundle"] = bundle_output(out.stdout)
        digests = {a["role"]: a["digest"] for a in manifest["artifacts"]}
        assert digests["agent-image"] == raw_digest(source_agent, "--tls-verify=false"), digests
        assert digests["chart"] == raw_digest(source_chart, "--tls-verify=false"), digests
        assert sorted(manifest["artifacts"][0]["platforms"]) == ["linux/amd64", "linux/arm64"], manifest
        assert manifest["module"]["commit"] == commit, manifest["module"]
        names = run(["tar", "-tf", bundle_file]).stdout.split()
        assert names[0] == "offline-install" and names[-1] == "SHA256SUMS" and "manifest.json" in names, names

    check("bundle fetches both images (all platforms), the chart and the module into one file", bundle)

    def verify():
        out = run([TOOL, "verify", bundle_file])
        assert "every checksum and digest matches" in out.stdout, out.stdout
        # sha256sum agrees with the bundle's own SHA256SUMS.
        x = os.path.join(WORK, "x")
        os.makedirs(x)
        run(["tar", "-xf", bundle_file, "-C", x])
        run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=x)
        # The trust anchor: bundle and verify print the same sha256 of SHA256SUMS.
        with open(os.path.join(x, "SHA256SUMS"), "rb") as f:
            sums = hashlib.sha256(f.read()).hexdigest()
        assert anchors["bundle"] == sums and f"SHA256SUMS sha256: {sums}" in out.stdout, (anchors, out.stdout)

    check("verify passes, and sha256sum -c agrees with SHA256SUMS", verify)

    far = os.path.join(WORK, "far-side")
    os.makedirs(far)
    shutil.copy(bundle_file, far)
    far_bundle = os.path.join(far, "agent-bundle.tar")
    run(["tar", "-xf", far_bundle, "offline-install"], cwd=far)
    far_tool = os.path.join(far, "offline-install")

    def push_plain():
        out = run([far_tool, "push", far_bundle, "--registry", f"{plain}/mirror", "--plain-http", "--git-url", git_url])
        for name, ref in (("agent", "mirror/kubernetes-agent:0.1.0"), ("runner", "mirror/platform-orchestrator-runner:1.4.0"),
                          ("chart", "mirror/humanitec-kubernetes-agent-runner:0.1.0")):
            src = {"agent": source_agent, "runner": f"{source}/humanitec/platform-orchestrator-runner:1.4.0", "chart": source_chart}[name]
            assert raw_digest(f"{plain}/{ref}", "--tls-verify=false") == raw_digest(src, "--tls-verify=false"), name
        for arch in ("amd64", "arm64"):
            run(["skopeo", "inspect", "--tls-verify=false", f"--override-arch={arch}", f"docker://{plain}/mirror/kubernetes-agent:0.1.0"])
        assert f"image.repository={plain}/mirror/kubernetes-agent" in out.stdout and "image.tag=0.1.0" in out.stdout, out.stdout
        assert f"oci://{plain}/mirror/humanitec-kubernetes-agent-runner --version 0.1.0" in out.stdout, out.stdout
        assert f"git::{git_url}?ref=v1.0.0" in out.stdout, out.stdout
        assert f"{source}/humanitec={plain}/mirror" in out.stdout, out.stdout
        clone = os.path.join(WORK, "clone")
        run(["git", "clone", "--quiet", git_url, clone])
        assert run(["git", "-C", clone, "rev-parse", "v1.0.0^{commit}"]).stdout.strip() == commit
        pulled = os.path.join(WORK, "pulled")
        helm_registry.pull(f"oci://{plain}/mirror/humanitec-kubernetes-agent-runner", version="0.1.0", destination=pulled, untar=True, plain_http=True)
        rendered = helm_chart.Chart.load(os.path.join(pulled, "humanitec-kubernetes-agent-runner")).render(
            {"humanitec": {"orgId": "o", "runnerId": "r1"}}, name="r", namespace="n")
        assert any("kind: Deployment" in t for t in rendered.values()), rendered.keys()

    check("push to a plain-HTTP registry and git daemon: same digests, Helm pulls and renders, git has the ref", push_plain)

    def push_again_uploads_nothing():
        before = blob_puts(plain_log)
        out = run([far_tool, "push", far_bundle, "--registry", f"{plain}/mirror", "--plain-http", "--git-url", git_url])
        assert "blobs uploaded: 0," in out.stdout, out.stdout
        assert blob_puts(plain_log) == before, (before, blob_puts(plain_log))

    check("a second push transfers no blob again (tool counters and registry log)", push_again_uploads_nothing)

    def push_tls_basic_auth():
        out = run([far_tool, "push", far_bundle, "--registry", f"{secure}/internal/humanitec", "--ca-file", os.path.join(CERTS, "ca.pem"),
                   "--username", "mirror", "--password-stdin", "--git-url", git_url], stdin=PASSWORD + "\n")
        assert PASSWORD not in out.stdout + out.stderr
        certs = os.path.join(WORK, "skopeo-certs")
        os.makedirs(certs, exist_ok=True)
        shutil.copy(os.path.join(CERTS, "ca.pem"), os.path.join(certs, "ca.crt"))
        got = raw_digest(f"{secure}/internal/humanitec/kubernetes-agent:0.1.0", f"--cert-dir={certs}", f"--creds=mirror:{PASSWORD}")
        assert got == raw_digest(source_agent, "--tls-verify=false")
        assert blob_puts(secure_log) > 0

    check("push to a TLS registry with a private CA and htpasswd basic auth", push_tls_basic_auth)

    def auth_file_works():
        auth = os.path.join(WORK, "auth.json")
        import base64
        with open(auth, "w") as f:
            json.dump({"auths": {secure: {"auth": base64.b64encode(f"mirror:{PASSWORD}".encode()).decode()}}}, f)
        out = run([far_tool, "push", far_bundle, "--registry", f"{secure}/internal/humanitec", "--ca-file", os.path.join(CERTS, "ca.pem"),
                   "--auth-file", auth, "--git-url", git_url])
        assert "blobs uploaded: 0," in out.stdout, out.stdout

    check("credentials from a Docker-style auth file", auth_file_works)

    def bearer_token_registry():
        out = run([far_tool, "push", far_bundle, "--registry", f"{tokened}/mirror", "--ca-file", os.path.join(CERTS, "ca.pem"),
                   "--username", "mirror", "--password-stdin", "--git-url", git_url], stdin=PASSWORD + "\n")
        assert token_server.requests and all(kind == "Basic" for _, kind in token_server.requests), token_server.requests
        assert "blobs uploaded: 0," not in out.stdout, out.stdout
        assert blob_puts(tokened_log) > 0
        bad = run([far_tool, "push", far_bundle, "--registry", f"{tokened}/mirror", "--ca-file", os.path.join(CERTS, "ca.pem"),
                   "--username", "mirror", "--password-stdin", "--git-url", git_url], stdin="nope\n", check_rc=False)
        assert bad.returncode == 1 and "refused the credentials" in bad.stderr and "nope" not in bad.stderr, bad.stderr

    check("a registry with Bearer-token auth: the token is fetched from the challenge's realm", bearer_token_registry)

    def wrong_password():
        out = run([far_tool, "push", far_bundle, "--registry", f"{secure}/other", "--ca-file", os.path.join(CERTS, "ca.pem"),
                   "--username", "mirror", "--password-stdin", "--git-url", git_url], stdin="wrong-password\n", check_rc=False)
        assert out.returncode == 1, out
        assert "refused the credentials" in out.stderr and "user 'mirror'" in out.stderr, out.stderr
        assert "wrong-password" not in out.stdout + out.stderr

    check("a wrong password fails with a clear message and exit 1", wrong_password)

    def the_fix_is_named_for_a_plain_registry_an_untrusted_ca_and_no_registry():
        cases = [(plain, [], "the registry does not answer in TLS there: if it serves plain HTTP, give --plain-http"),
                 (secure, [], "the registry's certificate is not trusted or not for this host: give its CA with --ca-file"),
                 (f"127.0.0.1:{free_port()}", ["--plain-http"], "is the registry up and reachable at that host and port")]
        for host, flags, expected in cases:
            out = run([far_tool, "push", far_bundle, "--registry", f"{host}/m", *flags, "--git-url", git_url], check_rc=False)
            line = out.stderr.strip().splitlines()[-1]
            assert out.returncode == 1 and line.startswith("offline-install: ") and expected in line, out.stderr

    check("push to a plain-HTTP registry without --plain-http, an untrusted CA or no registry names the fix", the_fix_is_named_for_a_plain_registry_an_untrusted_ca_and_no_registry)

    def flipped_byte_is_refused():
        bad = os.path.join(WORK, "flipped.tar")
        shutil.copy(bundle_file, bad)
        size = os.path.getsize(bad)
        with open(bad, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x01]))
        before = blob_puts(plain_log)
        v = run([TOOL, "verify", bad], check_rc=False)
        assert v.returncode != 0 and ("corrupt" in v.stderr or "altered" in v.stderr), v.stderr
        p = run([TOOL, "push", bad, "--registry", f"{plain}/corrupt", "--plain-http", "--git-url", git_url], check_rc=False)
        assert p.returncode != 0 and "nothing was pushed" in p.stderr, p.stderr
        assert blob_puts(plain_log) == before
        catalog = json.load(urllib.request.urlopen(f"http://{plain}/v2/_catalog"))
        assert not [r for r in catalog["repositories"] if r.startswith("corrupt/")], catalog

    check("a bundle with one flipped byte is refused before anything is pushed", flipped_byte_is_refused)

    def truncated_bundle_is_refused():
        bad = os.path.join(WORK, "truncated.tar")
        with open(bundle_file, "rb") as src, open(bad, "wb") as dst:
            dst.write(src.read(os.path.getsize(bundle_file) // 3))
        v = run([TOOL, "verify", bad], check_rc=False)
        assert v.returncode == 1 and "truncated" in v.stderr, v.stderr

    check("a truncated bundle is refused with a clear message", truncated_bundle_is_refused)

    def platform_subset():
        sub = os.path.join(WORK, "amd64.tar")
        out = run([TOOL, "bundle", "--output", sub, "--source-plain-http", "--platform", "linux/amd64", "--agent-image", source_agent,
                   "--runner-image", f"{source}/humanitec/platform-orchestrator-runner:1.4.0", "--chart", f"oci://{source_chart}",
                   "--module-repo", module, "--module-ref", "v1.0.0"])
        manifest, _ = bundle_output(out.stdout)
        assert manifest["artifacts"][0]["platforms"] == ["linux/amd64"], manifest
        assert os.path.getsize(sub) < os.path.getsize(bundle_file)
        run([TOOL, "verify", sub])

    check("--platform keeps only the platforms asked for", platform_subset)


try:
    main()
finally:
    stop_all()
finish()
