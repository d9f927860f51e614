"""The Helm chart, checked with real Helm (the helm-python-sdk wheel embeds it) and the
official Kubernetes schemas (kubernetes-validate):

- lint, and render with the seed's install commands exactly as written (generic, EKS,
  GKE, AKS, self-hosted with --set-json humanitec.extraEnvVars), plus this chart's
  additions (replicas > 1, NetworkPolicy, agent options);
- every rendered object passes kubernetes-validate --strict;
- properties: Secret key private_key -> PRIVATE_KEY, annotations on both service accounts,
  Roles and verbs, namespaces, probes, restricted security settings, resources;
- an upstream-shaped values file (tests/chart/upstream-values.yaml) is taken, and the agent's
  own pod meets Pod Security 'restricted' (the agent's checker and field by field);
- the README's Install commands, as an operator pastes them, create every namespace used;
- values.schema.json rejects typos;
- the plain manifests in k8s/manifests are what the chart renders from its defaults;
- the upstream-shaped Deployment runs our binary: its exact command, args and env (from
  the rendered ConfigMap, Secret and extraEnvVars) in a root holding only the binary and
  the service-account files, polling a local Orchestrator stand-in whose JWT check is PyJWT.

Usage: python3 tests/chart_test.py [--update-manifests] [--binary PATH]
Prints 'N passed, N failed'; exits non-zero on failure.
"""
import base64
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import helm_python
from helm_python import chart as helm_chart

from checks import check, finish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "k8s", "humanitec-kubernetes-agent-runner")
MANIFESTS = os.path.join(ROOT, "k8s", "manifests", "humanitec-kubernetes-agent-runner.yaml")
RELEASE = "humanitec-kubernetes-agent-runner"


def deep_merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def values_from_flags(flags):
    """`helm install` flags as the seed writes them -> a values dict, parsed by Helm itself."""
    values = {}
    for flag, expr in flags:
        parse = {"--set": helm_python.parse_set_string, "--set-json": helm_python.parse_set_json, "--set-string": helm_python.parse_set_string_values}[flag]
        deep_merge(values, parse(expr))
    return values


