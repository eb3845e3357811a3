"""Schema-generated requests against the live server's own OpenAPI (issue 13, hostile tests).

Schemathesis reads ``/openapi.json`` from ``python -m service`` on a loopback port and sends
requests generated from it to every operation, schema-conforming and not: every answer must
be one the schema documents (status, content type, headers, body), and none a 5xx other than
the documented 503 refusals. Bounded: a few dozen examples per operation, no shrinking past a
first failure, and a wall-clock bound for the whole run. By hand, longer:

    SCHEMATHESIS_EXAMPLES=1000 SCHEMATHESIS_SECONDS=600 .venv/bin/pytest -s \
        tests/service/test_hostile_schema.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (dev)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_support import serving  # noqa: E402

pytestmark = pytest.mark.process
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "30"))
TIME_BUDGET_S = float(os.environ.get("SCHEMATHESIS_SECONDS", "60"))
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
# Not negative_data_rejection: Schemathesis cannot send some schema-violating multipart bodies
# as such (an array for the text field boxes goes out as no field at all, a valid request);
# schema-violating requests are still sent, and their answers still checked as above.


@pytest.fixture(scope="module")
def live_schema(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serving(
        tmp_path_factory.mktemp("schemathesis"),
        model_path=tiny_model,
        detector="none",
        max_image_bytes=200_000,
        max_image_pixels=1_000_000,
        max_faces=8,
        max_batch_size=8,
    ) as service:
        yield schemathesis.openapi.from_url(f"{service.url}/openapi.json")


def test_every_answer_is_documented_and_none_is_a_server_error(live_schema: Any) -> None:
    started = time.monotonic()
    failures: list[str] = []
    calls = 0
    for result in live_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: Any) -> None:
                nonlocal calls
                if time.monotonic() - started > TIME_BUDGET_S:
                    return
                calls += 1
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # no invalid request exists (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as e:  # one operation's failure; the others still run
                failures.append(f"{operation.label} ({mode.value}): {e}")
    print(f"schemathesis: {calls} requests in {time.monotonic() - started:.1f} s")  # noqa: T201
    assert calls > 0
    assert not failures, "\n\n".join(failures)
