"""Load workflow files: one by name or path, or the whole shipped library (with its
handoffs between workflows checked), and the workflow for a ticket's issue type."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from agent.workflows.schema import Workflow, WorkflowError, parse_workflow

# Ticket issue types (store simulator / ticket API) -> the workflow that handles them.
ISSUE_WORKFLOWS = {
    "paper_out": "KBA3813",
    "paper_jam": "paper_jam",
    "printer_offline": "printer_offline",
    "print_quality": "print_quality",
    "printer_error": "printer_error",
    "pc_unresponsive": "pc_unresponsive",
    "no_paper_stock": "no_paper_stock",
}


def _library_dir():
    return resources.files("agent.workflows") / "library"


def builtin_workflows() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in _library_dir().iterdir() if p.name.endswith(".yaml")
    )


def load_workflow(name_or_path: str | Path) -> Workflow:
    """A validated workflow from a built-in name (`KBA3813`) or a YAML file path."""
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if text_name.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise WorkflowError(f"workflow file {path} does not exist")
        source, text = str(path), path.read_text(encoding="utf-8")
    else:
        builtin = _library_dir() / f"{text_name}.yaml"
        if not builtin.is_file():
            raise WorkflowError(
                f"unknown workflow {text_name!r}; built-in: {', '.join(builtin_workflows())}"
            )
        source, text = f"{text_name}.yaml", builtin.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{source}: not valid YAML: {exc}") from None
    workflow = parse_workflow(data, source)
    if not isinstance(name_or_path, Path) and not text_name.endswith((".yaml", ".yml")):
        if workflow.name != text_name:
            raise WorkflowError(f"{source}: name {workflow.name!r} does not match the file name")
    return workflow


def load_library(paths: list[str | Path] | None = None) -> dict[str, Workflow]:
    """The built-in workflows (or the given files), keyed by name; every handoff must
    name a workflow in the set and, with `at`, one of its steps."""
    items = paths if paths is not None else builtin_workflows()
    library: dict[str, Workflow] = {}
    for item in items:
        workflow = load_workflow(item)
        if workflow.name in library:
            raise WorkflowError(f"{workflow.source}: workflow {workflow.name!r} is defined twice")
        library[workflow.name] = workflow
    check_handoffs(library)
    return library


def check_handoffs(library: dict[str, Workflow]) -> None:
    for workflow in library.values():
        for step in workflow.handoffs():
            target = library.get(step.workflow or "")
            if target is None:
                raise WorkflowError(
                    f"{workflow.source}: step {step.id!r}: workflow: hands off to unknown "
                    f"workflow {step.workflow!r}; known: {', '.join(sorted(library))}"
                )
            if step.at is not None and step.at not in target.steps:
                raise WorkflowError(
                    f"{workflow.source}: step {step.id!r}: at: {target.name} has no step "
                    f"{step.at!r}"
                )


def workflow_for_issue(issue: str, library: dict[str, Workflow] | None = None) -> Workflow:
    name = ISSUE_WORKFLOWS.get(issue)
    if name is None:
        raise WorkflowError(
            f"no workflow for issue {issue!r}; known issues: {', '.join(sorted(ISSUE_WORKFLOWS))}"
        )
    return (library or load_library())[name]
