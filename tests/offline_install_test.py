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
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import bcrypt

from helm_python import chart as helm_chart
from helm_python import registry as helm_registry

from checks import check, finish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release", "offline-install")
IMAGE = os.path.join(ROOT, "target", "image", "kubernetes-agent.oci.tar")
CERTS = os.path.join(ROOT, "tests", "certs")
WORK = tempfile.mkdtemp(prefix="offline-install-")
PASSWORD = "s3cret-registry-password"
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, ctx=None, within=20):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1, context=ctx)
            return
        except urllib.error.HTTPError:
            return  # 401 from an auth-protected registry: it is up
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class TokenServer:
    """A Docker token service over HTTPS (the test CA): Basic credentials in, an ES256 JWT
    with an x5c header out, granting the scope asked for. The registry trusts the signing
    certificate."""

    def __init__(self, root):
        import base64 as b64
        import datetime
        import http.server
        import threading
        import jwt as pyjwt
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
        self.cert_file = os.path.join(root, "token-signer.pem")
        with open(self.cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        x5c = b64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                from urllib.parse import parse_qs, urlparse
                query = parse_qs(urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                outer.requests.append((self.path, auth.split(" ")[0]))
                expected = "Basic " + b64.b64encode(f"mirror:{PASSWORD}".encode()).decode()
                if auth != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, repo, actions = scope.split(":")
                    access.append({"type": kind, "name": repo, "actions": actions.split(",")})
                t = int(time.time())
                claims = {"iss": "test-issuer", "sub": "mirror", "aud": query.get("service", [""])[0], "exp": t + 300, "nbf": t - 10,
                          "iat": t, "jti": str(t) + self.path, "access": access}
                token = pyjwt.encode(claims, key, algorithm="ES256", headers={"x5c": [x5c]})
                body = json.dumps({"token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # HTTPS: the realm is another origin than the registry, and offline-install sends
        # credentials to a realm on another origin only over https.
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(os.path.join(CERTS, "server.pem"), os.path.join(CERTS, "server-key.pem"))
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.realm = f"https://127.0.0.1:{self.server.server_address[1]}/token"


def registry(name, tls=False, auth=False, token=None):
    port = free_port()
    root = os.path.join(WORK, name)
    os.makedirs(root)
    config = {"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
              "storage": {"filesystem": {"rootdirectory": os.path.join(root, "data")}, "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"}}
    if tls:
        config["http"]["tls"] = {"certificate": os.path.join(CERTS, "server.pem"), "key": os.path.join(CERTS, "server-key.pem")}
    if auth:
        with open(os.path.join(root, "htpasswd"), "w") as f:
            f.write("mirror:" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode() + "\n")
        config["auth"] = {"htpasswd": {"realm": "test", "path": os.path.join(root, "htpasswd")}}
    if token:
        config["auth"] = {"token": {"realm": token.realm, "service": "test-registry", "issuer": "test-issuer", "rootcertbundle": token.cert_file}}
    path = os.path.join(root, "config.json")  # YAML is a superset of JSON
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(root, "registry.log"), "w")
    procs.append(subprocess.Popen(["docker-registry", "serve", path], stdout=log, stderr=subprocess.STDOUT))
    if tls:
        import ssl
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        wait_for(f"https://127.0.0.1:{port}/v2/", ctx)
    else:
        wait_for(f"http://127.0.0.1:{port}/v2/")
    return f"127.0.0.1:{port}", os.path.join(root, "registry.log")


def run(argv, stdin=None, check_rc=True, cwd=None):
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=600)
    if check_rc and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def raw_digest(ref, *flags):
    raw = run(["skopeo", "inspect", "--raw", *flags, f"docker://{ref}"]).stdout
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def blob_puts(log):
    with open(log) as f:
        return sum(1 for line in f if "PUT /v2/" in line and "/blobs/uploads/" in line)


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
    module = os.path.join(WORK, "module")
    os.makedirs(module)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", module]
    run(["git", "init", "--quiet", "-b", "main", module])
    with open(os.path.join(module, "main.tf"), "w") as f:
        f.write('variable "cluster" {}\n')
    run([*git, "add", "."])
    run([*git, "commit", "--quiet", "-m", "module"])
    run([*git, "tag", "v1.0.0"])
    commit = run([*git, "rev-parse", "v1.0.0^{commit}"]).stdout.strip()
    git_root = os.path.join(WORK, "git")
    os.makedirs(git_root)
    run(["git", "init", "--quiet", "--bare", os.path.join(git_root, "module.git")])
    git_port = free_port()
    procs.append(subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", f"--base-path={git_root}",
                                   "--listen=127.0.0.1", f"--port={git_port}", git_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    git_url = f"git://127.0.0.1:{git_port}/module.git"
    deadline = time.time() + 10
    while run(["git", "ls-remote", git_url], check_rc=False).returncode != 0 and time.time() < deadline:
        time.sleep(0.1)

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
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(WORK, ignore_errors=True)
finish()
