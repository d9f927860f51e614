"""Finishes cargo-cyclonedx's SBOM so that it says exactly what is compiled in and is the same
bytes wherever it is built (.ci/release runs it; stdin: the SBOM, stdout: the finished one).

- components: cargo-cyclonedx reads `cargo metadata`, whose resolve graph lists optional
  dependencies that no activated feature turns on (env_filter's regex and its four crates, never
  compiled here). Only the crates of `cargo tree -e normal --target TARGET` (cargo's own feature
  resolver: what the build compiles) are kept, with their dependency entries.
- the checkout's absolute path (the root component's bom-ref) becomes `path+file:///build`, as
  --remap-path-prefix does for the binary; metadata.timestamp is SOURCE_DATE_EPOCH; the
  serialNumber is a UUID derived from the rest of the document, so it changes when it does.

Argument: TARGET. Environment: SOURCE_DATE_EPOCH, ROOT (the checkout).
"""
import datetime
import hashlib
import json
import os
import subprocess
import sys
import uuid

target = sys.argv[1]
root = os.environ["ROOT"]
tree = subprocess.run(["cargo", "tree", "--offline", "--locked", "-e", "normal", "--target", target, "--prefix", "none", "-f", "{p}"],
                      capture_output=True, text=True, check=True, cwd=root).stdout
compiled = {(line.split()[0], line.split()[1].lstrip("v")) for line in tree.splitlines() if line.strip()}

bom = json.load(sys.stdin)
kept = [c for c in bom.get("components", []) if (c["name"], c["version"]) in compiled]
refs = {c["bom-ref"] for c in kept} | {bom["metadata"]["component"]["bom-ref"]}
bom["components"] = kept
bom["dependencies"] = [
    {**d, "dependsOn": [r for r in d.get("dependsOn", []) if r in refs]} for d in bom.get("dependencies", []) if d["ref"] in refs
]
epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
bom["metadata"]["timestamp"] = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
bom["serialNumber"] = ""
text = json.dumps(bom, indent=2, sort_keys=False).replace(f"path+file://{root}#", "path+file:///build#")
bom = json.loads(text)
bom["serialNumber"] = "urn:uuid:" + str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=5))
json.dump(bom, sys.stdout, indent=2)
sys.stdout.write("\n")
