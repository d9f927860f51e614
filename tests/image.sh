#!/usr/bin/env bash
# Builds the image from Containerfile with buildah (vfs storage, chroot isolation: no
# Docker engine, no network), exports it as an OCI archive, and checks it: config (user,
# entrypoint, cmd, labels, exposed port), size, one layer holding only /opt/runner/runner,
# and the binary from that layer answering `version` and `--help` in an otherwise empty
# root. Expects the release musl binary to be built. Prints 'N passed, N failed'.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=target/image
rm -rf "$out" && mkdir -p "$out"
export STORAGE_DRIVER=vfs
buildah --storage-driver vfs build --isolation chroot --quiet -f Containerfile \
  --build-arg VERSION="$version" -t "localhost/kubernetes-agent:$version" . >/dev/null
buildah --storage-driver vfs push --quiet "localhost/kubernetes-agent:$version" "oci-archive:$out/kubernetes-agent.oci.tar:kubernetes-agent:$version"
skopeo inspect --config "oci-archive:$out/kubernetes-agent.oci.tar" > "$out/config.json"
skopeo inspect "oci-archive:$out/kubernetes-agent.oci.tar" > "$out/inspect.json"
mkdir -p "$out/oci" && tar -xf "$out/kubernetes-agent.oci.tar" -C "$out/oci"
python3 - "$out" "$version" <<'PY'
import json, os, shutil, subprocess, sys, tarfile
out, version = sys.argv[1], sys.argv[2]
config = json.load(open(f"{out}/config.json"))["config"]
inspect = json.load(open(f"{out}/inspect.json"))
results = []
def check(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + (f": {detail}" if not ok else ""))
check("runs as the non-root numeric user 65532", config.get("User") == "65532:65532", config.get("User"))
check("entrypoint is /opt/runner/runner", config.get("Entrypoint") == ["/opt/runner/runner"], config.get("Entrypoint"))
check("default argument is remote", config.get("Cmd") == ["remote"], config.get("Cmd"))
labels = config.get("Labels") or {}
for key in ("org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.licenses"):
    check(f"label {key}", bool(labels.get(key)), labels)
check("version label matches Cargo.toml", labels.get("org.opencontainers.image.version") == version, labels)
check("port 8080 exposed", "8080/tcp" in (config.get("ExposedPorts") or {}), config.get("ExposedPorts"))
check("one layer", len(inspect["Layers"]) == 1, inspect["Layers"])
index = json.load(open(f"{out}/oci/index.json"))
manifest_digest = index["manifests"][0]["digest"].split(":")[1]
manifest = json.load(open(f"{out}/oci/blobs/sha256/{manifest_digest}"))
layer = manifest["layers"][0]
size = sum(l["size"] for l in manifest["layers"]) + manifest["config"]["size"]
print(f"image size: {size} bytes compressed ({size/1048576:.2f} MiB)")
root = f"{out}/rootfs"
os.makedirs(root, exist_ok=True)
with tarfile.open(f"{out}/oci/blobs/sha256/{layer['digest'].split(':')[1]}") as t:
    names = sorted(m.name.lstrip("./") for m in t.getmembers() if not m.isdir())
    t.extractall(root, filter="tar")
check("the layer holds only opt/runner/runner", names == ["opt/runner/runner"], names)
mode = os.stat(f"{root}/opt/runner/runner").st_mode & 0o777
check("the binary is read-only executable (0555)", mode == 0o555, oct(mode))
def in_empty_root(*args):
    # chroot into the extracted root: no shell, no libc, no /etc, nothing but the binary.
    return subprocess.run([shutil.which("chroot"), "--userspec=65532:65532", root, "/opt/runner/runner", *args], capture_output=True, text=True, env={})
v = in_empty_root("version")
check("version answers in an empty root", v.returncode == 0 and v.stdout.strip() == f"kubernetes-agent {version}", (v.returncode, v.stdout, v.stderr))
h = in_empty_root("--help")
check("--help answers in an empty root", h.returncode == 0 and "remote" in h.stdout and "REMOTE_URL" in h.stdout, (h.returncode, h.stderr))
s = in_empty_root("standard")
check("standard is refused in the image too", s.returncode == 2, s.returncode)
failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
