"""The other six workflows at engine level, every path, against the real simulator.

Each scenario seeds the simulated printer's real fault; the scripted caller does (or
fails to do) the physical actions, and the engine's SSH re-checks decide the outcome."""

from __future__ import annotations

import pytest

from tests.workflows.harness import DONE, LOOK_AT_COUPON, Turn, commands, drive

LOOK = Turn(LOOK_AT_COUPON)


def with_scenario(name: str):
    return pytest.mark.parametrize("sim", [name], indirect=True)


# ------------------------------------------------------------------ paper_jam


@with_scenario("paper_jam")
async def test_paper_jam_cleared_resolves_after_recheck_and_test_print(call):
    cleared = Turn(DONE, lane_actions=("open_cover", "clear_jam", "close_cover"))
    outcome, prompts = await drive(
        call.run("paper_jam"), call.caller({"clear_jam": [cleared], "ask_quality": [LOOK]})
    )
    assert [p.step_id for p in prompts] == ["clear_jam", "ask_quality"]
    assert "remove" not in prompts[0].text or "torn pieces" in prompts[0].text
    assert outcome.kind == "resolved"
    assert commands(call.sim) == ["printer_status 4", "printer_status 4", "coup 4"]
    assert call.printer_status() == "Idle"
    assert call.ticket()["status"] == "resolved"


@with_scenario("paper_jam")
async def test_paper_jam_cover_left_open_is_caught_by_the_recheck(call):
    script = {
        "clear_jam": [Turn(DONE, lane_actions=("open_cover", "clear_jam"))],  # forgot the cover
        "close_cover": [Turn(DONE, lane_actions=("close_cover",))],
        "ask_quality": [LOOK],
    }
    outcome, prompts = await drive(call.run("paper_jam"), call.caller(script))
    assert [p.step_id for p in prompts] == ["clear_jam", "close_cover", "ask_quality"]
    assert outcome.kind == "resolved"


@with_scenario("paper_jam")
async def test_paper_jam_that_stays_jammed_escalates(call):
    script = {"clear_jam": [Turn(DONE)], "still_jammed": [Turn(DONE)]}
    outcome, prompts = await drive(call.run("paper_jam"), call.caller(script))
    assert (outcome.kind, outcome.step_id) == ("escalated", "escalate_still_jammed")
    assert [p.step_id for p in prompts] == ["clear_jam", "still_jammed", "still_jammed"]
    assert "coup 4" not in commands(call.sim)
    assert call.ticket()["status"] == "escalated"


# ------------------------------------------------------------------ printer_offline


@with_scenario("offline")
async def test_offline_printer_comes_back_after_cable_check_and_reset(call):
    script = {
        "ask_power_light": [Turn("Yes, the light is on.")],
        "check_cable": [Turn(DONE, lane_actions=("reseat_cable",))],
        "ask_quality": [LOOK],
    }
    outcome, prompts = await drive(call.run("printer_offline"), call.caller(script))
    assert [p.step_id for p in prompts] == ["ask_power_light", "check_cable", "ask_quality"]
    assert outcome.kind == "resolved"
    ran = commands(call.sim)
    assert ran[:2] == ["printer_status 4", "printer_reset 4"]
    assert ran[-1] == "coup 4" and set(ran[2:-1]) == {"printer_status 4"}
    assert call.ticket()["status"] == "resolved"


@with_scenario("offline")
async def test_offline_printer_power_light_off_path(call):
    script = {
        "ask_power_light": [Turn("No, the light is off.")],
        "power_on": [Turn(DONE, lane_actions=("power_on",))],
        "check_cable": [Turn(DONE, lane_actions=("reseat_cable",))],
        "ask_quality": [LOOK],
    }
    outcome, prompts = await drive(call.run("printer_offline"), call.caller(script))
    # power was fine, the link glitch stays: the engine sees it and moves on to the cable
    assert [p.step_id for p in prompts] == [
        "ask_power_light",
        "power_on",
        "check_cable",
        "ask_quality",
    ]
    assert outcome.kind == "resolved"


