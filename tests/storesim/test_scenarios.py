"""Scenarios: every built-in loads and shows its fault; custom YAML files work; mistakes
are reported with the file and the field."""

from __future__ import annotations

import pytest

from agent.storesim.scenario import ScenarioError, builtin_scenarios, load_scenario
from agent.storesim.state import SimState

EXPECTED_LANE_4 = {
    "demo": ("Off Line", "E07 PAPER OUT"),
    "paper_out": ("Off Line", "E07 PAPER OUT"),
    "paper_jam": ("Error", "E08 PAPER JAM"),
    "offline": ("Off Line", "E02 NO COMMUNICATION"),
    "print_quality": ("Idle", None),
    "printer_error": ("Error", "E31 CUTTER FAULT"),
    "pc_unresponsive": ("Idle", None),
    "no_paper_stock": ("Off Line", "E07 PAPER OUT"),
}


def test_every_workflow_fault_has_a_built_in_scenario():
    assert set(builtin_scenarios()) == set(EXPECTED_LANE_4)


@pytest.mark.parametrize("name", sorted(EXPECTED_LANE_4))
def test_built_in_scenario_sets_up_its_fault(name):
    state = SimState(load_scenario(name))
    printer = state.printer(1, 1042, 4).snapshot(state.clock())
    assert (printer["status"], printer["last_error"]) == EXPECTED_LANE_4[name]
    assert state.ticket("T1")["lane"] == 4
    assert state.store(1, 1042).pc_answers(state.clock()) is (name != "pc_unresponsive")


def test_a_scenario_file_seeds_stores_lanes_and_tickets(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\n"
        "timing: {reset_s: 1.5}\n"
        "stores:\n"
        "  - {chain: 7, store: 12, lanes: [{lane: 2, ink: Low}, {lane: 9, cover: Open}]}\n"
        "tickets:\n"
        "  - {id: X9, chain: 7, store: 12, lane: 9, issue: printer_offline}\n"
    )
    state = SimState(load_scenario(str(path)), seed=3)
    assert state.printer(7, 12, 9).status(state.clock()) == "Off Line"
    assert state.printer(7, 12, 2).print_quality() == "faded"
    assert state.ticket("X9")["printer_status"].endswith("E05 COVER OPEN")
    # The seed jitters timings a little, the same way every time.
    assert 1.35 <= state.timing.reset_s <= 1.65
    assert SimState(load_scenario(str(path)), seed=3).timing == state.timing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stores: [", "not valid YAML"),
        ("stores: []", "`stores` must be a non-empty list"),
        ("stores: [{chain: 1, store: 2, lanes: [{lane: 100}]}]", "`lane` must be an integer 1-99"),
        ("stores: [{chain: 1, store: 2, lanes: [{lane: 1, paper: Wet}]}]", "paper must be one of"),
        (
            "stores: [{chain: 1, store: 2, lanes: [{lane: 1}], shell: yes}]",
            "unknown field(s) shell",
        ),
        (
            "stores: [{chain: 1, store: 2, lanes: [{lane: 1}]}]\n"
            "tickets: [{id: A, chain: 1, store: 3, lane: 1, issue: paper_out}]",
            "store (1, 3) is not in `stores`",
        ),
    ],
)
def test_scenario_mistakes_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as excinfo:
        load_scenario(str(path))
    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


def test_missing_scenario_file_is_reported():
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario("/nonexistent/scenario.yaml")