def render(values, namespace="humanitec-kubernetes-agent-runner"):
    out = helm_chart.Chart.load(CHART).render(values, name=RELEASE, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert hits, f"no {kind} {name or ''} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return hits


def validate(docs):
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, d in enumerate(docs):
            f = os.path.join(tmp, f"{i:02d}-{d['kind']}.yaml")
            with open(f, "w") as fh:
                yaml.safe_dump(d, fh)
            files.append(f)
        out = subprocess.run(["kubernetes-validate", "--strict", "--quiet", *files], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


GENERIC = [
    ("--set", "humanitec.orgId=my-org"),
    ("--set", "humanitec.runnerId=my-runner"),
    ("--set", "humanitec.existingSecret=humanitec-kubernetes-agent-runner"),
    ("--set", "namespaceOverride=humanitec-kubernetes-agent-runner"),
    ("--set", "serviceAccount.name=humanitec-kubernetes-agent-runner"),
    ("--set", "jobsRbac.namespace=humanitec-runner-jobs"),
    ("--set", "jobsRbac.serviceAccountName=humanitec-runner-job"),
]
SCENARIOS = {
    "generic": GENERIC,
    "eks": GENERIC + [("--set", r"serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::123456789012:role/humanitec-runner")],
    "gke": GENERIC + [("--set", r"serviceAccount.annotations.iam\.gke\.io/gcp-service-account=runner@my-project.iam.gserviceaccount.com")],
    "aks": GENERIC + [
        ("--set", r"serviceAccount.annotations.azure\.workload\.identity/client-id=00000000-0000-0000-0000-000000000000"),
        ("--set", r"podLabels.azure\.workload\.identity/use=true"),
    ],
    "self-hosted": GENERIC + [
        ("--set", "image.repository=registry.internal/humanitec/kubernetes-agent"),
        ("--set", "image.tag=0.1.0"),
        ("--set-json", 'humanitec.extraEnvVars=[{"name":"REMOTE_URL","value":"https://orchestrator.internal"},{"name":"HTTPS_PROXY","value":"http://proxy.internal:3128"}]'),
    ],
}
IDENTITY = {
    "eks": ("eks.amazonaws.com/role-arn", "arn:aws:iam::123456789012:role/humanitec-runner"),
    "gke": ("iam.gke.io/gcp-service-account", "runner@my-project.iam.gserviceaccount.com"),
    "aks": ("azure.workload.identity/client-id", "00000000-0000-0000-0000-000000000000"),
}


def agent_needs():
    """(verb, group, resource) the agent's requests need, as `check` verifies them
    (src/ops/check.rs NEEDED, which a Rust test derives from the request builders)."""
    with open(os.path.join(ROOT, "src", "ops", "check.rs")) as f:
        text = f.read()
    const = re.search(r"pub const NEEDED: \[\(&str, &str, &str\); \d+\] =\s*\[(.*?)\];", text, re.S)
    assert const, "no NEEDED in src/ops/check.rs"
    return sorted(re.findall(r'\("(\w*)", "([\w.]*)", "(\w+)"\)', const.group(1)))


def container(docs):
    return find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]


def pod_env(docs):
    """The agent container's environment as the kubelet builds it: envFrom in order (later
    sources win), then env (secretKeyRef resolved from the rendered Secrets)."""
    c = container(docs)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    env = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])[0]["data"])
        else:
            name = source["secretRef"]["name"]
            if name in secrets:  # an existing Secret of the operator's is not rendered
                env.update({k: base64.b64decode(v).decode() for k, v in secrets[name]["data"].items()})
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            if ref["name"] in secrets:
                env[e["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    return env


def test_lint():
    report = helm_chart.lint(CHART, values_from_flags(GENERIC), strict=True)
    assert not report["errors"], report
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


def scenario_test(name, flags):
    def run():
        docs = render(values_from_flags(flags))
        validate(docs)
        c = container(docs)
        assert c["command"] == ["/opt/runner/runner"] and c["args"] == ["remote"], c
        secret_ref = next(e for e in c["env"] if e["name"] == "PRIVATE_KEY")["valueFrom"]["secretKeyRef"]
        assert secret_ref == {"name": "humanitec-kubernetes-agent-runner", "key": "private_key"}, secret_ref
        cm = find(docs, "ConfigMap", "humanitec-kubernetes-agent-runner")[0]
        assert cm["metadata"]["namespace"] == "humanitec-kubernetes-agent-runner"
        assert cm["data"]["ORG_ID"] == "my-org" and cm["data"]["RUNNER_ID"] == "my-runner", cm["data"]
        assert cm["data"]["JOB_NAMESPACES"] == "humanitec-runner-jobs", cm["data"]
        assert cm["data"]["JOB_SERVICE_ACCOUNTS"] == "humanitec-runner-job", cm["data"]
        accounts = {d["metadata"]["name"]: d for d in find(docs, "ServiceAccount")}
        agent_sa = accounts["humanitec-kubernetes-agent-runner"]
        job_sa = accounts["humanitec-runner-job"]
        assert agent_sa["metadata"]["namespace"] == "humanitec-kubernetes-agent-runner"
        assert job_sa["metadata"]["namespace"] == "humanitec-runner-jobs"
        if name in IDENTITY:
            key, value = IDENTITY[name]
            for sa in (agent_sa, job_sa):
                assert sa["metadata"].get("annotations", {}).get(key) == value, sa
        roles = {d["metadata"]["name"]: d for d in find(docs, "Role")}
        agent_role = roles["humanitec-kubernetes-agent-runner"]
        assert agent_role["metadata"]["namespace"] == "humanitec-runner-jobs"
        rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in agent_role["rules"]}
        granted = sorted((verb, group, resource) for r in agent_role["rules"] for group in r["apiGroups"] for resource in r["resources"] for verb in r["verbs"])
        assert granted == agent_needs(), f"the agent's Role grants {granted}; the agent's requests (src/ops/check.rs NEEDED) need {agent_needs()}"
        job_rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in roles["humanitec-runner-job"]["rules"]}
        assert job_rules == {(("",), ("secrets",)): ["create", "delete", "get", "list", "update"], (("coordination.k8s.io",), ("leases",)): ["create", "get", "update"]}, job_rules
        bindings = {d["metadata"]["name"]: d for d in find(docs, "RoleBinding")}
        assert bindings["humanitec-kubernetes-agent-runner"]["subjects"] == [{"kind": "ServiceAccount", "name": "humanitec-kubernetes-agent-runner", "namespace": "humanitec-kubernetes-agent-runner"}]
        assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        pod = find(docs, "Deployment")[0]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"], sc
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], c["resources"]
        if name == "self-hosted":
            assert c["image"] == "registry.internal/humanitec/kubernetes-agent:0.1.0", c["image"]
            env = [e["name"] for e in c["env"]]
            assert env[-2:] == ["REMOTE_URL", "HTTPS_PROXY"], env
        if name == "aks":
            labels = find(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
            assert labels["azure.workload.identity/use"] == "true", labels
        assert not find(docs, "Deployment")[0]["spec"]["template"]["spec"].get("topologySpreadConstraints")
        assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    return run


def readme_install_blocks():
    """The README's Install section: its ```sh blocks, each as a list of commands (argv
    lists, backslash continuations joined, comments dropped), as an operator pastes them."""
    import shlex
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if shlex.split(line, comments=True)] for block in blocks]


