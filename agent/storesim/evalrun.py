"""One simulated ticket call, end to end, judged against its expected path.

    result = await run_case("KBA3813", "busy", AgentApi(server, api_key), stt=stt)

The workflow's scenario is loaded into a store simulator in this process (or a running
one is reset and used), the store's phone answers as the persona, the running agent is
asked to dial the ticket (POST /api/calls), and the call is followed (GET
/api/calls/{id}) to its end. `trunkline simulate --workflow` and benchmarks/evals.py
both use this.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml

from agent.storesim.personas import get_persona, persona_names
from agent.storesim.phone import PhoneOptions, StorePhone, get_state, sip_bind_of
from agent.storesim.runner import DEFAULT_TOKEN, StoreSim
from agent.storesim.scenario import load_scenario

POLL_S = 1.0


class EvalError(Exception):
    """The case could not be run (agent unreachable, bad name, ports taken...)."""


@dataclass(frozen=True)
class EvalCase:
    workflow: str
    scenario: str
    ticket: str
    outcomes: dict[str, str]
    paths: dict[str, list[str]]

    def expected_outcome(self, persona: str) -> str:
        return self.outcomes.get(persona, self.outcomes["all"])

    def expected_path(self, persona: str) -> list[str]:
        steps = self.paths.get(persona, self.paths["all"])
        return [s if "." in s else f"{self.workflow}.{s}" for s in steps]


@cache
def load_cases() -> dict[str, EvalCase]:
    text = (resources.files("agent.storesim") / "eval_cases.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)["cases"]
    return {
        name: EvalCase(
            workflow=name,
            scenario=spec["scenario"],
            ticket=spec["ticket"],
            outcomes=dict(spec["outcomes"]),
            paths={k: list(v) for k, v in spec["paths"].items()},
        )
        for name, spec in data.items()
    }


def get_case(workflow: str) -> EvalCase:
    case = load_cases().get(workflow)
    if case is None:
        raise EvalError(f"unknown workflow {workflow!r}; choose one of {', '.join(load_cases())}")
    return case


def step_score(expected: list[str], taken: list[str]) -> float:
    """Share of the expected path walked in order: longest common subsequence over the
    longer of the two (1.0 only for exactly the expected steps)."""
    if not expected and not taken:
        return 1.0
    prev = [0] * (len(taken) + 1)
    for e in expected:
        cur = [0]
        for j, t in enumerate(taken, 1):
            cur.append(prev[j - 1] + 1 if e == t else max(prev[j], cur[j - 1]))
        prev = cur
    return round(prev[-1] / max(len(expected), len(taken)), 4)


@dataclass(frozen=True)
class AgentApi:
    """The running agent's HTTP API (`trunkline serve`)."""

    server: str = "http://127.0.0.1:8000"
    api_key: str | None = None

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.AsyncClient(
            base_url=self.server.rstrip("/"), headers=headers, timeout=15.0, trust_env=False
        )


@dataclass(frozen=True)
class SimPlace:
    """Where the store systems the agent is configured for live."""

    ssh: tuple[str, int] = ("127.0.0.1", 2222)
    http: tuple[str, int] = ("127.0.0.1", 8100)
    token: str = DEFAULT_TOKEN
    state_dir: Path = Path("~/.trunkline/storesim")
    use_running: bool = False  # reset and use a simulator (and its phone) already running
    phone_rtp_ports: tuple[int, int] = (31000, 31999)
    # Move the store's phone (and its sip_uri in StoreMaster) off the scenario's address.
    phone_sip: tuple[str, int] | None = None
    seed: int = 0


async def dial_ticket(api: AgentApi, ticket: str) -> dict[str, Any]:
    async with api.client() as http:
        try:
            response = await http.post("/api/calls", json={"ticket_id": ticket})
        except httpx.HTTPError as exc:
            raise EvalError(f"agent at {api.server} unreachable: {exc}") from None
    if response.status_code != 202:
        raise EvalError(f"agent refused the call (HTTP {response.status_code}): {response.text}")
    return response.json()


async def follow_call(api: AgentApi, call_id: str, timeout_s: float) -> dict[str, Any]:
    """The call's record once it ended (or the last one seen at the timeout)."""
    view: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    async with api.client() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(f"/api/calls/{call_id}")
                if response.status_code == 200:
                    view = response.json()
                    if not view.get("live") and view.get("outcome") not in (None, "in_progress"):
                        return view
            await asyncio.sleep(POLL_S)
    return {**view, "timed_out": True}


