"""Cove's code interpreter server: E2B's protocol on port 49999 (spec/e2b-protocol.md 5).

Started by the sandbox manager from template.json's `start` (there is no init system in a
sandbox), as the template's user, with the sandbox-wide env vars in its environment; the
manager's create returns once port 49999 accepts connections. The port opens only after the
default contexts' kernels answered, so the first runCode never waits for a cold kernel.

Written for Cove on Starlette and uvicorn as Debian packages them (no PyPI in the build).
"""

import asyncio
import json
import logging
import os
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import outputs  # noqa: E402
from contexts import Context, ContextError, check_language, normalize_language  # noqa: E402

PORT = int(os.environ.get("COVE_CODE_INTERPRETER_PORT", "49999"))
DEFAULT_CWD = "/home/user"
READY_MARK = "/tmp/.code-interpreter-ready"

log = logging.getLogger("server")

contexts = {}  # id -> Context
defaults = {}  # language -> id of its default context
# Creating a language's default context happens once even when requests race for it.
default_locks = {}


async def new_context(language, cwd):
    ctx = Context(language, cwd, os.environ)
    try:
        await ctx.start()
    except ContextError:
        raise
    except Exception as err:
        log.exception("starting a %s kernel", language)
        raise ContextError(500, f"starting a {language} kernel failed: {err}") from err
    contexts[ctx.id] = ctx
    return ctx


async def default_context(language):
    lock = default_locks.setdefault(language, asyncio.Lock())
    async with lock:
        ctx = contexts.get(defaults.get(language, ""))
        if ctx is None:
            ctx = await new_context(language, DEFAULT_CWD)
            defaults[language] = ctx.id
        return ctx


async def read_json(request):
    """The body as a JSON object; ContextError(400) for anything else."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as err:
        raise ContextError(400, f"the body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise ContextError(400, "the body must be a JSON object")
    return data


def optional_str(data, key):
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ContextError(400, f"{key} must be a string")
    return value


async def health(request):
    return JSONResponse("OK")


async def execute(request):
    data = await read_json(request)
    code = data.get("code")
    if not isinstance(code, str):
        raise ContextError(400, "code must be a string")
    context_id = optional_str(data, "context_id")
    language = optional_str(data, "language")
    env_vars = data.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise ContextError(400, "env_vars must be an object of strings")
    if context_id and language:
        raise ContextError(400, "Only one of context_id or language can be provided")
    if context_id:
        ctx = contexts.get(context_id)
        if ctx is None:
            raise ContextError(404, f"Context {context_id} not found")
    else:
        lang = normalize_language(language)
        check_language(lang)
        ctx = await default_context(lang)

    async def lines():
        async for line in ctx.execute(code, env_vars):
            yield outputs.encode(line)

    # No media type, as upstream: the SDK reads lines and never looks at it.
    return StreamingResponse(lines(), media_type=None)


async def create_context(request):
    data = await read_json(request)
    language = normalize_language(optional_str(data, "language"))
    cwd = optional_str(data, "cwd") or DEFAULT_CWD
    check_language(language)
    ctx = await new_context(language, cwd)
    return JSONResponse(ctx.info())


async def list_contexts(request):
    return JSONResponse([ctx.info() for ctx in contexts.values()])


def find(request):
    context_id = request.path_params["context_id"]
    ctx = contexts.get(context_id)
    if ctx is None:
        raise ContextError(404, f"Context {context_id} not found")
    return ctx


async def remove_context(request):
    ctx = find(request)
    del contexts[ctx.id]
    for language, default_id in list(defaults.items()):
        if default_id == ctx.id:
            del defaults[language]
    await ctx.shutdown()
    return JSONResponse(None)


async def restart_context(request):
    await find(request).restart()
    return JSONResponse(None)


async def refused(request, err):
    return PlainTextResponse(str(err), status_code=err.status)


async def startup():
    # The default contexts exist before the port opens (see the module doc), as E2B's server
    # creates python's and javascript's at start. Only python's failing stops the server.
    python, javascript = await asyncio.gather(
        default_context("python"), default_context("javascript"), return_exceptions=True
    )
    if isinstance(python, BaseException):
        raise python
    if isinstance(javascript, BaseException):
        log.error("no default javascript context: %s", javascript)
    # template.json's start loop restarts a server that dies (as E2B's systemd unit does),
    # but only one that got this far once: a server that cannot start fails the create.
    with open(READY_MARK, "w"):
        pass
    log.info("default contexts ready")


async def shutdown():
    await asyncio.gather(*(ctx.shutdown() for ctx in contexts.values()), return_exceptions=True)


app = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/execute", execute, methods=["POST"]),
        Route("/contexts", create_context, methods=["POST"]),
        Route("/contexts", list_contexts, methods=["GET"]),
        Route("/contexts/{context_id}", remove_context, methods=["DELETE"]),
        Route("/contexts/{context_id}/restart", restart_context, methods=["POST"]),
    ],
    exception_handlers={ContextError: refused},
    on_startup=[startup],
    on_shutdown=[shutdown],
)


def main():
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Keep-alive as upstream (640 s): the SDK reuses its connection between runCode calls.
    uvicorn.run(app, host="0.0.0.0", port=PORT, timeout_keep_alive=640, access_log=False, log_config=None)


if __name__ == "__main__":
    main()