def test_the_readmes_install_commands_work_as_written():
    blocks = readme_install_blocks()
    seed = next(b for b in blocks if any(c[:2] == ["helm", "install"] for c in b))
    namespaces = {c[3] for c in seed if c[:3] == ["kubectl", "create", "namespace"]}
    secret = next(c for c in seed if "secret" in c and "create" in c)
    secret_ns = secret[secret.index("-n") + 1]
    secret_name = secret[secret.index("generic") + 1]
    secret_key = next(a for a in secret if a.startswith("--from-literal=")).split("=")[1]
    helm = next(c for c in seed if c[:2] == ["helm", "install"])
    assert helm[3] == "k8s/humanitec-kubernetes-agent-runner" and os.path.isdir(os.path.join(ROOT, helm[3])), helm
    release_ns = helm[helm.index("--namespace") + 1]
    flags = [(helm[i], helm[i + 1]) for i in range(len(helm) - 1) if helm[i] in ("--set", "--set-json")]
    # The block after it adds the self-hosted flags to the same command.
    extra = next(b for b in blocks if b and b[0][0] == "--set")
    extra = [(a, b) for c in extra for a, b in zip(c[::2], c[1::2])]
    for values in (flags, flags + extra):
        docs = helm_chart.Chart.load(CHART).render(values_from_flags(values), name=helm[2], namespace=release_ns, is_install=True)
        docs = [d for path, t in sorted(docs.items()) if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d]
        validate(docs)
        used = {d["metadata"]["namespace"] for d in docs}
        assert used <= namespaces, f"objects go to namespaces {sorted(used - namespaces)} that the README's commands never create"
        assert release_ns in namespaces and secret_ns in namespaces, (release_ns, secret_ns, namespaces)
        deployment = find(docs, "Deployment")[0]
        ref = next(e for e in container(docs)["env"] if e["name"] == "PRIVATE_KEY")["valueFrom"]["secretKeyRef"]
        assert (deployment["metadata"]["namespace"], ref["name"], ref["key"]) == (secret_ns, secret_name, secret_key), (ref, secret)
    assert sorted(flags) == sorted(GENERIC), "the README's install command is not the seed's (GENERIC)"
    env = pod_env(docs)
    assert env["REMOTE_URL"] == "https://orchestrator.internal" and env["IMAGE_MIRRORS"] == "ghcr.io/humanitec=registry.internal/humanitec", env


