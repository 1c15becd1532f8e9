"""The abstention gate: the abstention's first token kept only when it is likely enough."""

import math

import numpy as np
import pytest

from model.generators.abstention_gate import gate_abstention
from model.generators.sampling import Sampling

torch = pytest.importorskip("torch")


@pytest.fixture(params=["torch", "numpy"])  # the transformers and llama.cpp backends' logits
def _scores(request):
    def make(*probs: float):
        if request.param == "numpy":
            return np.log(np.array([list(probs)], dtype=np.float32))
        return torch.log(torch.tensor([list(probs)]))

    return make


def test_a_confident_abstention_is_kept(_scores):
    scores = _scores(0.8, 0.15, 0.05)
    assert gate_abstention(scores, 0, 0.6) is scores
    assert int(gate_abstention(scores, 0, 0.8).argmax()) == 0  # at the threshold: kept


def test_an_unsure_abstention_gives_way_to_the_next_best_start(_scores):
    scores = _scores(0.45, 0.35, 0.2)  # greedy would abstain
    gated = gate_abstention(scores, 0, 0.6)
    assert type(gated) is type(scores)
    assert int(gated.argmax()) == 1
    assert gated[0, 0] == -math.inf
    assert float(scores[0, 0]) == pytest.approx(math.log(0.45))  # the caller's untouched
    assert np.array_equal(np.asarray(gated[0, 1:]), np.asarray(scores[0, 1:]))


def test_zero_or_no_token_is_plain_greedy(_scores):
    scores = _scores(0.45, 0.35, 0.2)
    assert gate_abstention(scores, 0, 0.0) is scores
    assert gate_abstention(scores, None, 0.9) is scores


def test_the_gate_never_touches_other_tokens_choice(_scores):
    scores = _scores(0.1, 0.7, 0.2)  # the model answers anyway
    assert int(gate_abstention(scores, 0, 0.9).argmax()) == 1


def test_threshold_is_validated():
    with pytest.raises(ValueError, match="abstain_threshold must be in \\[0, 1\\], got 1.5"):
        Sampling(abstain_threshold=1.5)


def test_the_generator_gates_only_the_first_reply_token(tmp_path):
    """On a tiny real model: its greedy first token, taken as the abstention's, is
    refused at threshold 1 and kept at 0; a later token is never gated."""
    from lectern.device import DeviceCaps, plan
    from model.generators.transformers import TransformersGenerator
    from tests.model.tiny import save_tiny

    folder = save_tiny(tmp_path / "tiny", initializer_range=0.5)
    msgs = [{"role": "user", "content": "When are fees due?"}]

    def first_tokens(threshold: float, abstain_id: int | None) -> list[int]:
        gen = TransformersGenerator(folder, plan(DeviceCaps()),
                                    Sampling(max_new_tokens=4, abstain_threshold=threshold))
        gen.warm_up()
        assert gen.abstain_threshold == threshold
        if abstain_id is not None:
            gen._abstain_id = abstain_id  # the test's stand-in for "I" of "I don't know."
        try:
            ids, _ = gen._prompt(msgs)
            ticket = gen._require_scheduler().submit(ids, 4)
            return list(ticket.ids(timeout=30))
        finally:
            gen.close()

    greedy = first_tokens(0.0, None)
    assert first_tokens(0.0, greedy[0]) == greedy  # 0: the gate is off
    assert first_tokens(1.0, greedy[0])[0] != greedy[0]
    # A later token is never refused, even one that is the abstention's.
    assert len(greedy) > 1 and greedy[1] != greedy[0]
    assert first_tokens(1.0, greedy[1]) == greedy


def test_the_threshold_comes_from_the_adapter_record(tmp_path):
    from model.abstention import AbstentionCalibration, ThresholdScore, threshold_for

    assert threshold_for(None) == 0.0
    assert threshold_for(tmp_path) == 0.0  # no record: greedy
    cand = ThresholdScore(threshold=0.7, f1=40.0, false_abstain=0.1, probe_abstain=0.8,
                          balanced=0.85)
    AbstentionCalibration(created="2026-12-01T00:00:00+00:00", threshold=0.7, rule="r",
                          measured_on="heldout.json", questions=3,
                          candidates=[cand]).save(tmp_path)
    assert threshold_for(tmp_path) == 0.7
    (tmp_path / "abstention.json").write_text('{"version": 9, "threshold": 0.2}')
    assert threshold_for(tmp_path) == 0.0  # a newer record is not guessed at
    (tmp_path / "abstention.json").write_text("not json")
    assert threshold_for(tmp_path) == 0.0
