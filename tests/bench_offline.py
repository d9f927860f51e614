"""The offline-install rows of the benchmark (run by tests/bench): on one ~300 MB image (an
OCI layout written here: four 75 MB gzip layers of random bytes, pushed to a source
docker-registry by skopeo, untimed; bundled as the runner image, the large one of a real
bundle, beside a small agent image and chart), offline-install bundle / verify / push against skopeo
copy to and from an oci-archive:, all on loopback, one run each, side by side: wall time
and peak RSS (GNU time's maximum resident set size). Prints figures, asserts nothing about
them. push runs twice, with --jobs 1 and with BENCH_OFFLINE_JOBS (default 4), each into a
fresh registry; BENCH_OFFLINE_MB (default 300) is the image size.
"""
import gzip
import os
import re
import subprocess
import time

from registries import WORK, TOOL, git_daemon, module_repo, oci_layout, registry, run, stop_all

MB = int(os.environ.get("BENCH_OFFLINE_MB", "300"))
JOBS = os.environ.get("BENCH_OFFLINE_JOBS", "4")


def timed(argv):
    """(wall seconds, peak RSS MiB) of one run of argv under GNU time."""
    started = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return wall, rss


def main():
    assert os.path.exists(TOOL), f"{TOOL} is missing: build the release musl binary first"
    source, _ = registry("bench-source")
    layout = os.path.join(WORK, "bench-layout")
    per = MB // 4
    # gzip of random bytes, so skopeo sends the layers as they are (it compresses plain tars).
    layers = [gzip.compress(os.urandom(per << 20), compresslevel=1) for _ in range(4)]
    oci_layout(layout, layers)
    small = os.path.join(WORK, "bench-small")
    oci_layout(small, [gzip.compress(os.urandom(1000))])
    image = f"{source}/bench/big:1.0"
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:1.0", f"docker://{image}"])
    for repo in ("bench/agent:1.0", "bench/chart:1.0"):
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{small}:1.0", f"docker://{source}/{repo}"])
    module, _ = module_repo("bench-module")
    size = sum(len(layer) for layer in layers) / 1048576

    bundle = os.path.join(WORK, "bench-bundle.tar")
    archive = os.path.join(WORK, "bench-skopeo.tar")
    # The big image is the runner's, as in a real bundle: the runner image (Terraform, tools)
    # is the large one; the agent image is ours and about 1 MB.
    ours_bundle = timed([TOOL, "bundle", "--output", bundle, "--source-plain-http", "--agent-image", f"{source}/bench/agent:1.0",
                         "--runner-image", image, "--chart", f"oci://{source}/bench/chart:1.0",
                         "--module-repo", module, "--module-ref", "v1.0.0"])
    skopeo_bundle = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{image}", f"oci-archive:{archive}"])
    ours_verify = timed([TOOL, "verify", bundle])
    sha = timed(["sha256sum", bundle])
    target_ours, _ = registry("bench-ours")
    target_skopeo, _ = registry("bench-skopeo")
    state = os.path.join(WORK, "bench-state")
    os.makedirs(state)
    target_one, _ = registry("bench-one")
    one_push = timed([TOOL, "push", bundle, "--registry", f"{target_one}/mirror", "--plain-http", "--git-url", git_daemon("bench-git-1"),
                      "--jobs", "1", "--state-dir", state])
    ours_push = timed([TOOL, "push", bundle, "--registry", f"{target_ours}/mirror", "--plain-http", "--git-url", git_daemon("bench-git"),
                       "--jobs", JOBS, "--state-dir", state])
    skopeo_push = timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{target_skopeo}/mirror/big:1.0"])

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\noffline-install against skopeo {run(['skopeo', '--version']).stdout.split()[-1]}, one {size:.0f} MiB image "
          f"(4 layers), loopback docker-registry (storage under {os.path.dirname(WORK)}), one run each; load average {load} on {os.cpu_count()} CPUs:")
    print(f"{'what':<58} {'ours':>16} {'skopeo':>16} {'speed, ours/skopeo':>19}")

    def row(what, ours, theirs, note=""):
        print(f"{what:<58} {ours[0]:>6.2f} s {ours[1]:>6.1f} MiB {theirs[0]:>6.2f} s {theirs[1]:>6.1f} MiB {theirs[0] / ours[0]:>18.2f}x {note}")

    row("bundle: registry -> file (skopeo: -> oci-archive:)", ours_bundle, skopeo_bundle, "(ours also bundles agent, chart, module and verifies)")
    row("verify the file (skopeo: none; sha256sum of the file)", ours_verify, sha)
    row("push --jobs 1: file -> registry (skopeo: oci-archive: ->)", one_push, skopeo_push, "(ours verifies first, and pushes agent, chart, module)")
    row(f"push --jobs {JOBS}: file -> registry (skopeo: oci-archive: ->)", ours_push, skopeo_push)


try:
    main()
finally:
    stop_all()