def test_a_tag_or_org_id_of_digits_given_with_set_is_taken_as_upstream_takes_it():
    # Helm's --set makes a value of digits an integer; the upstream chart has no schema and
    # renders it, so a schema demanding a string refused an install the upstream one takes.
    docs = render(values_from_flags(GENERIC[1:] + [("--set", "humanitec.orgId=12345"), ("--set", "image.tag=20261201")]))
    validate(docs)
    assert container(docs)["image"].endswith(":20261201"), container(docs)["image"]
    assert find(docs, "ConfigMap", "humanitec-kubernetes-agent-runner")[0]["data"]["ORG_ID"] == "12345"


def test_private_key_value_makes_the_secret():
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBhHYBkJutwtjhDHWf+i4YW2jFfOQ1oPEycYMLgal7hy\n-----END PRIVATE KEY-----\n"
    docs = render({"humanitec": {"orgId": "o", "runnerId": "r1", "privateKey": pem}})
    validate(docs)
    secret = find(docs, "Secret")[0]
    assert base64.b64decode(secret["data"]["private_key"]).decode() == pem
    ref = next(e for e in container(docs)["env"] if e["name"] == "PRIVATE_KEY")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "private_key"}, ref


def test_replicas_bring_a_pdb_and_spreading():
    docs = render(deep_merge(values_from_flags(GENERIC), {"replicaCount": 2}))
    validate(docs)
    pdb = find(docs, "PodDisruptionBudget")[0]
    assert pdb["spec"]["minAvailable"] == 1
    spread = find(docs, "Deployment")[0]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname", spread


def test_network_policy_limits_egress():
    docs = render(deep_merge(values_from_flags(GENERIC), {"networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.1/32"], "orchestratorCIDRs": ["203.0.113.0/24"]}}))
    validate(docs)
    np = find(docs, "NetworkPolicy")[0]["spec"]
    cidrs = [b["ipBlock"]["cidr"] for rule in np["egress"] for b in rule.get("to", [])]
    assert cidrs == ["10.0.0.1/32", "203.0.113.0/24"], cidrs
    assert np["policyTypes"] == ["Ingress", "Egress"]


def test_a_network_policy_without_the_api_servers_cidrs_fails_the_install_naming_the_value():
    # Without them the agent could reach the API server only where it happens to listen on a
    # port of orchestratorPorts; on 6443 (kubeadm, k3s) every Job create would time out.
    try:
        render(deep_merge(values_from_flags(GENERIC), {"networkPolicy": {"enabled": True}}))
    except Exception as e:  # noqa: BLE001
        assert "networkPolicy.apiServerCIDRs" in str(e) and "kubectl get endpoints kubernetes" in str(e), e
        return
    raise AssertionError("networkPolicy.enabled without apiServerCIDRs rendered")


def test_network_policy_admits_to_the_listener_only_the_probes_and_metrics_sources():
    # Default: no ingress rule at all, so nothing but the pod's own node (the kubelet's
    # probes, which no NetworkPolicy can block) reaches the listener.
    api = {"apiServerCIDRs": ["10.0.0.1/32"]}
    docs = render(deep_merge(values_from_flags(GENERIC), {"networkPolicy": {"enabled": True, **api}}))
    validate(docs)
    np = find(docs, "NetworkPolicy")[0]["spec"]
    assert np["ingress"] == [], np["ingress"]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {"matchLabels": {"app": "prometheus"}}}
    extra = {"agent": {"port": 9090}, "networkPolicy": {"enabled": True, "probeCIDRs": ["10.128.0.0/16"], "metricsFrom": [monitoring], **api}}
    docs = render(deep_merge(values_from_flags(GENERIC), extra))
    validate(docs)
    ingress = find(docs, "NetworkPolicy")[0]["spec"]["ingress"]
    assert ingress == [{"from": [{"ipBlock": {"cidr": "10.128.0.0/16"}}, monitoring], "ports": [{"port": 9090, "protocol": "TCP"}]}], ingress
    # Every rule names its sources: none admits the whole world to the port.
    assert all(rule.get("from") for rule in ingress), ingress


