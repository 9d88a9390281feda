# Tandem edge: the OpenAI-compatible server with its llama.cpp draft model.
#   docker build -f docker/edge.Dockerfile -t tandem/edge:0.1.0 .
#   docker run -p 8000:8000 -e TANDEM_EDGE_VERIFIER_URL=http://verifier:8100 tandem/edge:0.1.0
# llama-cpp-python is compiled in a build stage whose compilers stay behind. An image runs on
# other CPUs than the one it was built on, so it is compiled for a stated CPU level, not for the
# build machine: LLAMA_CPU_FLAGS (/proc/cpuinfo names; verifier/core/cpu.py turns them into ggml's
# options, AMX never) defaults to x86-64-v3 (AVX2, FMA, F16C, BMI2: every x86 server CPU since
# 2013-2015). For an AVX-512 fleet: --build-arg LLAMA_CPU_FLAGS="... avx512f avx512cd avx512vl
# avx512dq avx512bw". On a CPU below the level the edge refuses to start and names what is missing.
# The default draft (SmolLM2-135M GGUF) comes with its pip package; no other model is baked in.
FROM python:3.11-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ARG LLAMA_CPU_FLAGS="sse2 lm sse4_2 avx f16c fma bmi2 avx2"
ENV FORCE_CMAKE=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /opt/tandem
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY verifier ./verifier
COPY clients ./clients
# hadolint ignore=DL3013
RUN CMAKE_ARGS="$(TANDEM_CPU_FLAGS="${LLAMA_CPU_FLAGS}" python -m verifier.core.cpu cmake-args)" \
    && echo "llama.cpp options: ${CMAKE_ARGS}" \
    && export CMAKE_ARGS \
    && python -m venv /opt/venv && /opt/venv/bin/pip install ".[edge]"

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TANDEM_EDGE_HOST=0.0.0.0 \
    TANDEM_EDGE_PORT=8000
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tandem \
    && useradd --uid 10001 --gid tandem --no-create-home --shell /usr/sbin/nologin tandem
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]
ENTRYPOINT ["tandem-edge"]
