"""Troubleshooting workflows: YAML state machines that decide the procedure of a call.

The engine, not the LLM, picks the next step; the LLM only classifies the caller's
reply into the step's named branches and phrases what the engine says.
"""

from agent.workflows.engine import (
    Classifier,
    OffTopicHook,
    Outcome,
    Phraser,
    Prompt,
    TranscriptEntry,
    WorkflowRun,
)
from agent.workflows.loader import load_library, load_workflow, workflow_for_issue
from agent.workflows.schema import Workflow, WorkflowError

__all__ = [
    "Classifier",
    "OffTopicHook",
    "Outcome",
    "Phraser",
    "Prompt",
    "TranscriptEntry",
    "Workflow",
    "WorkflowError",
    "WorkflowRun",
    "load_library",
    "load_workflow",
    "workflow_for_issue",
]
