"""Train the cross-encoder reranker from the packaged MiniLM encoder (`lectern train reranker`).

The backbone's bottom `layers` layers, mean-pooled, get a fresh one-logit head (a
sentence-transformers CrossEncoder built from modules, see reranker_fit) and learn, per
question, to put the chunk holding the answer above BM25 hard negatives from the same
corpus and a random chunk. The result — weights, an int8 ONNX copy and reranker.json
(retriever.records.RerankerRecord: data counts, hyperparameters, seed, time, held-out
metrics) — replaces the output folder only once it is complete.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lectern.files import replace_folder
from lectern.optional import require
from retriever.cross_encoder import CrossEncoderReranker, QueryFocus, export_onnx
from retriever.records import RerankerRecord
from retriever.train import reranker_data as rd
from retriever.train.reranker_config import Balance, TrainConfig
from retriever.train.reranker_corpus import NAME as CORPUS
from retriever.train.reranker_corpus import CorpusQuestions, corpus_source
from retriever.train.reranker_data import Group, build_groups
from retriever.train.reranker_fit import fit, new_cross_encoder
from retriever.train.reranker_validation import evaluate, rejection


@dataclass
class TrainResult:
    output_dir: Path
    record: RerankerRecord
    installed: bool = True  # False: it failed the install rule on held-out (see rejection)

    @property
    def info(self) -> dict[str, Any]:
        """The record as written to reranker.json."""
        return self.record.as_dict()


def _chunker(tokenizer: Any, cfg: TrainConfig) -> Callable[[str], list[str]]:
    """Text to chunks as ingestion makes them, counted in the backbone's tokens."""
    from ingest.chunker import Chunker
    from ingest.partition import Block

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chunker = Chunker(count, cfg.chunk_tokens, cfg.chunk_overlap)

    def split(text: str) -> list[str]:
        blocks = [Block(p.strip(), "text") for p in text.split("\n\n") if p.strip()]
        return [piece.text for piece in chunker.split(blocks)]

    return split


