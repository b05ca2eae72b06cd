"""Kernel transports: how a context starts, talks to, interrupts and restarts its kernel.

Both hand every message a kernel publishes (Jupyter's iopub shape: msg_type, parent_header,
header, content) to `deliver`, and `execute` returns the msg_id its messages will carry as
parent, so that contexts.py drives either one the same way.
- JupyterKernel: a real Jupyter kernel (ipykernel), over ZMQ with jupyter_client.
- RKernel: Debian's IRkernel, a Jupyter kernel with R's env var snippets.
- NodeKernel: js_kernel.mjs, over a socketpair (see that file for why not a Jupyter kernel).
- BashKernel (bashkernel.py): a long-lived bash.
"""

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import uuid

from jupyter_client.manager import AsyncKernelManager

log = logging.getLogger("kernels")

START_TIMEOUT = 60
HERE = os.path.dirname(os.path.abspath(__file__))


class JupyterKernel:
    def __init__(self, kernel_name):
        self.km = AsyncKernelManager(kernel_name=kernel_name)
        self.kc = None
        self._readers = []
        self._deliver = None

    async def start(self, cwd, env, deliver):
        self._deliver = deliver
        await self.km.start_kernel(cwd=cwd, env=env)
        await self._connect()

    async def _connect(self):
        kc = self.km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=START_TIMEOUT)
        self.kc = kc
        self._readers = [
            asyncio.create_task(self._read(kc.get_iopub_msg, self._deliver)),
            # Shell replies are not used (iopub carries everything the stream needs), but they
            # must be read or they pile up in the socket.
            asyncio.create_task(self._read(kc.get_shell_msg, None)),
        ]

    async def _disconnect(self):
        for task in self._readers:
            task.cancel()
        self._readers = []
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None

    @staticmethod
    async def _read(get, deliver):
        while True:
            try:
                msg = await get()
            except asyncio.CancelledError:
                raise
            except Exception:  # a message that does not decode: skip it, keep reading
                log.exception("reading a kernel channel")
                continue
            if deliver is not None:
                deliver(msg)

    def execute(self, code, silent):
        return self.kc.execute(
            code, silent=silent, store_history=not silent, allow_stdin=False, stop_on_error=not silent
        )

    async def interrupt(self):
        await self.km.interrupt_kernel()

    async def is_alive(self):
        return await self.km.is_alive()

    async def restart(self):
        await self._disconnect()
        await self.km.restart_kernel(now=True)
        await self._connect()

    async def shutdown(self):
        await self._disconnect()
        await self.km.shutdown_kernel(now=True)

    # Env var snippets: values are JSON string literals, which Python reads as string literals.
    @staticmethod
    def set_env_code(env):
        return f"__import__('os').environ.update({json.dumps(env)})"

    @staticmethod
    def unset_env_code(keys):
        return f"[__import__('os').environ.pop(k, None) for k in {json.dumps(keys)}]"


class RKernel(JupyterKernel):
    def __init__(self):
        super().__init__("ir")

    # JSON string literals are R string literals too. Sys.setenv() without arguments is an
    # error, which would stop the rest of the snippet.
    @staticmethod
    def set_env_code(env):
        pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in env.items())
        return f"Sys.setenv({pairs})" if pairs else ""

    @staticmethod
    def unset_env_code(keys):
        return f"Sys.unsetenv(c({', '.join(json.dumps(k) for k in keys)}))" if keys else ""


class NodeKernel:
    def __init__(self, typescript):
        self.typescript = typescript
        self.proc = None
        self._sock = None
        self._reader = None
        self._writer = None
        self._deliver = None
        self._cwd = None
        self._env = None

    async def start(self, cwd, env, deliver):
        self._deliver, self._cwd, self._env = deliver, cwd, env
        await self._spawn()

    async def _spawn(self):
        ours, theirs = socket.socketpair()
        env = {**self._env, "COVE_CTL_FD": str(theirs.fileno())}
        # The kernel's own stdout and stderr (not a cell's: those come over the socket) go to
        # this server's log.
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            os.path.join(HERE, "js_kernel.mjs"),
            cwd=self._cwd,
            env=env,
            pass_fds=(theirs.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stdout.fileno(),
            stderr=sys.stderr.fileno(),
        )
        theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        self._writer = writer
        ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(reader, ready))
        await asyncio.wait_for(ready, START_TIMEOUT)

    async def _read(self, reader, ready):
        while True:
            line = await reader.readline()
            if not line:
                if not ready.done():
                    ready.set_exception(RuntimeError("the node kernel exited at start (see the server's log)"))
                return
            try:
                msg = json.loads(line)
            except ValueError:
                log.warning("node kernel wrote a line that is not JSON")
                continue
            if not ready.done():
                ready.set_result(None)  # its first message says it listens
            self._deliver(msg)

    def execute(self, code, silent):
        msg_id = str(uuid.uuid4())
        request = {"msg_id": msg_id, "code": code, "silent": silent, "typescript": self.typescript}
        self._writer.write((json.dumps(request) + "\n").encode())
        return msg_id

    async def interrupt(self):
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)

    async def is_alive(self):
        return self.proc is not None and self.proc.returncode is None

    async def _stop(self):
        if self._reader is not None:
            self._reader.cancel()
        if self._writer is not None:
            self._writer.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def restart(self):
        await self._stop()
        await self._spawn()

    async def shutdown(self):
        await self._stop()

    # Values are JSON literals, which JavaScript reads as they are.
    @staticmethod
    def set_env_code(env):
        return f"Object.assign(process.env, {json.dumps(env)})"

    @staticmethod
    def unset_env_code(keys):
        return f"for (const k of {json.dumps(keys)}) delete process.env[k]"
