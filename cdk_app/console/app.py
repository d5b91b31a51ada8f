"""The console as a Starlette application: two pages, their JSON, the actions, the headers.

Why Starlette: the console is a handful of routes over a store that is synchronous (pymongo),
and Starlette runs plain functions in its thread pool, serves static files and adds middleware
in a few lines, on top of ASGI and uvicorn; FastAPI would add pydantic and an OpenAPI layer the
console has no use for.

Every page and script is a file under ``static/`` (no inline script or style), so the Content
Security Policy allows scripts and styles from the console itself and nothing else: the console
works offline and cannot be made to run another site's code. The graph layout library is served
from the pinned npm package in ``node_modules``.

Actions change runs, so they are refused unless the console was started with
``--allow-actions`` (403), and they must come from the console's own pages: a POST with the
``X-Console-Action`` header (a page of another site cannot send a custom header without a CORS
pre-flight, which the console never grants), from the console's origin when the browser says
(``Origin``, ``Sec-Fetch-Site``), to a host name the console answers to (no DNS rebinding).
A run whose state forbids the action is a 409; an unknown run a 404. Approving or rejecting an
approval job is an action too (``/api/run/approve`` and ``/api/run/reject`` with the job, and
the output or the reason as a JSON body), refused the same ways, and a 409 when the job is not
waiting for an answer. So is sending the event an event job waits for (``/api/run/event`` with
the job, and ``{"payload", "id"?}`` as the body): sent to that run only; and completing or
failing a waiting callback job (``/api/run/complete`` with the job, and ``{"output"}`` or
``{"error"}`` as the body), with the token of its current attempt.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdk_app.console.listing import RunFilters, count_by_state, runs_page
from cdk_app.console.prometheus import CONTENT_TYPE, Registry
from cdk_app.console.stats import workflow_stats
from cdk_app.console.views import run_json
from cdk_app.terminal.timeline import summary_to_json
from runtime.client import Client
from runtime.clock import utcnow
from runtime.documents.callbacks import callback_token
from runtime.documents.items import FAILED_ITEMS_SHOWN
from runtime.engine.callbacks import awaits_callback
from runtime.errors import RunError, StoreError
from runtime.service.callbacks import token_of
from runtime.service.job_limits import job_waits
from runtime.service.operations import OperationReceipt
from runtime.store.mongo import MongoStore

STATIC = Path(__file__).resolve().parent / "static"
REPO = Path(__file__).resolve().parents[2]
LAYOUT_LIBRARY = REPO / "node_modules" / "@dagrejs" / "dagre" / "dist" / "dagre.min.js"
"""The browser build of dagre, from the version pinned in package.json (``make setup``)."""
STATS_HOURS = 24
MAX_STATS_HOURS = 24 * 14
"""The workflow page's window: a day by default, two weeks at most."""

ACTION_HEADER = "x-console-action"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds the policy and its companions to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _date(request: Request, name: str) -> datetime | None:
    text = request.query_params.get(name) or None
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filters(request: Request) -> RunFilters:
    params = request.query_params
    return RunFilters(
        workflow=params.get("workflow") or None,
        status=params.get("status") or None,
        since=_date(request, "since"),
        until=_date(request, "until"),
        text=params.get("q") or None,
    )


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host')}"


Operation = Callable[[MongoStore, str], OperationReceipt]
"""An action on one run, by id."""


def _no_upgrade(store: MongoStore, run_id: str) -> OperationReceipt:
    raise RunError("this console knows no spec folder to upgrade runs to: start it from the dev server")


async def _json_fields(request: Request, what: str, shape: str) -> dict[str, Any] | Response:
    """The JSON object an operator's request carries (an empty body is ``{}``), or the 400 that
    says what is wrong with it: ``what`` names it (``the answer``), ``shape`` shows the object."""
    body = await request.body()
    try:
        fields = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        return _problem(400, f"{what} is not JSON: {exc}")
    if not isinstance(fields, dict):
        return _problem(400, f"{what} is a JSON object: {shape}")
    return fields


