"""Store PC output parsers: real lines parse to typed results, anything else is an error."""

from __future__ import annotations

import pytest

from agent.tools import parsers
from agent.tools.errors import StoreOutputError


def test_status_with_no_error_has_none():
    status = parsers.parse_printer_status(
        "Lane 12 Printer: Idle Paper: Low Cover: Closed Ink: Low Last error: None\n", 12
    )
    assert status.ready and status.paper == "Low" and status.last_error is None


@pytest.mark.parametrize(
    "output",
    [
        "",
        "bash: printer_status: command not found",
        "Lane 4 Printer: Sleeping Paper: OK Cover: Closed Ink: OK Last error: None",
        "Lane 5 Printer: Idle Paper: OK Cover: Closed Ink: OK Last error: None",  # wrong lane
        "Lane 4 Printer: Idle Paper: OK Cover: Closed Ink: OK Last error: None\nextra",
    ],
)
def test_unexpected_status_output_is_an_error(output):
    with pytest.raises(StoreOutputError, match="printer_status"):
        parsers.parse_printer_status(output, 4)


def test_action_outputs():
    assert parsers.parse_ink_clean("Print head cleaning started on lane 4", 4).started
    assert parsers.parse_printer_reset("Lane 4 printer reset", 4).started
    refused = parsers.parse_test_print("ERROR lane 4 not ready: Busy", 4)
    assert not refused.started and refused.not_ready_status == "Busy"
    with pytest.raises(StoreOutputError, match="coup"):
        parsers.parse_test_print("Test coupon sent to lane 5", 4)


def test_lanes_output():
    assert parsers.parse_lanes("1 Idle\n4 Off Line\n") == [
        parsers.LaneSummary(1, "Idle"),
        parsers.LaneSummary(4, "Off Line"),
    ]
    with pytest.raises(StoreOutputError, match="lanes"):
        parsers.parse_lanes("1 Idle\nsegfault")
    with pytest.raises(StoreOutputError, match="no lanes"):
        parsers.parse_lanes("")
