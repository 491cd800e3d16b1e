"""The control plane: agent definitions (seed 004) and API keys, behind `/api`.

    store = ControlPlaneStore()          # $DATABASE_URL, else $TRUNKLINE_HOME/trunkline.db
    app.include_router(build_router(store), prefix="/api")

`models` holds the tables (on the call records' Base, migration 0002), `service`
the queries, `schemas` the API's pydantic shapes, `apikeys` and `auth` the keys.
"""
