"""The management API end to end over HTTP, on SQLite and PostgreSQL.

Builds seed 004's appointment-scheduler agent the way a user would: template,
agent, goal, do/don't instructions, domain knowledge, assignments.
"""

from __future__ import annotations

from typing import Any

from tests.controlplane.conftest import Api


async def _post(api: Api, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await api.client.post(f"/api{path}", json=body, headers=api.admin)
    assert response.status_code == status, response.text
    return response.json()


async def _get(api: Api, path: str, **params: Any) -> dict[str, Any] | list[Any]:
    response = await api.client.get(f"/api{path}", params=params, headers=api.reader)
    assert response.status_code == 200, response.text
    return response.json()


def _error_fields(response: Any) -> list[str]:
    return [item["loc"][-1] for item in response.json()["detail"]]


async def test_build_an_agent_from_a_template_with_goals_instructions_and_domains(
    api: Api,
) -> None:
    template = await _post(
        api,
        "/templates",
        {
            "name": "Receptionist",
            "description": "Front desk",
            "base_prompt": "You are {name}, a friendly receptionist.",
            "voice_config": {"emotion_default": "friendly", "speed": 1.0, "pitch": 0},
        },
    )
    agent = await _post(
        api,
        "/agents",
        {
            "name": "Appointment Scheduler",
            "template_id": template["id"],
            "voice_id": "maya-clone_2",
            "custom_settings": {"clinic": "Zürich Nord", "hours": [8, 17]},
        },
    )
    assert agent["template_id"] == template["id"]
    assert agent["voice_id"] == "maya-clone_2"
    assert agent["custom_settings"] == {"clinic": "Zürich Nord", "hours": [8, 17]}
    assert agent["goals"] == [] and agent["instructions"] == [] and agent["domains"] == []

    goal = await _post(
        api,
        "/goals",
        {
            "name": "schedule_appointment",
            "success_criteria": {"has_date": True, "has_time": True, "has_service": True},
            "required_data": ["date", "time", "service"],
            "completion_webhook": "http://127.0.0.1:9/hooks/booked",
        },
    )
    followup = await _post(api, "/goals", {"name": "offer_reminder"})
    for text, kind, priority in [
        ("Be friendly and accommodating", "do", 5),
        ("Confirm details before ending", "do", 9),
        ("Don't discuss pricing", "dont", 7),
    ]:
        await _post(
            api,
            "/instructions",
            {
                "agent_id": agent["id"],
                "instruction_type": kind,
                "instruction": text,
                "priority": priority,
            },
        )
    domain = await _post(
        api,
        "/domains",
        {
            "domain_name": "medical_appointments",
            "knowledge_type": "policy",
            "content": "Cancellations need 24 hours' notice.",
            "metadata": {"source": "front-desk handbook"},
        },
    )

    assigned = await api.client.put(
        f"/api/agents/{agent['id']}/goals/{goal['id']}",
        json={"priority": 10},
        headers=api.admin,
    )
    assert assigned.status_code == 201, assigned.text
    again = await api.client.put(
        f"/api/agents/{agent['id']}/goals/{followup['id']}", json={}, headers=api.admin
    )
    assert again.status_code == 201
    # Assigning again re-prioritises: idempotent, 200, no duplicate link.
    reprioritised = await api.client.put(
        f"/api/agents/{agent['id']}/goals/{followup['id']}",
        json={"priority": 1, "active": False},
        headers=api.admin,
    )
    assert reprioritised.status_code == 200
    linked = await api.client.put(
        f"/api/agents/{agent['id']}/domains/{domain['id']}", headers=api.admin
    )
    assert linked.status_code == 201

    detail = await _get(api, f"/agents/{agent['id']}")
    assert isinstance(detail, dict)
    assert [(g["name"], g["priority"], g["active"]) for g in detail["goals"]] == [
        ("schedule_appointment", 10, True),
        ("offer_reminder", 1, False),
    ]
    # Highest priority first: the order the prompt compiler uses.
    assert [i["instruction"] for i in detail["instructions"]] == [
        "Confirm details before ending",
        "Don't discuss pricing",
        "Be friendly and accommodating",
    ]
    assert detail["domains"] == [
        {
            "domain_id": domain["id"],
            "domain_name": "medical_appointments",
            "knowledge_type": "policy",
        }
    ]
    assert await _get(api, f"/agents/{agent['id']}/domains") == detail["domains"]
    assert await _get(api, f"/agents/{agent['id']}/goals") == detail["goals"]
    dont = await _get(api, "/instructions", agent_id=agent["id"], active=True)
    assert isinstance(dont, dict) and dont["total"] == 3

    # Partial update: only what is sent changes.
    patched = await api.client.patch(
        f"/api/agents/{agent['id']}",
        json={"description": "Books visits", "voice_id": None},
        headers=api.admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "Books visits"
    assert patched.json()["voice_id"] is None
    assert patched.json()["name"] == "Appointment Scheduler"
    assert patched.json()["updated_at"] >= agent["updated_at"]

    # The template is in use: it cannot be deleted from under the agent.
    blocked = await api.client.delete(f"/api/templates/{template['id']}", headers=api.admin)
    assert blocked.status_code == 409
    assert "used by 1 agent" in blocked.json()["detail"]

    # Unassigning, then deleting the agent takes its instructions and links with it.
    gone = await api.client.delete(
        f"/api/agents/{agent['id']}/goals/{followup['id']}", headers=api.admin
    )
    assert gone.status_code == 204
    twice = await api.client.delete(
        f"/api/agents/{agent['id']}/goals/{followup['id']}", headers=api.admin
    )
    assert twice.status_code == 404
    assert (
        await api.client.delete(f"/api/agents/{agent['id']}", headers=api.admin)
    ).status_code == 204
    missing = await api.client.get(f"/api/agents/{agent['id']}", headers=api.reader)
    assert missing.status_code == 404
    assert f"agent {agent['id']} not found" in missing.json()["detail"]
    left = await _get(api, "/instructions")
    assert isinstance(left, dict) and left["total"] == 0
    # Goals and domains themselves outlive the agent that used them.
    assert (await _get(api, f"/goals/{goal['id']}"))["name"] == "schedule_appointment"  # type: ignore[index]
    assert (await _get(api, f"/domains/{domain['id']}"))["metadata"] == {  # type: ignore[index]
        "source": "front-desk handbook"
    }
    freed = await api.client.delete(f"/api/templates/{template['id']}", headers=api.admin)
    assert freed.status_code == 204


async def test_bad_agent_definitions_get_clear_422s(api: Api) -> None:
    await _post(api, "/agents", {"name": "Sales Qualifier"})

    unknown_template = await api.client.post(
        "/api/agents", json={"name": "A", "template_id": 4242}, headers=api.admin
    )
    assert unknown_template.status_code == 422
    assert _error_fields(unknown_template) == ["template_id"]
    assert "template 4242 does not exist" in unknown_template.text

    duplicate = await api.client.post(
        "/api/agents", json={"name": "Sales Qualifier"}, headers=api.admin
    )
    assert duplicate.status_code == 422
    assert _error_fields(duplicate) == ["name"]
    assert "already exists" in duplicate.text

    for voice_id in ["Maya", "../etc/passwd", "-x", "a" * 65, ""]:
        bad_voice = await api.client.post(
            "/api/agents", json={"name": "B", "voice_id": voice_id}, headers=api.admin
        )
        assert bad_voice.status_code == 422, voice_id
        assert _error_fields(bad_voice) == ["voice_id"]

    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/agents", {"name": "nul\x00byte"}, "name"),
        ("/agents", {"name": "   "}, "name"),
        ("/agents", {"name": "C", "custom_settings": {"k": "a\x00b"}}, "custom_settings"),
        ("/agents", {"name": "C", "colour": "blue"}, "colour"),
        (
            "/instructions",
            {"agent_id": 1, "instruction_type": "maybe", "instruction": "x"},
            "instruction_type",
        ),
        (
            "/instructions",
            {"agent_id": 999, "instruction_type": "do", "instruction": "x"},
            "agent_id",
        ),
        (
            "/domains",
            {"domain_name": "d", "knowledge_type": "rumour", "content": "x"},
            "knowledge_type",
        ),
        ("/goals", {"name": "g", "completion_webhook": "file:///etc/passwd"}, "completion_webhook"),
        ("/templates", {"name": "t", "voice_config": [1, 2]}, "voice_config"),
    ]
    for path, body, field in cases:
        response = await api.client.post(f"/api{path}", json=body, headers=api.admin)
        assert response.status_code == 422, (path, body, response.text)
        assert field in _error_fields(response), (path, body, response.text)

    null_name = await api.client.patch("/api/agents/1", json={"name": None}, headers=api.admin)
    assert null_name.status_code == 422
    assert "name cannot be null" in null_name.text
    renamed_onto_other = await _post(api, "/agents", {"name": "Other"})
    clash = await api.client.patch(
        f"/api/agents/{renamed_onto_other['id']}",
        json={"name": "Sales Qualifier"},
        headers=api.admin,
    )
    assert clash.status_code == 422 and _error_fields(clash) == ["name"]
    # Nothing half-written: still exactly the two agents created on purpose.
    listing = await _get(api, "/agents")
    assert isinstance(listing, dict)
    assert [a["name"] for a in listing["items"]] == ["Sales Qualifier", "Other"]


async def test_lists_are_paginated(api: Api) -> None:
    for i in range(7):
        await _post(
            api,
            "/domains",
            {"domain_name": f"d{i % 2}", "knowledge_type": "fact", "content": f"fact {i}"},
        )
    first = await _get(api, "/domains", limit=3)
    last = await _get(api, "/domains", limit=3, offset=6)
    assert isinstance(first, dict) and isinstance(last, dict)
    assert (first["total"], first["limit"], first["offset"]) == (7, 3, 0)
    assert [d["content"] for d in first["items"]] == ["fact 0", "fact 1", "fact 2"]
    assert [d["content"] for d in last["items"]] == ["fact 6"]
    only_d1 = await _get(api, "/domains", domain_name="d1")
    assert isinstance(only_d1, dict) and only_d1["total"] == 3
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        response = await api.client.get("/api/domains", params=params, headers=api.reader)
        assert response.status_code == 422, params
    for path in ("/api/agents/0", "/api/agents/99999999999", "/api/goals/abc"):
        response = await api.client.get(path, headers=api.reader)
        assert response.status_code == 422, path


async def test_hostile_input_is_a_4xx_never_a_server_error(api: Api) -> None:
    """Inputs the fuzzer's defaults never produce, but a client can send."""
    raw_bodies = [
        b'{"name": "a\\ud800"}',  # unpaired surrogate
        b'{"name": "a", "custom_settings": {"x": NaN}}',  # Python's json accepts NaN
        b'{"name": "a", "custom_settings": {"x": 1e999}}',  # infinity
        b'{"name": "a", "custom_settings": {"\\u0000": 1}}',  # NUL in a key (PostgreSQL JSONB)
        b'{"name": "a", "custom_settings": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}",
        b'{"name": "a", "custom_settings": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"name": "a", "custom_settings": {"x": ' + b"9" * 5000 + b"}}",
        b"[1, 2]",
        b"",
        b"\xff\xfe",
    ]
    for body in raw_bodies:
        response = await api.client.post(
            "/api/agents",
            content=body,
            headers={**api.admin, "content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (body[:60], response.text)
        response.json()  # the error body is itself valid JSON
    for query in ("domain_name=%00", "domain_name=%ED%A0%80", "knowledge_type=rumour"):
        response = await api.client.get(f"/api/domains?{query}", headers=api.reader)
        assert response.status_code in (200, 422), (query, response.text)
    # An agent whose custom settings are big but legal is stored faithfully.
    big = {"n": 123456789012345678901234567890, "nested": {"list": [1.5, None, True, "ü"]}}
    made = await _post(api, "/agents", {"name": "Big", "custom_settings": big})
    assert made["custom_settings"] == big
    listing = await _get(api, "/agents")
    assert isinstance(listing, dict) and listing["total"] == 1
