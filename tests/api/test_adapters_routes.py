"""The adapter admin routes: list the adapters, switch without a restart (the next question
is answered by the new one), 404 for an unknown name, 422 for one that does not fit, and
a server that starts on the base model when the configured adapter is refused."""

import json

import pytest
from fastapi.testclient import TestClient

import api.service as service_module
from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, Settings
from model import prepare
from tests.api.fake_app import AUTH, TOKEN, wait_ready
from tests.conftest import SAMPLES
from tests.fakes import AdapterGenerator, HashEmbedder, OverlapReranker

ADAPTERS, ACTIVE = "/api/v1/admin/adapters", "/api/v1/admin/adapters/active"
QUESTION = {"question": "International fee for MSc Data Science?"}


def adapter_folder(path, made_for="fake-base", record=None):
    path.mkdir(parents=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": made_for}
    (path / prepare.ADAPTER_CONFIG).write_text(json.dumps(config))
    if record is not None:
        (path / "training-record.json").write_text(json.dumps(record))
    return path


@pytest.fixture(autouse=True)
def no_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "SHIPPED_ADAPTER", tmp_path / "none-shipped")


@pytest.fixture
def built(monkeypatch):
    """Every generator the service builds: fakes that reply with their adapter's name."""
    made: list[AdapterGenerator] = []

    def build(settings, plan):
        made.append(AdapterGenerator(settings))
        return made[-1]

    monkeypatch.setattr(service_module.generators, "build", build)
    return made


def settings_for(tmp_path, adapter=None):
    return Settings(
        data_dir=tmp_path / "data",
        models={"adapter": adapter},
        api=ApiSettings(admin_token=TOKEN),
    )


def serve(settings):
    svc = Lectern(settings, embedder=HashEmbedder(64), reranker=OverlapReranker())
    svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    return TestClient(create_app(settings, svc))


@pytest.fixture
def client(tmp_path, built):
    settings = settings_for(tmp_path)
    root = prepare.adapters_dir(settings)
    adapter_folder(root / "v1", record={"steps": 40, "heldout_replies": {"f1": 41.0}})
    v2 = adapter_folder(root / "v2")
    (v2 / "abstention.json").write_text(json.dumps({
        "version": 1, "created": "2026-12-01T00:00:00+00:00", "threshold": 0.7, "rule": "r",
        "measured_on": "heldout.json", "questions": 3, "candidates": []}))
    adapter_folder(root / "other-base", made_for="another-model")
    with serve(settings) as c:
        wait_ready(c.get)
        yield c


def test_the_adapters_are_listed_for_the_admin_only(client):
    assert client.get(ADAPTERS).status_code == 401
    assert client.put(ACTIVE, json={"name": "v1"}).status_code == 401
    body = client.get(ADAPTERS, headers=AUTH).json()
    assert body["active"] is None and body["refused"] is None
    assert [(a["name"], a["active"]) for a in body["adapters"]] == [
        ("other-base", False), ("v1", False), ("v2", False)
    ]
    v1 = body["adapters"][1]
    assert v1["path"] == "models/adapters/v1"  # where under the data folder, not the server path
    assert v1["record"] == {"steps": 40, "heldout_replies": {"f1": 41.0}}
    assert v1["abstain_threshold"] is None  # none measured: greedy
    assert body["adapters"][2]["abstain_threshold"] == 0.7


