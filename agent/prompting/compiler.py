"""Agent definition -> system prompt, with the stable prefix first.

The LLM's prefix cache only pays when the start of the prompt is byte-identical from one
request to the next, so the prompt is laid out from most to least stable:

1. the template's base prompt and the phone-call rules: the same for every agent built
   from that template;
2. the agent: its name and description, its active do/don't instructions by priority
   (highest first) and its active goals: the same on every turn of that agent's calls;
3. the domain knowledge retrieved for what the caller just said: changes per turn, so it
   comes last.

Compiling is pure and deterministic (same definition and query -> same text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.prompting.retrieval import BM25Index, Hit, KnowledgeEntry

# Part of the template section: every agent speaks on the phone.
PHONE_RULES = (
    "This is a phone call: answer in one to three short sentences of plain spoken "
    "language, with no lists, markdown, emoji or code. If you do not know something, say so."
)


@dataclass(frozen=True)
class Instruction:
    kind: Literal["do", "dont"]
    text: str
    priority: int = 0
    active: bool = True


@dataclass(frozen=True)
class Goal:
    name: str
    description: str | None = None
    success_criteria: Mapping[str, Any] = field(default_factory=dict)
    required_data: Sequence[str] = ()
    priority: int = 0
    active: bool = True


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    template_prompt: str
    description: str | None = None
    instructions: Sequence[Instruction] = ()
    goals: Sequence[Goal] = ()
    knowledge: Sequence[KnowledgeEntry] = ()


@dataclass(frozen=True)
class CompiledPrompt:
    template_prefix: str  # identical for all agents sharing the template
    stable_prefix: str  # template_prefix + the agent: identical on every turn
    knowledge: str  # retrieved for this turn; "" when nothing matched
    hits: tuple[Hit, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.stable_prefix}\n\n{self.knowledge}" if self.knowledge else self.stable_prefix


def _by_priority(items: Sequence[Any]) -> list[Any]:
    # Stable sort: equal priorities keep their given (creation) order.
    return sorted((i for i in items if i.active), key=lambda i: -i.priority)


def _instructions_section(instructions: Sequence[Instruction]) -> str:
    active = _by_priority(instructions)
    if not active:
        return ""
    lines = ["Instructions, most important first:"]
    lines += [_instruction_line(i) for i in active]
    return "\n".join(lines)


# A don't written as one ("Don't promise...", "Never guess") needs no "Never:" in front.
_NEGATED = re.compile(r"(?:don['’]?t|do\s+not|never|avoid|no)\b", re.IGNORECASE)


def _instruction_line(instruction: Instruction) -> str:
    text = instruction.text.strip()
    if instruction.kind == "do":
        return f"- Do: {text}"
    return f"- {text}" if _NEGATED.match(text) else f"- Never: {text}"


def _goal_line(goal: Goal) -> str:
    line = f"- {goal.name}"
    if goal.description:
        line += f": {goal.description.strip()}"
    if goal.required_data:
        line += f" Collect: {', '.join(str(d) for d in goal.required_data)}."
    if goal.success_criteria:
        criteria = "; ".join(f"{k}: {v}" for k, v in sorted(goal.success_criteria.items()))
        line += f" Done when {criteria}."
    return line


def _goals_section(goals: Sequence[Goal]) -> str:
    active = _by_priority(goals)
    if not active:
        return ""
    return "\n".join(["Goals of this call, most important first:", *map(_goal_line, active)])


def _knowledge_section(hits: Sequence[Hit]) -> str:
    if not hits:
        return ""
    lines = ["Knowledge that may help with the caller's last words:"]
    lines += [f"- ({h.entry.kind}) {h.entry.content.strip()}" for h in hits]
    return "\n".join(lines)


def template_prefix(template_prompt: str) -> str:
    return "\n\n".join(p for p in (template_prompt.strip(), PHONE_RULES) if p)


class PromptCompiler:
    """Compiles one agent's prompts; the stable part is built once, retrieval per turn."""

    def __init__(
        self,
        agent: AgentDefinition,
        *,
        top_k: int = 3,
        make_index: Callable[[Sequence[KnowledgeEntry]], Any] = BM25Index,
    ) -> None:
        """`make_index(entries)` builds the retriever: BM25 (default) or, for retrieval by
        meaning, `lambda e: EmbeddingIndex(e, embedder)`."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.agent = agent
        self._top_k = top_k
        self._template_prefix = template_prefix(agent.template_prompt)
        persona = f"You are {agent.name}."
        if agent.description:
            persona += f" {agent.description.strip()}"
        sections = [
            self._template_prefix,
            persona,
            _instructions_section(agent.instructions),
            _goals_section(agent.goals),
        ]
        self._stable_prefix = "\n\n".join(s for s in sections if s)
        self._index = make_index(agent.knowledge)

    def compile(self, query: str | None = None) -> CompiledPrompt:
        """The system prompt for a turn; `query` (the caller's words) picks the knowledge.
        With an embedding index this is blocking numpy work: call it in a thread."""
        hits = tuple(self._index.search(query, self._top_k)) if query else ()
        return CompiledPrompt(
            template_prefix=self._template_prefix,
            stable_prefix=self._stable_prefix,
            knowledge=_knowledge_section(hits),
            hits=hits,
        )