PROXY = "http://proxy-user:s3cr3t-pw@proxy.internal:3128"


def test_proxy_credentials_are_in_no_configmap_and_still_reach_the_agent():
    extra = {"agent": {"proxy": {"httpsProxy": PROXY, "httpProxy": PROXY, "noProxy": ".internal"}, "remoteUrl": "https://gw-user:s3cr3t-pw@orchestrator.internal"}}
    docs = render(deep_merge(values_from_flags(GENERIC), extra))
    validate(docs)
    for cm in find(docs, "ConfigMap"):
        assert "s3cr3t-pw" not in yaml.safe_dump(cm), cm
    for d in docs:
        if d["kind"] != "Secret":
            assert "s3cr3t-pw" not in yaml.safe_dump(d), f"the password is in the {d['kind']} {d['metadata']['name']}"
    env = pod_env(docs)
    assert env["HTTPS_PROXY"] == PROXY and env["HTTP_PROXY"] == PROXY, env
    assert env["REMOTE_URL"] == "https://gw-user:s3cr3t-pw@orchestrator.internal" and env["NO_PROXY"] == ".internal", env
    secret = find(docs, "Secret", "humanitec-kubernetes-agent-runner-env")[0]
    assert secret["metadata"]["namespace"] == "humanitec-kubernetes-agent-runner", secret["metadata"]
    # Without any URL value the chart makes no such Secret and refers to none.
    docs = render(values_from_flags(GENERIC))
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-env")]
    assert [s for s in container(docs)["envFrom"] if "secretRef" in s] == []


def test_an_existing_env_secret_is_loaded_after_the_charts_own():
    docs = render(deep_merge(values_from_flags(GENERIC), {"agent": {"existingEnvSecret": "agent-proxy", "proxy": {"httpsProxy": "http://proxy:3128"}}}))
    validate(docs)
    sources = container(docs)["envFrom"]
    assert sources == [{"configMapRef": {"name": "humanitec-kubernetes-agent-runner"}},
                       {"secretRef": {"name": "humanitec-kubernetes-agent-runner-env"}},
                       {"secretRef": {"name": "agent-proxy"}}], sources


def test_agent_options_reach_the_agent():
    extra = {"agent": {"imageMirrors": ["ghcr.io/humanitec=registry.internal/mirror"], "jobAllow": ["host-path", "running-as-non-root-user"],
                       "podSecurity": "restricted",
                       "jobPolicy": {"spec": {"template": {"spec": {"nodeSelector": {"pool": "runners"}}}}},
                       "remoteCA": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                       "proxy": {"httpsProxy": "http://proxy:3128", "noProxy": ".internal"}}}
    docs = render(deep_merge(values_from_flags(GENERIC), extra))
    validate(docs)
    data = find(docs, "ConfigMap", "humanitec-kubernetes-agent-runner")[0]["data"]
    assert data["IMAGE_MIRRORS"] == "ghcr.io/humanitec=registry.internal/mirror" and data["JOB_ALLOW"] == "host-path,running-as-non-root-user", data
    assert data["JOB_POD_SECURITY"] == "restricted", data
    default = find(render(values_from_flags(GENERIC)), "ConfigMap", "humanitec-kubernetes-agent-runner")[0]["data"]
    assert default["JOB_POD_SECURITY"] == "baseline" and "JOB_ALLOW" not in default, default
    assert pod_env(docs)["HTTPS_PROXY"] == "http://proxy:3128" and data["NO_PROXY"] == ".internal", data
    files = find(docs, "ConfigMap", "humanitec-kubernetes-agent-runner-files")[0]["data"]
    assert json.loads(files["job-policy.json"]) == extra["agent"]["jobPolicy"]
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert env["JOB_POLICY_FILE"] == "/etc/kubernetes-agent/job-policy.json" and env["REMOTE_CA_FILE"] == "/etc/kubernetes-agent/remote-ca.pem", env


