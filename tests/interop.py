"""Checks the agent's output with independent implementations.

1. The JWT the agent sent to the Orchestrator stand-in (written by the cargo test
   `jwt_sample_is_written_for_independent_verification`) verifies with PyJWT against
   the public PEM, and its `kid` equals SHA-256 of the raw public key as computed by
   `cryptography`.
2. Every Job the golden tests render passes kubernetes-validate (strict) against the
   official Kubernetes schemas.

Run by tests/run after `cargo test`. Prints 'N passed, N failed' and exits non-zero
on any failure.
"""
import glob
import hashlib
import os
import subprocess

import jwt
from cryptography.hazmat.primitives import serialization

from checks import check, finish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEROP = os.path.join(ROOT, "target", "tmp", "interop")


def read(name):
    with open(os.path.join(INTEROP, name)) as f:
        return f.read()


def jwt_verifies_with_pyjwt():
    token = read("jwt.txt").strip()
    public = serialization.load_pem_public_key(read("public.pem").encode())
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "JWT"}, header
    # The sample may be older than its 15-minute lifetime; the signature is what is checked.
    claims = jwt.decode(token, key=public, algorithms=["EdDSA"], options={"verify_exp": False})
    org, runner = read("claims.txt").split()
    assert claims["org_id"] == org and claims["runner_id"] == runner, claims
    assert claims["exp"] - claims["iat"] == 900, claims
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert claims["kid"] == hashlib.sha256(raw).hexdigest() == read("kid.txt").strip(), claims


def tampered_jwt_is_rejected_by_pyjwt():
    token = read("jwt.txt").strip()
    public = serialization.load_pem_public_key(read("public.pem").encode())
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    try:
        jwt.decode(f"{head}.{body}.{flipped}", key=public, algorithms=["EdDSA"], options={"verify_exp": False})
    except jwt.InvalidSignatureError:
        return
    raise AssertionError("a tampered signature verified")


def golden_jobs_pass_kubernetes_validate():
    files = sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "*.job.json")))
    assert len(files) >= 2, files
    out = subprocess.run(["kubernetes-validate", "--strict", *files], capture_output=True, text=True)
    print(out.stdout + out.stderr, end="")
    assert out.returncode == 0, f"kubernetes-validate exited {out.returncode}"
    assert out.stdout.count("passed") == len(files), out.stdout


check("jwt_verifies_with_pyjwt", jwt_verifies_with_pyjwt)
check("tampered_jwt_is_rejected_by_pyjwt", tampered_jwt_is_rejected_by_pyjwt)
check("golden_jobs_pass_kubernetes_validate", golden_jobs_pass_kubernetes_validate)
finish()
