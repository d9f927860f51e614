"""The container image, built and checked without a Docker engine or network:

- `.ci/release image` (the release script: buildah, vfs storage, chroot isolation, every
  timestamp SOURCE_DATE_EPOCH) builds Containerfile for linux/amd64 and linux/arm64 and pushes
  one multi-arch OCI index to target/image/kubernetes-agent.oci.tar;
- per platform: config (non-root numeric user, entrypoint, default argument, OCI labels,
  port), exactly one layer holding only /opt/runner/runner and the SBOM beside it
  (/opt/runner/kubernetes-agent.cdx.json, the one built for that target), size;
- the amd64 binary from the layer answers `version` and `--help` in an otherwise empty
  root (chroot); the arm64 one answers `version` under qemu-user.

Expects both release binaries and their SBOMs (tests/run builds them with .ci/release). Prints 'N passed, N failed'.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "image")
ARCHIVE = os.path.join(OUT, "kubernetes-agent.oci.tar")
PLATFORMS = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))


def run(*argv):
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def version():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        return next(line.split('"')[1] for line in f if line.startswith("version = "))


def build():
    """The release image, by the one release script (.ci/release image: buildah, fixed timestamps)."""
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    return run("bash", ".ci/release", "image", ARCHIVE).strip()


def main():
    ver = version()
    digest = build()
    print(f"      index digest: {digest}")
    layout = os.path.join(OUT, "oci")
    os.makedirs(layout)
    with tarfile.open(ARCHIVE) as t:
        t.extractall(layout, filter="data")
    blob = lambda digest: os.path.join(layout, "blobs", "sha256", digest.split(":")[1])
    index = json.load(open(os.path.join(layout, "index.json")))
    top = json.load(open(blob(index["manifests"][0]["digest"])))
    platforms = {m["platform"]["architecture"]: m for m in top.get("manifests", [])}
    check("one OCI index with linux/amd64 and linux/arm64", sorted(platforms) == ["amd64", "arm64"], top)
    for arch, entry in sorted(platforms.items()):
        manifest = json.load(open(blob(entry["digest"])))
        config_doc = json.load(open(blob(manifest["config"]["digest"])))
        config = config_doc["config"]
        check(f"{arch}: config architecture", config_doc.get("architecture") == arch, config_doc.get("architecture"))
        check(f"{arch}: runs as the non-root numeric user 65532", config.get("User") == "65532:65532", config.get("User"))
        check(f"{arch}: entrypoint /opt/runner/runner, default argument remote", config.get("Entrypoint") == ["/opt/runner/runner"] and config.get("Cmd") == ["remote"], config)
        labels = config.get("Labels") or {}
        check(f"{arch}: OCI labels source, version, licenses", labels.get("org.opencontainers.image.version") == ver and labels.get("org.opencontainers.image.licenses") == "Apache-2.0" and labels.get("org.opencontainers.image.source"), labels)
        check(f"{arch}: port 8080 exposed", "8080/tcp" in (config.get("ExposedPorts") or {}), config.get("ExposedPorts"))
        check(f"{arch}: exactly one layer", len(manifest["layers"]) == 1, manifest["layers"])
        size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
        print(f"      {arch} image size: {size} bytes compressed ({size / 1048576:.2f} MiB)")
        root = tempfile.mkdtemp(prefix=f"image-{arch}-")
        os.chmod(root, 0o755)
        try:
            with tarfile.open(blob(manifest["layers"][0]["digest"])) as t:
                files = sorted(m.name.lstrip("./") for m in t.getmembers() if not m.isdir())
                t.extractall(root, filter="tar")
            for dirpath, _, _ in os.walk(root):
                os.chmod(dirpath, 0o755)
            check(f"{arch}: the layer holds only the binary and its SBOM", files == ["opt/runner/kubernetes-agent.cdx.json", "opt/runner/runner"], files)
            binary = os.path.join(root, "opt", "runner", "runner")
            mode = os.stat(binary).st_mode & 0o777
            check(f"{arch}: the binary is mode 0555", mode == 0o555, oct(mode))
            shipped = os.path.join(root, "opt", "runner", "kubernetes-agent.cdx.json")
            built = os.path.join(ROOT, "target", PLATFORMS[arch], "release", "kubernetes-agent.cdx.json")
            with open(shipped, "rb") as a, open(built, "rb") as b:
                check(f"{arch}: the SBOM beside the binary is the one built for {PLATFORMS[arch]}", a.read() == b.read(), shipped)
            check(f"{arch}: the SBOM is mode 0444", os.stat(shipped).st_mode & 0o777 == 0o444, oct(os.stat(shipped).st_mode))
            if arch == "amd64":
                chroot = shutil.which("chroot")
                empty = lambda *a: subprocess.run([chroot, "--userspec=65532:65532", root, "/opt/runner/runner", *a], capture_output=True, text=True, env={})
                v, h, s = empty("version"), empty("--help"), empty("standard")
                check("amd64: version answers in an empty root", v.returncode == 0 and v.stdout.strip() == f"kubernetes-agent {ver}", (v.returncode, v.stdout, v.stderr))
                check("amd64: --help answers in an empty root", h.returncode == 0 and "REMOTE_URL" in h.stdout, (h.returncode, h.stderr))
                check("amd64: standard is refused (exit 2)", s.returncode == 2, s.returncode)
            else:
                qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
                v = subprocess.run([qemu, binary, "version"], capture_output=True, text=True, env={})
                check("arm64: version answers under qemu-user", v.returncode == 0 and v.stdout.strip() == f"kubernetes-agent {ver}", (v.returncode, v.stdout, v.stderr))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
