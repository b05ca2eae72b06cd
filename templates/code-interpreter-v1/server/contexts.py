"""Contexts: one kernel each (kernels.py), python or javascript/typescript.

E2B runs Jupyter Server and talks to it over websockets; Cove talks to the kernels directly,
which leaves one process (this server) between the SDK and the kernels and no HTTP hop
inside the sandbox. A context's id is a UUID, as E2B's kernel ids are.

Invariants:
- executions in a context are serialized by `lock`; what one leaves to do (interrupting the
  kernel after a client went away, restoring env vars) is `pending`, which the next holder of
  the lock awaits first, so it never overlaps the next execution;
- the kernel hands every message it publishes to `_deliver`, which puts it on the queue of
  the execution that caused it (by parent msg_id); messages of nobody's execution are dropped.
"""

import asyncio
import json
import logging
import os
import uuid

import outputs
from bashkernel import BashKernel
from kernels import JupyterKernel, NodeKernel, RKernel

log = logging.getLogger("contexts")

# A silent line every KEEPALIVE seconds of silence: uvicorn learns that a client has gone
# only when a write fails, and that is what triggers the interrupt (spec 5.2).
KEEPALIVE = 5.0
# How often a waiting execution checks that its kernel still lives.
ALIVE_CHECK = 1.0
QUIET_TIMEOUT = 30.0
# A sandbox claimed from Cove's warm pool learns its sandbox-wide env vars after this server
# started: the manager writes them here at the claim (src/manager/startup.ts).
SANDBOX_ENV_FILE = "/run/cove/env.json"
# The kernel's debugger (debugpy) warns about frozen modules on every start otherwise.
KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}

# The kernel of each language. java is the one E2B language without a kernel in this
# template (docs/code-interpreter.md).
KERNELS = {
    "python": lambda: JupyterKernel("python3"),
    "javascript": lambda: NodeKernel(typescript=False),
    "typescript": lambda: NodeKernel(typescript=True),
    "r": RKernel,
    "bash": BashKernel,
}
ALIASES = {"js": "javascript", "ts": "typescript"}


