"""The `agent:` and `sip:` sections of the serve config, beside the serving sections.

One YAML file configures the whole stack; serving.factory owns (and strictly checks)
its own sections, so this module takes ours out before handing the rest over.

    sip:    {bind: "127.0.0.1:5060", rtp_ports: "20000-30000", media_timeout_s: 30}
    agent:  {greeting: "...", silence_prompt_s: 10, max_call_s: 1800,
             turn: {min_speech_s: 0.3}, ...}   # any scalar SessionOptions field
    stores: {api_url: "http://127.0.0.1:8100", token_file: ~/.trunkline/store-token,
             ssh_user: catalina, known_hosts: ~/.trunkline/storesim/known_hosts,
             transfer_uri: "sip:desk@pbx", phrase_with_llm: false, ...}   # StoreSettings

Defaults of `stores:` point at the store simulator (`trunkline store-sim`), whose
token is `dev-token`; production sets the real systems' URLs and a token file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.audio import TurnOptions
from agent.session import SessionOptions
from serving.base import BadInput
from serving.factory import ConfigError, ServingConfig, parse_config

DEFAULT_SIP = ("127.0.0.1", 5060)
DEFAULT_RTP_PORTS = (20000, 30000)
# SessionOptions fields an operator may set from YAML (the rest are code-level)
_OPTION_FIELDS = {
    f.name
    for f in dataclasses.fields(SessionOptions)
    if f.name not in ("fallback", "turn", "backchannels")
}
_TURN_FIELDS = {f.name for f in dataclasses.fields(TurnOptions)}


@dataclass(frozen=True)
class SipSettings:
    bind: tuple[str, int] = DEFAULT_SIP
    rtp_ports: tuple[int, int] = DEFAULT_RTP_PORTS
    media_timeout_s: float = 30.0
    advertise: str | None = None  # host peers reach us at (NAT, or a 0.0.0.0 bind)


@dataclass(frozen=True)
class StoreSettings:
    """Where the store systems are (outbound ticket calls, workflow tools) and how the
    workflow-directed calls behave."""

    api_url: str = "http://127.0.0.1:8100"  # StoreMaster
    tickets_url: str | None = None  # ticket API; None: same as api_url
    # Bearer token: `token`, else `token_file`, else $TRUNKLINE_STORE_API_TOKEN(_FILE),
    # else the simulator's dev token (only sensible against the simulator).
    token: str | None = None
    token_file: str | None = None
    ssh_user: str = "catalina"
    known_hosts: str = "~/.trunkline/storesim/known_hosts"
    ssh_connect_timeout_s: float = 10.0
    ssh_command_timeout_s: float = 15.0
    transfer_uri: str | None = None  # escalations go here; None: a callback is booked
    ring_timeout_s: float = 30.0  # outbound: how long the store's phone may ring
    # The LLM rewrites each step in Maya's words (costs seconds per turn on CPU).
    phrase_with_llm: bool = False
    phrase_timeout_s: float = 4.0
    # Off-topic questions get a one-sentence LLM answer; off: a fixed "let me come back
    # to that" (the 0.5B CPU model's answers were seen to claim things it cannot know).
    off_topic_with_llm: bool = False
    off_topic_timeout_s: float = 4.0

    @property
    def tickets_base(self) -> str:
        return self.tickets_url or self.api_url

    def api_token(self) -> str:
        """The bearer token (never logged); the simulator's when nothing is configured."""
        from agent.tools.api_clients import load_token
        from agent.tools.errors import ApiAuthError

        try:
            return load_token(self.token, self.token_file)
        except ApiAuthError:
            if self.token_file:  # a configured file that cannot be read is an error
                raise
            return DEV_STORE_TOKEN


DEV_STORE_TOKEN = "dev-token"  # agent/storesim's default; never a production secret
_STORE_FIELDS = {f.name: f for f in dataclasses.fields(StoreSettings)}


