"""Workflow files: JSON-schema validation, graph checks, and the typed model.

A workflow file is validated in three passes, each error naming the file, the step and
the field: the top-level shape, each step against the schema of its kind, then the graph
(every branch target exists, every step is reachable, every step can still end the call).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator

TERMINAL_KINDS = ("resolve", "escalate", "callback")
STEP_KINDS = ("say", "ask", "wait", "tool", "handoff", *TERMINAL_KINDS)
# Names the engine fills from the call; anything else in a text must be a saved result.
CONTEXT_VARIABLES = frozenset({"lane", "chain", "store", "ticket_id", "poc_name", "store_name"})
# Classifier answers that are not branches: the engine handles them itself.
RESERVED_BRANCHES = frozenset({"unclear", "off_topic", "not_yet"})
# Between a branch's meaning and its examples in what the classifier is told.
EXAMPLES_MARK = " (e.g. "


class WorkflowError(ValueError):
    """A workflow file is invalid, or a run was used wrongly; says where and what."""


_ID = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
_TEXT = {"type": "string", "minLength": 1}
_COMMON = {
    "kind": {"enum": list(STEP_KINDS)},
    "note": _TEXT,
    "max_visits": {"type": "integer", "minimum": 1, "maximum": 20},
    "on_max_visits": _ID,
}


def _step_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_COMMON, **properties},
        "required": ["kind", *required],
        "additionalProperties": False,
        "dependentRequired": {"max_visits": ["on_max_visits"]},
    }


_BRANCH = {
    "type": "object",
    # examples: a few replies that mean this branch, shown to the reply classifier
    # (quoted inside `described`, so no double quotes in them).
    "properties": {
        "goto": _ID,
        "means": _TEXT,
        "examples": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "pattern": '^[^"]+$'},
            "maxItems": 6,
        },
    },
    "required": ["goto", "means"],
    "additionalProperties": False,
}
_BRANCHES = {
    "type": "object",
    "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$", "not": {"enum": sorted(RESERVED_BRANCHES)}},
    "additionalProperties": _BRANCH,
}
_MATCH_VALUE = {
    "anyOf": [
        {"type": ["string", "integer", "boolean", "null"]},
        {"type": "array", "items": {"type": ["string", "integer", "boolean", "null"]}},
    ]
}
_MATCH = {"type": "object", "minProperties": 1, "additionalProperties": _MATCH_VALUE}

STEP_SCHEMAS: dict[str, dict[str, Any]] = {
    "say": _step_schema({"text": _TEXT, "next": _ID}, ["text", "next"]),
    "ask": _step_schema(
        {
            "text": _TEXT,
            "reask": {"type": "array", "items": _TEXT},
            "branches": {**_BRANCHES, "minProperties": 2},
            "on_unclear": _ID,
        },
        ["text", "branches"],
    ),
    "wait": _step_schema(
        {
            "text": _TEXT,
            "reask": {"type": "array", "items": _TEXT},
            "done": _BRANCH,
            "branches": _BRANCHES,
            "on_unclear": _ID,
        },
        ["text", "done"],
    ),
    "tool": _step_schema(
        {
            "tool": _ID,
            "args": {
                "type": "object",
                "additionalProperties": {"type": ["string", "integer", "boolean"]},
            },
            "save_as": _ID,
            "settle": {
                "type": "object",
                "properties": {
                    "while": _MATCH,
                    "up_to_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
                    "every_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
                },
                "required": ["while", "up_to_s"],
                "additionalProperties": False,
            },
            "cases": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"when": _MATCH, "goto": _ID},
                    "required": ["when", "goto"],
                    "additionalProperties": False,
                },
            },
            "next": _ID,
            "on_error": _ID,
        },
        ["tool", "next", "on_error"],
    ),
    "handoff": _step_schema({"workflow": _TEXT, "at": _ID}, ["workflow"]),
    **{
        kind: _step_schema({"text": _TEXT, "summary": _TEXT}, ["text", "summary"])
        for kind in TERMINAL_KINDS
    },
}

WORKFLOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
        "title": _TEXT,
        "issue": _ID,
        "description": {"type": "string"},
        "start": _ID,
        "unclear_limit": {"type": "integer", "minimum": 0, "maximum": 5},
        "on_unclear": _ID,
        "steps": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _ID,
            "additionalProperties": {
                "type": "object",
                "properties": {"kind": {"type": "string"}},
                "required": ["kind"],
            },
        },
    },
    "required": ["name", "title", "start", "on_unclear", "steps"],
    "additionalProperties": False,
}


# ------------------------------------------------------------------ typed model


@dataclass(frozen=True)
class Branch:
    name: str
    goto: str
    means: str
    examples: tuple[str, ...] = ()

    @property
    def described(self) -> str:
        """What the classifier is told the branch means: `means`, with its examples."""
        if not self.examples:
            return self.means
        return self.means + EXAMPLES_MARK + "; ".join(f'"{e}"' for e in self.examples) + ")"


@dataclass(frozen=True)
class Settle:
    """Re-run the tool while its result matches `while_` (a printer Busy cleaning or Off
    Line resetting), bounded by `up_to_s`."""

    while_: dict[str, Any]
    up_to_s: float
    every_s: float = 0.5


@dataclass(frozen=True)
class Case:
    when: dict[str, Any]
    goto: str


@dataclass(frozen=True)
class Step:
    id: str
    kind: Literal["say", "ask", "wait", "tool", "handoff", "resolve", "escalate", "callback"]
    text: str | None = None
    note: str | None = None
    next: str | None = None
    reask: tuple[str, ...] = ()
    branches: tuple[Branch, ...] = ()  # ask: all; wait: `done` first, then the extras
    on_unclear: str | None = None
    tool: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    save_as: str | None = None
    settle: Settle | None = None
    cases: tuple[Case, ...] = ()
    on_error: str | None = None
    workflow: str | None = None
    at: str | None = None
    summary: str | None = None
    max_visits: int | None = None
    on_max_visits: str | None = None

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    @property
    def needs_reply(self) -> bool:
        return self.kind in ("ask", "wait")

    def branch(self, name: str) -> Branch | None:
        return next((b for b in self.branches if b.name == name), None)

    def targets(self) -> list[tuple[str, str]]:
        """(field, step id) for every step this one can go to."""
        out: list[tuple[str, str]] = []
        if self.next:
            out.append(("next", self.next))
        for index, branch in enumerate(self.branches):
            is_done = self.kind == "wait" and index == 0
            out.append(("done.goto" if is_done else f"branches.{branch.name}.goto", branch.goto))
        for index, case in enumerate(self.cases):
            out.append((f"cases[{index}].goto", case.goto))
        for name in ("on_error", "on_unclear", "on_max_visits"):
            if value := getattr(self, name):
                out.append((name, value))
        return out


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    start: str
    steps: dict[str, Step]
    on_unclear: str
    unclear_limit: int = 2
    issue: str | None = None
    description: str = ""
    source: str = "workflow"

    def step(self, step_id: str) -> Step:
        try:
            return self.steps[step_id]
        except KeyError:
            raise WorkflowError(f"{self.source}: no step {step_id!r}") from None

    def handoffs(self) -> list[Step]:
        return [s for s in self.steps.values() if s.kind == "handoff"]


# ------------------------------------------------------------------ validation


def parse_workflow(data: Any, source: str = "workflow") -> Workflow:
    """Validate a parsed YAML document and build the typed workflow."""
    if not isinstance(data, dict):
        raise WorkflowError(f"{source}: top level must be a mapping")
    _check(Draft202012Validator(WORKFLOW_SCHEMA), data, source, prefix=())
    steps: dict[str, Step] = {}
    for step_id, raw in data["steps"].items():
        kind = raw["kind"]
        if kind not in STEP_SCHEMAS:
            raise WorkflowError(
                f"{source}: step {step_id!r}: kind: unknown step kind {kind!r}; "
                f"expected one of {', '.join(STEP_KINDS)}"
            )
        _check(Draft202012Validator(STEP_SCHEMAS[kind]), raw, source, prefix=("steps", step_id))
        steps[step_id] = _build_step(step_id, raw)
    workflow = Workflow(
        name=data["name"],
        title=data["title"],
        start=data["start"],
        steps=steps,
        on_unclear=data["on_unclear"],
        unclear_limit=data.get("unclear_limit", 2),
        issue=data.get("issue"),
        description=data.get("description", ""),
        source=source,
    )
    check_graph(workflow)
    return workflow


def _check(validator: Draft202012Validator, data: Any, source: str, prefix: tuple) -> None:
    errors = sorted(
        validator.iter_errors(data), key=lambda e: (len(e.path), list(map(str, e.path)))
    )
    if not errors:
        return
    error = errors[0]
    path = [*prefix, *error.path]
    if len(path) >= 2 and path[0] == "steps":
        where = f"step {path[1]!r}: " + (".".join(map(str, path[2:])) or "step")
    else:
        where = ".".join(map(str, path)) or "top level"
    message = error.message
    if error.validator == "additionalProperties":
        message = message.replace("Additional properties are not allowed", "unknown field(s)")
    raise WorkflowError(f"{source}: {where}: {message}")


def _build_step(step_id: str, raw: dict[str, Any]) -> Step:
    branches = [
        Branch(n, b["goto"], b["means"], tuple(b.get("examples", ())))
        for n, b in (raw.get("branches") or {}).items()
    ]
    if raw["kind"] == "wait":
        done = raw["done"]
        branches.insert(
            0, Branch("done", done["goto"], done["means"], tuple(done.get("examples", ())))
        )
    settle = raw.get("settle")
    return Step(
        id=step_id,
        kind=raw["kind"],
        text=raw.get("text"),
        note=raw.get("note"),
        next=raw.get("next"),
        reask=tuple(raw.get("reask") or ()),
        branches=tuple(branches),
        on_unclear=raw.get("on_unclear"),
        tool=raw.get("tool"),
        args=dict(raw.get("args") or {}),
        save_as=raw.get("save_as"),
        settle=Settle(settle["while"], settle["up_to_s"], settle.get("every_s", 0.5))
        if settle
        else None,
        cases=tuple(Case(c["when"], c["goto"]) for c in raw.get("cases") or ()),
        on_error=raw.get("on_error"),
        workflow=raw.get("workflow"),
        at=raw.get("at"),
        summary=raw.get("summary"),
        max_visits=raw.get("max_visits"),
        on_max_visits=raw.get("on_max_visits"),
    )


def check_graph(workflow: Workflow) -> None:
    src, steps = workflow.source, workflow.steps
    if workflow.start not in steps:
        raise WorkflowError(f"{src}: start: goes to missing step {workflow.start!r}")
    if workflow.on_unclear not in steps:
        raise WorkflowError(f"{src}: on_unclear: goes to missing step {workflow.on_unclear!r}")
    ends = [s.id for s in steps.values() if s.terminal or s.kind == "handoff"]
    if not ends:
        raise WorkflowError(
            f"{src}: steps: no terminal step; every workflow must end in one of "
            f"{', '.join(TERMINAL_KINDS)} (or hand off to another workflow)"
        )
    if steps[workflow.on_unclear].kind not in (*TERMINAL_KINDS, "handoff"):
        raise WorkflowError(f"{src}: on_unclear: {workflow.on_unclear!r} must be a terminal step")
    saved = {s.save_as for s in steps.values() if s.save_as}
    for step in steps.values():
        for where, target in step.targets():
            if target not in steps:
                raise WorkflowError(
                    f"{src}: step {step.id!r}: {where}: goes to missing step {target!r}"
                )
        if step.kind == "wait":
            done = step.branches[0]
            if steps[done.goto].kind != "tool":
                # The caller's "done" is a claim; only a tool re-check may decide.
                raise WorkflowError(
                    f"{src}: step {step.id!r}: done.goto: must go to a tool step that "
                    f"re-checks, not {steps[done.goto].kind} step {done.goto!r}"
                )
            if any(b.name == "done" for b in step.branches[1:]):
                raise WorkflowError(f"{src}: step {step.id!r}: branches: 'done' is given twice")
        for name in ("text", "summary", "note"):
            _check_template(getattr(step, name), saved, f"{src}: step {step.id!r}: {name}")
        for name, value in step.args.items():
            if isinstance(value, str):
                if value.startswith("$"):
                    if value[1:] not in CONTEXT_VARIABLES:
                        raise WorkflowError(
                            f"{src}: step {step.id!r}: args.{name}: unknown context variable "
                            f"{value!r}; known: {', '.join(sorted(CONTEXT_VARIABLES))}"
                        )
                else:
                    _check_template(value, saved, f"{src}: step {step.id!r}: args.{name}")

    reachable = _reachable(workflow)
    unreachable = [s for s in steps if s not in reachable]
    if unreachable:
        raise WorkflowError(
            f"{src}: step {unreachable[0]!r}: unreachable from start step {workflow.start!r}"
        )
    can_end = _can_reach(workflow, set(ends))
    stuck = [s for s in steps if s not in can_end]
    if stuck:
        raise WorkflowError(
            f"{src}: step {stuck[0]!r}: can never reach a terminal step (a loop with no way out)"
        )


def _check_template(text: str | None, saved: set[str], where: str) -> None:
    if not text:
        return
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise WorkflowError(f"{where}: bad placeholder: {exc}") from None
    for name in fields:
        root = name.split("[", 1)[0].split(".", 1)[0]
        if root not in CONTEXT_VARIABLES and root not in saved:
            raise WorkflowError(
                f"{where}: unknown placeholder {{{name}}}; use a context variable "
                f"({', '.join(sorted(CONTEXT_VARIABLES))}) or a tool step's save_as name"
            )


def _edges(workflow: Workflow, step: Step) -> list[str]:
    out = [target for _, target in step.targets()]
    if step.needs_reply:
        out.append(step.on_unclear or workflow.on_unclear)
    return out


def _reachable(workflow: Workflow) -> set[str]:
    seen, todo = set(), [workflow.start]
    while todo:
        current = todo.pop()
        if current in seen or current not in workflow.steps:
            continue
        seen.add(current)
        todo.extend(_edges(workflow, workflow.steps[current]))
    return seen


def _can_reach(workflow: Workflow, ends: set[str]) -> set[str]:
    good = set(ends)
    changed = True
    while changed:  # fixed point over a finite graph
        changed = False
        for step in workflow.steps.values():
            if step.id not in good and any(t in good for t in _edges(workflow, step)):
                good.add(step.id)
                changed = True
    return good
