"""`lectern feedback export`: the answer log as a file, and its ratings as valid
preference pairs, from answers given and rated through the service."""

import csv
import json

import pytest
from typer.testing import CliRunner

from api.service import Lectern
from lectern.settings import Settings
from model.train.preference_pairs import read_pairs
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker

QUESTION = "What do international students pay in tuition?"


@pytest.fixture
def rated(tmp_path, monkeypatch):
    """A data dir whose log holds: two answers to one question (one up, one down), and a
    down-rated answer to a question nobody rated up."""
    from api import components, service

    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(components, "build_embedder", lambda s, d: HashEmbedder(64))
    monkeypatch.setattr(service, "build_reranker", lambda s: None)
    ids = []
    for reply in ("Tuition fees can be paid in full or in ten monthly instalments [1].",
                  "You pay tuition fees in full [1].",
                  "Tuition fees can be paid in full or in ten monthly instalments [1]."):
        svc = Lectern(Settings(), HashEmbedder(64), EchoGenerator(reply), OverlapReranker())
        if not ids:
            svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
        svc.warm_up_generator()
        question = QUESTION if len(ids) < 2 else "When is the application deadline?"
        ids.append(svc.ask(question).answer_id)
        svc.close()
    svc = Lectern(Settings())
    for answer_id, rating in zip(ids, ("up", "down", "down"), strict=True):
        svc.answer_log.rate(answer_id, rating, None)
    svc.close()
    return ids


def run(*args: str) -> str:
    from api.cli import app

    result = CliRunner().invoke(app, ["feedback", "export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_pairs_are_written_in_the_reward_models_format(rated, tmp_path):
    out = tmp_path / "pairs.jsonl"
    printed = run(str(out), "--pairs")
    assert "1 pairs written" in printed and "1 down without an up answer" in printed
    (pair,) = read_pairs(out)
    assert (pair.chosen_id, pair.rejected_id) == (rated[0], rated[1])
    assert pair.chosen.startswith("Tuition fees") and pair.rejected.startswith("You pay")
    assert pair.question == QUESTION and pair.passages and pair.version == 1


def test_the_log_is_exported_as_csv_or_jsonl(rated, tmp_path):
    run(str(tmp_path / "all.csv"), "--format", "csv")
    with (tmp_path / "all.csv").open() as f:
        assert {r["id"] for r in csv.DictReader(f)} == set(rated)
    run(str(tmp_path / "missed.jsonl"), "--missed-only")
    rows = [json.loads(line) for line in (tmp_path / "missed.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rows} == set(rated[1:]) and all(r["rating"] == "down" for r in rows)


def test_no_log_is_a_clear_error(tmp_path, monkeypatch):
    from api.cli import app

    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["feedback", "export", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and "no answer log" in result.output