@with_scenario("offline")
async def test_unplugged_printer_still_offline_after_reset_escalates(call):
    call.printer().cable_connected = False
    script = {"ask_power_light": [Turn("Yes, the light is on.")], "check_cable": [Turn(DONE)]}
    outcome, _ = await drive(call.run("printer_offline"), call.caller(script))
    assert (outcome.kind, outcome.step_id) == ("escalated", "escalate_offline")
    assert "coup 4" not in commands(call.sim)
    notes = call.ticket()["resolution_notes"]
    assert "Reset the printer: started True" in notes
    assert "last_error E02 NO COMMUNICATION" in notes


# ------------------------------------------------------------------ print_quality


@with_scenario("print_quality")
async def test_faded_coupons_fixed_by_one_cleaning(call):
    outcome, prompts = await drive(call.run("print_quality"), call.caller({"ask_quality": [LOOK]}))
    assert [p.step_id for p in prompts] == ["ask_quality"]
    assert prompts[0].text.startswith("I'm cleaning the print head on lane 4")
    assert outcome.kind == "resolved"
    assert [p["quality"] for p in call.printer().prints] == ["clear"]
    assert commands(call.sim)[:2] == ["printer_status 4", "ink_clean 4"]


@with_scenario("print_quality")
async def test_still_faded_after_two_cleanings_escalates(call):
    call.printer().dirty_head_cleanings = 3
    outcome, prompts = await drive(call.run("print_quality"), call.caller({"ask_quality": [LOOK]}))
    assert [p.step_id for p in prompts] == ["ask_quality", "ask_quality"]
    assert (outcome.kind, outcome.step_id) == ("escalated", "escalate_quality")
    assert commands(call.sim).count("ink_clean 4") == 2
    assert [p["quality"] for p in call.printer().prints] == ["faded", "faded"]
    assert call.ticket()["status"] == "escalated"


# ------------------------------------------------------------------ printer_error


@with_scenario("printer_error")
async def test_hard_error_escalates_for_a_technician_with_what_was_tried(call):
    run = call.run("printer_error")
    outcome = await run.start()  # nothing to ask: read, reset, re-check, escalate
    assert (outcome.kind, outcome.step_id) == ("escalated", "escalate_technician")
    assert "reporting error E31 CUTTER FAULT" in outcome.text
    notes = call.ticket()["resolution_notes"]
    assert call.ticket()["status"] == "escalated"
    assert "Reset the printer: started True" in notes
    assert "Re-checked the printer after the reset: status Error" in notes
    assert commands(call.sim)[:2] == ["printer_status 4", "printer_reset 4"]
    assert "coup 4" not in commands(call.sim)


@with_scenario("printer_error")
async def test_soft_error_cleared_by_reset_resolves(call):
    call.printer().error_clears_on_reset = True
    outcome, prompts = await drive(call.run("printer_error"), call.caller({"ask_quality": [LOOK]}))
    assert [p.step_id for p in prompts] == ["ask_quality"]
    assert outcome.kind == "resolved"
    assert call.printer_status() == "Idle"


# ------------------------------------------------------------------ pc_unresponsive


RESTARTED = Turn(DONE, store_actions=("restart_pc",))


@with_scenario("pc_unresponsive")
async def test_hung_pc_restart_walkthrough_then_lanes_verified(call):
    script = {"ask_restart": [Turn("Sure, I'll restart it.")], "restart_pc": [RESTARTED]}
    outcome, prompts = await drive(call.run("pc_unresponsive"), call.caller(script))
    assert [p.step_id for p in prompts] == ["ask_restart", "restart_pc"]
    assert "can't reach the store's back-office computer" in prompts[0].text
    assert outcome.kind == "resolved"
    assert commands(call.sim) == ["lanes", "printer_status 4"]  # only after the restart
    assert call.ticket()["status"] == "resolved"
    assert "Tried to reach the store PC: failed" in call.ticket()["resolution_notes"]