def test_schema_rejects_typos():
    for typo in ({"humanitec": {"orgID": "x"}}, {"serviceAcount": {"create": True}}, {"agent": {"jobAllow": ["root"]}},
                 {"agent": {"podSecurity": "strict"}}):
        try:
            render(typo)
        except Exception as e:  # noqa: BLE001
            assert "schema" in str(e).lower() or "additional" in str(e).lower(), e
            continue
        raise AssertionError(f"{typo} was accepted")


def manifests_text():
    out = helm_chart.Chart.load(CHART).render({}, name=RELEASE, namespace="humanitec-kubernetes-agent-runner", is_install=True)
    head = ("# Rendered from k8s/humanitec-kubernetes-agent-runner with its default values, for kubectl users.\n"
            "# Edit ORG_ID and RUNNER_ID in the ConfigMap below, then:\n"
            "#   kubectl create namespace humanitec-kubernetes-agent-runner\n"
            "#   kubectl -n humanitec-kubernetes-agent-runner create secret generic humanitec-kubernetes-agent-runner \\\n"
            "#     --from-literal=private_key=\"$(cat runner_private_key.pem)\"\n"
            "#   kubectl apply -f k8s/manifests/humanitec-kubernetes-agent-runner.yaml\n"
            "# Kept in sync by tests/chart_test.py (--update-manifests rewrites it).\n")
    return head + "".join(f"---\n# Source: {p}\n{t.strip()}\n" for p, t in sorted(out.items()) if not p.endswith("NOTES.txt") and t.strip())


def test_the_plain_manifests_commands_create_what_they_need_in_order():
    """The header's commands, as pasted: the namespace first, then the Secret the Deployment
    reads, in it; every object in that namespace; the file applied is this one."""
    import shlex
    with open(MANIFESTS) as f:
        text = f.read()
    lines = [l[1:].strip() for l in text.split("\n---\n", 1)[0].splitlines() if l.startswith("#   ") or l.startswith("#     ")]
    commands = [shlex.split(c) for c in " ".join(lines).replace("\\ ", " ").split("kubectl ")[1:]]
    assert [c[:2] for c in commands] == [["create", "namespace"], ["-n", commands[1][1]], ["apply", "-f"]], commands
    namespace = commands[0][2]
    secret = commands[1]
    assert secret[1] == namespace and secret[2:5] == ["create", "secret", "generic"], secret
    assert os.path.samefile(os.path.join(ROOT, commands[2][2]), MANIFESTS), commands[2]
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert {d["metadata"]["namespace"] for d in docs} == {namespace}, {d["metadata"]["namespace"] for d in docs}
    ref = next(e for e in container(docs)["env"] if e["name"] == "PRIVATE_KEY")["valueFrom"]["secretKeyRef"]
    key = next(a for a in secret if a.startswith("--from-literal=")).split("=")[1]
    assert (ref["name"], ref["key"]) == (secret[5], key), (ref, secret)


def test_plain_manifests_are_in_sync():
    text = manifests_text()
    if "--update-manifests" in sys.argv:
        os.makedirs(os.path.dirname(MANIFESTS), exist_ok=True)
        with open(MANIFESTS, "w") as f:
            f.write(text)
    with open(MANIFESTS) as f:
        assert f.read() == text, "k8s/manifests is stale: run python3 tests/chart_test.py --update-manifests"
    validate([d for d in yaml.safe_load_all(text) if d])


class Orchestrator(http.server.BaseHTTPRequestHandler):
    polls = []

    def do_POST(self):
        Orchestrator.polls.append((self.path, self.headers.get("Authorization", "")))
        time.sleep(0.5)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def agent_binary():
    binary = sys.argv[sys.argv.index("--binary") + 1] if "--binary" in sys.argv else os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release", "kubernetes-agent")
    assert os.path.exists(binary), f"{binary} is missing: build the release musl binary first"
    return binary


