"""offline-install carries cosign signatures and the agent's SBOM across the gap, against
real docker-registry (Debian, 2.8: no referrers API) on loopback:

- the source holds the agent image, a runner image and the chart, each signed by
  tests/cosign.py (an independent implementation of cosign's key and signature formats:
  the key file round-trips through its scrypt + secretbox encryption);
- bundle carries each `sha256-<hex>.sig` and makes the SBOM artifact from the agent image's
  own layer; verify --key accepts the right key and refuses another, and says each
  platform's SBOM is the file in its layer; push --key mirrors
  the signatures under the same tags, where the Python checker accepts them (and refuses
  them for another key); the SBOM is found under `sha256-<platform digest>.sbom` with
  skopeo and equals /opt/runner/kubernetes-agent.cdx.json extracted from the image;
- a copy of the bundle doctored consistently (payload altered, SHA256SUMS regenerated)
  passes verify and is refused by verify --key; one with a made-up SBOM attached to the
  genuine agent image is refused by verify --key and push --key (verify finds the SBOM
  again in the image's layer), nothing pushed;
- a tampered signature, an altered payload, another key's signature, and an unsigned
  image are each refused by verify --key (naming the image) and by the checker, and
  push --key pushes nothing for them.

Expects the release musl build and target/image/kubernetes-agent.oci.tar (tests/run).
Prints 'N passed, N failed'.
"""
import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request

from helm_python import chart as helm_chart
from helm_python import registry as helm_registry

import cosign
from checks import check, finish
from registries import IMAGE, ROOT, TOOL, WORK, git_daemon, module_repo, raw_digest, registry, run, stop_all

PASSPHRASE = b"correct horse battery staple"


def image_sboms():
    """{platform manifest digest: the SBOM file in its layer}, read from the OCI archive with tarfile and gzip."""
    out = {}
    with tarfile.open(IMAGE) as archive:
        blob = lambda d: archive.extractfile("blobs/sha256/" + d.split(":", 1)[1]).read()  # noqa: E731
        index = json.loads(blob(json.loads(archive.extractfile("index.json").read())["manifests"][0]["digest"]))
        for m in index["manifests"]:
            manifest = json.loads(blob(m["digest"]))
            for layer in manifest["layers"]:
                with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as t:
                    for member in t.getmembers():
                        if member.name.lstrip("./") == "opt/runner/kubernetes-agent.cdx.json":
                            out[m["digest"]] = t.extractfile(member).read()
    return out


