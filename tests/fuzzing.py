"""The schemathesis run every OpenAPI fuzz test shares: bounded, reproducible, strict.

    statuses = fuzz_operations(operations, base_url, headers, examples=25, timeout_s=30)

Each operation gets `examples` generated requests, valid and deliberately invalid ones,
the same on every run (derandomized: a failure reproduces); every response must be below
500 and match the documented schema. Returns how often each status code came back, so a
test can check the generator got past auth and validation into the handlers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance


def fuzz_operations(
    operations: Iterable[Any],
    base_url: str,
    headers: dict[str, str],
    *,
    examples: int,
    timeout_s: float,
) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=base_url, headers=headers, timeout=timeout_s)
                statuses[response.status_code] += 1
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )

            check()
    return statuses
