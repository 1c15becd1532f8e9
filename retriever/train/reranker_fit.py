"""The reranker's model and training loop: a truncated MiniLM with a one-logit head,
fitted per question to put the answering chunk above its negatives.

`retriever.train.reranker` prepares the data, calls `fit`, then validates and installs;
both read their settings from `retriever.train.reranker_config`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError
from lectern.optional import require
from retriever.cross_encoder import QueryFocus, head_and_body, model_inputs
from retriever.train.reranker_config import Loss, TrainConfig
from retriever.train.reranker_data import Group


def new_cross_encoder(
    backbone: Path | str, layers: int, max_length: int, pooling: str = "mean"
) -> tuple[Any, int]:
    """A CrossEncoder of the backbone's bottom `layers` layers, pooled, and a linear head.

    pooling: a sentence-transformers pooling mode, or several joined by "+" (their
    vectors concatenated). Returns the model and how many layers the backbone had.

    Mean pooling is the default rather than the usual [CLS] head: the MiniLM sentence
    encoder was trained through mean pooling, and its [CLS] state in the lower layers
    barely varies between inputs (std 0.002 over pairs whose relevance differs), so a
    [CLS] head stayed at chance for a 1,000-question run while the mean-pooled one starts
    learning within a hundred steps.
    """
    torch = require("torch", "torch")
    st = require("sentence_transformers", "retrieval")
    base = require("sentence_transformers.base.modules", "retrieval")
    pooling_module = require("sentence_transformers.sentence_transformer.modules", "retrieval")

    body = base.Transformer(str(backbone), transformer_task="feature-extraction",
                       max_seq_length=max_length, model_kwargs={"local_files_only": True},
                       processor_kwargs={"local_files_only": True},
                       config_kwargs={"local_files_only": True})
    total = keep_layers(body.model, layers)
    width = body.get_embedding_dimension()
    modes = tuple(pooling.split("+"))
    pool = pooling_module.Pooling(width, modes if len(modes) > 1 else modes[0])
    head = base.Dense(pool.get_embedding_dimension(), 1, activation_function=torch.nn.Identity(),
                 module_input_name="sentence_embedding", module_output_name="scores")
    torch.nn.init.normal_(head.linear.weight, std=0.02)
    torch.nn.init.zeros_(head.linear.bias)
    ce = st.CrossEncoder(modules=[body, pool, head], device="cpu")
    return ce, total


def keep_layers(model: Any, n: int) -> int:
    """Truncate a BERT-style encoder to its bottom n layers; returns how many it had."""
    torch = require("torch", "torch")

    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ConfigError(f"cannot drop layers of {type(model).__name__}: no encoder.layer")
    total = len(layers)
    if n > total:
        raise ConfigError(f"layers={n} but the backbone has only {total}")
    encoder.layer = torch.nn.ModuleList(list(layers)[:n])
    model.config.num_hidden_layers = n
    return total


def fit(
    ce: Any,
    groups: list[Group],
    cfg: TrainConfig,
    focus: QueryFocus,
    rng: random.Random,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train `ce` in place on the groups for cfg.epochs (or until cfg.max_minutes); returns
    what it took: steps, pairs, tokens, wall and CPU seconds."""
    import numpy as np

    torch = require("torch", "torch")
    transformers = require("transformers", "model")

    tokenizer = ce.tokenizer
    total_steps = math.ceil(len(groups) / cfg.batch_questions) * cfg.epochs
    no_decay = ("bias", "LayerNorm.weight")
    head_ids = {id(p) for p in ce[-1].parameters()}
    params = [
        {"params": [p for n, p in ce.named_parameters() if p.requires_grad
                    and (id(p) in head_ids) == head and n.endswith(no_decay) == plain],
         "lr": cfg.head_lr if head else cfg.learning_rate,
         "weight_decay": 0.0 if plain else cfg.weight_decay}
        for head in (False, True) for plain in (False, True)
    ]
    optimizer = torch.optim.AdamW([g for g in params if g["params"]], lr=cfg.learning_rate)
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(total_steps * cfg.warmup_share), total_steps
    )
    ce.train()
    t_train = time.perf_counter()
    cpu_train = time.process_time()  # on a shared machine, CPU time is the comparable cost
    pairs = tokens = step = 0
    stopped_early = False
    recent: list[float] = []
    deadline = None if cfg.max_minutes is None else t_train + cfg.max_minutes * 60
    for epoch in range(cfg.epochs):
        order = list(range(len(groups)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_questions):
            batch = [groups[i] for i in order[start : start + cfg.batch_questions]]
            queries, texts, sizes, labels = [], [], [], []
            for g in batch:
                shown = _texts(focus, tokenizer, g.question, g.chunks, cfg.max_length)
                queries += [g.question] * len(shown)
                texts += shown
                sizes.append(len(shown))
                labels += [1.0] + [0.0] * (len(shown) - 1)
            enc = tokenizer(queries, texts, padding=True, truncation="longest_first",
                            max_length=cfg.max_length, return_tensors="pt")
            logits = ce(dict(enc))["scores"].view(-1)
            loss = _loss(cfg.loss, logits, sizes, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ce.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            pairs += len(texts)
            tokens += int(enc["attention_mask"].sum())
            recent.append(loss.item())
            if step % cfg.log_every == 0 or step == total_steps:
                spent = time.perf_counter() - t_train
                log(f"epoch {epoch + 1} step {step}/{total_steps} loss {np.mean(recent):.4f} "
                    f"{pairs / spent:.1f} pairs/s ({spent / pairs * 1000:.0f} s per 1k pairs), "
                    f"eta {(total_steps - step) * spent / step / 60:.1f} min")
                recent = []
            if deadline is not None and time.perf_counter() > deadline:
                stopped_early = True
                log(f"time limit of {cfg.max_minutes} min reached at step {step}; stopping")
                break
        if stopped_early:
            break
    train_seconds = time.perf_counter() - t_train
    cpu_seconds = time.process_time() - cpu_train
    return {
        "steps": step, "planned_steps": total_steps, "stopped_early": stopped_early,
        "pairs": pairs, "tokens": tokens, "seconds": round(train_seconds, 1),
        "pairs_per_second": round(pairs / train_seconds, 2) if train_seconds else None,
        "seconds_per_1k_pairs": round(train_seconds / pairs * 1000, 1) if pairs else None,
        "cpu_seconds": round(cpu_seconds, 1),
        "cpu_seconds_per_1k_pairs": round(cpu_seconds / pairs * 1000, 1) if pairs else None,
        "torch_threads": torch.get_num_threads(),
    }


def _texts(
    focus: QueryFocus, tokenizer: Any, question: str, chunks: list[Any], max_length: int
) -> list[str]:
    """What the reranker will read at serving time (see CrossEncoderReranker.inputs)."""
    return model_inputs(tokenizer, focus, question, [head_and_body(c) for c in chunks], max_length)


def _loss(kind: Loss, logits: Any, sizes: list[int], labels: list[float]) -> Any:
    torch = require("torch", "torch")
    functional = require("torch.nn.functional", "torch")

    if kind == "bce":
        target = torch.tensor(labels)
        # Each question has one positive per len-1 negatives: weigh them to balance.
        negatives = max(len(labels) - len(sizes), 1)
        return functional.binary_cross_entropy_with_logits(
            logits, target, pos_weight=torch.tensor(negatives / len(sizes))
        )
    # Listwise: softmax over each question's candidates, the positive first.
    losses = [functional.cross_entropy(g.unsqueeze(0), torch.zeros(1, dtype=torch.long))
              for g in torch.split(logits, sizes)]
    return torch.stack(losses).mean()