def get(url, accept=None):
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def main():
    assert os.path.exists(TOOL), f"{TOOL} is missing: build the release musl binaries first"
    source, _ = registry("sig-source")
    target, _ = registry("sig-target")
    keys = os.path.join(WORK, "keys")
    os.makedirs(keys)
    private_path, public = cosign.generate(keys, PASSPHRASE)
    _, other_public = cosign.generate(keys, b"another", name="other")
    other_key = cosign.load_private(os.path.join(keys, "other.key"), b"another")

    def key_file_round_trips():
        with open(private_path) as f:
            assert f.read().startswith("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n")
        key = cosign.load_private(private_path, PASSPHRASE)
        assert key.public_key().public_numbers() == cosign.load_public(public).public_numbers()
        try:
            cosign.load_private(private_path, b"wrong")
            raise AssertionError("a wrong passphrase decrypted the key")
        except Exception as e:  # noqa: BLE001
            assert "Decryption failed" in str(e) or "CryptoError" in type(e).__name__, e

    check("the cosign key file (scrypt + NaCl secretbox around PKCS#8) decrypts with its passphrase only", key_file_round_trips)
    signer = cosign.load_private(private_path, PASSPHRASE)

    names = {"agent": "humanitec/kubernetes-agent:0.1.0", "runner": "humanitec/platform-orchestrator-runner:1.4.0"}
    for ref in names.values():
        run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", f"oci-archive:{IMAGE}", f"docker://{source}/{ref}"])
    packaged = helm_chart.Chart.load(os.path.join(ROOT, "k8s", "humanitec-kubernetes-agent-runner")).save(WORK)
    helm_registry.push(packaged, f"oci://{source}/humanitec/charts", plain_http=True)
    chart = "humanitec/charts/humanitec-kubernetes-agent-runner:0.1.0"
    module, module_commit = module_repo("sig-module")
    git_url = git_daemon("sig-git")

    digests = {name: raw_digest(f"{source}/{ref}", "--tls-verify=false") for name, ref in {**names, "chart": chart}.items()}
    repos = {"agent": "humanitec/kubernetes-agent", "runner": "humanitec/platform-orchestrator-runner", "chart": "humanitec/charts/humanitec-kubernetes-agent-runner"}
    for name, repo in repos.items():
        cosign.sign(source, repo, digests[name], signer)

    def bundle(out, runner=names["runner"]):
        return run([TOOL, "bundle", "--output", out, "--source-plain-http", "--agent-image", f"{source}/{names['agent']}",
                    "--runner-image", f"{source}/{runner}", "--chart", f"oci://{source}/{chart}",
                    "--module-repo", module, "--module-ref", "v1.0.0"])

    good = os.path.join(WORK, "signed.tar")
    sboms = image_sboms()

    def bundle_carries_signatures_and_the_sbom():
        out = bundle(good)
        manifest = json.loads(out.stdout.split("\n", 1)[1].split("\nSHA256SUMS sha256: ", 1)[0])
        for record in manifest["artifacts"]:
            name = {"agent-image": "agent", "runner-image": "runner", "chart": "chart"}[record["role"]]
            sigs = [a for a in record["attachments"] if a["kind"] == "signature"]
            assert [(a["subject"], a["tag"]) for a in sigs] == [(digests[name], "sha256-" + digests[name][7:] + ".sig")], record
        agent = manifest["artifacts"][0]
        carried = {a["subject"] for a in agent["attachments"] if a["kind"] == "sbom"}
        assert carried == set(sboms), (carried, sboms.keys())
        listed = run(["tar", "-tf", good]).stdout.split()
        for a in agent["attachments"]:
            assert "oci/blobs/sha256/" + a["digest"][7:] in listed, a

    check("bundle carries each artifact's .sig and the SBOM of each agent platform, listed in manifest.json", bundle_carries_signatures_and_the_sbom)

    def sums_cover_the_sbom():
        x = os.path.join(WORK, "x")
        os.makedirs(x)
        run(["tar", "-xf", good, "-C", x])
        run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=x)
        sums = open(os.path.join(x, "SHA256SUMS")).read()
        for sbom in sboms.values():
            assert hashlib.sha256(sbom).hexdigest() + "  oci/blobs/sha256/" + hashlib.sha256(sbom).hexdigest() in sums

    check("SHA256SUMS covers the SBOM blobs (sha256sum -c)", sums_cover_the_sbom)

    def verify_with_the_key():
        out = run([TOOL, "verify", good, "--key", public])
        for role in ("agent-image", "runner-image", "chart"):
            assert f"{role}: " in out.stdout and "is signed by the key" in out.stdout, out.stdout
        for platform, sbom in sboms.items():
            line = f"agent-image: the SBOM attached to {platform} is /opt/runner/kubernetes-agent.cdx.json from its own layer (sha256 {hashlib.sha256(sbom).hexdigest()})"
            assert line in out.stdout, out.stdout
        assert "the agent's SBOM is the file in its signed layers" in out.stdout, out.stdout
        bad = run([TOOL, "verify", good, "--key", other_public], check_rc=False)
        assert bad.returncode == 1 and "agent-image" in bad.stderr and "does not verify with the key" in bad.stderr, bad.stderr

    check("verify --key accepts the signer's key and refuses another, naming the image", verify_with_the_key)

    def push_mirrors_signatures_and_sbom():
        run([TOOL, "push", good, "--key", public, "--module-commit", module_commit, "--registry", f"{target}/mirror", "--plain-http", "--git-url", git_url])
        for name, repo in repos.items():
            mirrored = "mirror/" + repo.rsplit("/", 1)[1]
            assert cosign.check(target, mirrored, digests[name], public) is None, name
            assert cosign.check(target, mirrored, digests[name], other_public) is not None, name
        # docker-registry 2.8 has no referrers API: the SBOM is under the tag fallback.
        try:
            get(f"http://{target}/v2/mirror/kubernetes-agent/referrers/{digests['agent']}")
            raise AssertionError("docker-registry answered the referrers API")
        except urllib.error.HTTPError as e:
            assert e.code == 404, e
        for platform, sbom in sboms.items():
            ref = f"docker://{target}/mirror/kubernetes-agent:sha256-{platform[7:]}.sbom"
            raw = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref]).stdout)
            assert raw["artifactType"] == "application/vnd.cyclonedx+json" and raw["subject"]["digest"] == platform, raw
            layer = raw["layers"][0]
            got = get(f"http://{target}/v2/mirror/kubernetes-agent/blobs/{layer['digest']}")
            assert got == sbom, "the mirrored SBOM is not the image's file"
            assert json.loads(got)["bomFormat"] == "CycloneDX"

    check("push --key mirrors every signature (the checker accepts them, not another key's) and the SBOM under sha256-<digest>.sbom, equal to the image's file",
          push_mirrors_signatures_and_sbom)

    blob = lambda d: "oci/blobs/sha256/" + d.split(":", 1)[1]  # noqa: E731
    sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731

    def doctor(out_path, alter):
        """A copy of the good bundle, altered and made consistent again, as someone who can write
        the bundle would: alter(files, manifest, replace) changes manifest.json (parsed) and calls
        replace(old digest, new bytes) for each manifest or blob it changes, whose references in
        oci/index.json are renamed here; then SHA256SUMS is regenerated."""
        with tarfile.open(good) as t:
            entries = [[m.name, m.mode, t.extractfile(m).read()] for m in t.getmembers()]
        files = {name: data for name, _, data in entries}
        manifest = json.loads(files["manifest.json"])
        index = json.loads(files["oci/index.json"])
        replaced = {}

        def replace(old, data):
            replaced[blob(old)] = (blob(sha(data)), data)
            for d in index["manifests"]:
                if d["digest"] == old:
                    d["digest"], d["size"] = sha(data), len(data)
            return sha(data), len(data)

        alter(files, manifest, replace)
        replaced["manifest.json"] = ("manifest.json", json.dumps(manifest, indent=2).encode())
        replaced["oci/index.json"] = ("oci/index.json", json.dumps(index).encode())
        out = []
        for name, mode, data in entries:
            name, data = replaced.get(name, (name, data))
            if name == "SHA256SUMS":
                data = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, _, d in out).encode()
            out.append((name, mode, data))
        with open(out_path, "wb") as f:
            for name, mode, data in out:  # the tool's own tar format: ustar, 0:0, no pax
                h = bytearray(512)
                h[:len(name)] = name.encode()
                h[100:108], h[108:116], h[116:124] = b"%07o\0" % mode, b"0000000\0", b"0000000\0"
                h[124:136], h[136:148], h[156:157] = b"%011o\0" % len(data), b"00000000000\0", b"0"
                h[257:265], h[148:156] = b"ustar\x0000", b" " * 8
                h[148:156] = b"%06o\0 " % sum(h)
                f.write(bytes(h) + data + bytes(-len(data) % 512))
            f.write(bytes(1024))

    def doctored_bundle_passes_verify_but_not_verify_key():
        # The agent image's signed payload altered, everything else made consistent again:
        # verify (checksums) cannot tell; verify --key can.
        def alter(files, manifest, replace):
            sig = next(a for a in manifest["artifacts"][0]["attachments"] if a["kind"] == "signature")
            sig_manifest = json.loads(files[blob(sig["digest"])])
            layer = sig_manifest["layers"][0]
            altered = files[blob(layer["digest"])].replace(b"humanitec", b"attacker0")
            layer["digest"], layer["size"] = replace(layer["digest"], altered)
            sig["digest"], sig["size"] = replace(sig["digest"], json.dumps(sig_manifest).encode())

        doctored = os.path.join(WORK, "doctored.tar")
        doctor(doctored, alter)
        plain = run([TOOL, "verify", doctored], check_rc=False)
        assert plain.returncode == 0 and "every checksum and digest matches" in plain.stdout, plain.stderr
        keyed = run([TOOL, "verify", doctored, "--key", public], check_rc=False)
        assert keyed.returncode == 1 and "agent-image" in keyed.stderr and "does not verify with the key" in keyed.stderr, keyed.stderr

    check("a consistently doctored bundle (altered payload, SHA256SUMS regenerated) passes verify but not verify --key",
          doctored_bundle_passes_verify_but_not_verify_key)

    def a_made_up_sbom_for_the_signed_image_is_refused():
        # The genuine, signed agent image with a made-up SBOM attached (consistent
        # SHA256SUMS): verify --key had passed it and push --key mirrored it beside the image.
        platform = next(iter(sboms))
        forged_sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}).encode()

        def alter(files, manifest, replace):
            att = next(a for a in manifest["artifacts"][0]["attachments"] if a["kind"] == "sbom" and a["subject"] == platform)
            artifact = json.loads(files[blob(att["digest"])])
            layer = artifact["layers"][0]
            layer["digest"], layer["size"] = replace(layer["digest"], forged_sbom)
            att["digest"], att["size"] = replace(att["digest"], json.dumps(artifact, separators=(",", ":"), sort_keys=True).encode())

        forged = os.path.join(WORK, "forged-sbom.tar")
        doctor(forged, alter)
        why = f"is not the image's own /opt/runner/kubernetes-agent.cdx.json (sha256 {hashlib.sha256(sboms[platform]).hexdigest()}, in its layer)"
        v = run([TOOL, "verify", forged, "--key", public], check_rc=False)
        assert v.returncode == 1 and why in v.stderr, v.stderr
        p = run([TOOL, "push", forged, "--key", public, "--module-commit", module_commit, "--registry", f"{target}/forged", "--plain-http",
                 "--git-url", git_url], check_rc=False)
        assert p.returncode == 1 and why in p.stderr, p.stderr
        catalog = json.loads(get(f"http://{target}/v2/_catalog"))
        assert not [r for r in catalog["repositories"] if r.startswith("forged/")], catalog

    check("a made-up SBOM attached to the genuine signed agent image (SHA256SUMS consistent) is refused by verify --key and push --key, nothing pushed",
          a_made_up_sbom_for_the_signed_image_is_refused)

    def a_platform_bundle_passes_the_key_through_the_signed_index():
        # --platform rewrites each index (a new digest no signature covers); the source's
        # signed index comes along and is what --key checks.
        narrowed = os.path.join(WORK, "narrowed.tar")
        out = run([TOOL, "bundle", "--output", narrowed, "--source-plain-http", "--platform", "linux/amd64",
                   "--agent-image", f"{source}/{names['agent']}", "--runner-image", f"{source}/{names['runner']}",
                   "--chart", f"oci://{source}/{chart}", "--module-repo", module, "--module-ref", "v1.0.0"])
        manifest = json.loads(out.stdout.split("\n", 1)[1].split("\nSHA256SUMS sha256: ", 1)[0])
        agent_record = manifest["artifacts"][0]
        assert agent_record["narrowedFrom"]["digest"] == digests["agent"] and agent_record["digest"] != digests["agent"], agent_record
        v = run([TOOL, "verify", narrowed, "--key", public])
        assert f"agent-image: {agent_record['digest']} keeps platforms of {digests['agent']}, which is signed by the key" in v.stdout, v.stdout
        run([TOOL, "push", narrowed, "--key", public, "--module-commit", module_commit, "--registry", f"{target}/narrowed", "--plain-http",
             "--git-url", git_url])
        mirrored = raw_digest(f"{target}/narrowed/kubernetes-agent:0.1.0", "--tls-verify=false")
        assert mirrored == agent_record["digest"], (mirrored, agent_record["digest"])
        index = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{target}/narrowed/kubernetes-agent:0.1.0"]).stdout)
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64"], index

    check("bundle --platform of signed images passes verify --key and push --key through the source's signed index; the mirror holds the amd64-only index",
          a_platform_bundle_passes_the_key_through_the_signed_index)

    def refused(case, sign_agent, runner=names["runner"]):
        sign_agent()
        bad = os.path.join(WORK, f"{case}.tar")
        bundle(bad, runner)
        v = run([TOOL, "verify", bad, "--key", public], check_rc=False)
        assert v.returncode == 1, v.stderr
        p = run([TOOL, "push", bad, "--key", public, "--module-commit", module_commit, "--registry", f"{target}/{case}", "--plain-http", "--git-url", git_url], check_rc=False)
        assert p.returncode == 1, p.stderr
        catalog = json.loads(get(f"http://{target}/v2/_catalog"))
        assert not [r for r in catalog["repositories"] if r.startswith(case + "/")], catalog
        return v.stderr

    agent_repo, agent = repos["agent"], digests["agent"]

    def flip_signature(body, sig):
        raw = bytearray(base64.b64decode(sig))
        raw[-1] ^= 1
        return body, base64.b64encode(bytes(raw)).decode()

    def tampered_signature():
        why = refused("tampered", lambda: cosign.sign(source, agent_repo, agent, signer, tamper=flip_signature))
        assert "agent-image" in why and "does not verify" in why, why
        assert cosign.check(source, agent_repo, agent, public) == "signature does not verify"

    check("a tampered signature is refused by verify --key and push --key (naming the image) and by the checker", tampered_signature)

    def altered_payload():
        why = refused("altered", lambda: cosign.sign(source, agent_repo, agent, signer,
                                                      tamper=lambda body, sig: (body.replace(b"humanitec", b"attacker0"), sig)))
        assert "agent-image" in why and "does not verify" in why, why
        assert cosign.check(source, agent_repo, agent, public) == "signature does not verify"

    check("an altered payload (its descriptor consistent) is refused by verify --key and by the checker", altered_payload)

    def another_key():
        why = refused("otherkey", lambda: cosign.sign(source, agent_repo, agent, other_key))
        assert "agent-image" in why and "does not verify" in why, why
        assert cosign.check(source, agent_repo, agent, public) == "signature does not verify"

    check("a signature by another key is refused by verify --key and by the checker", another_key)

    def another_digest():
        why = refused("otherdigest", lambda: cosign.sign(source, agent_repo, agent, signer, body=cosign.payload("x", digests["chart"])))
        assert "agent-image" in why and "signs " + digests["chart"] in why, why
        assert cosign.check(source, agent_repo, agent, public) == "signs " + digests["chart"]

    check("a good signature of another digest is refused, naming both digests", another_digest)

    def unsigned_image():
        unsigned = "humanitec/unsigned-runner:1.4.0"
        run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", f"oci-archive:{IMAGE}", f"docker://{source}/{unsigned}"])
        why = refused("unsigned", lambda: cosign.sign(source, agent_repo, agent, signer), runner=unsigned)
        assert "runner-image" in why and "carries no signature" in why, why
        assert cosign.check(source, "humanitec/unsigned-runner", digests["runner"], public).startswith("no signature")

    check("an image with no signature is refused by verify --key, naming it", unsigned_image)


try:
    main()
finally:
    stop_all()
finish()