def _quota(available: dict[str, int], total: int, spill: bool = True) -> dict[str, int]:
    """`total` shared evenly. With `spill`, what a small part cannot use goes to the
    others; without, no part takes more than the even share, so a large part cannot
    outweigh the rest (the total may then stay below `total`)."""
    quota = dict.fromkeys(available, 0)
    left, open_ = total, [s for s in available if available[s] > 0]
    if not spill:
        share, extra = divmod(total, max(len(open_), 1))
        # The remainder, one each, to the parts that have the most to give.
        richest = sorted(open_, key=lambda s: -available[s])[:extra]
        return {s: min(n, share + (s in richest)) for s, n in available.items()}
    while left > 0 and open_:
        share = max(left // len(open_), 1)
        for s in list(open_):
            take = min(share, available[s] - quota[s], left)
            quota[s] += take
            left -= take
            if quota[s] >= available[s]:
                open_.remove(s)
            if left == 0:
                break
    return quota


def _parts(examples: list[rd.Example], balance: Balance) -> dict[str, list[rd.Example]]:
    """Examples by what the quota is shared over: each domain, or each source."""
    out: dict[str, list[rd.Example]] = {}
    for e in examples:
        out.setdefault(e.group if balance == "domain" else e.source, []).append(e)
    return out


def _split(examples: list[rd.Example], share: float) -> tuple[list[rd.Example], list[rd.Example]]:
    """(training, held-out) by document."""
    held = [rd.is_validation(e.doc, share) for e in examples]
    return ([e for e, h in zip(examples, held, strict=True) if not h],
            [e for e, h in zip(examples, held, strict=True) if h])


@dataclass
class TrainingData:
    sources: dict[str, rd.SourceData]
    quota: dict[str, int]  # per part (domain or source): training questions taken
    available: dict[str, int]  # per part: training questions it had
    groups: list[Group]
    val_groups: dict[str, list[Group]]
    focus: QueryFocus
    seconds: float


def prepare_data(
    cfg: TrainConfig,
    tokenizer: Any,
    rng: random.Random,
    log: Callable[[str], None] = print,
    corpus: CorpusQuestions | None = None,
) -> TrainingData:
    """Training groups and held-out groups (whole documents held out).

    Training questions are drawn with `rng`; held-out ones with their own generator
    seeded by cfg.seed, so runs that differ in `questions` (or any training setting) are
    measured on the same held-out questions and can be compared. A corpus's questions
    (see reranker_corpus) are all used, outside the `questions` quota.
    """
    t0 = time.perf_counter()
    focus = QueryFocus()
    split = _chunker(tokenizer, cfg)

    sources, next_id = {}, 0
    for name in cfg.sources:
        sources[name] = rd.load_source(name, cfg.data_dir, split, focus.terms, next_id)
        next_id += len(sources[name].chunks)
        log(f"{name}: {sources[name].counts()}")
    if corpus is not None:
        sources[CORPUS] = corpus_source(corpus, next_id)
        log(f"{CORPUS} ({corpus.path}): {sources[CORPUS].counts()}")
    val_rng = random.Random(f"validation-{cfg.seed}")
    picked: dict[str, list[rd.Example]] = {}
    val_picked: dict[str, list[rd.Example]] = {}
    for name in cfg.sources:
        train_pool, val_pool = _split(sources[name].examples, cfg.holdout_share)
        # Held out per domain whatever the training shares over: models are judged by
        # their worst domain (see reranker_validation.rejection).
        for part, held in _parts(val_pool, "domain").items():
            val_picked[part] = val_rng.sample(held, min(cfg.val_questions, len(held)))
        picked.update(_parts(train_pool, cfg.balance))
        if cfg.balance == "source":
            picked.setdefault(name, [])  # listed in the record even with nothing to give
    available = {part: len(examples) for part, examples in picked.items()}
    quota = _quota(available, cfg.questions, spill=cfg.balance == "source")
    picked = {part: rng.sample(examples, quota[part]) for part, examples in picked.items()}
    if sum(quota.values()) < cfg.questions:
        log(f"{sum(quota.values())} of {cfg.questions} training questions taken: "
            + ", ".join(f"{p} {quota[p]} of {n}" for p, n in available.items()))
    if corpus is not None:
        picked[CORPUS], held = _split(sources[CORPUS].examples, cfg.holdout_share)
        quota[CORPUS] = available[CORPUS] = len(picked[CORPUS])
        val_picked[CORPUS] = val_rng.sample(held, min(cfg.corpus_val_questions, len(held)))
    groups: list[Group] = []
    val_groups: dict[str, list[Group]] = {}
    for name, data in sources.items():
        miner = rd.NegativeMiner(data.chunks)
        mine = [e for part in picked.values() for e in part if e.source == name]
        groups += build_groups(mine, miner, cfg.hard_negatives, cfg.random_negatives,
                               cfg.mine_depth, rng)
        for part, held in val_picked.items():
            if held and held[0].source == name:
                val_groups[part] = build_groups(held, miner, cfg.hard_negatives,
                                                cfg.random_negatives, cfg.mine_depth,
                                                val_rng, candidates=cfg.val_depth)
    prep_seconds = time.perf_counter() - t0
    log(f"data ready in {prep_seconds:.0f} s: {len(groups)} training questions")

    return TrainingData(sources, quota, available, groups, val_groups, focus, prep_seconds)


def train(
    cfg: TrainConfig, log: Callable[[str], None] = print, corpus: CorpusQuestions | None = None
) -> TrainResult:
    import numpy as np

    torch = require("torch", "torch")
    hf_logging = require("transformers.utils.logging", "model")

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)

    ce, backbone_layers = new_cross_encoder(
        cfg.backbone, cfg.layers, cfg.max_length, cfg.pooling
    )
    tokenizer = ce.tokenizer
    if cfg.freeze_embeddings:
        for p in ce[0].model.embeddings.parameters():
            p.requires_grad = False
    data = prepare_data(cfg, tokenizer, rng, log, corpus)
    groups, val_groups, focus = data.groups, data.val_groups, data.focus
    training = fit(ce, groups, cfg, focus, rng, log)

    out = cfg.output_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    # Not removed if what follows fails: the trained weights stay there to look at.
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    ce.eval()
    ce.save_pretrained(str(staging))
    export_onnx(staging)
    record = RerankerRecord(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        config={**_jsonable(asdict(cfg)), "backbone_layers": backbone_layers},
        data={
            "sources": {s: d.counts() for s, d in data.sources.items()},
            # per domain (or source, as config.balance says): what it had and gave
            "parts": {part: {"available": data.available.get(part, 0),
                             "train_questions": n} for part, n in data.quota.items()},
            "validation_questions": {d: len(gs) for d, gs in data.val_groups.items()},
            "train_questions": len(groups),
            "train_pairs_per_epoch": sum(len(g.chunks) for g in groups),
            "never_used": "SQuAD (../shared/data/squad): evaluation only",
            "corpus_questions": str(corpus.path) if corpus is not None else None,
        },
        training={**training, "data_prep_seconds": round(data.seconds, 1)},
    )
    record.save(staging)
    t_val = time.perf_counter()
    reranker = CrossEncoderReranker(staging, backend="onnx", max_length=cfg.max_length)
    reranker.warm_up()
    # A corpus-tuned reranker serves that corpus: its weight is fitted on its questions.
    fit_on = CORPUS if corpus is not None else None
    validation = evaluate(reranker, val_groups, fit_on)
    if cfg.compare_with is not None:
        other = CrossEncoderReranker(cfg.compare_with)
        other.warm_up()
        measured = evaluate(other, val_groups, fit_on)
        validation["compared"] = {
            "model": str(cfg.compare_with),
            "prior_weight": measured["prior_weight"],
            "overall": measured["overall"],
            "per_source": measured["per_source"],
            "worst_domain": measured["worst_domain"],
        }
        log(f"compared with {cfg.compare_with}: {json.dumps(measured['overall'])}")
    validation["seconds"] = round(time.perf_counter() - t_val, 1)
    record.validation = validation
    record.prior_weight = validation["prior_weight"]  # what serving fuses with
    record.total_seconds = round(time.perf_counter() - started, 1)
    record.save(staging)
    overall = json.dumps(validation["overall"])
    refused = rejection(validation, fit_on) if cfg.require_improvement else None
    if refused is not None:
        # Serving picks up whatever sits at `out`: a reranker that reorders BM25's list
        # worse than BM25 itself would make every answer worse.
        rejected = out.with_name(out.name + ".rejected")
        replace_folder(staging, rejected)
        log(f"NOT installed ({refused}); kept in {rejected}: {overall}")
        return TrainResult(rejected, record, installed=False)
    replace_folder(staging, out)
    log(f"saved to {out}: validation {overall}")
    return TrainResult(out, record)


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in d.items()}
