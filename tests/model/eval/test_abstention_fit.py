"""The abstention threshold's rule on hand-made figures, and its record."""

import pytest

from lectern.errors import ConfigError
from model.eval.abstention_fit import (
    RULE,
    calibration,
    choose,
    config_name,
    parse_thresholds,
    score,
)


def figures(f1: float, false: float, probe: float) -> dict:
    return {"f1": {"mean": f1, "se": 1.0}, "false_abstain": false, "probe_abstain": probe}


def test_the_balanced_accuracy_decides():
    greedy = score(0.0, figures(30.0, 0.35, 0.90))  # (0.90 + 0.65) / 2 = 0.775
    middle = score(0.7, figures(36.0, 0.10, 0.80))  # 0.85
    lax = score(0.9, figures(40.0, 0.02, 0.50))  # 0.74: best F1, but answers the unanswerable
    assert (greedy.balanced, middle.balanced, lax.balanced) == (0.775, 0.85, 0.74)
    assert choose([greedy, middle, lax]) is middle


def test_within_the_tolerance_f1_then_the_lower_threshold_decide():
    a = score(0.5, figures(33.0, 0.12, 0.82))  # 0.85
    b = score(0.7, figures(35.0, 0.10, 0.79))  # 0.845: within 0.01, higher F1
    assert choose([a, b]) is b
    c = score(0.6, figures(35.0, 0.10, 0.79))
    assert choose([b, c]) is c  # same figures: the threshold closer to greedy


def test_the_record_names_the_rule_and_every_candidate():
    configs = {config_name(t): figures(30 + 10 * t, 0.4 - 0.3 * t, 0.9 - 0.2 * t)
               for t in (0.0, 0.5, 1.0)}
    record = calibration([0.0, 0.5, 1.0], configs, "/x/heldout-squad.json", 12, "lectern ...")
    assert [c.threshold for c in record.candidates] == [0.0, 0.5, 1.0]
    assert record.threshold == 1.0  # balanced 0.75, 0.775, 0.8
    assert record.rule == RULE and record.version == 1 and record.questions == 12


@pytest.mark.parametrize(("text", "message"), [
    ("0.5", "two or more"), ("0.5,0.5", "two or more"), ("0,1.5", "in \\[0, 1\\]"),
    ("a,b", "write thresholds"),
])
def test_bad_threshold_lists_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_thresholds(text)


def test_a_candidate_without_answers_is_an_error():
    with pytest.raises(ConfigError, match="threshold 0.5: no answers"):
        score(0.5, {"f1": {"mean": None, "se": None}, "false_abstain": None,
                    "probe_abstain": None})


def test_a_candidate_with_failed_questions_is_refused():
    failed = {**figures(30.0, 0.1, 0.8), "counts": {"errors": {"normal": 1, "probe": 0}}}
    with pytest.raises(ConfigError, match="1 questions failed"):
        score(0.5, failed)


def test_thresholds_name_their_configurations_by_all_their_digits():
    assert config_name(0.1234567) != config_name(0.123457)
