"""offline-install's parts, differential bundles and list (issue 15, 15a), end to end against
real components on loopback: Debian's docker-registry (plain HTTP), skopeo, real Helm for
the chart, and a git daemon.

- a bundle cut into 1 MiB parts: every part at most 1 MiB; `cat` + `tar` take the tool out;
  the extracted tool verifies and pushes from the parts (skopeo sees the source's digests);
- each kind of part damage (missing, truncated, altered) is named, and the registry's access
  log shows no request that writes (nothing is pushed);
- a differential bundle (`--since`) of a one-layer change (the second image version is an
  OCI layout written here, differing from the first by one layer) carries that layer, the new
  config and the manifests, nothing else; it pushes onto the earlier mirror (only those blobs
  are uploaded) and is refused by an empty registry, naming the missing layer and commit;
- measured and printed: peak RSS (GNU time's %M: the tool's, or a git it ran if larger) of bundle, verify and push, and the most
  bytes their scratch space held (bundle: FILE.scratch/; push: $TMPDIR, set to a fresh
  directory), polled every 5 ms.

Expects the release musl build (tests/run) and target/image/kubernetes-agent.oci.tar.
Prints 'N passed, N failed'.
"""
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import threading
import time

from helm_python import chart as helm_chart
from helm_python import registry as helm_registry

from checks import check, finish
from registries import IMAGE, ROOT, TOOL, WORK, git_daemon, module_repo, oci_layout, raw_digest, registry, run, stop_all

MIB = 1 << 20
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def tree_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except FileNotFoundError:
                pass
    return total


def measured(argv, watch, env=None, within=600):
    """Runs argv under GNU time (its child is forked from a small process, so the peak RSS is
    the tool's, not this Python process's copied at fork; Linux reports the larger of the
    tool's own and of the git processes it waited for); returns (completed-like result, peak
    RSS in KiB, most bytes `watch` held)."""
    peak = [0]
    done = threading.Event()

    def watcher():
        while not done.is_set():
            if os.path.exists(watch):
                peak[0] = max(peak[0], tree_bytes(watch))
            time.sleep(0.005)

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    out_file, err_file = io.open(os.path.join(WORK, "m.out"), "w+"), io.open(os.path.join(WORK, "m.err"), "w+")
    rss_file = os.path.join(WORK, "m.rss")
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file, *argv], stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL, env=env)
    try:
        p.wait(timeout=within)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    done.set()
    t.join()
    out_file.seek(0)
    err_file.seek(0)
    result = subprocess.CompletedProcess(argv, p.returncode, out_file.read(), err_file.read())
    out_file.close()
    err_file.close()
    with open(rss_file) as f:
        rss = int(f.read().strip().splitlines()[-1])
    return result, rss, peak[0]


def layer(seed, size):
    """A gzipped layer tar holding one file of `size` random bytes (compressed already, so
    skopeo pushes it as it is)."""
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(f"data-{seed}.bin")
        info.size = len(data)
        info.mtime = 0
        t.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def writes(log):
    """Requests in a registry access log that write (PUT, POST, PATCH, DELETE)."""
    with open(log) as f:
        return [line for line in f if any(f'"{m} /v2/' in line or f" {m} /v2/" in line for m in ("PUT", "POST", "PATCH", "DELETE"))]


def blob_uploads(log):
    with open(log) as f:
        return sum(1 for line in f if "PUT /v2/" in line and "/blobs/uploads/" in line)


