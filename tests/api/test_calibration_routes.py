"""The calibration admin routes: what serves, a fit in the background, 409 while one runs."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, CalibrationSettings, IngestSettings, Settings
from tests.api.fake_app import AUTH, TOKEN, wait_ready
from tests.api.test_calibration_runner import AskingGenerator, fill
from tests.fakes import HashEmbedder, OverlapReranker

ROUTE = "/api/v1/admin/calibration"


def app_over(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", _env_file=None,
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, min_section_tokens=8),
        api=ApiSettings(admin_token=TOKEN),
        calibration=CalibrationSettings(questions=20, min_chunks=5, auto_share=0.0),
    )
    svc = Lectern(settings, embedder=HashEmbedder(), generator=AskingGenerator(),
                  reranker=OverlapReranker())
    svc.warm_up()
    fill(svc)
    svc.refresh()
    return create_app(settings, svc), svc


def test_status_start_and_the_fit_served(tmp_path) -> None:
    app, _ = app_over(tmp_path)
    with TestClient(app) as client:
        wait_ready(client.get)
        assert client.get(ROUTE).status_code == 401
        before = client.get(ROUTE, headers=AUTH).json()
        assert before["calibration"] is None and not before["running"]
        assert before["serving"] == {"rrf_k": 60, "bm25_weight": 1.0, "dense_weight": 1.0,
                                     "rerank": True, "rerank_prior_weight": None}
        started = client.post(ROUTE, headers=AUTH)
        assert started.status_code == 202
        for _ in range(400):
            if not client.get(ROUTE, headers=AUTH).json()["running"]:
                break
            time.sleep(0.05)
        after = client.get(ROUTE, headers=AUTH).json()
        assert after["last_error"] is None and not after["due"]
        chosen = after["calibration"]["chosen"]
        assert after["serving"]["dense_weight"] == chosen["dense_weight"]
        assert after["serving"]["rerank"] == chosen["rerank"]
        assert after["calibration"]["questions"] == 20


def test_a_second_start_while_one_runs_is_409(tmp_path) -> None:
    app, svc = app_over(tmp_path)
    with TestClient(app) as client:
        wait_ready(client.get)
        assert svc.calibrator._running.acquire(blocking=False)  # as if a fit were running
        try:
            refused = client.post(ROUTE, headers=AUTH)
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "calibration_running"
            assert client.get(ROUTE, headers=AUTH).json()["running"]
        finally:
            svc.calibrator._running.release()
