"""`lectern train generator`: LoRA fine-tuning of the generator with peft.

The loss is on the reply's tokens only, and only their logits are computed: on a
49k-word vocabulary the output layer over the whole prompt is a fifth of the work.
Batches are left-padded (every reply ends at the last position) with explicit position
ids, so a padded row computes what it would alone.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lectern.files import replace_folder, staging_folder
from lectern.optional import require
from lectern.protocols import Message
from model.chat_prompt import encode, render, reply_ids
from model.train.lora_config import (
    DataCounts,
    GeneratorTrainingRecord,
    HeldOutPoint,
    LoraTrainConfig,
    default_targets,
)
from model.train.precision import TrainPrecision, load_base_for_training

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Row:
    ids: list[int]
    prompt: int  # how many leading ids are the prompt

    @property
    def reply(self) -> int:
        return len(self.ids) - self.prompt


def tokenize(tok: Any, messages: Sequence[Message], target: str, max_tokens: int) -> Row:
    prompt = encode(render(messages, tok), tok)
    answer = reply_ids(target, tok)
    prompt = prompt[-max(1, max_tokens - len(answer)):]  # the server cuts from the left too
    return Row(prompt + answer, len(prompt))


def batch_order(rows: Sequence[Row], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of similar length (less padding) in a seeded random order."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start:start + window], key=lambda i: len(rows[i].ids))
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_loss(model: Any, rows: Sequence[Row], pad_id: int) -> Any:
    """Mean cross-entropy over the replies' tokens of a left-padded batch."""
    torch = require("torch", "torch")
    width = max(len(r.ids) for r in rows)
    keep = max(r.reply for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), keep), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r.ids):] = torch.tensor(r.ids)
        mask[i, width - len(r.ids):] = 1
        labels[i, keep - r.reply:] = torch.tensor(r.ids[r.prompt:])
    device = next(p for p in model.parameters()).device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                position_ids=positions.to(device), logits_to_keep=keep + 1, use_cache=False)
    logits = out.logits[:, :-1].float()  # position p predicts token p + 1
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1), ignore_index=-100
    )


@dataclass(slots=True)
class _State:
    step: int = 0
    seen: int = 0
    train: list[HeldOutPoint] = field(default_factory=list)
    heldout: list[HeldOutPoint] = field(default_factory=list)
    seconds: float = 0.0  # training time before this process (a resumed run)