def _operated(operate: Callable[[], Response]) -> Response:
    """What ``operate`` answers, or the problem it met: the run's (409) or the database's (503)."""
    try:
        return operate()
    except RunError as exc:
        return _problem(409, str(exc))
    except StoreError as exc:
        return _problem(503, str(exc))


def console_app(
    store: MongoStore,
    *,
    allow_actions: bool,
    hosts: list[str],
    upgrade: Operation | None = None,
    metrics: Registry | None = None,
) -> Starlette:
    """The application over ``store``; ``hosts`` are the host names it answers to; ``upgrade``
    is the upgrading redrive (``redrive --upgrade``), None when the console knows no spec folder;
    ``metrics``: what ``/metrics`` serves (the dev server's; None: no such page)."""

    def page(name: str) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            return FileResponse(STATIC / name)

        return serve

    def layout_library(request: Request) -> Response:
        return FileResponse(LAYOUT_LIBRARY, media_type="text/javascript")

    def guarded(read: Callable[[Request], Any]) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            try:
                return JSONResponse(read(request))
            except (ValueError, RunError) as exc:  # a bad date, state or cursor
                return _problem(400, str(exc))
            except StoreError as exc:
                return _problem(503, str(exc))

        return serve

    def runs(request: Request) -> dict[str, Any]:
        found = runs_page(store, _filters(request), request.query_params.get("page") or None)
        return {"runs": [summary_to_json(run) for run in found.runs], "next_page": found.next_page}

    def counts(request: Request) -> dict[str, Any]:
        return {"counts": count_by_state(store, _filters(request))}

    def workflow(request: Request) -> dict[str, Any]:
        name = request.query_params.get("name", "")
        hours = int(request.query_params.get("hours") or STATS_HOURS)
        if not name or not 1 <= hours <= MAX_STATS_HOURS:
            raise ValueError(f"name a workflow, and hours from 1 to {MAX_STATS_HOURS}")
        return workflow_stats(store, name, utcnow(), hours)

    def run(request: Request) -> Response:
        run_id = request.query_params.get("id", "")
        try:
            found = store.read_run(run_id)
            if found is None:
                return _problem(404, f"no run {run_id!r} in this database")
            failed = {
                name: store.items().failed_items(run_id, name, FAILED_ITEMS_SHOWN)
                for name, record in found.jobs.items()
                if record.fan_out is not None and record.fan_out.failed
            }
            statuses = store.read_statuses(run_id, items=False)
            document = run_json(
                found,
                statuses,
                allow_actions,
                failed,
                upgrades=upgrade is not None,
                waits=job_waits(store, found),
            )
            document["callback_tokens"] = {
                job.name: token for job in found.definition.jobs() if (token := token_of(store, found, job))
            }
            return JSONResponse(document)
        except StoreError as exc:
            return _problem(503, str(exc))

    def refused(request: Request) -> Response | None:
        """Why the console does not take an action from ``request`` (None: it does)."""
        if not allow_actions:
            return _problem(403, "the console is read-only: start it with --allow-actions to act on runs")
        if ACTION_HEADER not in request.headers or not _same_origin(request):
            return _problem(403, "actions are taken from the console's own pages only")
        return None

    def action(operate: Operation) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            if (refusal := refused(request)) is not None:
                return refusal
            run_id = request.query_params.get("id", "")

            def operate_on_run() -> Response:
                if store.read_run(run_id) is None:
                    return _problem(404, f"no run {run_id!r} in this database")
                receipt = operate(store, run_id)
                return JSONResponse({"operation": receipt.operation, "created": receipt.created})

            return _operated(operate_on_run)

        return serve

    def answer(approve: bool) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            if (refusal := refused(request)) is not None:
                return refusal
            fields = await _json_fields(request, "the answer", '{"output": ...} or {"reason": "..."}')
            if isinstance(fields, Response):
                return fields
            reason = fields.get("reason")
            if reason is not None and not isinstance(reason, str):
                return _problem(400, "the reason is text")
            job = request.query_params.get("job", "")

            def answer_it(store: MongoStore, run_id: str) -> OperationReceipt:
                client = Client.on_store(store)
                if approve:
                    return client.approve(run_id, job, fields.get("output", {}))
                return client.reject(run_id, job, reason)

            operate = action(answer_it)
            return await run_in_threadpool(operate, request)

        return serve

    async def send_event(request: Request) -> Response:
        """An operator sends the event a waiting event job of the run waits for, to that run."""
        if (refusal := refused(request)) is not None:
            return refusal
        fields = await _json_fields(request, "the event", '{"payload": ..., "id"?: "..."}')
        if isinstance(fields, Response):
            return fields
        run_id, job = request.query_params.get("id", ""), request.query_params.get("job", "")

        def send() -> Response:
            run = store.read_run(run_id)
            if run is None:
                return _problem(404, f"no run {run_id!r} in this database")
            if job not in run.jobs or (waited := run.definition.job(job).event) is None:
                return _problem(409, f"run {run_id} has no event job {job!r}")
            receipt = Client.on_store(store).send_event(
                run.workflow, waited.name, fields.get("payload"), run_id=run_id, event_id=fields.get("id")
            )
            return JSONResponse({"operation": "event", **receipt.to_json()})

        return await run_in_threadpool(_operated, send)

    async def complete(request: Request) -> Response:
        """An operator completes (``{"output"}``) or fails (``{"error"}``) the callback a waiting
        callback job of the run waits for, with the token of its current attempt."""
        if (refusal := refused(request)) is not None:
            return refusal
        shape = '{"output": ...} or {"error": "..."}'
        fields = await _json_fields(request, "the completion", shape)
        if isinstance(fields, Response):
            return fields
        if not isinstance(fields.get("error", ""), str):
            return _problem(400, f"the completion is a JSON object: {shape}")
        run_id, job = request.query_params.get("id", ""), request.query_params.get("job", "")

        def complete_it() -> Response:
            run = store.read_run(run_id)
            if run is None:
                return _problem(404, f"no run {run_id!r} in this database")
            if job not in run.jobs or not awaits_callback(run.definition.job(job), run.jobs[job]):
                return _problem(409, f"job {job!r} of run {run_id} does not wait for its callback")
            if store.keys is None:
                return _problem(409, "the console has no status key to make the callback's token with")
            token = callback_token(store.keys, run.workflow, run_id, job, run.jobs[job].attempt)
            receipt = Client.on_store(store).complete(
                token, fields.get("output"), error=fields.get("error"), completion_id=fields.get("id")
            )
            return JSONResponse({"operation": "complete", **receipt.to_json()})

        return await run_in_threadpool(_operated, complete_it)

    routes = [
        Route("/", page("runs.html")),
        Route("/run", page("run.html")),
        Route("/workflow", page("workflow.html")),
        Route("/api/workflow", guarded(workflow)),
        Route("/api/runs", guarded(runs)),
        Route("/api/counts", guarded(counts)),
        Route("/api/run", run),
        Route(
            "/api/run/cancel", action(lambda s, run_id: Client.on_store(s).cancel(run_id)), methods=["POST"]
        ),
        Route(
            "/api/run/redrive", action(lambda s, run_id: Client.on_store(s).redrive(run_id)), methods=["POST"]
        ),
        Route("/api/run/upgrade", action(upgrade or _no_upgrade), methods=["POST"]),
        Route("/api/run/approve", answer(True), methods=["POST"]),
        Route("/api/run/reject", answer(False), methods=["POST"]),
        Route("/api/run/event", send_event, methods=["POST"]),
        Route("/api/run/complete", complete, methods=["POST"]),
        Route("/vendor/dagre.min.js", layout_library),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", lambda request: Response(metrics.text(), media_type=CONTENT_TYPE)))
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=hosts)]
    return Starlette(routes=routes, middleware=middleware)