@dataclass(frozen=True)
class AgentSettings:
    sip: SipSettings = field(default_factory=SipSettings)
    session: SessionOptions = field(default_factory=SessionOptions)
    stores: StoreSettings = field(default_factory=StoreSettings)


def parse_host_port(text: str, default_port: int = 5060) -> tuple[str, int]:
    """'127.0.0.1:5060' -> ('127.0.0.1', 5060); ConfigError when malformed."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep:
        host, port = str(text).strip(), str(default_port)
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_port_range(text: str | Any) -> tuple[int, int]:
    """'16100-16199' -> (16100, 16199); ConfigError when malformed."""
    low, sep, high = str(text).strip().partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ConfigError(f"expected a port range LOW-HIGH, got {text!r}")
    first, last = int(low), int(high)
    if not 1024 <= first < last <= 65535:
        raise ConfigError(f"port range must be 1024 <= LOW < HIGH <= 65535, got {text!r}")
    return first, last


def parse_agent_settings(raw: Mapping[str, Any], source: str = "<dict>") -> AgentSettings:
    """The `sip:` / `agent:` sections of a config mapping (both optional)."""

    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {problem}")

    sip_raw = raw.get("sip") or {}
    agent_raw = dict(raw.get("agent") or {})
    if not isinstance(sip_raw, Mapping) or not isinstance(agent_raw, Mapping):
        raise fail("sip/agent", "must be mappings")
    unknown = set(sip_raw) - {"bind", "rtp_ports", "media_timeout_s", "advertise"}
    if unknown:
        raise fail("sip", f"unknown keys {sorted(unknown)}")
    try:
        sip = SipSettings(
            bind=parse_host_port(sip_raw.get("bind", "127.0.0.1:5060")),
            rtp_ports=parse_port_range(sip_raw.get("rtp_ports", "20000-30000")),
            media_timeout_s=float(sip_raw.get("media_timeout_s", 30.0)),
            advertise=str(sip_raw["advertise"]) if sip_raw.get("advertise") else None,
        )
    except (ConfigError, TypeError, ValueError) as exc:
        raise fail("sip", str(exc)) from None

    stores = parse_store_settings(raw.get("stores"), source)
    turn_raw = agent_raw.pop("turn", None) or {}
    unknown = (set(agent_raw) - _OPTION_FIELDS) | (set(turn_raw) - _TURN_FIELDS)
    if unknown:
        raise fail("agent", f"unknown keys {sorted(unknown)}")
    try:
        base = SessionOptions()
        turn = dataclasses.replace(base.turn, **turn_raw) if turn_raw else base.turn
        options = dataclasses.replace(base, turn=turn, **agent_raw)
    except (BadInput, TypeError, ValueError) as exc:
        raise fail("agent", str(exc)) from None
    return AgentSettings(sip=sip, session=options, stores=stores)


def parse_store_settings(raw: Any, source: str = "<dict>") -> StoreSettings:
    """The `stores:` section (optional): unknown keys and wrong types are errors."""
    if raw is None:
        return StoreSettings()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: stores: must be a mapping")
    unknown = set(raw) - set(_STORE_FIELDS)
    if unknown:
        raise ConfigError(f"{source}: stores: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        default = getattr(StoreSettings, name, None)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        else:
            ok = value is None or isinstance(value, str)
        if not ok:
            raise ConfigError(f"{source}: stores: {name}: bad value {value!r}")
        values[name] = float(value) if isinstance(default, float) else value
    return StoreSettings(**values)


def load_stack_config(path: str | Path) -> tuple[ServingConfig, AgentSettings]:
    """Read one YAML file: the serving sections and ours."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: top level: must be a mapping")
    serving_raw = {k: v for k, v in raw.items() if k not in ("sip", "agent", "stores")}
    return parse_config(serving_raw, source=str(path)), parse_agent_settings(raw, str(path))
