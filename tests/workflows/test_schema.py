"""Workflow files are validated with errors naming the file, the step and the field."""

from __future__ import annotations

import textwrap

import pytest

from agent.workflows import WorkflowError, load_library, load_workflow, workflow_for_issue
from agent.workflows.loader import ISSUE_WORKFLOWS

SEVEN = {
    "KBA3813",
    "paper_jam",
    "printer_offline",
    "print_quality",
    "printer_error",
    "pc_unresponsive",
    "no_paper_stock",
}

VALID = """
name: tiny
title: Tiny
start: ask
on_unclear: give_up
steps:
  ask:
    kind: ask
    text: Is it fixed?
    branches:
      fixed: {goto: done, means: it is fixed}
      broken: {goto: give_up, means: it is not}
  done:
    kind: resolve
    text: Great.
    summary: Fixed.
  give_up:
    kind: escalate
    text: Passing you on.
    summary: Not fixed.
"""


def write(tmp_path, text: str, name: str = "tiny.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_library_holds_the_seven_workflows_one_per_issue():
    library = load_library()
    assert set(library) == SEVEN
    for issue, name in ISSUE_WORKFLOWS.items():
        workflow = workflow_for_issue(issue, library)
        assert workflow.name == name and workflow.issue == issue
        kinds = {step.kind for step in workflow.steps.values()}
        assert kinds & {"resolve", "escalate", "callback"}


def test_a_valid_file_loads(tmp_path):
    workflow = load_workflow(write(tmp_path, VALID))
    assert workflow.start == "ask"
    assert [b.name for b in workflow.step("ask").branches] == ["fixed", "broken"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("kind: resolve\n    text: Great.", "kind: dance\n    text: Great."),
            "tiny.yaml: step 'done': kind: unknown step kind 'dance'; expected one of say, ask",
        ),
        (
            ("{goto: done, means: it is fixed}", "{goto: nowhere, means: it is fixed}"),
            "tiny.yaml: step 'ask': branches.fixed.goto: goes to missing step 'nowhere'",
        ),
        (
            (
                "  give_up:\n",
                "  orphan:\n    kind: say\n    text: Hi.\n    next: done\n  give_up:\n",
            ),
            "tiny.yaml: step 'orphan': unreachable from start step 'ask'",
        ),
        (
            ("    text: Is it fixed?\n", "    text: Is it fixed?\n    colour: red\n"),
            "tiny.yaml: step 'ask': step: unknown field(s) ('colour' was unexpected)",
        ),
        (
            ("    text: Is it fixed?\n", "    text: Is it fixed on lane {lane} at {shop}?\n"),
            "tiny.yaml: step 'ask': text: unknown placeholder {shop}",
        ),
        (
            ("start: ask", "start: begin"),
            "tiny.yaml: start: goes to missing step 'begin'",
        ),
        (
            ("      broken: {goto: give_up, means: it is not}\n", ""),
            "tiny.yaml: step 'ask': branches: {'fixed':",
        ),
        (
            ("title: Tiny\n", ""),
            "tiny.yaml: top level: 'title' is a required property",
        ),
    ],
)
def test_mistakes_are_reported_with_file_step_and_field(tmp_path, change, message):
    old, new = change
    assert old in VALID
    with pytest.raises(WorkflowError) as excinfo:
        load_workflow(write(tmp_path, VALID.replace(old, new)))
    assert message in str(excinfo.value)


def test_a_workflow_without_a_terminal_step_is_refused(tmp_path):
    text = """
    name: spin
    title: Spin
    start: a
    on_unclear: a
    steps:
      a: {kind: say, text: Hi., next: a}
    """
    with pytest.raises(WorkflowError) as excinfo:
        load_workflow(write(tmp_path, text, "spin.yaml"))
    assert "spin.yaml: steps: no terminal step; every workflow must end in one of resolve" in str(
        excinfo.value
    )


def test_a_loop_with_no_way_out_is_refused(tmp_path):
    text = VALID.replace(
        "  done:\n    kind: resolve\n    text: Great.\n    summary: Fixed.\n",
        "  done:\n    kind: say\n    text: Great.\n    next: spin\n"
        "  spin:\n    kind: say\n    text: Again.\n    next: done\n",
    )
    with pytest.raises(WorkflowError, match="step 'done': can never reach a terminal step"):
        load_workflow(write(tmp_path, text))


def test_unclear_replies_must_end_in_a_terminal_step(tmp_path):
    with pytest.raises(WorkflowError, match=r"tiny\.yaml: on_unclear: 'ask' must be a terminal"):
        load_workflow(write(tmp_path, VALID.replace("on_unclear: give_up", "on_unclear: ask")))
    with pytest.raises(WorkflowError, match="on_unclear: goes to missing step 'gone'"):
        load_workflow(write(tmp_path, VALID.replace("on_unclear: give_up", "on_unclear: gone")))


def test_a_callers_done_must_lead_to_a_tool_recheck(tmp_path):
    text = VALID.replace(
        "    kind: ask\n    text: Is it fixed?\n    branches:\n"
        "      fixed: {goto: done, means: it is fixed}\n"
        "      broken: {goto: give_up, means: it is not}\n",
        "    kind: wait\n    text: Tell me when done.\n    done: {goto: done, means: done}\n",
    )
    with pytest.raises(WorkflowError) as excinfo:
        load_workflow(write(tmp_path, text))
    assert "step 'ask': done.goto: must go to a tool step that re-checks" in str(excinfo.value)


def test_a_tool_step_must_declare_its_error_branch(tmp_path):
    text = VALID.replace(
        "start: ask",
        "start: check",
    ).replace(
        "steps:\n",
        "steps:\n  check:\n    kind: tool\n    tool: check_printer_status\n"
        "    args: {lane: $lane}\n    next: ask\n",
    )
    with pytest.raises(WorkflowError, match="step 'check': step: 'on_error' is a required"):
        load_workflow(write(tmp_path, text))
    bad_var = text.replace("    next: ask\n", "    next: ask\n    on_error: give_up\n").replace(
        "$lane", "$caller_text"
    )
    with pytest.raises(
        WorkflowError, match=r"args\.lane: unknown context variable '\$caller_text'"
    ):
        load_workflow(write(tmp_path, bad_var))


def test_handoffs_must_name_a_workflow_in_the_library(tmp_path):
    text = VALID.replace("{goto: give_up, means: it is not}", "{goto: other, means: it is not}")
    text = text.replace("  done:\n", "  other:\n    kind: handoff\n    workflow: nope\n  done:\n")
    path = write(tmp_path, text)
    with pytest.raises(
        WorkflowError, match="step 'other': workflow: hands off to unknown workflow"
    ):
        load_library([path])


def test_unknown_names_bad_yaml_and_missing_files_are_clear(tmp_path):
    with pytest.raises(WorkflowError, match="unknown workflow 'KBA9999'; built-in: KBA3813"):
        load_workflow("KBA9999")
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "missing.yaml")
    with pytest.raises(WorkflowError, match=r"broken\.yaml: not valid YAML"):
        load_workflow(write(tmp_path, "name: [unclosed\n", "broken.yaml"))
    with pytest.raises(WorkflowError, match="no workflow for issue 'fire'"):
        workflow_for_issue("fire")
