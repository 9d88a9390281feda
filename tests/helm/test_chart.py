"""The verifier's Helm chart with a real helm binary (.tools/helm, from `make setup`): lint and
render the default values and every ci/ file (one GPU, tensor parallel on 4 GPUs, pipeline
parallel over two nodes, several replicas, TLS); every rendered manifest is validated offline
against the Kubernetes schemas; the values schema and the chart's own checks refuse bad values;
the settings it renders are ones the verifier accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from verifier.settings import VerifierSettings

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "helm"
CHART = ROOT / "helm" / "tandem-verifier"
CI = CHART / "ci"
VALUES_FILES = sorted(CI.glob("values-*.yaml"))
K8S_VERSION = "1.33"
#: the verifier settings the chart sets itself (from other values)
MANAGED = {"host", "port", "model", "auth_tokens_file", "ssl_certfile", "ssl_keyfile", "vllm_engine_args",
           "vllm_headless"}
ENGINE_ARGS = "TANDEM_VERIFIER_VLLM_ENGINE_ARGS"
POD_INDEX_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM.relative_to(ROOT)} is missing: run `make setup`", pytrace=False)
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def template(*values: Path, sets: tuple[str, ...] = (), namespace: str = "llm") -> subprocess.CompletedProcess[str]:
    args = [a for v in values for a in ("-f", str(v))] + [a for s in sets for a in ("--set", s)]
    return helm("template", "tandem", str(CHART), "--namespace", namespace, *args)


def render(*values: Path, sets: tuple[str, ...] = (), namespace: str = "llm") -> list[dict[str, Any]]:
    done = template(*values, sets=sets, namespace=namespace)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def by_component(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (doc,) = [d for d in workloads(docs)
              if d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == component]
    return doc


def serving(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The workload whose pods serve the API: the Deployment, or a group's leader."""
    if any(d["kind"] == "StatefulSet" for d in docs):
        return by_component(docs, "leader")
    return by_kind(docs, "Deployment")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (verifier,) = workload["spec"]["template"]["spec"]["containers"]
    return verifier


def env_values_raw(workload: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(workload)["env"] if "value" in e}


def env_values(workload: dict[str, Any]) -> dict[str, str]:
    """The verifier's plain env vars, with the downward API's pod index substituted (as the kubelet
    would) for a pod of this workload's first ordinal."""
    env = container(workload)["env"]
    index = str(workload["spec"].get("ordinals", {}).get("start", 0))
    return {e["name"]: e["value"].replace("$(POD_INDEX)", index) if "value" in e else index for e in env}


def engine_args(workload: dict[str, Any]) -> dict[str, Any] | None:
    value = env_values(workload).get(ENGINE_ARGS)
    return None if value is None else json.loads(value)


def gpus(workload: dict[str, Any]) -> int:
    return int(container(workload)["resources"]["limits"]["nvidia.com/gpu"])


