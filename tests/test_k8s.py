"""The Kubernetes manifests: rendered by the real kustomize (kubectl), every object validated against the
schemas of a pinned Kubernetes version, and the pieces that must agree checked against each other and
against what a real tritonserver exports on /metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.launcher import Ports, TritonServer
from tts_client import TTSClient

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "1.32.0"  # the schemas every object is validated against
OVERLAYS = ("cpu", "gpu")
TRITON_PORTS = {"http": Ports().http, "grpc": Ports().grpc, "metrics": Ports().metrics}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request, tmp_path_factory) -> tuple[str, dict[tuple[str, str], dict]]:
    """(overlay, {(kind, name): object}) as `kubectl kustomize` renders it, with an admin key file in place."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: apt-get install kubectl (.ci/run does)")
    k8s = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", k8s)
    (k8s / "base" / "secrets" / "admin-key").write_text("a-test-key\n")
    done = subprocess.run(["kubectl", "kustomize", str(k8s / "overlays" / request.param)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    return request.param, {(o["kind"], o["metadata"]["name"]): o for o in objects}


def one(objects: dict, kind: str, prefix: str = "") -> dict:
    (found,) = [o for (k, name), o in objects.items() if k == kind and name.startswith(prefix)]
    return found


def pod_spec(objects: dict, name: str) -> dict:
    return objects[("Deployment", name)]["spec"]["template"]["spec"]


def pod_labels(objects: dict, name: str) -> dict:
    return objects[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]


def container(objects: dict, deployment: str, name: str) -> dict:
    spec = pod_spec(objects, deployment)
    return next(c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == name)


def port_names(c: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_every_object_is_valid_for_the_pinned_kubernetes(rendered):
    _, objects = rendered
    kinds = {kind for kind, _ in objects}
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodMonitor", "ConfigMap",
                     "PodDisruptionBudget", "NetworkPolicy", "Secret"}
    for (kind, name), obj in objects.items():
        if kind == "PodMonitor":  # a prometheus-operator resource: no schema in Kubernetes itself
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_triton_ports_probes_and_service_agree(rendered):
    _, objects = rendered
    triton = container(objects, "triton", "tritonserver")
    assert port_names(triton) == TRITON_PORTS
    assert triton["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    service = objects[("Service", "triton")]
    assert selects(service["spec"]["selector"], pod_labels(objects, "triton"))
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        name: (number, name) for name, number in TRITON_PORTS.items()}


def test_the_gateway_reaches_triton_through_its_service(rendered):
    _, objects = rendered
    gateway = container(objects, "gateway", "gateway")
    args = gateway["args"]
    # gRPC balanced over every ready pod: a headless Service of the Triton pods, resolved again every 30 s
    scheme, host, port = re.fullmatch(r"(dns:///)?([\w-]+):(\d+)", args[args.index("--triton-url") + 1]).groups()
    assert scheme == "dns:///" and float(args[args.index("--triton-refresh-s") + 1]) > 0
    headless = objects[("Service", host)]
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], pod_labels(objects, "triton"))
    assert [(p["port"], p["targetPort"]) for p in headless["spec"]["ports"]] == [(int(port), "grpc")]
    assert int(port) == TRITON_PORTS["grpc"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert int(args[args.index("--port") + 1]) == port_names(gateway)["http"]
    service = objects[("Service", "gateway")]
    assert selects(service["spec"]["selector"], pod_labels(objects, "gateway"))
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_model_repository_is_built_for_the_overlays_target_and_served(rendered):
    overlay, objects = rendered
    builder = container(objects, "triton", "model-repository")
    assert builder["command"][:2] == ["scripts/build_repository.sh", overlay]
    model_dir, work = builder["command"][2:4]
    mounts = {m["mountPath"]: m["name"] for m in builder["volumeMounts"]}
    assert mounts[model_dir] == "model" and mounts[work] == "work"
    triton = container(objects, "triton", "tritonserver")
    assert triton["args"][0] == f"{work}/model_repository"
    assert {m["mountPath"]: m["name"] for m in triton["volumeMounts"]}[work] == "work"
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for c in (builder, triton)]
    assert gpus == (["1", "1"] if overlay == "gpu" else [None, None])


def test_the_admin_key_comes_from_the_generated_secret(rendered):
    overlay, objects = rendered
    secret = one(objects, "Secret", "triton-admin")
    assert "admin-key" in secret["data"]
    spec = pod_spec(objects, "triton")
    volume = next(v for v in spec["volumes"] if v["name"] == "admin-key")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    triton = container(objects, "triton", "tritonserver")
    if overlay == "cpu":
        args = triton["args"]
        mount = next(m["mountPath"] for m in triton["volumeMounts"] if m["name"] == "admin-key")
        assert args[args.index("--admin-key-file") + 1] == f"{mount}/admin-key"
    else:
        env = next(e for e in triton["env"] if e["name"] == "TRITON_ADMIN_KEY")
        assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "admin-key"}


def test_scaling_monitoring_and_policies_select_the_right_pods(rendered):
    _, objects = rendered
    triton_labels, gateway_labels = pod_labels(objects, "triton"), pod_labels(objects, "gateway")
    hpa = objects[("HorizontalPodAutoscaler", "triton")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load(objects[("ConfigMap", "triton-prometheus-adapter-rules")]["data"]["config.yaml"])["rules"]
    assert metric["pods"]["metric"]["name"] in {rule["name"]["as"] for rule in rules}
    monitor = objects[("PodMonitor", "triton")]
    assert selects(monitor["spec"]["selector"]["matchLabels"], triton_labels)
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in TRITON_PORTS
    for name, labels in (("triton", triton_labels), ("gateway", gateway_labels)):
        assert selects(objects[("PodDisruptionBudget", name)]["spec"]["selector"]["matchLabels"], labels)
    policy = objects[("NetworkPolicy", "triton")]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], triton_labels)
    allowed = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert allowed == set(TRITON_PORTS)
    gateway_rule = next(r for r in policy["spec"]["ingress"] if "podSelector" in r["from"][0])
    assert selects(gateway_rule["from"][0]["podSelector"]["matchLabels"], gateway_labels)
    assert {p["port"] for p in gateway_rule["ports"]} == {"http", "grpc"}


@pytest.mark.server
def test_the_autoscaling_metric_is_built_from_series_tritonserver_exports(tiny_repository):
    config = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "prometheus-adapter-rules.yaml").read_text())
    rules = yaml.safe_load(config["data"]["config.yaml"])["rules"]
    series = {name for rule in rules for name in re.findall(r"\b(nv_\w+)\{", rule["seriesQuery"] + rule["metricsQuery"])}
    assert series == {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"}
    with TritonServer(tiny_repository) as server, TTSClient(server.grpc_url) as tts:
        tts.synthesize("你好。")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.ports.metrics}/metrics") as response:
            exported = response.read().decode()
    for name in series:
        assert f'{name}{{model="acoustic"' in exported, name