class LoraTrainer:
    """Cheap to construct; `train()` loads the base, adapts it and writes the adapter."""

    def __init__(
        self,
        base_folder: Path,
        base_model: str,
        config: LoraTrainConfig,
        precision: TrainPrecision,
        out: Path,
        log: Log = print,
    ) -> None:
        if not (Path(base_folder) / "config.json").is_file():
            raise FileNotFoundError(f"{base_folder} holds no model (config.json missing)")
        self.base_folder = Path(base_folder)
        self.base_model = base_model
        self.config = config
        self.precision = precision
        self.out = Path(out)
        self.checkpoint = self.out.with_name(f"{self.out.name}.checkpoint")
        self.log = log

    def _model(self) -> tuple[Any, Any, list[str], str]:
        transformers = require("transformers", "model")
        peft = require("peft", "model")
        tok = transformers.AutoTokenizer.from_pretrained(self.base_folder, local_files_only=True)
        base = load_base_for_training(self.base_folder, self.precision)
        model_type = base.config.model_type
        targets = self.config.targets or default_targets(model_type, self.config.mlp)
        lora = peft.LoraConfig(
            r=self.config.rank, lora_alpha=self.config.alpha, lora_dropout=self.config.dropout,
            target_modules=targets, task_type="CAUSAL_LM",
        )
        return tok, peft.get_peft_model(base, lora), targets, model_type

    def _autocast(self) -> Any:
        torch = require("torch", "torch")
        p = self.precision
        dtype = getattr(torch, p.autocast) if p.autocast else None
        return torch.autocast(p.device, dtype=dtype, enabled=dtype is not None)

    def heldout_loss(self, model: Any, rows: Sequence[Row], pad_id: int) -> float:
        torch = require("torch", "torch")
        model.eval()
        total = weight = 0.0
        with torch.no_grad(), self._autocast():
            for start in range(0, len(rows), self.config.batch_size):
                part = rows[start:start + self.config.batch_size]
                n = sum(r.reply for r in part)
                total += float(batch_loss(model, part, pad_id)) * n
                weight += n
        model.train()
        return total / max(weight, 1.0)

    def train(
        self,
        train: Sequence[tuple[Sequence[Message], str]],
        heldout: Sequence[tuple[Sequence[Message], str]],
        data: DataCounts,
        resume: bool = False,
        command: str = "",
    ) -> GeneratorTrainingRecord:
        torch = require("torch", "torch")
        transformers = require("transformers", "model")
        tqdm = require("tqdm", "model").tqdm
        c = self.config
        if not train:
            raise ValueError("no training examples")
        random.seed(c.seed)
        torch.manual_seed(c.seed)
        started = datetime.now(UTC)
        tok, model, targets, model_type = self._model()
        vocab_size = int(model.get_base_model().config.vocab_size)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = [tokenize(tok, m, t, c.max_tokens) for m, t in train]
        held = [tokenize(tok, m, t, c.max_tokens) for m, t in heldout[: c.eval_examples]]
        epochs = math.ceil(c.epochs)
        order = [b for e in range(epochs) for b in batch_order(rows, c.batch_size, c.seed + e)]
        total = max(1, round(len(order) * c.epochs / epochs))
        order = order[:total]
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=0.0)
        schedule = transformers.get_cosine_schedule_with_warmup(
            optimizer, round(c.warmup * total), total
        )
        state = _State()
        resumed = None
        if resume and (self.checkpoint / "trainer.pt").is_file():
            state = self._load_checkpoint(model, optimizer, schedule)
            resumed = state.step
            self.log(f"resumed from step {state.step} of {total} ({self.checkpoint})")
        self.log(f"training {sum(p.numel() for p in params):,} LoRA parameters on "
                 f"{len(rows)} examples, {total} steps; {self.precision.describe()}")
        if held and state.step == 0:  # where the base starts, for the curve
            state.heldout.append(HeldOutPoint(step=0, loss=self.heldout_loss(model, held, pad_id)))
        model.train()
        clock = time.perf_counter()
        running: list[float] = []
        bar = tqdm(total=total, initial=state.step, desc="lora", unit="step")
        for step in range(state.step, total):
            batch = [rows[i] for i in order[step]]
            with self._autocast():
                loss = batch_loss(model, batch, pad_id)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            running.append(loss.detach().item())
            state.step, state.seen = step + 1, state.seen + len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.3f}")
            last = state.step == total
            if held and (state.step % c.eval_every == 0 or last):
                state.train.append(HeldOutPoint(step=state.step,
                                                loss=sum(running) / len(running)))
                running = []
                state.heldout.append(HeldOutPoint(step=state.step,
                                                  loss=self.heldout_loss(model, held, pad_id)))
                self.log(f"step {state.step}: train {state.train[-1].loss:.4f}, "
                         f"held-out {state.heldout[-1].loss:.4f}")
            if state.step % c.checkpoint_every == 0 and not last:
                self._save_checkpoint(model, optimizer, schedule, state,
                                      state.seconds + time.perf_counter() - clock)
        bar.close()
        seconds = state.seconds + time.perf_counter() - clock
        record = GeneratorTrainingRecord(
            base_model=self.base_model, base_folder=str(self.base_folder), model_type=model_type,
            vocab_size=vocab_size, targets=targets, config=c,
            precision=self.precision.describe(), data=data,
            steps=state.step, examples_seen=state.seen,
            trainable_parameters=sum(p.numel() for p in params), started_at=started,
            seconds=round(seconds, 1), resumed_from_step=resumed, train_loss=state.train,
            heldout=state.heldout, command=command,
        )
        self._save_adapter(model, record)
        shutil.rmtree(self.checkpoint, ignore_errors=True)  # done: nothing left to resume
        return record

    def _save_adapter(self, model: Any, record: GeneratorTrainingRecord) -> None:
        from model.train.loss_plot import plot_losses

        # The setting that names the base, not this machine's folder of it.
        for config in model.peft_config.values():
            config.base_model_name_or_path = self.base_model
        with staging_folder(self.out) as stage:
            model.save_pretrained(stage)
            (stage / "training-record.json").write_text(record.model_dump_json(indent=2))
            plot_losses(record, stage / "loss.png")
            replace_folder(stage, self.out)
        self.log(f"adapter saved to {self.out}")

    def _save_checkpoint(self, model: Any, optimizer: Any, schedule: Any, state: _State,
                         seconds: float) -> None:
        torch = require("torch", "torch")
        with staging_folder(self.checkpoint) as stage:
            model.save_pretrained(stage)
            torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "rng": torch.get_rng_state(), "python_rng": random.getstate()},
                       stage / "trainer.pt")
            (stage / "state.json").write_text(json.dumps({
                "step": state.step, "seen": state.seen, "seconds": seconds,
                "train": [p.model_dump() for p in state.train],
                "heldout": [p.model_dump() for p in state.heldout],
            }))
            replace_folder(stage, self.checkpoint)

    def _load_checkpoint(self, model: Any, optimizer: Any, schedule: Any) -> _State:
        torch = require("torch", "torch")
        peft = require("peft", "model")
        safetensors = require("safetensors.torch", "model")
        weights = safetensors.load_file(str(self.checkpoint / "adapter_model.safetensors"))
        peft.set_peft_model_state_dict(model, weights)
        saved = torch.load(self.checkpoint / "trainer.pt", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["rng"])
        random.setstate(saved["python_rng"])
        s = json.loads((self.checkpoint / "state.json").read_text())
        return _State(s["step"], s["seen"], [HeldOutPoint(**p) for p in s["train"]],
                      [HeldOutPoint(**p) for p in s["heldout"]], s["seconds"])
