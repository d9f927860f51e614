"""An independent implementation of the published cosign key and signature formats, for
the tests (Debian's skopeo is built with sigstore disabled and cosign is not packaged):

- keys as `cosign generate-key-pair` writes them: `cosign.pub`, a PEM `PUBLIC KEY`
  (SubjectPublicKeyInfo, ECDSA P-256), and `cosign.key`, a PEM `ENCRYPTED COSIGN PRIVATE
  KEY` whose body is the JSON envelope of sigstore's `encrypted` package:
  {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":B64},
   "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}, the ciphertext being
  NaCl secretbox (XSalsa20-Poly1305, PyNaCl) of the PKCS#8 DER under scrypt(password, salt);
- signing: the simple-signing payload, an ECDSA P-256 SHA-256 ASN.1 signature, base64, in
  the layer annotation `dev.cosignproject.cosign/signature` of an OCI manifest whose one
  layer (`application/vnd.dev.cosign.simplesigning.v1+json`) is the payload, pushed under
  the tag `sha256-<hex>.sig` of the image's repository (plain HTTP registry, no auth);
- checking a signature in a registry the way `cosign verify --key` does.
Uses `cryptography` and PyNaCl only; it shares no code with offline-install.
"""
import base64
import hashlib
import json
import os
import urllib.error
import urllib.request

import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _pem(body, label):
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _unpem(text, label):
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    assert text.strip().startswith(begin) and text.strip().endswith(end), f"not a {label} PEM"
    return base64.b64decode("".join(text.strip()[len(begin):-len(end)].split()), validate=True)


def _box_key(password, salt, n=32768, r=8, p=1):
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password)


def generate(directory, password, name="cosign"):
    """Writes NAME.key (encrypted as cosign does) and NAME.pub; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    sealed = nacl.secret.SecretBox(_box_key(password, salt)).encrypt(pkcs8, nonce).ciphertext
    envelope = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": base64.b64encode(salt).decode()},
                "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
                "ciphertext": base64.b64encode(sealed).decode()}
    private, public = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pub")
    with open(private, "w") as f:
        f.write(_pem(json.dumps(envelope, separators=(",", ":")).encode(), PEM_TYPE))
    with open(public, "w") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return private, public


def load_private(path, password):
    """The private key of a cosign.key, decrypted (a wrong password raises)."""
    with open(path) as f:
        envelope = json.loads(_unpem(f.read(), PEM_TYPE))
    assert envelope["kdf"]["name"] == "scrypt" and envelope["cipher"]["name"] == "nacl/secretbox", envelope
    params = envelope["kdf"]["params"]
    box = nacl.secret.SecretBox(_box_key(password, base64.b64decode(envelope["kdf"]["salt"]), params["N"], params["r"], params["p"]))
    pkcs8 = box.decrypt(base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["cipher"]["nonce"]))
    return serialization.load_der_private_key(pkcs8, None)


def load_public(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1), "not a P-256 key"
    return key


def payload(reference, digest):
    """The simple-signing payload cosign signs, in the order cosign writes it."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference}, "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"}, "optional": None}, separators=(",", ":")).encode()


def _request(method, url, body=None, content_type=None, accept=None):
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers), r.read()


def _push_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, headers, _ = _request("POST", f"http://{host}/v2/{repo}/blobs/uploads/", b"")
    location = headers["Location"]
    location = location if location.startswith("http") else f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    _request("PUT", f"{location}{sep}digest={digest}", data, "application/octet-stream")
    return {"digest": digest, "size": len(data)}


def signature_manifest(host, repo, layers):
    """Pushes the blobs of `layers` ([(payload, base64 signature)]) and returns cosign's manifest."""
    descriptors = []
    for body, sig in layers:
        d = _push_blob(host, repo, body)
        descriptors.append({"mediaType": PAYLOAD_TYPE, "size": d["size"], "digest": d["digest"], "annotations": {ANNOTATION: sig}})
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]}, "config": {}}).encode()
    c = _push_blob(host, repo, config)
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c},
            "layers": descriptors}


def sign(host, repo, digest, private_key, body=None, tamper=None):
    """Signs `digest` in HOST/REPO (plain HTTP) and pushes the signature under its .sig tag.
    `body` replaces the payload that is signed; `tamper(payload, sig) -> (payload, sig)`
    alters what is stored after signing."""
    body = body if body is not None else payload(f"{host}/{repo}", digest)
    sig = base64.b64encode(private_key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    if tamper:
        body, sig = tamper(body, sig)
    manifest = json.dumps(signature_manifest(host, repo, [(body, sig)])).encode()
    tag = "sha256-" + digest.split(":", 1)[1] + ".sig"
    _request("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", manifest, OCI_MANIFEST)
    return tag


def check(host, repo, digest, public_key_path):
    """cosign verify --key: None when a signature of `digest` in HOST/REPO verifies, else why not."""
    key = load_public(public_key_path)
    tag = "sha256-" + digest.split(":", 1)[1] + ".sig"
    try:
        _, _, raw = _request("GET", f"http://{host}/v2/{repo}/manifests/{tag}", accept=OCI_MANIFEST)
    except urllib.error.HTTPError as e:
        return f"no signature ({tag}: HTTP {e.code})"
    reasons = []
    for layer in json.loads(raw).get("layers", []):
        if layer.get("mediaType") != PAYLOAD_TYPE or ANNOTATION not in layer.get("annotations", {}):
            continue
        _, _, body = _request("GET", f"http://{host}/v2/{repo}/blobs/{layer['digest']}")
        if "sha256:" + hashlib.sha256(body).hexdigest() != layer["digest"]:
            reasons.append("payload digest mismatch")
            continue
        try:
            key.verify(base64.b64decode(layer["annotations"][ANNOTATION], validate=True), body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            reasons.append("signature does not verify")
            continue
        critical = json.loads(body)["critical"]
        if critical["type"] != "cosign container image signature":
            reasons.append("wrong type")
        elif critical["image"]["docker-manifest-digest"] != digest:
            reasons.append(f"signs {critical['image']['docker-manifest-digest']}")
        else:
            return None
    return "; ".join(reasons) or "no signature layer"