def test_an_upstream_values_file_renders_and_the_agents_pod_meets_restricted():
    """Every key of the upstream chart's values.yaml, as an operator's copy of it holds them
    (tests/chart/upstream-values.yaml: its empty podSecurityContext, securityContext and
    resources, the service account and both Roles made elsewhere): the chart takes it, every
    object is valid, and the agent's pod still meets Pod Security 'restricted', checked by
    the agent's own checker (the pod spec rendered as a Job's, JOB_POD_SECURITY=restricted)
    and field by field here."""
    with open(os.path.join(ROOT, "tests", "chart", "upstream-values.yaml")) as f:
        values = yaml.safe_load(f)
    for given in (values, {}):
        docs = render(given)
        validate(docs)
        pod = find(docs, "Deployment")[0]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, pod["securityContext"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, c["securityContext"]
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")) and all("hostPath" not in v for v in pod.get("volumes", []))
        assert all("hostPort" not in p for p in c.get("ports", [])), c["ports"]
        message = {"action": "create-job", "job_id": "agent-pod", "namespace": "humanitec-runner-jobs", "deployment_token": "not-a-token",
                   "configuration": {"template": {"spec": pod}}}
        out = subprocess.run([agent_binary(), "render", "-"], input=json.dumps(message), capture_output=True, text=True,
                             env={"JOB_POD_SECURITY": "restricted", "ORG_ID": "o", "RUNNER_ID": "r1"}, timeout=30)
        assert out.returncode == 0, f"the agent's own pod fails Pod Security 'restricted': {out.stderr}"
    docs = render(values)
    assert not [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")], "serviceAccount.create, rbac.create and jobsRbac.create false make none"
    deployment = find(docs, "Deployment")[0]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing-agent-sa"
    ref = next(e for e in container(docs)["env"] if e["name"] == "PRIVATE_KEY")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "runner-key", "key": "key.pem"}, ref
    assert container(docs)["image"] == "registry.internal/humanitec/kubernetes-agent:0.1.0"
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "internal-registry"}]
    assert deployment["metadata"]["labels"]["team"] == "platform" and deployment["spec"]["template"]["metadata"]["labels"]["tier"] == "ops"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod_env(docs)["REMOTE_URL"] == "https://orchestrator.internal"


def test_the_charts_defaults_are_the_agents_defaults():
    """Each setting the chart's ConfigMap sets by default holds the default the agent's
    --help states (values.yaml and src/config.rs say it once each; this holds them equal),
    except where the chart means to differ: the namespaces and service accounts it made."""
    text = subprocess.run([agent_binary(), "--help"], capture_output=True, text=True, timeout=30).stdout
    defaults = dict(re.findall(r"^  \S.*?\s([A-Z_]+)\n      .*?\[default: (.*?)\]$", text, re.M))
    assert defaults.get("POLLS") == "2" and "LOG_FORMAT" in defaults, defaults
    data = find(render({}), "ConfigMap", RELEASE)[0]["data"]
    chart_own = {"JOB_NAMESPACES", "JOB_SERVICE_ACCOUNTS", "ORG_ID", "RUNNER_ID"}
    differ = {k: (v, defaults.get(k)) for k, v in data.items() if k not in chart_own and defaults.get(k) != v}
    assert not differ, f"the chart's default differs from the agent's (chart, agent): {differ}"
    assert set(data) - chart_own <= set(defaults), f"the chart sets {sorted(set(data) - chart_own - set(defaults))}, which have no agent default"