class ContextError(Exception):
    """A request the server refuses; `status` is the HTTP status of the reply."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def normalize_language(language):
    lang = (language or "python").strip().lower() or "python"
    return ALIASES.get(lang, lang)


def check_language(language):
    if language not in KERNELS:
        raise ContextError(
            400,
            f"language {language!r} is not available in this sandbox "
            f"(available: {', '.join(sorted(KERNELS))})",
        )


# Marks put on an execution's queue by the server itself rather than by the kernel.
_RESTARTING = {"msg_type": "cove_restarting"}
_REMOVED = {"msg_type": "cove_removed"}


class Context:
    def __init__(self, language, cwd, env):
        self.id = str(uuid.uuid4())
        self.language = language
        self.cwd = cwd
        # The environment the kernel starts with, and what per-execution env vars fall
        # back to afterwards: the server's own, i.e. the sandbox-wide env vars (the manager
        # starts the server with them).
        self.env = dict(env)
        self.kernel = KERNELS[language]()
        self.lock = asyncio.Lock()
        self.pending = None
        self.executions = {}
        # Whether the kernel has SANDBOX_ENV_FILE's variables (set at its first execution).
        self._synced = False

    def info(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    async def start(self):
        if not os.path.isdir(self.cwd):
            raise ContextError(400, f"cwd {self.cwd!r} is not a directory in the sandbox")
        await self.kernel.start(self.cwd, {**self.env, **KERNEL_ENV}, self._deliver)

    def _deliver(self, msg):
        queue = self.executions.get((msg.get("parent_header") or {}).get("msg_id"))
        if queue is not None:
            queue.put_nowait(msg)

    def _mark_running(self, mark):
        for queue in self.executions.values():
            queue.put_nowait(mark)

    async def _settle(self):
        """Awaits what the previous execution left to do; called with the lock held."""
        if self.pending is not None:
            task, self.pending = self.pending, None
            try:
                await task
            except Exception:
                log.exception("cleanup after an execution in %s", self.id)
        if not await self.kernel.is_alive():
            log.warning("kernel of %s is dead: starting a new one", self.id)
            await self._restart_kernel()

    async def _restart_kernel(self):
        self._synced = False
        await self.kernel.restart()

    async def execute(self, code, env_vars):
        """The lines of one execution, as dicts, ending with end_of_execution."""
        async with self.lock:
            await self._settle()
            if not self._synced:
                await self._sync_sandbox_env()
            if env_vars:
                await self._quiet(self._set_env_code(env_vars))
            msg_id = self.kernel.execute(code, silent=False)
            queue = self.executions[msg_id] = asyncio.Queue()
            finished = False
            try:
                async for line in self._lines(queue):
                    yield line
                finished = True
            finally:
                # Runs on a normal end and when the client went away (the stream's task is
                # cancelled): the latter must not leave the kernel busy for the next one.
                self.pending = asyncio.ensure_future(self._after(msg_id, queue, finished, env_vars))
            yield {"type": "end_of_execution"}

    async def _lines(self, queue):
        errored = False
        silent_for = 0.0
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), ALIVE_CHECK)
            except asyncio.TimeoutError:
                if not await self.kernel.is_alive():
                    yield outputs.error(
                        "UnexpectedEndOfExecution",
                        "the kernel died during the execution; the context restarts with a fresh state",
                        "",
                    )
                    return
                silent_for += ALIVE_CHECK
                if silent_for >= KEEPALIVE:
                    silent_for = 0.0
                    yield {"type": "keepalive"}
                continue
            silent_for = 0.0
            kind = msg["msg_type"]
            if msg is _RESTARTING or msg is _REMOVED:
                name = "ContextRestarting" if msg is _RESTARTING else "ContextRemoved"
                yield outputs.error(name, f"Context was {'restarted' if msg is _RESTARTING else 'removed'}", "")
                return
            if kind == "status":
                if msg["content"].get("execution_state") == "idle":
                    return
                continue
            line = outputs.from_iopub(msg)
            if line is None:
                continue
            if line["type"] == "error":
                # ipykernel reports an exception once on iopub; a second one would replace
                # the first on the client's execution.error.
                if errored:
                    continue
                errored = True
            yield line

    async def _after(self, msg_id, queue, finished, env_vars):
        try:
            if not finished:
                log.info("client left during an execution in %s: interrupting the kernel", self.id)
                await self.kernel.interrupt()
                try:
                    await asyncio.wait_for(self._until_idle(queue), QUIET_TIMEOUT)
                except asyncio.TimeoutError:
                    log.warning("kernel of %s ignored the interrupt: restarting it", self.id)
                    await self._restart_kernel()
                    return
        finally:
            self.executions.pop(msg_id, None)
        if env_vars:
            await self._quiet(self._reset_env_code(env_vars))

    async def _sync_sandbox_env(self):
        try:
            with open(SANDBOX_ENV_FILE) as f:
                sandbox_env = json.load(f)
        except FileNotFoundError:
            sandbox_env = {}
        if not isinstance(sandbox_env, dict):
            sandbox_env = {}
        sandbox_env = {k: v for k, v in sandbox_env.items() if isinstance(k, str) and isinstance(v, str)}
        if sandbox_env:
            self.env.update(sandbox_env)
            await self._quiet(self._set_env_code(sandbox_env))
        self._synced = True

    @staticmethod
    async def _until_idle(queue):
        while True:
            msg = await queue.get()
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return

    async def _quiet(self, code):
        """Runs code that leaves no trace: no output, no history, no execution count."""
        msg_id = self.kernel.execute(code, silent=True)
        queue = self.executions[msg_id] = asyncio.Queue()
        try:
            await asyncio.wait_for(self._until_idle(queue), QUIET_TIMEOUT)
        finally:
            self.executions.pop(msg_id, None)

    def _set_env_code(self, env_vars):
        return self.kernel.set_env_code(env_vars)

    def _reset_env_code(self, env_vars):
        restore = {k: self.env[k] for k in env_vars if k in self.env}
        drop = [k for k in env_vars if k not in self.env]
        return f"{self.kernel.set_env_code(restore)}\n{self.kernel.unset_env_code(drop)}"

    async def restart(self):
        """Clears the kernel's state; a running execution ends with ContextRestarting."""
        self._mark_running(_RESTARTING)
        async with self.lock:
            if self.pending is not None:
                await asyncio.gather(self.pending, return_exceptions=True)
                self.pending = None
            await self._restart_kernel()

    async def shutdown(self):
        self._mark_running(_REMOVED)
        async with self.lock:
            if self.pending is not None:
                await asyncio.gather(self.pending, return_exceptions=True)
                self.pending = None
            await self.kernel.shutdown()
