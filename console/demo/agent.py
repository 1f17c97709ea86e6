"""The demo agent: one process the stack owns for the load generator and the database faults.

    python -m console.demo.agent --port P --storefront URL --sync-worker URL --token-file F \
        --socket-dir D --pg-port 5433   # $INCIDENT_CONSOLE_DEMO_DSN: the faults' DSN

It answers the same ``/demo/faults`` API as the services (docs/demo-api.md), for the database
scenarios: ``GET /demo/faults``, ``POST /demo/faults/{name}``, ``DELETE /demo/faults[/{name}]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import os

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console.demo.dbfaults import DbContext, DbFaults
from console.demo.loadgen import LoadGenerator
from console.demo.service import DSN_ENV


def build_app(faults: DbFaults, load: LoadGenerator | None, token: str) -> Starlette:
    expected = f"Bearer {token}".encode()

    def authorised(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

    def denied() -> Response:
        return JSONResponse({"error": "Authorization: Bearer <admin_token> required"}, status_code=401)

    async def get(request: Request) -> Response:
        return JSONResponse(
            {"service": "db", "faults": await faults.status(), "load_requests": load and load.sent}
        )

    async def post(request: Request) -> Response:
        if not authorised(request):
            return denied()
        try:
            await faults.inject(request.path_params["name"])
        except KeyError as exc:
            return JSONResponse({"error": exc.args[0]}, status_code=404)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
        return JSONResponse({"service": "db", "faults": await faults.status()})

    async def delete(request: Request) -> Response:
        if not authorised(request):
            return denied()
        name = request.path_params.get("name")
        cleared = await faults.clear(name)
        if name and not cleared:
            return JSONResponse({"error": "not injected"}, status_code=404)
        return JSONResponse({"service": "db", "cleared": cleared, "faults": await faults.status()})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "pass"}, media_type="application/health+json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        task = asyncio.create_task(load.run()) if load else None
        yield
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(faults.clear(), 3)
        await faults.ctx.close()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/demo/faults", get),
            Route("/demo/faults", delete, methods=["DELETE"]),
            Route("/demo/faults/{name}", post, methods=["POST"]),
            Route("/demo/faults/{name}", delete, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m console.demo.agent")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storefront", required=True)
    parser.add_argument("--sync-worker", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--fault-dsn", default=os.environ.get(DSN_ENV), help=f"default: ${DSN_ENV}")
    parser.add_argument("--socket-dir", required=True)
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--superuser", default="postgres")
    parser.add_argument("--no-load", action="store_true", help="no load generator")
    parser.add_argument("--state-dir", help="the demo state dir (only to mark the process)")
    args = parser.parse_args(argv)
    if not args.fault_dsn:
        parser.error(f"--fault-dsn or ${DSN_ENV} is required")
    with open(args.token_file) as f:
        token = f.read().strip()
    admin = {"host": args.socket_dir, "port": args.pg_port, "user": args.superuser, "database": "shop"}
    faults = DbFaults(DbContext(args.fault_dsn, admin))
    load = None if args.no_load else LoadGenerator(args.storefront, args.sync_worker, token)
    config = uvicorn.Config(
        build_app(faults, load, token),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
