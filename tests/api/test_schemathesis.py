"""schemathesis against the app over the fake models: the server keeps its OpenAPI promises.

Every operation in /openapi.json, every schemathesis check on: no 5xx; status codes,
content types, headers and bodies (JSON and each server-sent event) as documented; data
valid by the schema accepted and data invalid by it refused; 405 with a true `Allow` for
undeclared methods; admin operations refuse a missing or wrong token. In-process (ASGI),
offline, and deterministic: hypothesis derandomized, a bounded number of examples per
operation, no example database.
"""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api.fake_app import TOKEN, fake_app
from tests.conftest import SAMPLES

EXAMPLES = 40  # per operation, on top of schemathesis' coverage cases

CONFIG = {
    "auth": {"openapi": {"adminToken": {"bearer": TOKEN}}},
    "operations": [
        {
            # A well-formed multipart body is not a document: a file's type is its name's
            # suffix and its content must parse, neither of which a schema can state.
            # What an upload refuses, and why, is in tests/api/test_app.py.
            "include-name": "POST /api/v1/documents",
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ["2xx", "413", "415", "422"]}
            },
        },
        {
            # A conversation_id is valid only while the server keeps that conversation
            # (else 404), it does not go with a history (422), and a turn's limit counts
            # its question and answer together, which no schema can state
            # (tests/api/test_ask_conversations.py).
            "include-name": ["POST /api/v1/ask", "POST /api/v1/ask/stream"],
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}},
        },
        {
            # Feedback names an answer the server gave (else 404); what it refuses is in
            # tests/api/test_feedback_routes.py.
            "include-name": "POST /api/v1/feedback",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}},
        },
        {
            # OpenAI's message list cannot say in a schema that its last message is the
            # user's question, non-blank and within the question's length, nor that the
            # turns before it are within the conversation limits: a 400 each
            # (tests/api/test_openai_compat.py).
            "include-name": "POST /v1/chat/completions",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
        },
    ],
}


# Built at import: schemathesis reads the schema when the tests are collected (its lazy
# fixture loader does not run under this pytest). Opening the app only creates an empty
# store; the documents and models are loaded by the fixture below, when the tests run.
_DATA = tempfile.TemporaryDirectory(prefix="lectern-schemathesis-")
# The rate limit is off, so the checks reach the routes rather than a 429; the limiter is
# tested in test_security*.py and test_forwarded.py.
APP = fake_app(Path(_DATA.name), rate_limit_per_minute=0)
# The schema the app serves at /openapi.json, read without starting the app: from_asgi
# runs its lifespan, whose warm-up thread then imports while the rest of the tests are
# collected, and CPython 3.11's ast module is not thread-safe (pytest's assertion
# rewriting raised "AST constructor recursion depth mismatch" on a fresh clone).
schema = schemathesis.openapi.from_dict(
    APP.openapi(), config=schemathesis.config.SchemathesisConfig.from_dict(CONFIG)
)
schema.app = APP
schema.location = "/openapi.json"


@pytest.fixture(scope="module", autouse=True)
def _ready():
    svc = APP.state.service
    svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])  # so answers cite, files exist
    svc.warm_up()
    svc.warm_up_generator()  # ready before the first case: /health is 200, not 503


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_server_keeps_its_openapi_promises(case):
    case.call_and_validate()
