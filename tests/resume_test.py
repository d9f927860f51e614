"""offline-install push killed in the middle of a 64 MiB blob, against Debian's real
docker-registry 2.8 on loopback (issue 15, item 3).

An image with one 64 MiB random layer (an OCI layout written here, pushed by skopeo) is
bundled, then pushed with --chunk-size 4M --jobs 1 and SIGKILLed:

- between two chunks: a loopback relay in front of the registry kills the tool the moment
  the next PATCH's request line reaches it, before any of it is forwarded;
- in the middle of a chunk: the relay forwards 1 MiB of the next PATCH's body, then kills;
- when the registry's own access log shows part of the blob acknowledged (no relay);
- in the middle of a chunk with the registry behind Debian's nginx (request buffering on,
  nginx's default): the cut chunk never reaches the
  registry, so the rerun resumes at the registry's offset and re-sends at most that chunk.

Each rerun must finish with the digests skopeo sees in the source, and the registry's
access log (every PATCH, by upload session) says how much was sent again: at most one
chunk where the registry lets the session be resumed. docker-registry 2.8 cancels a
session whose PATCH was cut midway (its upload URLs seal an offset; a cut PATCH moves the
session past it); then the tool must say so and send that blob again from its start.

Expects the release musl build. Prints 'N passed, N failed'.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from checks import check, finish
from registries import WORK, TOOL, git_daemon, module_repo, nginx_front, oci_layout, raw_digest, registry, run, stop_all

CHUNK = 4 << 20
BIG = 64 << 20


TAR = "application/vnd.oci.image.layer.v1.tar"


class Relay:
    """A loopback TCP relay in front of the registry that SIGKILLs `self.victim` when the
    PATCH numbered `kill_at` (1-based, counted over all connections) arrives, after
    forwarding `forward` bytes of it (0: none of it, not even its request line)."""

    def __init__(self, upstream, kill_at, forward):
        self.upstream = upstream
        self.kill_at, self.forward = kill_at, forward
        self.patches = 0
        self.victim = None
        self.killed = threading.Event()
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.5)
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.done = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.done:
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            host, port = self.upstream.split(":")
            up = socket.create_connection((host, int(port)))
            threading.Thread(target=self.pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(up, client, False), daemon=True).start()

    def kill(self):
        self.victim.send_signal(signal.SIGKILL)
        self.killed.set()

    def pump(self, src, dst, upward):
        src.settimeout(120)
        cutting = None  # bytes of the fatal PATCH still to forward
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if upward and not self.killed.is_set():
                    if cutting is not None:
                        part = data[:cutting]
                        dst.sendall(part)
                        cutting -= len(part)
                        if cutting <= 0:
                            time.sleep(0.3)
                            self.kill()
                            break
                        continue
                    i = data.find(b"PATCH /v2/")
                    if i >= 0:
                        with self.lock:
                            self.patches += 1
                            fatal = self.patches == self.kill_at
                        if fatal:
                            dst.sendall(data[:i])
                            if self.forward == 0:
                                self.kill()
                                break
                            cutting = self.forward
                            part = data[i:i + cutting]
                            dst.sendall(part)
                            cutting -= len(part)
                            continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.done = True
        self.server.close()


def patches(log):
    """Every PATCH in the access log: (session id, status). nginx forwards as HTTP/1.0."""
    out = []
    with open(log) as f:
        for line in f:
            m = re.search(r'"PATCH /v2/[^ ]*/blobs/uploads/([0-9a-f-]+)[^ ]* HTTP/1\.[01]" (\d+)', line)
            if m:
                out.append((m.group(1), int(m.group(2))))
    return out


def main():
    assert os.path.exists(TOOL), f"{TOOL} is missing: build the release musl binary first"
    source, _ = registry("resume-source")
    big_layout = os.path.join(WORK, "big-layout")
    oci_layout(big_layout, [os.urandom(BIG)], layer_type=TAR)
    small_layout = os.path.join(WORK, "small-layout")
    oci_layout(small_layout, [os.urandom(1000)], layer_type=TAR)
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{big_layout}:1.0", f"docker://{source}/humanitec/kubernetes-agent:1.0"])
    for repo in ("humanitec/runner:1.0", "humanitec/charts/agent:1.0"):
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{small_layout}:1.0", f"docker://{source}/{repo}"])
    module, _ = module_repo("resume-module")
    bundle = os.path.join(WORK, "resume-bundle.tar")
    run([TOOL, "bundle", "--output", bundle, "--source-plain-http", "--agent-image", f"{source}/humanitec/kubernetes-agent:1.0",
         "--runner-image", f"{source}/humanitec/runner:1.0", "--chart", f"oci://{source}/humanitec/charts/agent:1.0",
         "--module-repo", module, "--module-ref", "v1.0.0"])
    source_digest = raw_digest(f"{source}/humanitec/kubernetes-agent:1.0", "--tls-verify=false")
    # skopeo compressed the layer on its way into the source: its size there, in chunks.
    raw = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{source}/humanitec/kubernetes-agent:1.0"]).stdout)
    total = -(-raw["layers"][0]["size"] // CHUNK)

    def chunks(entries):
        """The acknowledged (202) PATCHes of the session with the most of them: the layer's."""
        count = {}
        for session, status in entries:
            count[session] = count.get(session, 0) + (status == 202)
        return max(count.values(), default=0)

    def push(target, name, state_dir, env=None):
        argv = [TOOL, "push", bundle, "--registry", f"{target}/mirror", "--plain-http", "--git-url", git_daemon(name),
                "--chunk-size", "4M", "--jobs", "1", "--state-dir", state_dir]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def killed_then_rerun(name, relay_forward=None, fronted=False):
        """Pushes through a relay (or straight, killing on the access log), kills, reruns;
        returns (stderr of the rerun, PATCHes of the big layer's sessions: first run, rerun).
        `fronted`: the registry sits behind nginx (the relay in front of nginx)."""
        target, log = registry(name)
        upstream = nginx_front(name + "-nginx", target) if fronted else target
        state_dir = os.path.join(WORK, name + "-state")
        os.makedirs(state_dir)
        # The sixth PATCH: the layer's fifth or sixth chunk (the config's one PATCH may come first).
        relay = Relay(upstream, kill_at=6, forward=relay_forward or 0) if relay_forward is not None else None
        first = push(relay.address if relay else target, name + "-git", state_dir)
        if relay:
            relay.victim = first
        deadline = time.time() + 120
        while first.poll() is None and time.time() < deadline:
            if not relay and chunks(patches(log)) >= 5:
                first.send_signal(signal.SIGKILL)
            time.sleep(0.05)
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL, f"the first push was not killed: {first.returncode}"
        if relay:
            relay.kill_at = 0  # disarmed: the rerun goes through it too (the same origin)
        time.sleep(0.5)
        before = patches(log)
        state_file = os.path.join(state_dir, "offline-install-uploads")
        assert os.path.exists(state_file), "no state file after the kill"
        with open(state_file) as f:
            state = f.read()
        assert "/blobs/uploads/" in state and "Authorization" not in state, state
        second = push(relay.address if relay else target, name + "-git2", state_dir)
        out, err = second.communicate(timeout=300)
        if relay:
            relay.close()
        assert second.returncode == 0, f"the rerun failed ({second.returncode}):\n{err}"
        assert raw_digest(f"{target}/mirror/kubernetes-agent:1.0", "--tls-verify=false") == source_digest
        assert not os.path.exists(state_file), "the state file outlived the push"
        after = patches(log)[len(before):]
        return err, before, after

    def between_chunks():
        err, before, after = killed_then_rerun("resume-between", relay_forward=0)
        acknowledged, sent_again = chunks(before), chunks(after)
        print(f"      between chunks: {acknowledged} chunks acknowledged before the kill, rerun sent {sent_again} of {total}")
        assert f"resuming at byte {acknowledged * CHUNK}" in err, err
        # Re-sent = what the rerun sent that the registry had before: at most one chunk.
        assert acknowledged + sent_again <= total + 1, (acknowledged, sent_again, total)

    check("a push SIGKILLed between two chunks of a 64 MiB blob resumes at the registry's offset, re-sending at most one chunk", between_chunks)

    def mid_chunk():
        err, before, after = killed_then_rerun("resume-cut", relay_forward=1 << 20)
        acknowledged, sent_again = chunks(before), chunks(after)
        print(f"      cut mid-chunk: {acknowledged} chunks acknowledged before the kill, rerun sent {sent_again} of {total}")
        if "resuming at byte" in err:
            assert acknowledged + sent_again <= total + 1, (acknowledged, sent_again, total)
        else:
            # docker-registry 2.8 cancelled the session: said, and the blob sent again whole.
            assert "could not be resumed" in err and "BLOB_UPLOAD_INVALID" in err, err
            assert sent_again == total, (sent_again, total)

    check("a push SIGKILLed in the middle of a chunk finishes on rerun: resumed, or (docker-registry 2.8 cancels a cut session) restarted and said why",
          mid_chunk)

    def mid_chunk_behind_nginx():
        err, before, after = killed_then_rerun("resume-nginx", relay_forward=1 << 20, fronted=True)
        acknowledged, sent_again = chunks(before), chunks(after)
        print(f"      cut mid-chunk behind nginx: {acknowledged} chunks acknowledged before the kill, rerun sent {sent_again} of {total}")
        # nginx forwards a body only once it holds all of it: the cut chunk never reached
        # the registry, whose session stayed at the offset the saved URL seals.
        assert f"resuming at byte {acknowledged * CHUNK}" in err, err
        assert acknowledged + sent_again <= total + 1, (acknowledged, sent_again, total)

    check("behind nginx (its default request buffering), a push SIGKILLed in the middle of a chunk resumes at the registry's offset, re-sending at most that chunk",
          mid_chunk_behind_nginx)

    def killed_on_the_log():
        err, before, after = killed_then_rerun("resume-log")
        acknowledged, sent_again = chunks(before), chunks(after)
        resumed = "resuming at byte" in err
        print(f"      killed on the access log: {acknowledged} chunks acknowledged, rerun {'resumed' if resumed else 'restarted'} and sent {sent_again} of {total}")
        if resumed:
            assert acknowledged + sent_again <= total + 1, (acknowledged, sent_again, total)
        else:
            assert "could not be resumed" in err, err

    check("a push SIGKILLed once the registry's log shows part of the blob finishes on rerun with the source's digests", killed_on_the_log)


try:
    main()
finally:
    stop_all()
finish()
