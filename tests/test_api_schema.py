"""Property-based requests generated from the OpenAPI schema: no input makes a server error, and
status codes and error bodies conform to the schema (bounded: a few examples per operation and mode)."""

from __future__ import annotations

import pytest
import schemathesis
from helpers.api_assets import make_assets
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from api.app import create_app
from api.settings import Settings


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    assets = make_assets(str(tmp_path_factory.mktemp("schema_assets")))
    app = create_app(Settings(model_uri=assets["ckpt"], lid_uri=assets["lid"], eager_load=True,
                              admin_key="admin", max_audio_s=5.0))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(schema) -> list:
    return [r.ok() for r in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, mode):
    ops = _operations(api_schema)
    assert {op.path for op in ops} >= {"/v1/embeddings", "/v1/lid", "/v1/models", "/v1/models/reload",
                                       "/v1/units", "/v2/health/live", "/v2/health/ready", "/v2",
                                       "/v2/models", "/v2/models/{model}/ready", "/v2/models/{model}/infer"}
    exercised = set()
    for op in ops:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=6, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)
            if response.status_code >= 400 and response.text.startswith('{"error"'):
                err = response.json()["error"]
                if case.path.startswith("/v1"):
                    assert set(err) == {"code", "message"} and err["message"]
                else:  # the Open Inference Protocol's shape
                    assert isinstance(err, str) and err
            case.validate_response(response,
                                   checks=[checks.not_a_server_error, checks.status_code_conformance])

        try:
            run()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to negate (no parameters, no body)
            continue
        exercised.add(op.path)
    assert {"/v1/embeddings", "/v1/lid"} <= exercised
