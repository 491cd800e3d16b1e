"""Which agent answers an incoming call: the user part of the dialled URI picks it.

    directory = AgentDirectory(engines, settings.session, control_plane)
    choice = await directory.choose("sip:appointment-scheduler@127.0.0.1:5060")
    prepared = await directory.prepare(choice)   # lines in its voice, its prefix warmed

`sip:<slug>@host` finds the control plane's agent whose name, as a slug, is <slug>
("Appointment Scheduler" -> appointment-scheduler). `sip:agent@...`, an unknown name, or
no control plane: the default agent of the settings (Maya).

An agent's call options come from its definition: the system prompt compiled by
agent.prompting (template, persona, do/don't instructions by priority, goals, then its
domain knowledge), its greeting (`custom_settings.greeting`) and its voice (`voice_id`,
else the template's `voice_config.voice`). The definition is read on every call (a few
indexed queries) so an edit made through the API or `agents apply` applies to the next
call; what is slow to make (pre-synthesized lines in that voice, the warmed prompt
prefix) is cached by a fingerprint of the result, so an unchanged agent costs nothing
and a changed one is prepared afresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from agent.audio import TurnDetector
from agent.prompting.compiler import AgentDefinition, PromptCompiler
from agent.session import Engines, PreparedSession, SessionOptions, prepare_session
from agent.session.fallback import FallbackLines
from serving.base import Tool
from telephony.interface import SAMPLE_RATE

log = logging.getLogger(__name__)

# User parts that mean "whoever answers by default" (our own Contact is sip:agent@...).
DEFAULT_USERS = frozenset({"", "agent"})
# All of an agent's knowledge goes into its (stable) prompt, up to these bounds; retrieval
# per turn (agent.prompting.retrieval) is for agents whose knowledge outgrows them.
MAX_KNOWLEDGE_ENTRIES = 24
MAX_KNOWLEDGE_CHARS = 6000
LOOKUP_TIMEOUT_S = 5.0  # a slow database must not keep a ringing caller waiting
WARM_TIMEOUT_S = 60.0
_CACHE_MAX = 32

_TRUNCATION_WARNED: set[tuple[str, int]] = set()
_URI_USER = re.compile(r"^(?:sips?|tel):(?:([^@;>?]*)@)?", re.IGNORECASE)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """'Appointment Scheduler' -> 'appointment-scheduler' (also for a dialled user part)."""
    return _NOT_SLUG.sub("-", name.lower()).strip("-")


def uri_user(uri: str) -> str:
    """The user part of a SIP URI ('' when there is none), percent-decoded."""
    match = _URI_USER.match(uri.strip().strip("<>"))
    return unquote(match.group(1) or "") if match else ""


@dataclass(frozen=True)
class AgentChoice:
    """The agent answering a call and the session options made from its definition."""

    slug: str  # what was dialled, as a slug ("" or "agent": the default)
    agent_id: int | None  # control-plane id; None: the default agent of the settings
    options: SessionOptions
    voice_note: str | None = None  # why the agent's own voice is not used, if it is not

    def describe(self) -> str:
        """For the call record: which agent answered, in which voice (and why not its own)."""
        text = f"{self.options.agent_name} (agent {self.agent_id}, dialled {self.slug!r})"
        text += f", voice {self.options.voice or 'default'}"
        return f"{text}; {self.voice_note}" if self.voice_note else text

    @property
    def fingerprint(self) -> str:
        """Same text, greeting and voice -> same prepared lines and warmed prefix."""
        o = self.options
        key = "\x00".join((o.agent_name, o.system_prompt, o.greeting or "", o.voice or ""))
        return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LoadedAgent:
    """An agent as stored: its compiled-prompt inputs and its call settings."""

    id: int
    definition: AgentDefinition
    voice: str | None
    custom_settings: Mapping[str, Any]


def knowledge_section(definition: AgentDefinition) -> str:
    """The agent's domain knowledge, bounded, after the stable prefix."""
    lines: list[str] = []
    used = 0
    for entry in list(definition.knowledge)[:MAX_KNOWLEDGE_ENTRIES]:
        line = f"- ({entry.kind}) {entry.content.strip()}"
        if used + len(line) > MAX_KNOWLEDGE_CHARS:
            break
        lines.append(line)
        used += len(line)
    dropped = (definition.name, len(definition.knowledge) - len(lines))
    if dropped[1] > 0 and dropped not in _TRUNCATION_WARNED:  # once, not on every call
        if len(_TRUNCATION_WARNED) >= _CACHE_MAX:
            _TRUNCATION_WARNED.clear()
        _TRUNCATION_WARNED.add(dropped)
        log.warning(
            "agent %r: %d of %d knowledge entries fit in its prompt; the rest are left out",
            definition.name,
            len(lines),
            len(definition.knowledge),
        )
    return "\n".join(["What you know:", *lines]) if lines else ""


def system_prompt(definition: AgentDefinition) -> str:
    """Template + persona + instructions + goals (the compiler's stable prefix), then
    the agent's knowledge: the whole prompt is the same on every call of this agent."""
    stable = PromptCompiler(definition).compile().stable_prefix
    knowledge = knowledge_section(definition)
    return f"{stable}\n\n{knowledge}" if knowledge else stable


def default_greeting(name: str) -> str:
    return f"Hi, this is {name}. How can I help you today?"


