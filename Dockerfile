# wirebench in a container: the runner and every server (see docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iptables procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY base base
COPY servers servers
COPY clients clients
COPY harness harness
COPY protos protos
# EXTRAS=cluster adds Ray (the ray-* services in docker-compose.yml build with it).
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
COPY bench.py ./
COPY scenarios scenarios
COPY results/README.md results/README.md
# TLS material is made on first use inside the container, never baked into the image.
ENV WIREBENCH_TLS_DIR=/app/.wirebench/tls
CMD ["python", "bench.py", "scenarios/embedding.yaml"]
