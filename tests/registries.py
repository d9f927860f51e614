"""What the offline-install tests share: real registries (Debian's docker-registry: plain,
TLS + htpasswd, or TLS + a Docker token service), a git daemon, and small helpers. Every
process started here is registered in `procs` and stopped by `stop_all()`; every
registry's files live under `WORK`, removed by `stop_all()`."""
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


def nginx_front(name, upstream):
    """Debian's nginx on loopback in front of the registry at `upstream` (proxy_pass, the
    client's Host passed on, no body size limit) with nginx's default request buffering: a request body reaches the registry only
    once nginx holds all of it. Returns its address."""
    port = free_port()
    root = os.path.join(WORK, name)
    os.makedirs(os.path.join(root, "logs"))
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {root}/logs/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        chunked_transfer_encoding on;
        location /v2/ {{
            proxy_pass http://{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 900;
            proxy_request_buffering on;
        }}
    }}
}}
""")
    procs.append(subprocess.Popen(["nginx", "-p", root, "-c", conf], stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "logs", "stderr.log"), "w")))
    wait_for(f"http://127.0.0.1:{port}/v2/")
    return f"127.0.0.1:{port}"


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


def module_repo(name="module"):
    """A module repository WORK/<name> (git, one commit, tag v1.0.0); returns its path and commit."""
    module = os.path.join(WORK, name)
    os.makedirs(module)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", module]
    run(["git", "init", "--quiet", "-b", "main", module])
    with open(os.path.join(module, "main.tf"), "w") as f:
        f.write('variable "cluster" {}\n')
    run([*git, "add", "."])
    run([*git, "commit", "--quiet", "-m", "module"])
    run([*git, "tag", "v1.0.0"])
    return module, run([*git, "rev-parse", "v1.0.0^{commit}"]).stdout.strip()


def git_daemon(name):
    """A git daemon with receive-pack serving an empty bare repository WORK/<name>/module.git;
    returns its git:// URL once it answers."""
    git_root = os.path.join(WORK, name)
    os.makedirs(git_root)
    run(["git", "init", "--quiet", "--bare", os.path.join(git_root, "module.git")])
    git_port = free_port()
    procs.append(subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", f"--base-path={git_root}",
                                   "--listen=127.0.0.1", f"--port={git_port}", git_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    git_url = f"git://127.0.0.1:{git_port}/module.git"
    deadline = time.time() + 10
    while run(["git", "ls-remote", git_url], check_rc=False).returncode != 0 and time.time() < deadline:
        time.sleep(0.1)
    return git_url


def stop_all():
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(WORK, ignore_errors=True)


def oci_layout(path, layers, tag="1.0", layer_type="application/vnd.oci.image.layer.v1.tar+gzip", diff_ids=None):
    """An OCI image layout at `path`: one linux/amd64 image of `layers` (bytes, of media type
    `layer_type`) under `tag`, for skopeo to copy into a registry. The config's diff_ids are
    `diff_ids`, else the layers' digests. Returns (manifest digest, config bytes, layer digests)."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    described = [{"mediaType": layer_type, **put(layer)} for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids or [d["digest"] for d in described]}}).encode()
    manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                               "layers": described}).encode())
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                                                      "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    return manifest["digest"], config, [d["digest"] for d in described]