def session_options(loaded: LoadedAgent, base: SessionOptions) -> SessionOptions:
    """`base` (the settings' timeouts and limits) with the agent's persona and voice."""
    greeting = loaded.custom_settings.get("greeting")
    if not isinstance(greeting, str) or not greeting.strip():
        greeting = default_greeting(loaded.definition.name)
    return dataclasses.replace(
        base,
        agent_name=loaded.definition.name,
        system_prompt=system_prompt(loaded.definition),
        greeting=greeting.strip(),
        voice=loaded.voice or base.voice,
    )


async def load_agent(session: Any, slug: str) -> LoadedAgent | None:
    """The agent whose name slugifies to `slug`, or None (lowest id wins a tie)."""
    from sqlalchemy import select

    from agent.controlplane.models import AgentConfig, AgentTemplate
    from agent.prompting.loader import load_agent_definition

    rows = (await session.execute(select(AgentConfig.id, AgentConfig.name))).all()
    ids = sorted(agent_id for agent_id, name in rows if slugify(name) == slug)
    if not ids:
        return None
    agent = await session.get(AgentConfig, ids[0])
    voice = agent.voice_id
    if voice is None and agent.template_id is not None:
        template = await session.get(AgentTemplate, agent.template_id)
        configured = (template.voice_config or {}).get("voice") if template else None
        voice = configured if isinstance(configured, str) and configured else None
    return LoadedAgent(
        id=agent.id,
        definition=await load_agent_definition(session, agent.id),
        voice=voice,
        custom_settings=dict(agent.custom_settings or {}),
    )


class AgentDirectory:
    """Chooses and prepares the agent for each incoming call (see the module doc)."""

    def __init__(
        self,
        engines: Engines | Sequence[Any],
        default: SessionOptions,
        control_plane: Any | None = None,
        *,
        tools: Sequence[Tool] = (),
    ) -> None:
        self.engines = Engines(*engines)
        self.default = AgentChoice(slug="agent", agent_id=None, options=default)
        self._control_plane = control_plane  # a ControlPlaneStore, or None: default only
        self._tools = list(tools)
        self._lines: OrderedDict[str, FallbackLines] = OrderedDict()
        self._last: OrderedDict[str, AgentChoice] = OrderedDict()  # by slug, for outages
        self._warmed: str | None = None  # fingerprint whose prefix the LLM holds now
        self._warned: set[str] = set()

    async def choose(self, uri: str) -> AgentChoice:
        """The agent for a call to `uri`. Never raises: a control plane that is down
        gives the last choice made for that name, else the default agent."""
        slug = slugify(uri_user(uri))
        if self._control_plane is None or slug in DEFAULT_USERS:
            return self.default
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                async with self._control_plane.session() as session:
                    loaded = await load_agent(session, slug)
        except Exception as exc:  # database down or slow: answer anyway
            fallback = self._last.get(slug, self.default)
            log.warning(
                "agent lookup for %r failed (%s: %s); answering as %s",
                slug,
                type(exc).__name__,
                exc,
                fallback.options.agent_name,
            )
            return fallback
        if loaded is None:
            log.info("no agent named %r; answering as %s", slug, self.default.options.agent_name)
            return self.default
        choice = self._with_usable_voice(
            AgentChoice(slug, loaded.id, session_options(loaded, self.default.options))
        )
        self._remember(self._last, slug, choice)
        return choice

    async def prepare(self, choice: AgentChoice) -> PreparedSession:
        """Lines in the agent's voice and its prompt prefix warmed (cached by fingerprint);
        a fresh turn detector every call (it holds the caller's audio state)."""
        key = choice.fingerprint
        lines = self._lines.get(key)
        if lines is None:
            prepared = await prepare_session(self.engines, choice.options, self._tools)
            self._remember(self._lines, key, prepared.lines)
            self._warmed = key
            return prepared
        self._lines.move_to_end(key)
        if self._warmed != key:  # another agent's prefix was warmed since
            await self._warm(choice.options)
            self._warmed = key
        detector = await asyncio.to_thread(
            TurnDetector.from_models, SAMPLE_RATE, choice.options.turn
        )
        return PreparedSession(lines, detector)

    def _with_usable_voice(self, choice: AgentChoice) -> AgentChoice:
        """Keep the agent's voice if the TTS has it; otherwise the default voice, said
        once in the log, rather than a TTS error on every sentence of the call."""
        voice = choice.options.voice
        if voice is None or voice == self.default.options.voice:
            return choice
        try:
            available = set(self.engines.tts.voices())
        except Exception:  # cannot tell: let the TTS decide
            return choice
        if voice in available:
            return choice
        note = (
            f"voice {voice!r} of agent {choice.options.agent_name!r} is not loaded in the "
            f"TTS ({self.engines.tts.name}); using the default voice"
        )
        if note not in self._warned:
            if len(self._warned) >= _CACHE_MAX:
                self._warned.clear()
            self._warned.add(note)
            log.warning("%s", note)
        options = dataclasses.replace(choice.options, voice=self.default.options.voice)
        return dataclasses.replace(choice, options=options, voice_note=note)

    async def _warm(self, options: SessionOptions) -> None:
        warm = getattr(self.engines.llm, "warm", None)
        if not callable(warm):
            return
        system = [{"role": "system", "content": options.system_prompt}]
        try:
            await asyncio.wait_for(warm(system, self._tools or None), WARM_TIMEOUT_S)
        except Exception:  # a cold prefix only costs latency: never refuse the call for it
            log.warning("warming the prefix of %s failed", options.agent_name, exc_info=True)

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_MAX:
            cache.popitem(last=False)