def test_upstream_shaped_deployment_runs_our_binary():
    binary = agent_binary()
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Orchestrator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    remote = f"http://127.0.0.1:{server.server_address[1]}"
    flags = GENERIC[:2] + [("--set-json", f'humanitec.extraEnvVars=[{{"name":"REMOTE_URL","value":"{remote}"}}]')]
    docs = render(deep_merge(values_from_flags(flags), {"humanitec": {"privateKey": pem}}))
    c = container(docs)
    data = find(docs, "ConfigMap")[0]["data"]
    env = pod_env(docs)
    env["LISTEN_ADDRESS"] = "127.0.0.1:0"  # the pod's 0.0.0.0:8080 may be taken on a shared machine
    # What the kubelet adds to every pod: the API server address and the service-account files.
    env.update({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"})
    root = tempfile.mkdtemp(prefix="upstream-shaped-")
    try:
        os.makedirs(f"{root}/opt/runner")
        shutil.copy(binary, f"{root}/opt/runner/runner")
        sa = f"{root}/var/run/secrets/kubernetes.io/serviceaccount"
        os.makedirs(sa)
        shutil.copy(os.path.join(ROOT, "tests", "certs", "ca.pem"), f"{sa}/ca.crt")
        with open(f"{sa}/token", "w") as f:
            f.write("service-account-token")
        for dirpath, _, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for fn in filenames:
                os.chmod(os.path.join(dirpath, fn), 0o555 if fn == "runner" else 0o444)
        user = str(find(docs, "Deployment")[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"])
        argv = [shutil.which("chroot"), f"--userspec={user}:{user}", root, *c["command"], *c["args"]]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while time.time() < deadline and not Orchestrator.polls:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert Orchestrator.polls, f"no poll reached the stand-in; agent said: {err}"
        path, auth = Orchestrator.polls[0]
        assert path == "/orgs/my-org/remote-runners/my-runner/actions/poll-requests", path
        assert auth.startswith("JWT "), auth
        claims = jwt.decode(auth[4:], key=key.public_key(), algorithms=["EdDSA"])
        assert claims["org_id"] == "my-org" and claims["runner_id"] == "my-runner", claims
        assert proc.returncode == 0, (proc.returncode, err)
        assert pem.splitlines()[1] not in out + err, "the private key leaked into the output"
        assert data["ORG_ID"] == "my-org"
    finally:
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


check("lint (strict) passes", test_lint)
for scenario, flags in SCENARIOS.items():
    check(f"seed install '{scenario}' renders valid objects with the expected properties", scenario_test(scenario, flags))
check("the README's install commands, as written, create every namespace the chart uses and the Secret it reads", test_the_readmes_install_commands_work_as_written)
check("--set image.tag and humanitec.orgId of digits (integers to Helm) are taken, as upstream", test_a_tag_or_org_id_of_digits_given_with_set_is_taken_as_upstream_takes_it)
check("humanitec.privateKey makes a Secret with key private_key feeding PRIVATE_KEY", test_private_key_value_makes_the_secret)
check("replicaCount 2 brings a PodDisruptionBudget and spreading", test_replicas_bring_a_pdb_and_spreading)
check("networkPolicy limits egress to DNS, the API server and the Orchestrator", test_network_policy_limits_egress)
check("networkPolicy.enabled without apiServerCIDRs fails the install, naming the value", test_a_network_policy_without_the_api_servers_cidrs_fails_the_install_naming_the_value)
check("networkPolicy admits to the listener only probeCIDRs and metricsFrom (default: none but the node)", test_network_policy_admits_to_the_listener_only_the_probes_and_metrics_sources)
check("proxy and URL credentials are in no ConfigMap and still reach the agent", test_proxy_credentials_are_in_no_configmap_and_still_reach_the_agent)
check("agent.existingEnvSecret is loaded after the chart's own Secret", test_an_existing_env_secret_is_loaded_after_the_charts_own)
check("agent options reach the agent's environment and files", test_agent_options_reach_the_agent)
check("values.schema.json rejects typos", test_schema_rejects_typos)
check("plain manifests match the chart's defaults", test_plain_manifests_are_in_sync)
check("the plain manifests' commands create the namespace, then the Secret the Deployment reads, then apply", test_the_plain_manifests_commands_create_what_they_need_in_order)
check("an upstream values file renders valid objects and the agent's pod meets Pod Security restricted", test_an_upstream_values_file_renders_and_the_agents_pod_meets_restricted)
check("the chart's defaults are the agent's defaults (--help)", test_the_charts_defaults_are_the_agents_defaults)
check("the upstream-shaped Deployment runs our binary and polls with a valid JWT", test_upstream_shaped_deployment_runs_our_binary)
finish()
