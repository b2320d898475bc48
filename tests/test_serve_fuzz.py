"""Property-based fuzzing of a live `seq2seq serve` from its own OpenAPI schema (schemathesis).

For every generated request, valid or not: no 5xx, every error is a small JSON
``{"error": ...}``, and answers match the schema; afterwards the server still
translates. Small limits keep each request quick, so the examples run in well
under a minute.
"""

import json

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings, strategies  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from .test_serve import start_server, stop_server, translate  # noqa: E402

pytestmark = pytest.mark.slow  # needs the trained toy model

EXAMPLES = 200  # per operation, valid and invalid mixed: about 10 s on one core


@pytest.fixture(scope="module")
def fuzzed(toy_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    process, url = start_server(
        toy_checkpoint,
        log,
        "--max-lines",
        "8",
        "--max-chars",
        "400",
        "--max-beam",
        "4",
        "--beam",
        "2",
    )
    yield url
    assert stop_server(process) == 0, log.read_text()


def errors_are_small_json(ctx, response, case) -> None:
    """A 4xx or 5xx answers ``{"error": "..."}`` as JSON, a few KB at most."""
    if response.status_code < 400:
        return
    assert response.headers["content-type"][0].startswith("application/json"), response.headers
    answer = json.loads(response.content)
    assert set(answer) == {"error"} and isinstance(answer["error"], str), answer
    assert len(response.content) < 4096, len(response.content)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    errors_are_small_json,
]


def test_no_generated_request_gets_a_5xx_or_a_non_json_error(fuzzed):
    """Valid and invalid requests for every operation of the server's own /openapi.json.

    (schemathesis's ``from_fixture`` + ``parametrize`` reads a pytest internal that pytest 9
    removed, so the operations' Hypothesis strategies are driven here directly.)
    """
    schema = schemathesis.openapi.from_url(fuzzed + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/translate", "/health", "/ready", "/metrics"}
    for operation in operations:
        cases = strategies.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,  # no saved examples: every run draws afresh
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            case.call_and_validate(checks=CHECKS, timeout=60)

        fuzz()


any_character = strategies.one_of(
    strategies.characters(exclude_categories=()),  # all of Unicode
    strategies.characters(categories=["Cs", "Cc"]),  # surrogates and control characters, often
)
any_text = strategies.text(any_character, max_size=80)


@given(lines=strategies.lists(any_text, max_size=10), beam=strategies.integers(0, 5))
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_unicode_even_lone_surrogates_gets_translations_or_a_4xx(fuzzed, lines, beam):
    """Lines from all of Unicode, surrogates and control characters included (the schema's
    strings leave those out): each request gets exactly the answer its limits say."""
    status, answer = translate(fuzzed, {"text": lines, "beam": beam})
    if len(lines) > 8 or sum(map(len, lines)) > 400:
        assert status == 413, answer
    elif not 1 <= beam <= 4:
        assert status == 422, answer
    elif any("\ud800" <= c <= "\udfff" for line in lines for c in line):
        assert status == 400 and "lone surrogate" in answer["error"], answer
    else:
        assert status == 200 and len(answer["translations"]) == len(lines), answer


def test_the_server_still_translates_after_fuzzing(fuzzed):
    assert translate(fuzzed, {"text": ["a b c"], "beam": 2}) == (
        200,
        {"translations": ["c b a"]},
    )