async def run_case(
    workflow: str,
    persona: str,
    api: AgentApi,
    *,
    stt: Any = None,
    place: SimPlace | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run one workflow x persona call and judge it; `stt` is needed unless the simulator
    (with its phone) is already running."""
    case = get_case(workflow)
    get_persona(persona)  # a clear error before anything starts
    place = place or SimPlace()
    started = time.monotonic()
    if place.use_running:
        sim_url = f"http://{place.http[0]}:{place.http[1]}"
        async with httpx.AsyncClient(
            base_url=sim_url, headers={"Authorization": f"Bearer {place.token}"}, trust_env=False
        ) as http:
            state = await get_state(http)
            if state.get("scenario") != case.scenario:
                raise EvalError(
                    f"the running simulator has scenario {state.get('scenario')!r}; {workflow} "
                    f"needs `trunkline store-sim --scenario {case.scenario} --phone-persona "
                    f"{persona}`"
                )
            (await http.post("/sim/reset")).raise_for_status()
        placed = await dial_ticket(api, case.ticket)
        view = await follow_call(api, placed["call_id"], timeout_s)
        async with httpx.AsyncClient(
            base_url=sim_url, headers={"Authorization": f"Bearer {place.token}"}, trust_env=False
        ) as http:
            ticket = next(t for t in (await get_state(http))["tickets"] if t["id"] == case.ticket)
        return judge(case, persona, placed, view, ticket, None, time.monotonic() - started)

    if stt is None:
        raise EvalError("an STT engine is needed to run the store's phone")
    try:
        sim = StoreSim(
            scenario=_scenario_source(case.scenario, place),
            state_dir=place.state_dir.expanduser(),
            ssh_host=place.ssh[0],
            ssh_port=place.ssh[1],
            http_host=place.http[0],
            http_port=place.http[1],
            token=place.token,
            seed=place.seed,
        )
        await sim.start()
    except (OSError, RuntimeError, SystemExit) as exc:
        raise EvalError(
            f"store simulator could not start on {place.http[0]}:{place.http[1]} / "
            f"{place.ssh[0]}:{place.ssh[1]} ({exc}); is one running already? Then use it "
            "(--use-running-sim) or stop it"
        ) from None
    try:
        first = next(iter(sim.state.stores.values()))
        phone = StorePhone(
            sim.http_url,
            place.token,
            stt,
            PhoneOptions(
                bind=sip_bind_of(first.sip_uri), rtp_ports=place.phone_rtp_ports, persona=persona
            ),
        )
        try:
            await phone.start()
        except Exception as exc:
            raise EvalError(
                f"the store's phone could not start at {first.sip_uri}: {exc}"
            ) from None
        try:
            placed = await dial_ticket(api, case.ticket)
            view = await follow_call(api, placed["call_id"], timeout_s)
            await phone.wait_call(1, 30.0)
        finally:
            await phone.stop()
        log = phone.calls[0].to_dict() if phone.calls else None
        ticket = sim.state.ticket(case.ticket)
        return judge(case, persona, placed, view, dict(ticket), log, time.monotonic() - started)
    finally:
        await sim.stop()


def _scenario_source(scenario: str, place: SimPlace) -> str:
    """The scenario name, or a copy of it whose stores' phones are at place.phone_sip."""
    if place.phone_sip is None:
        return scenario
    spec = load_scenario(scenario)
    host, port = place.phone_sip
    for store in spec["stores"]:
        store["sip_uri"] = f"sip:store{store['store']}@{host}:{port}"
    folder = Path(tempfile.mkdtemp(prefix="trunkline-eval-"))
    path = folder / f"{scenario}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return str(path)


def judge(
    case: EvalCase,
    persona: str,
    placed: dict[str, Any],
    view: dict[str, Any],
    ticket: dict[str, Any],
    phone_log: dict[str, Any] | None,
    wall_s: float,
) -> dict[str, Any]:
    workflow = view.get("workflow") or {}
    steps = list(workflow.get("steps") or [])
    expected = case.expected_path(persona)
    outcome = workflow.get("outcome")
    return {
        "workflow": case.workflow,
        "persona": persona,
        "scenario": case.scenario,
        "call_id": placed.get("call_id"),
        "outcome": outcome,
        "expected_outcome": case.expected_outcome(persona),
        "outcome_ok": outcome == case.expected_outcome(persona),
        "resolved": outcome == "resolved",
        "steps": steps,
        "expected_steps": expected,
        "step_score": step_score(expected, steps),
        "path_ok": steps == expected,
        "agent_turns": len(view.get("turns") or []),
        "phone_turns": len(phone_log["turns"]) if phone_log else None,
        "duration_s": view.get("duration_s"),
        "wall_s": round(wall_s, 1),
        "end_reason": view.get("end_reason"),
        "timed_out": bool(view.get("timed_out")),
        "ticket_status": ticket.get("status"),
        "tried": workflow.get("tried"),
        "transcript": view.get("transcript"),
        "phone": phone_log,
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    if not n:
        return {"calls": 0}
    # Seed 000's "call resolution rate" is the share of calls the AI completes alone; a
    # case whose right outcome is a technician or a human (a hard fault, a store that will
    # not touch the machine) cannot count against it, so it is measured on the cases a
    # correct call resolves.
    resolvable = [r for r in results if r.get("expected_outcome") == "resolved"]
    return {
        "calls": n,
        "resolvable_resolution_rate": (
            round(sum(r["resolved"] for r in resolvable) / len(resolvable), 4)
            if resolvable
            else None
        ),
        "resolution_rate": round(sum(r["resolved"] for r in results) / n, 4),
        "expected_outcome_rate": round(sum(r["outcome_ok"] for r in results) / n, 4),
        "correct_step_rate": round(sum(r["step_score"] for r in results) / n, 4),
        "exact_path_rate": round(sum(r["path_ok"] for r in results) / n, 4),
        "mean_agent_turns": round(sum(r["agent_turns"] for r in results) / n, 2),
        "mean_duration_s": round(sum(r["duration_s"] or 0 for r in results) / n, 1),
    }


__all__ = [
    "AgentApi",
    "EvalCase",
    "EvalError",
    "SimPlace",
    "get_case",
    "judge",
    "load_cases",
    "persona_names",
    "run_case",
    "step_score",
    "summarise",
]
