"""The verifier's Helm chart with a real helm binary (.tools/helm, from `make setup`): lint and
render the default values and the GPU, multi-replica and TLS files; every rendered manifest is
validated offline against the Kubernetes schemas; the values schema refuses bad values; the
settings it renders are ones the verifier accepts."""

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
VALUES_FILES = sorted((CHART / "ci").glob("values-*.yaml"))
K8S_VERSION = "1.33"
#: the verifier settings the chart sets itself (from other values)
MANAGED = {"host", "port", "model", "auth_tokens_file", "ssl_certfile", "ssl_keyfile"}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM.relative_to(ROOT)} is missing: run `make setup`", pytrace=False)
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def render(*values: Path) -> list[dict[str, Any]]:
    args = [a for v in values for a in ("-f", str(v))]
    done = helm("template", "tandem", str(CHART), "--namespace", "llm", *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda v: v.name if v else "default")
def test_lint_render_and_validate(values: Path | None) -> None:
    files = [values] if values else []
    lint = helm("lint", str(CHART), *[a for v in files for a in ("-f", str(v))])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(*files)
    assert {"Deployment", "Service", "ServiceAccount", "Pod"} <= {d["kind"] for d in docs}
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
    container = by_kind(render(*([values] if values else [])), "Deployment")["spec"]["template"]["spec"][
        "containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    prefixed = {k: v for k, v in env.items() if k.startswith("TANDEM_VERIFIER_")}
    for name in {k.removeprefix("TANDEM_VERIFIER_").lower() for k in prefixed}:
        assert name in VerifierSettings.model_fields, name
    for key, value in prefixed.items():
        monkeypatch.setenv(key, value)
    settings = VerifierSettings()
    assert settings.host == "0.0.0.0" and settings.port == container["ports"][0]["containerPort"]
    assert settings.model == "/models/target"


def test_gpu_multi_replica_and_tls_files_render_what_they_say() -> None:
    gpu = by_kind(render(CHART / "ci" / "values-gpu.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models" and gpu["tolerations"]
    multi = render(CHART / "ci" / "values-multi-replica.yaml")
    assert by_kind(multi, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    hpa = by_kind(multi, "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "tandem_verifier_queue_depth"
    deployment = by_kind(multi, "Deployment")["spec"]
    assert "replicas" not in deployment  # the autoscaler owns it
    assert deployment["template"]["spec"]["initContainers"][0]["name"] == "copy-model"
    dashboard = by_kind(multi, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["tandem-overview.json"])["uid"] == "tandem-overview"
    tls = render(CHART / "ci" / "values-tls.yaml")
    spec = by_kind(tls, "Deployment")["spec"]["template"]["spec"]
    assert spec["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {v["name"] for v in spec["volumes"]} >= {"tls", "auth"}
    assert "edge-eu-1" in by_kind(tls, "Secret")["stringData"]["tokens"]
    assert by_kind(tls, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    # sessions live on the edge's one WebSocket: a plain Service, no affinity needed
    assert "sessionAffinity" not in by_kind(multi, "Service")["spec"]


BAD_VALUES: list[dict[str, Any]] = [
    {"replicaCount": 0},
    {"image": {"repository": ""}},
    {"service": {"port": 70000}},
    {"settings": {"backend": "tensorflow"}},
    {"settings": {"max_sesions": 3}},  # a typo
    {"tls": {"enabled": True}},  # no secret
    {"auth": {"tokens": ["short"]}},
    {"model": {"path": "relative/dir"}},
    {"gpu": {"count": 0}},
    {"replicas": 2},  # not a value of this chart
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda b: json.dumps(b))
def test_the_schema_refuses_bad_values(bad: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = helm("template", "tandem", str(CHART), "-f", str(path))
    assert done.returncode != 0 and "schema" in done.stderr.lower(), done.stderr
