import pytest

from lectern.types import Chunk, ScoredChunk
from retriever.questions import SyntheticQuestion
from retriever.train.fusion_fit import Ranked, fit, rank_held_out
from tests.fakes import HashEmbedder


def _chunk(i: int) -> Chunk:
    return Chunk(id=i, document_id=f"d{i}", text=f"text {i}", source=f"s{i}", title=f"t{i}")


def _hits(ids: list[int]) -> list[ScoredChunk]:
    return [ScoredChunk(_chunk(i), 1.0 / r) for r, i in enumerate(ids, start=1)]


def _dense_knows_better(gold: int) -> Ranked:
    # BM25 puts two look-alikes first; dense puts the gold chunk first and one of the
    # look-alikes second. Equal weights with k = 60 rank a look-alike first; weighting
    # dense twice ranks the gold chunk first.
    others = [gold + 1, gold + 2]
    return Ranked(gold, _hits([*others, gold]), _hits([gold, others[0], gold + 3]))


def test_the_default_stays_when_no_setting_does_better():
    same = [Ranked(g, _hits([g, g + 1]), _hits([g, g + 2])) for g in range(0, 40, 4)]
    fitted = fit(same)
    assert (fitted.rrf_k, fitted.bm25_weight, fitted.dense_weight) == (60, 1.0, 1.0)
    assert fitted.mrr_at_10 == fitted.default_mrr_at_10 == 1.0
    assert len(fitted.grid) == 15 and fitted.questions == 10


def test_a_heavier_dense_weight_is_chosen_when_it_ranks_the_questions_chunks_first():
    ranked = [_dense_knows_better(g) for g in range(0, 200, 10)]
    ranked += [Ranked(g, _hits([g]), _hits([g])) for g in range(1000, 1010)]  # no signal
    fitted = fit(ranked)
    assert fitted.dense_weight > 1.0 and fitted.bm25_weight == 1.0
    assert fitted.mrr_at_10 == 1.0 > fitted.default_mrr_at_10
    record = fitted.as_record()
    assert record["mrr@10"] == fitted.mrr_at_10
    assert record["default_mrr@10"] == fitted.default_mrr_at_10
    assert record["dense_weight"] == fitted.dense_weight and "mrr_at_10" not in record


def test_a_gain_within_one_standard_error_keeps_the_default():
    # Of thirty questions three gain from a heavier dense weight and two lose: noise.
    ranked = [_dense_knows_better(g) for g in (0, 10, 20)]
    # Equal weights tie these two chunks and the lower id, the right one, goes first.
    ranked += [Ranked(g, _hits([g, g + 1, g + 2]), _hits([g + 1, g, g + 2])) for g in (30, 40)]
    ranked += [Ranked(g, _hits([g]), _hits([g, g + 1])) for g in range(100, 125)]
    fitted = fit(ranked)
    assert (fitted.rrf_k, fitted.dense_weight) == (60, 1.0)
    best = max(g["mrr@10"] for g in fitted.grid)
    assert fitted.default_mrr_at_10 < best < fitted.default_mrr_at_10 + fitted.standard_error


def test_fitting_needs_questions():
    with pytest.raises(ValueError, match="no held-out questions"):
        fit([])


def test_rank_held_out_gives_both_lists_and_checks_the_vectors():
    chunks = {i: _chunk(i) for i in (3, 5, 8)}
    emb = HashEmbedder(32)
    passages = emb.embed_passages([chunks[i].text for i in sorted(chunks)])

    class Bm25:
        def retrieve(self, query: str, top_k: int) -> list[ScoredChunk]:
            return _hits([8, 3])[:top_k]

    q = SyntheticQuestion(5, "d5", "text 5", "text 5?", "text 5", "kept")
    (ranked,) = rank_held_out([q], chunks, Bm25(), emb.embed_passages, passages, depth=2)
    assert ranked.chunk_id == 5 and [h.chunk.id for h in ranked.bm25] == [8, 3]
    assert ranked.dense[0].chunk.id == 5 and len(ranked.dense) == 2
    with pytest.raises(ValueError, match="2 passage vectors for 3 chunks"):
        rank_held_out([q], chunks, Bm25(), emb.embed_passages, passages[:2])
