# Tandem verifier on CPUs: the torch backend (every sampling setting), no GPU needed.
#   docker build -f docker/verifier-cpu.Dockerfile -t tandem/verifier:0.1.0 .
# The model is not baked in: mount it at /models/target.
# Nothing here is compiled for the build machine's CPU: torch's CPU kernels (ATen's dispatch and
# oneDNN, behind --cpu-linear auto) are chosen when they load, so the image runs on any x86-64 CPU
# (AVX2 or AVX-512; `python -m verifier.selfcheck --backend torch --only target` reports which it picked).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp \
    TANDEM_VERIFIER_HOST=0.0.0.0 \
    TANDEM_VERIFIER_PORT=8100 \
    TANDEM_VERIFIER_BACKEND=torch \
    TANDEM_VERIFIER_MODEL=/models/target

WORKDIR /opt/tandem
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY verifier ./verifier
COPY clients ./clients
# torch's CPU wheels first (the default index would bring CUDA ones), then Tandem (its pins in pyproject.toml)
# hadolint ignore=DL3013
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install ".[verifier]" \
    && groupadd --gid 10001 tandem \
    && useradd --uid 10001 --gid tandem --no-create-home --shell /usr/sbin/nologin tandem

USER 10001:10001
EXPOSE 8100
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8100/health', timeout=4)"]
ENTRYPOINT ["tandem-verifier"]
