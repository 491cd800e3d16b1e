"""Scenarios: YAML files that seed the simulator's stores, lanes, faults and tickets.

Built-in ones live in `scenarios/` beside this module; `load_scenario` also takes a path.
Mistakes in a scenario file are reported with the file and the offending field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

LANE_FIELDS = {
    "lane",
    "paper",
    "cover",
    "ink",
    "powered",
    "cable_connected",
    "link_glitch",
    "error",
    "error_clears_on_reset",
    "dirty_head_cleanings",
}
STORE_FIELDS = {
    "chain",
    "store",
    "name",
    "timezone",
    "address",
    "phone",
    "sip_uri",
    "poc_name",
    "paper_rolls",
    "pc_hung",
    "lanes",
}
TICKET_FIELDS = {"id", "chain", "store", "lane", "issue", "status", "description"}
TIMING_FIELDS = {"ink_clean_s", "reset_s", "power_on_s", "pc_restart_s"}
ISSUES = {
    "paper_out",
    "paper_jam",
    "printer_offline",
    "print_quality",
    "printer_error",
    "pc_unresponsive",
    "no_paper_stock",
}
ENUMS = {
    "paper": {"OK", "Low", "Out", "Jam"},
    "cover": {"Open", "Closed"},
    "ink": {"OK", "Low", "Empty"},
}


class ScenarioError(ValueError):
    """A scenario is missing or malformed; the message names the file and the field."""


def builtin_scenarios() -> list[str]:
    folder = resources.files("agent.storesim") / "scenarios"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str) -> dict[str, Any]:
    """A validated scenario dict from a built-in name or a YAML file path."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise ScenarioError(f"scenario file {path} does not exist")
        source, text = str(path), path.read_text(encoding="utf-8")
    else:
        builtin = resources.files("agent.storesim") / "scenarios" / f"{name_or_path}.yaml"
        if not builtin.is_file():
            raise ScenarioError(
                f"unknown scenario {name_or_path!r}; built-in: {', '.join(builtin_scenarios())}"
            )
        source, text = f"built-in scenario {name_or_path}", builtin.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    return validate_scenario(data, source)


def validate_scenario(data: Any, source: str = "scenario") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: top level must be a mapping")
    _no_unknown(data, {"name", "description", "timing", "stores", "tickets"}, source)
    _no_unknown(data.get("timing") or {}, TIMING_FIELDS, f"{source}: timing")
    stores = data.get("stores")
    if not isinstance(stores, list) or not stores:
        raise ScenarioError(f"{source}: `stores` must be a non-empty list")
    keys: set[tuple[int, int]] = set()
    for index, store in enumerate(stores):
        where = f"{source}: stores[{index}]"
        if not isinstance(store, dict):
            raise ScenarioError(f"{where} must be a mapping")
        _no_unknown(store, STORE_FIELDS, where)
        key = (_int(store, "chain", where, 1, 99999), _int(store, "store", where, 1, 999999))
        if key in keys:
            raise ScenarioError(f"{where}: store {key} is listed twice")
        keys.add(key)
        lanes = store.get("lanes")
        if not isinstance(lanes, list) or not lanes:
            raise ScenarioError(f"{where}: `lanes` must be a non-empty list")
        for lane_index, lane in enumerate(lanes):
            lane_where = f"{where}.lanes[{lane_index}]"
            if not isinstance(lane, dict):
                raise ScenarioError(f"{lane_where} must be a mapping")
            _no_unknown(lane, LANE_FIELDS, lane_where)
            _int(lane, "lane", lane_where, 1, 99)
            for name, allowed in ENUMS.items():
                if name in lane and lane[name] not in allowed:
                    raise ScenarioError(
                        f"{lane_where}: {name} must be one of {sorted(allowed)}, got {lane[name]!r}"
                    )
    for index, ticket in enumerate(data.get("tickets") or []):
        where = f"{source}: tickets[{index}]"
        if not isinstance(ticket, dict):
            raise ScenarioError(f"{where} must be a mapping")
        _no_unknown(ticket, TICKET_FIELDS, where)
        if not isinstance(ticket.get("id"), str):
            raise ScenarioError(f"{where}: `id` must be a string")
        key = (_int(ticket, "chain", where, 1, 99999), _int(ticket, "store", where, 1, 999999))
        if key not in keys:
            raise ScenarioError(f"{where}: store {key} is not in `stores`")
        _int(ticket, "lane", where, 1, 99)
        if ticket.get("issue") not in ISSUES:
            raise ScenarioError(f"{where}: issue must be one of {sorted(ISSUES)}")
    return data


def _no_unknown(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _int(mapping: dict, key: str, where: str, low: int, high: int) -> int:
    value = mapping.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ScenarioError(f"{where}: `{key}` must be an integer {low}-{high}, got {value!r}")
    return value
