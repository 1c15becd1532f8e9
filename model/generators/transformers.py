"""A transformers causal LM behind the Generator protocol (LLaMA, Falcon, Qwen, ...)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lectern.device import DevicePlan
from lectern.errors import NotReadyError
from lectern.optional import require
from lectern.protocols import Message


@dataclass(frozen=True, slots=True)
class Sampling:
    max_new_tokens: int = 64
    do_sample: bool = False  # greedy by default: answers must be reproducible
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        return kw


class TransformersGenerator:
    def __init__(
        self,
        folder: Path | str,
        plan: DevicePlan,
        sampling: Sampling | None = None,
        max_input_tokens: int = 2048,
        prefix_caching: bool = True,
    ) -> None:
        if max_input_tokens < 16:
            raise ValueError(f"max_input_tokens must be at least 16, got {max_input_tokens}")
        self.folder = Path(folder)
        self.plan = plan
        self.sampling = sampling or Sampling()
        self.max_input_tokens = max_input_tokens
        self.prefix_caching = prefix_caching
        self._prefix: tuple[str, Any, Any] | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        # One generation at a time: two concurrent generate() calls on 2 cores are each
        # slower than running them back to back.
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
        if self._model is not None:
            return
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
        if self.plan.device == "cpu":
            model = model.to("cpu")
        if self.plan.dynamic_int8:
            model = _quantize_dynamic(model)
        model.eval()
        self._tokenizer, self._model = tokenizer, model

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise NotReadyError("generator used before warm_up()")
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, messages: Sequence[Message], *, generation_prompt: bool = True) -> str:
        tok = self.tokenizer
        if tok.chat_template:
            return tok.apply_chat_template(
                list(messages), add_generation_prompt=generation_prompt, tokenize=False
            )
        # base models: a plain transcript
        text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
        return text + "\n\nAssistant:" if generation_prompt else text

    def _inputs(self, messages: Sequence[Message]) -> dict[str, Any]:
        tok = self.tokenizer
        enc = tok(
            self._render(messages), return_tensors="pt", add_special_tokens=not tok.chat_template
        )
        ids = enc["input_ids"][:, -self.max_input_tokens :]
        mask = enc["attention_mask"][:, -self.max_input_tokens :]
        return {
            "input_ids": ids.to(self._model.device),
            "attention_mask": mask.to(self._model.device),
        }

    def _prefix_cache(self, messages: Sequence[Message], input_ids: Any) -> Any:
        """A copy of the KV cache for the system turn when the prompt starts with it.

        Every question shares the system prompt; computing its keys and values once
        takes its tokens out of each request's prefill, which dominates the time to the
        first token on CPU. Only a chat template puts a special token right after the
        system turn, so only then do its token ids not depend on what follows.
        """
        import copy

        torch = require("torch", "torch")

        if not self.prefix_caching or not self.tokenizer.chat_template:
            return None
        if not messages or messages[0]["role"] != "system":
            return None
        system = messages[0]["content"]
        if self._prefix is None or self._prefix[0] != system:
            text = self._render(messages[:1], generation_prompt=False)
            ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)[
                "input_ids"
            ].to(self._model.device)
            with torch.inference_mode():
                out = self._model(input_ids=ids, use_cache=True)
            self._prefix = (system, ids, out.past_key_values)
        _, ids, cache = self._prefix
        n = ids.shape[1]
        if input_ids.shape[1] <= n or not torch.equal(input_ids[:, :n], ids):
            return None  # truncated from the left, or a template that differs
        return copy.deepcopy(cache)

    def _generate_kwargs(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            **self.sampling.kwargs(),
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }

    def generate(self, messages: Sequence[Message]) -> str:
        return "".join(self.stream(messages))

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        torch = require("torch", "torch")
        StoppingCriteriaList = require("transformers", "model").StoppingCriteriaList

        inputs = self._inputs(messages)
        streamer = _DeltaStreamer(self.tokenizer, prompt_length=inputs["input_ids"].shape[1])
        cancel = threading.Event()
        errors: list[BaseException] = []

        def stop(*_args: Any, **_kwargs: Any) -> bool:
            if self.plan.device == "cpu" and torch.get_num_threads() != 1:
                # Measured here: prefill is compute-bound and both cores help it, but in
                # any thread but the main one, decoding with a two-thread OpenMP pool runs
                # at half the speed of one thread (8.8 s vs 4.2 s for 64 tokens), so the
                # pool shrinks once the first token is out.
                torch.set_num_threads(1)
            return cancel.is_set()  # a reader that went away stops the decoding

        def run() -> None:
            try:
                with torch.inference_mode():
                    cache = self._prefix_cache(messages, inputs["input_ids"])
                    self._model.generate(
                        **inputs,
                        **self._generate_kwargs(),
                        past_key_values=cache,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([stop]),
                    )
            except BaseException as exc:  # surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                yield from (piece for piece in streamer if piece)
            finally:
                cancel.set()
                worker.join()
        if errors:
            raise errors[0]

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
        a reply ends at its first stop string.
        """
        torch = require("torch", "torch")

        prefixes = [""] * len(conversations) if reply_prefixes is None else list(reply_prefixes)
        if len(prefixes) != len(conversations):
            raise ValueError(
                f"{len(conversations)} conversations but {len(prefixes)} reply prefixes"
            )
        if not conversations:
            return []
        tok = self.tokenizer
        ids = [
            tok(self._render(m) + p, add_special_tokens=not tok.chat_template)["input_ids"][
                -self.max_input_tokens :
            ]
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
                cache = self._model(
                    input_ids=input_ids[:1, :shared].to(device), use_cache=True
                ).past_key_values
                cache.batch_repeat_interleave(len(ids))
            out = self._model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                past_key_values=cache,
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


class _DeltaStreamer:
    """Yields the text each new token adds, as soon as it is decoded.

    transformers' TextIteratorStreamer holds text back until a word is complete, which
    delays the first visible token by a decoding step or two; here only a token that
    ends inside a multi-byte character waits for the next one.
    """

    def __init__(self, tokenizer: Any, prompt_length: int, timeout: float = 120) -> None:
        import queue

        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.timeout = timeout
        self._ids: list[int] = []
        self._sent = ""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._skipped_prompt = False

    def put(self, value: Any) -> None:
        ids = value.reshape(-1).tolist()
        if not self._skipped_prompt:  # generate() first passes the whole prompt
            self._skipped_prompt = True
            if len(ids) == self.prompt_length:
                return
        self._ids.extend(ids)
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        delta, self._sent = text[len(self._sent) :], text
        if delta:
            self._queue.put(delta)

    def end(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while (piece := self._queue.get(timeout=self.timeout)) is not None:
            yield piece
