"""The conversation the LLM sees: the system prompt plus the last N exchanges."""

from __future__ import annotations

from collections import deque

from serving.base import Message


class ConversationHistory:
    """System prompt first (the stable, warmed prefix), then whole exchanges only, so
    dropping old turns never leaves a tool result without the call that asked for it."""

    def __init__(self, system_prompt: str, max_turns: int) -> None:
        self.system: Message = {"role": "system", "content": system_prompt}
        self._turns: deque[list[Message]] = deque(maxlen=max_turns)

    def add_turn(self, messages: list[Message]) -> None:
        """One exchange: the caller's message, any tool calls/results, the agent's reply."""
        if messages:
            self._turns.append(list(messages))

    def add_agent_line(self, text: str) -> None:
        """Agent speech outside an exchange (the greeting), so the LLM knows it was said."""
        if text:
            self.add_turn([{"role": "assistant", "content": text}])

    def messages(self, pending: list[Message] | None = None) -> list[Message]:
        out = [self.system]
        for turn in self._turns:
            out.extend(turn)
        return out + list(pending or [])
