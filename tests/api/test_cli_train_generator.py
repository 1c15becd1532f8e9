"""`lectern train generator` end to end on fixture data, a tiny model and fakes."""

import json
from types import SimpleNamespace

from typer.testing import CliRunner

from lectern.device import DeviceCaps
from tests.fakes import HashEmbedder
from tests.model.tiny import save_tiny
from tests.model.train.test_qa_sources import write

STORY = ("The {t} of Vale {i} was built in {y}. Its keeper was named Keeper{i}. "
         "Visitors to the {t} come in spring.")
TOPICS = ["river", "castle", "violin", "glacier", "comet", "harbour", "orchard", "tunnel"] * 5


def shared_data(folder):
    stories = [{"id": f"s{i}", "source": "race", "story": STORY.format(t=t, i=i, y=1800 + i),
                "questions": [{"input_text": f"Who was the keeper of the {t} of Vale {i}?",
                               "turn_id": 1}],
                "answers": [{"input_text": f"Keeper{i}", "span_text": f"Keeper{i}",
                             "turn_id": 1}]}
               for i, t in enumerate(TOPICS)]
    write(folder, "coqa/coqa-dev.json", json.dumps({"data": stories}))
    return folder


def test_train_generator_builds_the_data_trains_and_resumes(tmp_path, monkeypatch):
    from api import components
    from api.cli import app
    from lectern import device
    from model import prepare

    tiny = save_tiny(tmp_path / "tiny", initializer_range=0.5)
    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(components, "build_embedder", lambda s, d: HashEmbedder(64))
    monkeypatch.setattr(device, "probe", lambda: DeviceCaps())
    monkeypatch.setattr(prepare, "generator", lambda s, **kw: SimpleNamespace(load_from=tiny))
    out = tmp_path / "adapter"
    args = ["train", "generator", "--data", str(shared_data(tmp_path / "shared")),
            "--sources", "coqa", "--out", str(out), "--batch-size", "4", "--rank", "4",
            "--eval-every", "2", "--checkpoint-every", "2", "--abstain", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "adapter saved to" in result.output
    record = json.loads((out / "training-record.json").read_text())
    assert record["config"]["rank"] == 4 and record["model_type"] == "llama"
    assert set(record["data"]["train"]) == {"coqa"} and record["data"]["abstain_share"] == 0.5
    assert record["command"].startswith("lectern ")
    assert (out.with_name("adapter.data") / "heldout-squad.json").is_file()
    assert not out.with_name("adapter.checkpoint").exists()
    # --resume reads the saved examples instead of building them again.
    monkeypatch.setattr(components, "build_embedder", lambda s, d: (_ for _ in ()).throw(
        AssertionError("examples were rebuilt")))
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "examples from" in again.output


def test_train_generator_refuses_an_unknown_source(tmp_path, monkeypatch):
    from api import components
    from api.cli import app

    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(components, "build_embedder", lambda s, d: HashEmbedder(64))
    result = CliRunner().invoke(app, ["train", "generator", "--data", str(tmp_path),
                                      "--sources", "squad", "--data-only"])
    assert result.exit_code != 0 and "squad" in str(result.exception)
