"""A transformers causal LM behind the Generator protocol (LLaMA, Falcon, Qwen, ...)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lectern.device import DevicePlan
from lectern.errors import NotReadyError
from lectern.optional import require
from lectern.protocols import Message
from lectern.threads import PerThread
from model.abstention import threshold_for
from model.answer import ABSTAIN_REPLY
from model.chat_prompt import encode, render, reply_ids, shared_system_turn
from model.chat_prompt import reply_prefixes as prompt_reply_prefixes
from model.generators.abstention_gate import gate_abstention
from model.generators.decode_batch import DecodeBatch, batchable
from model.generators.sampling import Sampling
from model.generators.scheduler import BatchScheduler
from model.lora_merge import merged


class TransformersGenerator:
    def __init__(
        self,
        folder: Path | str,
        plan: DevicePlan,
        sampling: Sampling | None = None,
        max_input_tokens: int = 2048,
        prefix_caching: bool = True,
        max_batch: int = 8,
        max_waiting: int = 32,
        token_timeout_s: float = 300.0,
        decode_threads: int | None = None,
        adapter: Path | str | None = None,
    ) -> None:
        if max_input_tokens < 16:
            raise ValueError(f"max_input_tokens must be at least 16, got {max_input_tokens}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be at least 0, got {max_waiting}")
        if decode_threads is not None and decode_threads < 1:
            raise ValueError(f"decode_threads must be at least 1, got {decode_threads}")
        if token_timeout_s <= 0:
            raise ValueError(f"token_timeout_s must be positive, got {token_timeout_s}")
        self.folder = Path(folder)
        self.adapter = None if adapter is None else Path(adapter)  # LoRA, merged at load
        self.plan = plan
        self.sampling = sampling or Sampling()
        self.max_input_tokens = max_input_tokens
        self.prefix_caching = prefix_caching
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.token_timeout_s = token_timeout_s
        self.decode_threads = decode_threads
        self._prefix: tuple[tuple[int, ...], Any] | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._tokenizers: PerThread[Any] | None = None
        self._processors: tuple[Any, Any] | None = None
        self._abstain_id: int | None = None
        self._abstain_threshold = 0.0
        self._scheduler: BatchScheduler | None = None
        self._warm = threading.Lock()
        # generate_batch (bulk work: `lectern train`) runs one call at a time; it calls
        # the model beside the scheduler's thread (a forward pass only reads the weights).
        self._lock = threading.Lock()

    def load_kwargs(self) -> dict[str, Any]:
        """What from_pretrained gets on this device plan (unit-tested without a GPU)."""
        torch = require("torch", "torch")

        kw: dict[str, Any] = {
            "dtype": getattr(torch, self.plan.dtype),
            "attn_implementation": self.plan.attn_implementation,
        }
        if self.plan.device == "cuda":
            kw["device_map"] = "auto"
            if self.plan.load_in_8bit:
                BitsAndBytesConfig = require("transformers", "model").BitsAndBytesConfig

                kw["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        return kw

    def warm_up(self) -> None:
        with self._warm:
            if self._scheduler is None:
                self._load()

    def _load(self) -> None:
        transformers = require("transformers", "model")
        AutoModelForCausalLM, AutoTokenizer = (
            transformers.AutoModelForCausalLM, transformers.AutoTokenizer
        )
        hf_logging = require("transformers.utils.logging", "model")

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            self.folder, local_files_only=True, **self.load_kwargs()
        )
        if self.adapter is not None:  # merged before quantising: int8 of the tuned weights
            model = merged(model, self.adapter, self.folder)
        if self.plan.device == "cpu":
            model = model.to("cpu")
        if self.plan.dynamic_int8:
            model = _quantize_dynamic(model)
        model.eval()
        self._tokenizer, self._model = tokenizer, model
        # A fast tokenizer is not safe to share between threads (lectern.threads).
        self._tokenizers = PerThread.copies_of(tokenizer)
        self._processors = self._logits_processors(transformers)
        self._abstain_id = reply_ids(ABSTAIN_REPLY, tokenizer)[0]
        given = self.sampling.abstain_threshold
        self._abstain_threshold = threshold_for(self.adapter) if given is None else given
        batch = DecodeBatch(model)
        scheduler = BatchScheduler(
            batch,
            self._choose,
            self._eos_ids(),
            max_batch=self.max_batch if batchable(batch.new_cache()) else 1,
            max_waiting=self.max_waiting,
            prefix=self._prefix_cache if self.prefix_caching else None,
            threads=self._thread_counts(),
            context=require("torch", "torch").inference_mode,
        )
        scheduler.start()
        self._scheduler = scheduler

    def _thread_counts(self) -> tuple[int, int] | None:
        """(prefill, decode) CPU threads, or None to leave torch's pool as it is.

        Measured on 2 cores (SmolLM2-135M, one decoding step, batch of one): with int8
        weights a step takes 13 ms on one thread and 33 ms on two, so int8 decodes on
        one; in native bfloat16 it takes 31 ms on one and 22 ms on two.
        """
        if self.plan.device != "cpu":
            return None
        prefill = require("torch", "torch").get_num_threads()
        if self.decode_threads is not None:
            return prefill, self.decode_threads
        return (prefill, 1) if self.plan.dynamic_int8 else None

    def _logits_processors(self, transformers: Any) -> tuple[Any, Any]:
        """The processors generate() would apply for these sampling settings: the
        penalties, then the sampling warpers (the abstention gate reads between them,
        so its probability means the same greedy or sampled)."""
        s = self.sampling
        penalties, warpers = transformers.LogitsProcessorList(), transformers.LogitsProcessorList()
        if s.repetition_penalty != 1.0:
            penalties.append(transformers.RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
        if s.do_sample:
            warpers.append(transformers.TemperatureLogitsWarper(s.temperature))
            warpers.append(transformers.TopPLogitsWarper(s.top_p))
        return penalties, warpers

    def _eos_ids(self) -> set[int]:
        ids = self._model.generation_config.eos_token_id
        ids = {ids} if isinstance(ids, int) else set(ids or [])
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        return ids

    @property
    def abstain_threshold(self) -> float:
        """The abstention gate's threshold in use (the setting, or the adapter's record)."""
        return self._abstain_threshold

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise NotReadyError("generator used before warm_up()")
        return self._tokenizer

    def _per_thread_tokenizer(self) -> Any:
        if self._tokenizers is None:
            raise NotReadyError("generator used before warm_up()")
        return self._tokenizers.get()

    def count_tokens(self, text: str) -> int:
        return len(self._per_thread_tokenizer()(text, add_special_tokens=False)["input_ids"])

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """The tokens the model reads for `messages`: the chat template's rendering,
        encoded and cut to `max_input_tokens` as `_prompt` does."""
        tok = self._per_thread_tokenizer()
        return min(len(encode(render(messages, tok), tok)), self.max_input_tokens)

    def _prompt(self, messages: Sequence[Message]) -> tuple[list[int], int]:
        """The prompt's token ids (left-truncated), and how many lead ids are the system turn.

        Every question shares the system prompt; its keys and values are computed once
        and copied into each request's cache, which takes its tokens out of the prefill
        that dominates the time to the first token on CPU. Only a chat template puts a
        special token right after the system turn, so only then do its token ids not
        depend on what follows; a prompt cut from the left shares nothing.
        """
        tok = self._per_thread_tokenizer()
        with_template = bool(tok.chat_template)
        ids = encode(render(messages, tok), tok)
        cut = len(ids) > self.max_input_tokens
        ids = ids[-self.max_input_tokens :]
        if cut or not self.prefix_caching or not with_template:
            return ids, 0
        if not messages or messages[0]["role"] != "system":
            return ids, 0
        system = tok(render(messages[:1], tok, generation_prompt=False),
                     add_special_tokens=False)["input_ids"]
        return ids, shared_system_turn(messages, ids, system)

    def _prefix_cache(self, ids: list[int], shared: int) -> tuple[Any, int]:
        """A copy of the cache for `ids[:shared]`, computed once per distinct system turn.

        Called only from the scheduler's thread, which owns the model and this cache.
        """
        import copy

        key = tuple(ids[:shared])
        if self._prefix is None or self._prefix[0] != key:
            self._prefix = (key, self._require_scheduler().batch.prefill(list(key)).cache)
        return copy.deepcopy(self._prefix[1]), shared

    def _choose(self, logits: Any, ids: list[int], first: bool) -> int:
        """The next token from one row's logits: HF's processors on the ids so far, and
        at the reply's first token the abstention gate."""
        torch = require("torch", "torch")

        assert self._processors is not None  # set by _load before the scheduler starts
        penalties, warpers = self._processors
        seen = torch.tensor([ids], device=logits.device)
        scores = penalties(seen, logits[None].float())
        if first:
            scores = gate_abstention(scores, self._abstain_id, self._abstain_threshold)
        scores = warpers(seen, scores)
        if self.sampling.do_sample:
            return int(torch.multinomial(torch.softmax(scores, dim=-1), 1)[0, 0])
        return int(scores[0].argmax())

    def _generate_kwargs(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            **self.sampling.kwargs(),
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }

    def generate(self, messages: Sequence[Message]) -> str:
        return "".join(self.stream(messages))

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """The reply as it is decoded, in a batch with every other request in flight.

        Raises OverloadedError at once when the scheduler's queue is full.
        """
        scheduler = self._require_scheduler()
        ids, shared = self._prompt(messages)
        ticket = scheduler.submit(ids, self.sampling.max_new_tokens, shared)
        deltas = _Deltas(self._per_thread_tokenizer())
        try:
            for token in ticket.ids(timeout=self.token_timeout_s):
                if piece := deltas.add(token):
                    yield piece
        finally:
            ticket.cancel()  # a reader that went away stops the decoding

    def samples(self, messages: Sequence[Message], n: int) -> list[str]:
        """n replies to `messages`, each drawn as generate() draws one (the same n times
        when the sampling is greedy), decoded together in the scheduler's batch. They
        count as n requests against `max_batch` + `max_waiting` (OverloadedError beyond)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if n > self.max_batch + self.max_waiting:  # could never be admitted: not a 503
            raise ValueError(f"n ({n}) is over max_batch + max_waiting "
                             f"({self.max_batch + self.max_waiting})")
        scheduler = self._require_scheduler()
        ids, shared = self._prompt(messages)
        tickets = []
        try:
            for _ in range(n):
                tickets.append(scheduler.submit(ids, self.sampling.max_new_tokens, shared))
            replies = []
            for ticket in tickets:
                deltas = _Deltas(self._per_thread_tokenizer())
                replies.append("".join(deltas.add(token)
                                       for token in ticket.ids(timeout=self.token_timeout_s)))
            return replies
        finally:
            for ticket in tickets:
                ticket.cancel()

    def _require_scheduler(self) -> BatchScheduler:
        if self._scheduler is None:
            raise NotReadyError("generator used before warm_up()")
        return self._scheduler

    def close(self, timeout: float = 1.0) -> None:
        """Stop the scheduler: requests decoding get `timeout` s to finish; idempotent.

        Short by default: a server calls this after its own graceful-shutdown period.
        """
        if self._scheduler is not None:
            self._scheduler.close(timeout)

    def generate_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int | None = None,
        reply_prefixes: Sequence[str] | None = None,
        stop: Sequence[str] = (),
    ) -> list[str]:
        """Replies to several conversations from one generate() call, for bulk work.

        Decoding is memory-bound, so a step for 16 sequences costs little more than one.
        The prompts' common token prefix (a shared system turn and examples) is prefilled
        once and its cache repeated across the batch, with each prompt's own tail
        left-padded behind it (greedy replies equal the one-at-a-time ones). A reply
        prefix is put in the assistant's mouth and returned as the start of its reply;
        a reply ends at its first stop string. The abstention gate is not applied: bulk
        work writes questions and rewrites, never an answer.
        """
        torch = require("torch", "torch")

        prefixes = prompt_reply_prefixes(conversations, reply_prefixes)
        if not conversations:
            return []
        tok = self._per_thread_tokenizer()
        ids = [
            encode(render(m, tok) + p, tok)[-self.max_input_tokens :]
            for m, p in zip(conversations, prefixes, strict=True)
        ]
        shared = 0  # leaves every prompt at least one token of its own
        while all(len(i) > shared + 1 and i[shared] == ids[0][shared] for i in ids):
            shared += 1
        kwargs = self._generate_kwargs()
        width = max(len(i) for i in ids) - shared
        input_ids = torch.full((len(ids), shared + width), kwargs["pad_token_id"])
        mask = torch.zeros_like(input_ids)
        for row, i in enumerate(ids):
            input_ids[row, :shared] = torch.tensor(i[:shared])
            input_ids[row, shared + width - (len(i) - shared) :] = torch.tensor(i[shared:])
            mask[row, :shared] = 1
            mask[row, shared + width - (len(i) - shared) :] = 1
        kwargs["max_new_tokens"] = max_new_tokens or self.sampling.max_new_tokens
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)
        device = self._model.device
        with self._lock, torch.inference_mode():
            cache = None
            if shared:
                cache = self._require_scheduler().batch.prefill(ids[0][:shared]).cache
                cache.batch_repeat_interleave(len(ids))
            out = self._model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                cache=cache,
                **kwargs,
            )
        replies = tok.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)
        return [p + r for p, r in zip(prefixes, replies, strict=True)]


def _quantize_dynamic(model: Any) -> Any:
    import warnings

    torch = require("torch", "torch")

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no CPU
        # dynamic-int8 path for these kernels yet; the eager API still works.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class _Deltas:
    """The text each new token adds, as soon as it is decoded.

    transformers' TextIteratorStreamer holds text back until a word is complete, which
    delays the first visible token by a decoding step or two; here only a token that
    ends inside a multi-byte character waits for the next one.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._ids: list[int] = []
        self._sent = ""

    def add(self, token: int) -> str:
        self._ids.append(token)
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta, self._sent = text[len(self._sent) :], text
        return delta