def assert_shm(workload: dict[str, Any], size: str) -> None:
    spec = workload["spec"]["template"]["spec"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in container(workload)["volumeMounts"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": size}} in spec["volumes"]


def selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    return selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda v: v.name if v else "default")
def test_lint_render_and_validate(values: Path | None) -> None:
    files = [values] if values else []
    lint = helm("lint", str(CHART), *[a for v in files for a in ("-f", str(v))])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(*files)
    assert {"Service", "ServiceAccount", "Pod"} <= {d["kind"] for d in docs} and workloads(docs)
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # a CRD: not in the Kubernetes schemas
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_settings_schema_follows_the_verifiers_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["settings"]["properties"]) == set(VerifierSettings.model_fields) - MANAGED


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda v: v.name if v else "default")
def test_the_rendered_environment_is_one_the_verifier_accepts(values: Path | None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(*([values] if values else []))
    for workload in workloads(docs):
        prefixed = {k: v for k, v in env_values(workload).items() if k.startswith("TANDEM_VERIFIER_")}
        for name in {k.removeprefix("TANDEM_VERIFIER_").lower() for k in prefixed}:
            assert name in VerifierSettings.model_fields, name
        with monkeypatch.context() as env:
            for key, value in prefixed.items():
                env.setenv(key, value)
            settings = VerifierSettings()
        assert settings.model == "/models/target"
        if workload is serving(docs):
            assert settings.host == "0.0.0.0" and settings.port == container(workload)["ports"][0]["containerPort"]
            assert not settings.vllm_headless


def test_gpu_multi_replica_and_tls_files_render_what_they_say() -> None:
    gpu = by_kind(render(CI / "values-gpu.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models" and gpu["tolerations"]
    multi = render(CI / "values-multi-replica.yaml")
    assert by_kind(multi, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    hpa = by_kind(multi, "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "tandem_verifier_queue_depth"
    deployment = by_kind(multi, "Deployment")["spec"]
    assert "replicas" not in deployment  # the autoscaler owns it
    assert deployment["template"]["spec"]["initContainers"][0]["name"] == "copy-model"
    (spread,) = deployment["template"]["spec"]["topologySpreadConstraints"]  # the chart's default
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    dashboard = by_kind(multi, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["tandem-overview.json"])["uid"] == "tandem-overview"
    tls = render(CI / "values-tls.yaml")
    spec = by_kind(tls, "Deployment")["spec"]["template"]["spec"]
    assert spec["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {v["name"] for v in spec["volumes"]} >= {"tls", "auth"}
    assert "edge-eu-1" in by_kind(tls, "Secret")["stringData"]["tokens"]
    assert by_kind(tls, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    # sessions live on the edge's one WebSocket: a plain Service, no affinity needed
    assert "sessionAffinity" not in by_kind(multi, "Service")["spec"]


def test_no_tokens_means_no_auth() -> None:
    deployment = by_kind(render(), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert "TANDEM_VERIFIER_AUTH_TOKENS_FILE" not in env_values(deployment)
    assert "auth" not in {v["name"] for v in spec["volumes"]}  # no Secret is made, so none may be mounted


def test_the_torch_backend_gets_no_engine_arguments_and_no_shm() -> None:
    deployment = by_kind(render(), "Deployment")
    assert engine_args(deployment) is None
    assert "shm" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


@pytest.mark.parametrize(("values", "sets", "per_pod", "args", "shm"), [
    ("values-gpu.yaml", (), 1, None, "2Gi"),
    ("values-gpu-tp4.yaml", (), 4, {"tensor_parallel_size": 4}, "8Gi"),
    ("values-gpu-tp4.yaml", ("vllm.engineArgs.kv_cache_dtype=fp8",), 4,
     {"tensor_parallel_size": 4, "kv_cache_dtype": "fp8"}, "8Gi"),
    ("values-gpu-tp4.yaml", ("gpu.count=8",), 8, {"tensor_parallel_size": 4}, "8Gi"),  # an explicit count wins
], ids=["1-gpu", "tp4", "tp4-fp8-kv", "tp4-count-override"])
def test_one_node_layouts(values: str, sets: tuple[str, ...], per_pod: int, args: dict[str, Any] | None,
                          shm: str) -> None:
    docs = render(CI / values, sets=sets)
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    deployment = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and gpus(deployment) == per_pod
    assert_shm(deployment, shm)
    assert engine_args(deployment) == args
    assert env_values(deployment)["TANDEM_VERIFIER_BACKEND"] == "vllm"
    assert "TANDEM_VERIFIER_VLLM_HEADLESS" not in env_values(deployment)
    assert selects(by_kind(docs, "Service")["spec"]["selector"], deployment)


@pytest.mark.parametrize(("sets", "nodes", "pipeline", "per_pod", "namespace"), [
    ((), 2, 2, 8, "llm"),  # ci/values-pp-2node.yaml as it is: tensor parallel 8 x pipeline parallel 2, 2 nodes
    (("vllm.nodes=4", "vllm.engineArgs.pipeline_parallel_size=4"), 4, 4, 8, "inference"),  # 8 x 4 over 4 nodes
    (("vllm.nodes=4",), 4, 2, 4, "llm"),  # 8 x 2 over 4 nodes: 4 GPUs each
], ids=["2-nodes", "4-nodes-pp4", "4-nodes-4-gpus"])
def test_multi_node_layout(sets: tuple[str, ...], nodes: int, pipeline: int, per_pod: int, namespace: str) -> None:
    docs = render(CI / "values-pp-2node.yaml", sets=sets, namespace=namespace)
    assert not [d for d in docs if d["kind"] in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget")]
    leader, worker = by_component(docs, "leader"), by_component(docs, "worker")
    assert (leader["kind"], worker["kind"]) == ("StatefulSet", "StatefulSet")
    assert leader["spec"]["replicas"] == 1 and leader["spec"].get("ordinals", {}).get("start", 0) == 0
    assert worker["spec"]["replicas"] == nodes - 1 and worker["spec"]["ordinals"]["start"] == 1
    # the headless Service both StatefulSets name gives every pod of the group a DNS name
    (headless,) = [d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
    name = headless["metadata"]["name"]
    assert leader["spec"]["serviceName"] == worker["spec"]["serviceName"] == name
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selects(headless["spec"]["selector"], leader) and selects(headless["spec"]["selector"], worker)
    # the API's Service reaches the leader alone
    (api,) = [d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") != "None"]
    assert selects(api["spec"]["selector"], leader) and not selects(api["spec"]["selector"], worker)

    leader_pod = f"{leader['metadata']['name']}-0"
    master_addr = f"{leader_pod}.{name}.{namespace}.svc.cluster.local"
    common = {"tensor_parallel_size": 8, "pipeline_parallel_size": pipeline, "nnodes": nodes,
              "master_addr": master_addr}
    assert engine_args(leader) == {**common, "node_rank": 0}
    # a worker's node_rank is its pod index, from the downward API, declared before the engine args
    env = container(worker)["env"]
    names = [e["name"] for e in env]
    (pod_index,) = [e for e in env if e["name"] == "POD_INDEX"]
    assert pod_index["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX_LABEL
    assert names.index("POD_INDEX") < names.index(ENGINE_ARGS)
    raw = env_values_raw(worker)[ENGINE_ARGS]
    for rank in range(1, nodes):
        assert json.loads(raw.replace("$(POD_INDEX)", str(rank))) == {**common, "node_rank": rank}
    assert env_values(worker)["TANDEM_VERIFIER_VLLM_HEADLESS"] == "true"
    assert "TANDEM_VERIFIER_VLLM_HEADLESS" not in env_values(leader)
    # workers serve nothing: no port, no probe, no tokens or certificates
    assert not {"ports", "startupProbe", "readinessProbe", "livenessProbe"} & container(worker).keys()
    assert container(leader)["readinessProbe"]["httpGet"]["path"] == "/health"
    for workload in (leader, worker):
        assert gpus(workload) == per_pod
        assert_shm(workload, "16Gi")
        # the group prefers one zone
        (term,) = workload["spec"]["template"]["spec"]["affinity"]["podAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"
        assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], leader)
        assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], worker)


def test_placement_defaults_can_be_turned_off() -> None:
    deployment = by_kind(render(sets=("topologySpreadConstraints=null",)), "Deployment")
    assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]
    leader = by_component(render(CI / "values-pp-2node.yaml", sets=("vllm.groupTopologyKey=",)), "leader")
    assert "affinity" not in leader["spec"]["template"]["spec"]


BAD_VALUES: list[dict[str, Any]] = [
    {"replicaCount": 0},
    {"image": {"repository": ""}},
    {"service": {"port": 70000}},
    {"settings": {"backend": "tensorflow"}},
    {"settings": {"max_sesions": 3}},  # a typo
    {"settings": {"vllm_engine_args": "{}"}},  # the chart's: vllm.engineArgs
    {"tls": {"enabled": True}},  # no secret
    {"auth": {"tokens": ["short"]}},
    {"model": {"path": "relative/dir"}},
    {"gpu": {"count": 0}},
    {"vllm": {"nodes": 0}},
    {"vllm": {"engineArgs": {"tensor_parallel_size": 0}}},
    {"vllm": {"engineArgs": {"model": "/elsewhere"}}},  # the verifier's own
    {"vllm": {"engineArgs": {"speculative_config": {}}}},
    {"vllm": {"engineArgs": {"node_rank": 1}}},  # the chart's, from vllm.nodes
    {"vllm": {"shm": {"sizeLimit": "lots"}}},
    {"replicas": 2},  # not a value of this chart
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda b: json.dumps(b))
def test_the_schema_refuses_bad_values(bad: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = helm("template", "tandem", str(CHART), "-f", str(path))
    assert done.returncode != 0 and "schema" in done.stderr.lower(), done.stderr


@pytest.mark.parametrize(("values", "sets", "message"), [
    ("values-pp-2node.yaml", ("vllm.engineArgs.tensor_parallel_size=3", "vllm.engineArgs.pipeline_parallel_size=1"),
     "vllm.nodes 2 does not divide the world size 3 (tensor_parallel_size x pipeline_parallel_size)"),
    ("values-gpu-tp4.yaml", ("vllm.nodes=3",), "vllm.nodes 3 does not divide the world size 4"),
    ("values-pp-2node.yaml", ("replicaCount=2",), "replicaCount > 1 with vllm.nodes > 1 is not supported"),
    ("values-pp-2node.yaml", ("autoscaling.enabled=true",), "autoscaling with vllm.nodes > 1 is not supported"),
    ("values-gpu-tp4.yaml", ("gpu.count=2",), "gpu.count 2 is fewer than the 4 GPUs each pod runs"),
    ("values-gpu-tp4.yaml", ("vllm.engineArgs.dtype=float16",),
     "vllm.engineArgs.dtype and settings.dtype (bfloat16) are one argument: give one of them"),
    ("values-gpu-tp4.yaml", ("vllm.engineArgs.max_model_len=8192",),
     "vllm.engineArgs.max_model_len and settings.max_context (8192) are one argument"),
    ("values-gpu-tp4.yaml", ("settings.backend=torch",), "set settings.backend: vllm"),
], ids=["not-divisible", "nodes-over-world", "replicas-with-nodes", "autoscaling-with-nodes", "too-few-gpus",
        "dtype-twice", "context-twice", "torch-with-engine-args"])
def test_the_chart_refuses_layouts_it_cannot_run(values: str, sets: tuple[str, ...], message: str) -> None:
    done = template(CI / values, sets=sets)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_a_setting_removed_lets_the_engine_argument_speak() -> None:
    deployment = by_kind(render(CI / "values-gpu-tp4.yaml", sets=("settings.dtype=null",
                                                                   "vllm.engineArgs.dtype=float16")), "Deployment")
    assert engine_args(deployment) == {"tensor_parallel_size": 4, "dtype": "float16"}
    assert "TANDEM_VERIFIER_DTYPE" not in env_values(deployment)