@with_scenario("pc_unresponsive")
async def test_done_before_restarting_is_checked_then_waited_for(call):
    script = {
        "ask_restart": [Turn("Sure, I'll restart it.")],
        "restart_pc": [Turn(DONE)],  # claims it, has not done it
        "still_down": [RESTARTED],
    }
    outcome, prompts = await drive(call.run("pc_unresponsive"), call.caller(script))
    assert [p.step_id for p in prompts] == ["ask_restart", "restart_pc", "still_down"]
    assert outcome.kind == "resolved"


@with_scenario("pc_unresponsive")
async def test_pc_that_never_comes_back_escalates(call):
    script = {
        "ask_restart": [Turn("Sure, I'll restart it.")],
        "restart_pc": [Turn(DONE)],
        "still_down": [Turn(DONE)],
    }
    outcome, _ = await drive(call.run("pc_unresponsive"), call.caller(script))
    assert (outcome.kind, outcome.step_id) == ("escalated", "escalate_pc")
    assert call.sim.state.command_log == []
    assert call.ticket()["status"] == "escalated"


@with_scenario("pc_unresponsive")
async def test_poc_who_cannot_restart_now_gets_a_callback(call):
    script = {"ask_restart": [Turn("I can't do that right now, we're slammed.")]}
    outcome, _ = await drive(call.run("pc_unresponsive"), call.caller(script))
    assert outcome.kind == "callback"
    ticket = call.ticket()
    assert ticket["status"] == "in_progress"
    assert "callback booked" in ticket["notes"][-1]["text"]


@with_scenario("demo")
async def test_a_store_pc_that_hangs_mid_call_hands_over_to_the_restart_walkthrough(call):
    await call.http.post("/sim/stores/1/1042/actions", json={"action": "hang_pc"})
    script = {
        "ask_restart": [Turn("Sure, I'll restart it.")],
        "restart_pc": [RESTARTED],
        "ask_for_roll": [Turn("Yes, I have a roll right here.")],
        "load_paper": [Turn(DONE, lane_actions=("load_paper",))],
        "ask_quality": [LOOK],
    }
    run = call.run("KBA3813")
    outcome, prompts = await drive(run, call.caller(script))
    # once the PC answers again, lane 4 is still out of paper: back into KBA3813
    assert [(p.workflow, p.step_id) for p in prompts] == [
        ("pc_unresponsive", "ask_restart"),
        ("pc_unresponsive", "restart_pc"),
        ("KBA3813", "ask_for_roll"),
        ("KBA3813", "load_paper"),
        ("KBA3813", "ask_quality"),
    ]
    assert (outcome.kind, outcome.workflow) == ("resolved", "KBA3813")
    assert "handed over to pc_unresponsive" in run.tried
    assert call.ticket()["status"] == "resolved"


# ------------------------------------------------------------------ no_paper_stock


@with_scenario("no_paper_stock")
async def test_no_stock_confirmed_books_a_callback_with_notes(call):
    script = {"confirm_no_stock": [Turn("We don't have any, we're completely out.")]}
    outcome, _ = await drive(call.run("no_paper_stock"), call.caller(script))
    assert (outcome.kind, outcome.step_id) == ("callback", "supplies_on_the_way")
    ticket = call.ticket()
    assert ticket["status"] == "in_progress"
    assert "Supplies requested" in ticket["notes"][0]["text"]
    assert call.sim.state.command_log == []


@with_scenario("no_paper_stock")
async def test_a_found_roll_that_is_not_there_is_caught_by_the_recheck(call):
    script = {
        "confirm_no_stock": [Turn("Oh wait, I found one in the back.")],
        "load_paper": [Turn(DONE, lane_actions=("load_paper",))],  # the sim has no roll
        "reload_paper": [Turn("No, we're out of paper rolls.")],
    }
    caller = call.caller(script)
    outcome, prompts = await drive(call.run("no_paper_stock"), caller)
    assert caller.refused_actions == ["load_paper"]
    assert [(p.workflow, p.step_id) for p in prompts] == [
        ("no_paper_stock", "confirm_no_stock"),
        ("KBA3813", "load_paper"),
        ("KBA3813", "reload_paper"),
    ]
    assert (outcome.kind, outcome.workflow) == ("callback", "no_paper_stock")