def main():
    assert os.path.exists(TOOL), f"{TOOL} is missing: build the release musl binaries first"
    assert os.path.exists(IMAGE), f"{IMAGE} is missing: run tests/image_test.py first"
    source, _ = registry("source")
    mirror, mirror_log = registry("mirror")
    empty, empty_log = registry("empty")
    parted_target, parted_log = registry("parted-target")
    untouched, untouched_log = registry("untouched")

    # The source: the runner image (all platforms), the chart by real Helm, and an app
    # image (the agent's role) in two versions that differ by one layer.
    runner = f"{source}/humanitec/platform-orchestrator-runner:1.4.0"
    run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", f"oci-archive:{IMAGE}", f"docker://{runner}"])
    packaged = helm_chart.Chart.load(os.path.join(ROOT, "k8s", "humanitec-kubernetes-agent-runner")).save(WORK)
    helm_registry.push(packaged, f"oci://{source}/humanitec/charts", plain_http=True)
    chart = f"oci://{source}/humanitec/charts/humanitec-kubernetes-agent-runner:0.1.0"
    shared, app1, app2 = layer("shared", 1_500_000), layer("app-1", 300_000), layer("app-2", 300_000)
    unpacked = lambda layers: ["sha256:" + sha(gzip.decompress(layer)) for layer in layers]  # noqa: E731
    v1_digest, _, _ = oci_layout(os.path.join(WORK, "app-v1"), [shared, app1], "1", LAYER_TYPE, unpacked([shared, app1]))
    v2_digest, v2_config, _ = oci_layout(os.path.join(WORK, "app-v2"), [shared, app2], "2", LAYER_TYPE, unpacked([shared, app2]))
    for version in ("1", "2"):
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{WORK}/app-v{version}:{version}",
             f"docker://{source}/humanitec/app:{version}"])

    module, old_commit = module_repo("module")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", module]

    def bundle_argv(output, app_version, *extra):
        return [TOOL, "bundle", "--output", output, "--source-plain-http", "--agent-image", f"{source}/humanitec/app:{app_version}",
                "--runner-image", runner, "--chart", chart, "--module-repo", module, "--module-ref", "main", *extra]

    parts_dir = os.path.join(WORK, "parts")
    os.makedirs(parts_dir)
    parted = os.path.join(parts_dir, "b.tar")
    numbers = {}

    def parts_reassemble_and_push():
        out, rss, scratch = measured(bundle_argv(parted, "1", "--max-part-size", "1M"), parted + ".scratch")
        assert out.returncode == 0, out.stderr
        names = sorted(n for n in os.listdir(parts_dir) if n.startswith("b.tar."))
        parts = [n for n in names if n != "b.tar.parts"]
        assert "b.tar.parts" in names and len(parts) >= 3 and parts[0] == "b.tar.001", names
        sizes = [os.path.getsize(os.path.join(parts_dir, n)) for n in parts]
        assert all(s <= MIB for s in sizes) and all(s == MIB for s in sizes[:-1]), sizes
        said = out.stdout.split("scratch space used: ", 1)[1].split(" ", 1)[0]
        numbers["bundle"] = (rss, max(scratch, int(said)), sum(sizes))
        # The far side: cat and tar take the tool out; it verifies and pushes from the parts.
        far = os.path.join(WORK, "far")
        os.makedirs(far)
        cat = subprocess.run(f'cat {parted}.[0-9][0-9][0-9] | tar -x -C {far} offline-install', shell=True, capture_output=True, timeout=60)
        assert cat.returncode == 0, cat.stderr
        with open(os.path.join(far, "offline-install"), "rb") as a, open(TOOL, "rb") as b:
            assert a.read() == b.read(), "the tool taken out of the parts is not the one bundled"
        tool = os.path.join(far, "offline-install")
        v, v_rss, _ = measured([tool, "verify", parted], os.path.join(WORK, "nothing"))
        assert v.returncode == 0 and f"{len(parts)} parts" in v.stdout, v.stdout + v.stderr
        numbers["verify"] = (v_rss, 0, 0)
        tmp = os.path.join(WORK, "push-tmp")
        os.makedirs(tmp)
        git_url = git_daemon("git-parts")
        env = dict(os.environ, TMPDIR=tmp)
        p, p_rss, p_tmp = measured([tool, "push", parted, "--registry", f"{parted_target}/mirror", "--plain-http", "--git-url", git_url], tmp, env=env)
        assert p.returncode == 0, p.stderr
        numbers["push"] = (p_rss, p_tmp, 0)
        got = raw_digest(f"{parted_target}/mirror/app:1", "--tls-verify=false")
        assert got == raw_digest(f"{source}/humanitec/app:1", "--tls-verify=false"), got
        got = raw_digest(f"{parted_target}/mirror/platform-orchestrator-runner:1.4.0", "--tls-verify=false")
        assert got == raw_digest(runner, "--tls-verify=false"), got
        listed = run([tool, "list", parted]).stdout
        assert "agent-image" in listed and "linux/arm64" in listed and "complete" in listed, listed

    def copy_parts(name):
        to = os.path.join(WORK, name)
        os.makedirs(to)
        for n in os.listdir(parts_dir):
            if n.startswith("b.tar.") and not n.endswith(".scratch"):
                shutil.copy(os.path.join(parts_dir, n), to)
        return os.path.join(to, "b.tar")

    def damage(kind, hurt, said):
        def test():
            file = copy_parts(f"damaged-{kind}")
            hurt(file)
            out = run([TOOL, "push", file, "--registry", f"{untouched}/mirror", "--plain-http", "--git-url", "/nonexistent"], check_rc=False)
            assert out.returncode == 1, out.stdout + out.stderr
            assert said in out.stderr, out.stderr
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
            time.sleep(0.2)
            assert writes(untouched_log) == [], writes(untouched_log)
        return test

    def truncate(file):
        with open(file + ".002", "r+b") as f:
            f.truncate(1000)

    def alter(file):
        with open(file + ".002", "r+b") as f:
            f.seek(4096)
            byte = f.read(1)
            f.seek(4096)
            f.write(bytes([byte[0] ^ 1]))

    old = os.path.join(WORK, "old.tar")
    new = os.path.join(WORK, "new.tar")

    def differential_one_layer():
        run(bundle_argv(old, "1"))
        with open(os.path.join(module, "more.tf"), "w") as f:
            f.write('output "x" { value = 1 }\n')
        run([*git, "add", "."])
        run([*git, "commit", "--quiet", "-m", "more"])
        out = run(bundle_argv(new, "2", "--since", old))
        assert "wrote" in out.stdout, out.stdout
        carried = {}
        with tarfile.open(new) as t:
            for m in t.getmembers():
                if m.name.startswith("oci/blobs/sha256/"):
                    carried[m.name.rsplit("/", 1)[1]] = t.extractfile(m).read()
        assert sha(app2) in carried and sha(v2_config) in carried, "the changed layer and the new config are carried"
        assert sha(shared) not in carried and sha(app1) not in carried, "a layer the base holds is carried"
        for digest, data in carried.items():
            if digest in (sha(app2), sha(v2_config)):
                continue
            doc = json.loads(data)
            assert "schemaVersion" in doc, f"{digest} is neither a manifest nor the changed layer or config"
        verified = run([TOOL, "verify", new]).stdout
        old_anchor = run([TOOL, "verify", old]).stdout.split("SHA256SUMS sha256: ")[1].split("\n")[0]
        assert f"differential: it needs the base bundle with SHA256SUMS sha256: {old_anchor}" in verified, verified
        assert old_commit in verified, verified
        listed = run([TOOL, "list", new]).stdout
        assert "in the base: 1" in listed and old_anchor in listed, listed
        # Onto the earlier mirror: the base first, then only the new blobs go up.
        git_url = git_daemon("git-mirror")
        run([TOOL, "push", old, "--registry", f"{mirror}/mirror", "--plain-http", "--git-url", git_url])
        before = blob_uploads(mirror_log)
        pushed = run([TOOL, "push", new, "--registry", f"{mirror}/mirror", "--plain-http", "--git-url", git_url])
        time.sleep(0.2)
        assert blob_uploads(mirror_log) - before == 2, (blob_uploads(mirror_log) - before, pushed.stderr)
        got = raw_digest(f"{mirror}/mirror/app:2", "--tls-verify=false")
        assert got == v2_digest, (got, v2_digest)
        remote = run(["git", "ls-remote", git_url, "refs/heads/main"]).stdout.split()[0]
        assert remote == run([*git, "rev-parse", "main"]).stdout.strip(), remote

    def differential_onto_an_empty_registry_is_refused():
        git_url = git_daemon("git-empty")
        out = run([TOOL, "push", new, "--registry", f"{empty}/mirror", "--plain-http", "--git-url", git_url], check_rc=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"blob sha256:{sha(shared)} of the agent-image" in out.stderr, out.stderr
        assert f"commit {old_commit} of the module" in out.stderr and "nothing was pushed" in out.stderr, out.stderr
        time.sleep(0.2)
        assert writes(empty_log) == [], writes(empty_log)
        assert run(["git", "ls-remote", git_url]).stdout == "", "a ref was pushed"

    def print_measurements():
        b_rss, b_scratch, b_size = numbers["bundle"]
        v_rss = numbers["verify"][0]
        p_rss, p_tmp, _ = numbers["push"]
        largest = max(len(shared), os.path.getsize(TOOL))
        print(f"measured: bundle in parts ({b_size} bytes): peak RSS {b_rss} KiB, scratch peak {b_scratch} bytes (the module's clone, and blobs waiting their turn with --jobs 4);"
              f" largest blob {len(shared)} bytes")
        print(f"measured: verify over parts: peak RSS {v_rss} KiB; push from parts: peak RSS {p_rss} KiB, $TMPDIR peak {p_tmp} bytes"
              " (the bare repository the module is pushed from)")
        assert b_scratch < largest, b_scratch
        assert max(b_rss, v_rss, p_rss) < 16 * 1024, (b_rss, v_rss, p_rss)

    try:
        check("a bundle in 1 MiB parts reassembles with cat and tar, verifies and pushes from its parts", parts_reassemble_and_push)
        check("a missing part is named before anything is pushed",
              damage("missing", lambda f: os.remove(f + ".002"), "b.tar.002 is missing"))
        check("a truncated part is named before anything is pushed", damage("truncated", truncate, "b.tar.002 is truncated"))
        check("an altered part is named before anything is pushed", damage("altered", alter, "b.tar.002 has the wrong checksum"))
        check("a differential bundle of a one-layer change carries that layer and pushes onto the earlier mirror", differential_one_layer)
        check("a differential bundle pushed to an empty registry is refused, naming what is missing",
              differential_onto_an_empty_registry_is_refused)
        check("bundle, verify and push stay within a few MiB; bundle's scratch stays under the largest blob (printed)", print_measurements)
    finally:
        stop_all()
    finish()


if __name__ == "__main__":
    main()