def test_a_switch_serves_the_next_question_with_the_new_adapter(client, built):
    assert client.post("/api/v1/ask", json=QUESTION).status_code == 200
    base = built[0]
    assert len(base.seen) == 1
    r = client.put(ACTIVE, json={"name": "v1"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["active"] == "v1"
    assert [a["name"] for a in r.json()["adapters"] if a["active"]] == ["v1"]
    assert client.post("/api/v1/ask", json=QUESTION).status_code == 200
    tuned = built[1]
    assert tuned.adapter.name == "v1" and len(tuned.seen) == 1
    assert len(base.seen) == 1 and base.closed == 1  # nothing was running on it: closed
    assert client.get(ADAPTERS, headers=AUTH).json()["active"] == "v1"
    back = client.put(ACTIVE, json={"name": None}, headers=AUTH)
    assert back.status_code == 200 and back.json()["active"] is None
    assert client.post("/api/v1/ask", json=QUESTION).status_code == 200
    assert built[2].adapter is None and len(built[2].seen) == 1


def test_an_unknown_adapter_is_a_404_naming_those_there_are(client):
    r = client.put(ACTIVE, json={"name": "v9"}, headers=AUTH)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "adapter_not_found"
    assert "no adapter named 'v9'; available: 'other-base', 'v1', 'v2'" in error["message"]


def test_a_mismatching_adapter_is_a_422_and_the_serving_one_stays(client, built):
    client.put(ACTIVE, json={"name": "v2"}, headers=AUTH)
    r = client.put(ACTIVE, json={"name": "other-base"}, headers=AUTH)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "adapter_mismatch"
    assert "does not fit the base model fake-base: it was made for another-model" in (
        error["message"]
    )
    assert client.get(ADAPTERS, headers=AUTH).json()["active"] == "v2"
    assert client.post("/api/v1/ask", json=QUESTION).status_code == 200
    serving = built[1]
    assert serving.adapter.name == "v2" and len(serving.seen) == 1 and serving.closed == 0


@pytest.mark.parametrize("body", [{}, {"name": 3}, {"name": ["v1"]}])
def test_a_body_without_a_name_string_or_null_is_a_422(client, body):
    r = client.put(ACTIVE, json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_a_refused_adapter_at_start_up_leaves_the_server_on_the_base_model(tmp_path, built):
    wrong = adapter_folder(tmp_path / "wrong", made_for="another-model")
    with serve(settings_for(tmp_path, str(wrong))) as c:
        wait_ready(c.get)  # ready: the server did not die
        body = c.get(ADAPTERS, headers=AUTH).json()
        assert body["active"] is None
        assert body["refused"].startswith(f"adapter {wrong} does not fit the base model")
        assert [(a["name"], a["active"]) for a in body["adapters"]] == [("configured", False)]
        assert c.post("/api/v1/ask", json=QUESTION).status_code == 200
        assert built[-1].adapter is None and len(built[-1].seen) == 1


def test_the_routes_are_documented_with_their_errors(client):
    schema = client.get("/openapi.json").json()
    listing, switch = schema["paths"][ADAPTERS]["get"], schema["paths"][ACTIVE]["put"]
    for operation in (listing, switch):
        assert operation["security"] == [{"adminToken": []}]
        assert "401" in operation["responses"]
    for status in ("404", "422"):
        ref = switch["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorOut")


def test_a_real_adapter_is_refused_at_start_up_then_one_that_fits_is_switched_to(tmp_path):
    """The whole path on a tiny random LLaMA: prepare, build, merge, int8, the fallback."""
    from tests.model.generators.tiny_lora import lora_adapter, reshaped
    from tests.model.tiny import save_tiny

    base = save_tiny(tmp_path / "base")
    wide = lora_adapter(reshaped(base, tmp_path / "wide", hidden_size=48), tmp_path / "wide-lora")
    settings = Settings(
        data_dir=tmp_path / "data",
        models={"generator": str(base), "adapter": str(wide)},
        api=ApiSettings(admin_token=TOKEN),
    )
    fits = lora_adapter(base, prepare.adapters_dir(settings) / "v1")
    with serve(settings) as c:
        wait_ready(c.get)
        body = c.get(ADAPTERS, headers=AUTH).json()
        assert body["active"] is None and "takes 32 inputs in the base" in body["refused"]
        svc = c.app.state.service
        assert svc.generator.adapter is None
        r = c.put(ACTIVE, json={"name": "v1"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["active"] == "v1" and r.json()["refused"] is None
        assert svc.generator.adapter == fits
        assert c.post("/api/v1/ask", json=QUESTION).status_code == 200
