"""The SBOM beside each release binary (target/TARGET/release/kubernetes-agent.cdx.json, which the
image ships at /opt/runner/kubernetes-agent.cdx.json), checked independently of its generator:

- it is valid CycloneDX 1.5 JSON by cyclonedx-python-lib's strict JSON-schema validator;
- its components are exactly the crates compiled into the binary: the normal (not dev-, not
  build-) dependencies of kubernetes-agent, transitively, for that target, as `cargo metadata
  --offline --locked --filter-platform TARGET` resolves them;
- each component has its version, the purl pkg:cargo/NAME@VERSION, the licence expression of its
  Cargo.toml and, as a SHA-256 hash, the checksum Cargo.lock records for it;
- it names no build directory.

Expects .ci/release's builds of both targets. Prints 'N passed, N failed'.
"""
import json
import os
import subprocess
import sys
import tomllib

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))


def compiled_in(target):
    """{(name, version): package} of what the binary links, from cargo's own resolution.

    `cargo metadata`'s resolve graph also lists optional dependencies that no activated feature
    turns on (env_filter's regex here), so an edge counts only when the manifest's dependency is
    not optional or one of the node's activated features enables it."""
    out = subprocess.run(["cargo", "metadata", "--offline", "--locked", "--format-version", "1", "--filter-platform", target],
                         capture_output=True, text=True, cwd=ROOT, check=True, env={**os.environ, "CARGO_NET_OFFLINE": "true"})
    meta = json.loads(out.stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

    def enabled(package, features, dep_name):
        wanted = [d for d in package["dependencies"] if d["name"] == dep_name and d["kind"] is None]
        for d in wanted:
            key = d.get("rename") or d["name"]
            if not d["optional"] or key in features:
                return True
            for f in features:
                for item in package["features"].get(f, []):
                    if item in (f"dep:{key}", key) or item.startswith(f"{key}/"):
                        return True
        return False

    seen, todo = set(), [meta["resolve"]["root"]]
    while todo:
        node = nodes[todo.pop()]
        package = packages[node["id"]]
        for dep in node["deps"]:
            normal = any(kind["kind"] is None for kind in dep["dep_kinds"])
            if normal and dep["pkg"] not in seen and enabled(package, node["features"], packages[dep["pkg"]]["name"]):
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return {(packages[i]["name"], packages[i]["version"]): packages[i] for i in seen}


def lock_checksums():
    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as f:
        lock = tomllib.load(f)
    return {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}


def licence_of(component):
    found = []
    for entry in component.get("licenses") or []:
        if "expression" in entry:
            found.append(entry["expression"])
        elif "license" in entry:
            found.append(entry["license"].get("id") or entry["license"].get("name"))
    return " AND ".join(found) if found else None


def main():
    checksums = lock_checksums()
    validator = JsonStrictValidator(SchemaVersion.V1_5)
    for target in TARGETS:
        path = os.path.join(ROOT, "target", target, "release", "kubernetes-agent.cdx.json")
        with open(path) as f:
            text = f.read()
        error = validator.validate_str(text)
        check(f"{target}: valid CycloneDX 1.5 (cyclonedx-python-lib, strict schema)", error is None, error)
        bom = json.loads(text)
        check(f"{target}: specVersion 1.5", bom.get("specVersion") == "1.5", bom.get("specVersion"))
        top = (bom.get("metadata") or {}).get("component") or {}
        check(f"{target}: describes kubernetes-agent", top.get("name") == "kubernetes-agent", top.get("name"))
        components = {(c["name"], c["version"]): c for c in bom.get("components", [])}
        expected = compiled_in(target)
        check(f"{target}: the components are exactly the crates compiled in ({len(expected)})", set(components) == set(expected),
              f"extra {sorted(set(components) - set(expected))}, missing {sorted(set(expected) - set(components))}")
        wrong = []
        for key, package in sorted(expected.items()):
            c = components.get(key)
            if c is None:
                continue
            name, version = key
            if c.get("purl") != f"pkg:cargo/{name}@{version}":
                wrong.append(f"{name}: purl {c.get('purl')}")
            if licence_of(c) != package.get("license"):
                wrong.append(f"{name}: licence {licence_of(c)!r}, Cargo.toml {package.get('license')!r}")
            hashes = {h["alg"]: h["content"] for h in c.get("hashes") or []}
            if not checksums.get(key) or hashes.get("SHA-256") != checksums[key]:
                wrong.append(f"{name}: SHA-256 {hashes.get('SHA-256')}, Cargo.lock {checksums.get(key)}")
        check(f"{target}: every component has its purl, licence and Cargo.lock checksum", not wrong, wrong)
        check(f"{target}: names no build directory", ROOT not in text, "a path is in the SBOM")
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
