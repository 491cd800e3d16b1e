"""The management API under /api: templates, agents, goals, instructions, domains.

    app.include_router(build_router(store), prefix="/api")

GET needs a read-scoped key, everything else an admin key (see `auth`). Domain
errors become status codes in one place (`_ErrorMappingRoute`), so a router
mounted in any app answers 404 / 409 / 422 the same way, without app-level
exception handlers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from agent.controlplane import schemas, service
from agent.controlplane.auth import require_scope
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.errors import InUse, InvalidField, NotFound
from agent.controlplane.models import (
    AgentConfig,
    AgentInstruction,
    AgentTemplate,
    ConversationGoal,
    DomainKnowledge,
)

QueryText = Annotated[str, Query(max_length=255), AfterValidator(schemas.db_safe_text)]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=schemas.DB_INT_MAX, description="Rows to skip.")]


def _id_path(what: str) -> Any:
    return Path(ge=1, le=schemas.DB_INT_MAX, description=f"The {what}'s id.")


AgentId = Annotated[int, _id_path("agent")]
TemplateId = Annotated[int, _id_path("template")]
GoalId = Annotated[int, _id_path("goal")]
InstructionId = Annotated[int, _id_path("instruction")]
DomainId = Annotated[int, _id_path("domain knowledge entry")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, unknown or revoked API key"},
    403: {"description": "The API key's scope does not allow this"},
}


def _validation_response(exc: RequestValidationError) -> Response:
    """FastAPI's 422 body, safe for any input.

    The default echoes the offending input, and an input holding NaN or an unpaired
    surrogate cannot be encoded as JSON: the 422 would turn into a 500. Escape to
    ASCII, and drop the echoed inputs when even that fails.
    """
    errors = jsonable_encoder(exc.errors())
    try:
        body = json.dumps({"detail": errors}, ensure_ascii=True, allow_nan=False)
    except ValueError:
        bare = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in errors]
        body = json.dumps({"detail": bare}, ensure_ascii=True)
    return Response(body, status.HTTP_422_UNPROCESSABLE_CONTENT, media_type="application/json")


class _ErrorMappingRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def mapped(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation_response(exc)
            except NotFound as exc:
                return JSONResponse({"detail": str(exc)}, status.HTTP_404_NOT_FOUND)
            except InvalidField as exc:
                detail = [{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]
                return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)
            except InUse as exc:
                return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)
            except IntegrityError:
                # A concurrent write won a race our checks could not see.
                return JSONResponse(
                    {"detail": "conflicts with a concurrent change; retry"},
                    status.HTTP_409_CONFLICT,
                )
            except DBAPIError as exc:
                if exc.connection_invalidated or type(exc.orig).__name__ == "OperationalError":
                    return JSONResponse(
                        {"detail": "database unavailable"}, status.HTTP_503_SERVICE_UNAVAILABLE
                    )
                raise

        return mapped


def build_router(store: ControlPlaneStore) -> APIRouter:
    """The /api routes over `store` (started lazily on the first request)."""
    router = APIRouter(route_class=_ErrorMappingRoute, responses=_ERRORS)
    read = [Depends(require_scope(store, "read"))]
    admin = [Depends(require_scope(store, "admin"))]

    def _page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    # ------------------------------------------------------------ templates

    @router.get("/templates", tags=["templates"], dependencies=read)
    async def list_templates(
        limit: Limit = 50, offset: Offset = 0
    ) -> schemas.Page[schemas.TemplateOut]:
        async with store.session() as s:
            rows, total = await service.page(
                s, select(AgentTemplate).order_by(AgentTemplate.id), limit=limit, offset=offset
            )
            items = [schemas.TemplateOut.model_validate(r) for r in rows]
        return schemas.Page(items=items, total=total, limit=limit, offset=offset)

    @router.post("/templates", status_code=201, tags=["templates"], dependencies=admin)
    async def create_template(body: schemas.TemplateIn) -> schemas.TemplateOut:
        async with store.session() as s:
            return schemas.TemplateOut.model_validate(await service.create_template(s, body))

    @router.get("/templates/{template_id}", tags=["templates"], dependencies=read)
    async def get_template(template_id: TemplateId) -> schemas.TemplateOut:
        async with store.session() as s:
            row = await service.get(s, AgentTemplate, template_id)
            return schemas.TemplateOut.model_validate(row)

    @router.patch("/templates/{template_id}", tags=["templates"], dependencies=admin)
    async def update_template(
        template_id: TemplateId, body: schemas.TemplatePatch
    ) -> schemas.TemplateOut:
        async with store.session() as s:
            row = await service.update_template(s, template_id, body)
            return schemas.TemplateOut.model_validate(row)

    @router.delete(
        "/templates/{template_id}",
        status_code=204,
        tags=["templates"],
        dependencies=admin,
        responses={409: {"description": "Agents still use this template"}},
    )
    async def delete_template(template_id: TemplateId) -> None:
        async with store.session() as s:
            await service.delete(s, AgentTemplate, template_id)

    # ------------------------------------------------------------ agents

    @router.get("/agents", tags=["agents"], dependencies=read)
    async def list_agents(
        limit: Limit = 50,
        offset: Offset = 0,
        template_id: Annotated[int | None, Query(ge=1, le=schemas.DB_INT_MAX)] = None,
    ) -> schemas.Page[schemas.AgentOut]:
        query = select(AgentConfig).order_by(AgentConfig.id)
        if template_id is not None:
            query = query.where(AgentConfig.template_id == template_id)
        async with store.session() as s:
            rows, total = await service.page(s, query, limit=limit, offset=offset)
            items = [schemas.AgentOut.model_validate(r) for r in rows]
        return schemas.Page(items=items, total=total, limit=limit, offset=offset)

    @router.post("/agents", status_code=201, tags=["agents"], dependencies=admin)
    async def create_agent(body: schemas.AgentIn) -> schemas.AgentDetail:
        async with store.session() as s:
            row = await service.create_agent(s, body)
            return await service.agent_detail(s, row.id)

    @router.get("/agents/{agent_id}", tags=["agents"], dependencies=read)
    async def get_agent(agent_id: AgentId) -> schemas.AgentDetail:
        async with store.session() as s:
            return await service.agent_detail(s, agent_id)

    @router.patch("/agents/{agent_id}", tags=["agents"], dependencies=admin)
    async def update_agent(agent_id: AgentId, body: schemas.AgentPatch) -> schemas.AgentDetail:
        async with store.session() as s:
            await service.update_agent(s, agent_id, body)
            return await service.agent_detail(s, agent_id)

    @router.delete("/agents/{agent_id}", status_code=204, tags=["agents"], dependencies=admin)
    async def delete_agent(agent_id: AgentId) -> None:
        async with store.session() as s:
            await service.delete(s, AgentConfig, agent_id)

    # ------------------------------------------------------------ assignments

    @router.get("/agents/{agent_id}/goals", tags=["assignments"], dependencies=read)
    async def list_agent_goals(agent_id: AgentId) -> list[schemas.AgentGoalOut]:
        async with store.session() as s:
            return await service.agent_goals(s, agent_id)

    @router.put(
        "/agents/{agent_id}/goals/{goal_id}",
        tags=["assignments"],
        dependencies=admin,
        responses={201: {"description": "Assigned (it was not before)"}},
    )
    async def assign_goal(
        agent_id: AgentId,
        goal_id: GoalId,
        response: Response,
        body: Annotated[schemas.AgentGoalIn | None, Body()] = None,
    ) -> schemas.AgentGoalOut:
        """Assign the goal (201), or update its priority / active flag (200)."""
        async with store.session() as s:
            link, created = await service.assign_goal(
                s, agent_id, goal_id, body or schemas.AgentGoalIn()
            )
        response.status_code = 201 if created else 200
        return link

    @router.delete(
        "/agents/{agent_id}/goals/{goal_id}",
        status_code=204,
        tags=["assignments"],
        dependencies=admin,
    )
    async def unassign_goal(agent_id: AgentId, goal_id: GoalId) -> None:
        async with store.session() as s:
            await service.unassign_goal(s, agent_id, goal_id)

    @router.get("/agents/{agent_id}/domains", tags=["assignments"], dependencies=read)
    async def list_agent_domains(agent_id: AgentId) -> list[schemas.AgentDomainOut]:
        async with store.session() as s:
            return await service.agent_domains(s, agent_id)

    @router.put(
        "/agents/{agent_id}/domains/{domain_id}",
        tags=["assignments"],
        dependencies=admin,
        responses={201: {"description": "Assigned (it was not before)"}},
    )
    async def assign_domain(
        agent_id: AgentId, domain_id: DomainId, response: Response
    ) -> schemas.AgentDomainOut:
        async with store.session() as s:
            link, created = await service.assign_domain(s, agent_id, domain_id)
        response.status_code = 201 if created else 200
        return link

    @router.delete(
        "/agents/{agent_id}/domains/{domain_id}",
        status_code=204,
        tags=["assignments"],
        dependencies=admin,
    )
    async def unassign_domain(agent_id: AgentId, domain_id: DomainId) -> None:
        async with store.session() as s:
            await service.unassign_domain(s, agent_id, domain_id)

    # ------------------------------------------------------------ goals

    @router.get("/goals", tags=["goals"], dependencies=read)
    async def list_goals(limit: Limit = 50, offset: Offset = 0) -> schemas.Page[schemas.GoalOut]:
        async with store.session() as s:
            rows, total = await service.page(
                s,
                select(ConversationGoal).order_by(ConversationGoal.id),
                limit=limit,
                offset=offset,
            )
            items = [schemas.GoalOut.model_validate(r) for r in rows]
        return schemas.Page(items=items, total=total, limit=limit, offset=offset)

    @router.post("/goals", status_code=201, tags=["goals"], dependencies=admin)
    async def create_goal(body: schemas.GoalIn) -> schemas.GoalOut:
        async with store.session() as s:
            return schemas.GoalOut.model_validate(await service.create_goal(s, body))

    @router.get("/goals/{goal_id}", tags=["goals"], dependencies=read)
    async def get_goal(goal_id: GoalId) -> schemas.GoalOut:
        async with store.session() as s:
            return schemas.GoalOut.model_validate(await service.get(s, ConversationGoal, goal_id))

    @router.patch("/goals/{goal_id}", tags=["goals"], dependencies=admin)
    async def update_goal(goal_id: GoalId, body: schemas.GoalPatch) -> schemas.GoalOut:
        async with store.session() as s:
            return schemas.GoalOut.model_validate(await service.update_goal(s, goal_id, body))

    @router.delete("/goals/{goal_id}", status_code=204, tags=["goals"], dependencies=admin)
    async def delete_goal(goal_id: GoalId) -> None:
        async with store.session() as s:
            await service.delete(s, ConversationGoal, goal_id)

    # ------------------------------------------------------------ instructions

    @router.get("/instructions", tags=["instructions"], dependencies=read)
    async def list_instructions(
        limit: Limit = 50,
        offset: Offset = 0,
        agent_id: Annotated[int | None, Query(ge=1, le=schemas.DB_INT_MAX)] = None,
        active: bool | None = None,
    ) -> schemas.Page[schemas.InstructionOut]:
        # Highest priority first: the order the prompt compiler uses them in.
        query = select(AgentInstruction).order_by(
            AgentInstruction.priority.desc(), AgentInstruction.id
        )
        if agent_id is not None:
            query = query.where(AgentInstruction.agent_id == agent_id)
        if active is not None:
            query = query.where(AgentInstruction.active == active)
        async with store.session() as s:
            rows, total = await service.page(s, query, limit=limit, offset=offset)
            items = [schemas.InstructionOut.model_validate(r) for r in rows]
        return schemas.Page(items=items, total=total, limit=limit, offset=offset)

    @router.post("/instructions", status_code=201, tags=["instructions"], dependencies=admin)
    async def create_instruction(body: schemas.InstructionIn) -> schemas.InstructionOut:
        async with store.session() as s:
            row = await service.create_instruction(s, body)
            return schemas.InstructionOut.model_validate(row)

    @router.get("/instructions/{instruction_id}", tags=["instructions"], dependencies=read)
    async def get_instruction(instruction_id: InstructionId) -> schemas.InstructionOut:
        async with store.session() as s:
            row = await service.get(s, AgentInstruction, instruction_id)
            return schemas.InstructionOut.model_validate(row)

    @router.patch("/instructions/{instruction_id}", tags=["instructions"], dependencies=admin)
    async def update_instruction(
        instruction_id: InstructionId, body: schemas.InstructionPatch
    ) -> schemas.InstructionOut:
        async with store.session() as s:
            row = await service.update_instruction(s, instruction_id, body)
            return schemas.InstructionOut.model_validate(row)

    @router.delete(
        "/instructions/{instruction_id}",
        status_code=204,
        tags=["instructions"],
        dependencies=admin,
    )
    async def delete_instruction(instruction_id: InstructionId) -> None:
        async with store.session() as s:
            await service.delete(s, AgentInstruction, instruction_id)

    # ------------------------------------------------------------ domains

    @router.get("/domains", tags=["domains"], dependencies=read)
    async def list_domains(
        limit: Limit = 50,
        offset: Offset = 0,
        domain_name: QueryText | None = None,
        knowledge_type: schemas.KnowledgeType | None = None,
    ) -> schemas.Page[schemas.DomainOut]:
        query = select(DomainKnowledge).order_by(DomainKnowledge.id)
        if domain_name is not None:
            query = query.where(DomainKnowledge.domain_name == domain_name)
        if knowledge_type is not None:
            query = query.where(DomainKnowledge.knowledge_type == knowledge_type)
        async with store.session() as s:
            rows, total = await service.page(s, query, limit=limit, offset=offset)
            items = [service.domain_out(r) for r in rows]
        return schemas.Page(items=items, total=total, limit=limit, offset=offset)

    @router.post("/domains", status_code=201, tags=["domains"], dependencies=admin)
    async def create_domain(body: schemas.DomainIn) -> schemas.DomainOut:
        async with store.session() as s:
            return service.domain_out(await service.create_domain(s, body))

    @router.get("/domains/{domain_id}", tags=["domains"], dependencies=read)
    async def get_domain(domain_id: DomainId) -> schemas.DomainOut:
        async with store.session() as s:
            return service.domain_out(await service.get(s, DomainKnowledge, domain_id))

    @router.patch("/domains/{domain_id}", tags=["domains"], dependencies=admin)
    async def update_domain(domain_id: DomainId, body: schemas.DomainPatch) -> schemas.DomainOut:
        async with store.session() as s:
            return service.domain_out(await service.update_domain(s, domain_id, body))

    @router.delete("/domains/{domain_id}", status_code=204, tags=["domains"], dependencies=admin)
    async def delete_domain(domain_id: DomainId) -> None:
        async with store.session() as s:
            await service.delete(s, DomainKnowledge, domain_id)

    return router
