# Tandem verifier on NVIDIA GPUs: vLLM's own CUDA image, Tandem installed on top.
#   docker build -f docker/verifier.Dockerfile -t tandem/verifier:0.1.0-cuda .
# The model is not baked in: mount it (the Helm chart: a PVC or an init container) at /models/target.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${VLLM_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TANDEM_VERIFIER_HOST=0.0.0.0 \
    TANDEM_VERIFIER_PORT=8100 \
    TANDEM_VERIFIER_BACKEND=vllm \
    TANDEM_VERIFIER_MODEL=/models/target

WORKDIR /opt/tandem
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY verifier ./verifier
COPY clients ./clients
# vLLM, torch and transformers come with the base image and must stay as they are: Tandem goes in
# without dependencies (vLLM's already cover them), plus the one vLLM does not bring
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . \
    && pip install --no-cache-dir "pydantic-settings==2.16.3" \
    && groupadd --gid 10001 tandem \
    && useradd --uid 10001 --gid tandem --no-create-home --shell /usr/sbin/nologin tandem

USER 10001:10001
EXPOSE 8100
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8100/health', timeout=4)"]
ENTRYPOINT ["tandem-verifier"]
