"""`trunkline agents apply / export`: seed 004's example agents as YAML, round trip."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import yaml

from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.examples import example_path
from tests.controlplane.conftest import make_app, mint_key

REPO = Path(__file__).resolve().parents[2]
SCHEDULER = example_path("appointment-scheduler")  # the packaged examples
QUALIFIER = example_path("sales-qualifier")
MAYA = example_path("maya")


async def _agents_cli(*args: str) -> tuple[int, str, str]:
    """`trunkline agents ARGS` in its own process, as CI would run it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli.agents_cmd",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _api_view(db_url: str) -> dict[str, dict]:
    """Every agent as the API shows it (ids dropped), keyed by name."""
    async with ControlPlaneStore(db_url) as store:
        key = await mint_key(store, "read")
        transport = httpx.ASGITransport(app=make_app(store))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://cp.test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            listing = (await client.get("/api/agents")).json()["items"]
            view = {}
            for agent in listing:
                detail = (await client.get(f"/api/agents/{agent['id']}")).json()
                domains = (await client.get("/api/domains", params={"limit": 200})).json()
                view[detail["name"]] = {
                    "voice_id": detail["voice_id"],
                    "goals": [(g["name"], g["priority"], g["active"]) for g in detail["goals"]],
                    "instructions": [
                        (i["instruction_type"], i["instruction"], i["priority"], i["active"])
                        for i in detail["instructions"]
                    ],
                    "domains": sorted(d["domain_name"] for d in detail["domains"]),
                    "all_domain_rows": domains["total"],
                }
            return view


async def test_apply_the_seed_examples_then_reapply_edit_and_export(
    db_url: str, tmp_path: Path
) -> None:
    rc, out, err = await _agents_cli(
        "apply", "--url", db_url, "-f", str(SCHEDULER), "-f", str(QUALIFIER)
    )
    assert rc == 0, out + err
    assert "'Appointment Scheduler' created" in out and "'Sales Qualifier' created" in out

    view = await _api_view(db_url)
    scheduler = view["Appointment Scheduler"]
    assert scheduler["voice_id"] == "receptionist-ava"
    assert scheduler["goals"] == [("schedule_appointment", 10, True)]
    # dos/donts shorthand: listed first ranks highest.
    assert scheduler["instructions"][:2] == [
        ("do", "Be friendly and accommodating", 3, True),
        ("do", "Offer multiple time slots", 2, True),
    ]
    assert ("dont", "Don't discuss pricing", 1, True) in scheduler["instructions"]
    assert len(scheduler["instructions"]) == 5
    assert scheduler["domains"] == ["medical_appointments", "medical_appointments"]
    qualifier = view["Sales Qualifier"]
    assert ("do", "Take detailed notes", 1, False) in qualifier["instructions"]
    assert qualifier["all_domain_rows"] == 3

    # Re-applying changes nothing and duplicates nothing.
    rc, out, err = await _agents_cli(
        "apply", "--url", db_url, "-f", str(SCHEDULER), "-f", str(QUALIFIER)
    )
    assert rc == 0 and "'Appointment Scheduler' updated" in out, out + err
    assert await _api_view(db_url) == view

    # Edit the file: the database follows it exactly.
    edited = yaml.safe_load(SCHEDULER.read_text())
    edited["instructions"]["donts"] = ["Don't give medical advice"]
    edited["goals"][0]["priority"] = 4
    edited["voice_id"] = None
    changed = tmp_path / "scheduler.yaml"
    changed.write_text(yaml.safe_dump(edited))
    rc, out, err = await _agents_cli("apply", "--url", db_url, "-f", str(changed))
    assert rc == 0, out + err
    now = (await _api_view(db_url))["Appointment Scheduler"]
    assert now["voice_id"] is None
    assert now["goals"] == [("schedule_appointment", 4, True)]
    assert [i[1] for i in now["instructions"] if i[0] == "dont"] == ["Don't give medical advice"]

    # Export, apply the export to an empty database: the same agents come out.
    exported = tmp_path / "export.yaml"
    rc, out, err = await _agents_cli("export", "--url", db_url, "-o", str(exported))
    assert rc == 0, out + err
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    rc, out, err = await _agents_cli("apply", "--url", fresh, "-f", str(exported))
    assert rc == 0, out + err
    rc, again, err = await _agents_cli("export", "--url", fresh)
    assert rc == 0, err
    assert again == exported.read_text()
    rc, one, err = await _agents_cli("export", "--url", fresh, "Sales Qualifier")
    assert rc == 0 and yaml.safe_load(one)["name"] == "Sales Qualifier", err


async def test_a_bad_file_is_refused_whole_with_the_field_named(
    db_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    good = SCHEDULER.read_text()
    bad.write_text(good + "---\nname: Broken\nvoice_id: Not A Voice\ngoals: [{priority: 1}]\n")
    rc, _out, err = await _agents_cli("apply", "--url", db_url, "-f", str(bad))
    assert rc != 0
    assert "agent #2" in err and "voice_id" in err and "goals.0.name" in err
    # The valid first agent was not applied either: all or nothing.
    assert await _api_view(db_url) == {}

    bad.write_text("name: [unclosed\n")
    rc, _out, err = await _agents_cli("apply", "--url", db_url, "-f", str(bad))
    assert rc != 0 and "not valid YAML" in err
    bad.write_text("name: X\ntemplate: No Such Template\n")
    rc, _out, err = await _agents_cli("apply", "--url", db_url, "-f", str(bad))
    assert rc != 0 and "template 'No Such Template' does not exist" in err
    rc, _out, err = await _agents_cli("export", "--url", db_url, "Nobody")
    assert rc != 0 and "no agent named Nobody" in err
