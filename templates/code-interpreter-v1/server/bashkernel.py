"""A bash kernel: one long-lived bash per context, so that cd, variables and functions persist
between cells as in E2B's bash_kernel (which comes from PyPI; the build has no PyPI).

Each cell is written to a file and `source`d, then bash prints a marker with the cell's id
and exit status on stdout and on stderr; a cell has ended when both markers came back, so
that no output of it is lost or handed to the next. Messages are Jupyter-shaped, as
kernels.py promises. A non-zero status is an error whose value is the status, as
bash_kernel reports it.
"""

import asyncio
import datetime
import os
import shlex
import signal
import tempfile
import uuid

MARK = "\x01cove-cell-end "


def _msg(msg_id, msg_type, content):
    date = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return {"msg_type": msg_type, "parent_header": {"msg_id": msg_id}, "header": {"date": date}, "content": content}


class BashKernel:
    def __init__(self):
        self.proc = None
        self._deliver = None
        self._cwd = None
        self._env = None
        self._tasks = []
        self._cells = {}  # msg_id -> {"silent": bool, "left": streams still open, "status": int}
        self._count = 0
        self._dir = tempfile.mkdtemp(prefix="cove-bash-")

    async def start(self, cwd, env, deliver):
        self._deliver, self._cwd, self._env = deliver, cwd, env
        await self._spawn()

    async def _spawn(self):
        self.proc = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            cwd=self._cwd,
            env=self._env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # an interrupt goes to the whole group (bash and its child)
        )
        # On SIGINT bash leaves the cell it is sourcing (and its loop) instead of exiting; a
        # trapped signal is reset in children, so the command running is interrupted too.
        self.proc.stdin.write(b"trap 'return 130 2>/dev/null' INT\n")
        self._tasks = [
            asyncio.create_task(self._read(self.proc.stdout, "stdout")),
            asyncio.create_task(self._read(self.proc.stderr, "stderr")),
        ]

    async def _read(self, stream, name):
        pending = ""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            pending += chunk.decode("utf-8", errors="replace")
            while True:
                at = pending.find(MARK)
                if at == -1:
                    # Keep what could be the start of a marker for the next read.
                    keep = next((i for i in range(max(0, len(pending) - len(MARK)), len(pending)) if MARK.startswith(pending[i:])), len(pending))
                    self._output(name, pending[:keep])
                    pending = pending[keep:]
                    break
                end = pending.find("\n", at)
                if end == -1:
                    self._output(name, pending[:at])
                    pending = pending[at:]
                    break
                self._output(name, pending[:at])
                self._ended(name, pending[at + len(MARK) : end].split())
                pending = pending[end + 1 :]

    def _running(self):
        return next(iter(self._cells), None)

    def _output(self, name, text):
        msg_id = self._running()
        if text and msg_id is not None and not self._cells[msg_id]["silent"]:
            self._deliver(_msg(msg_id, "stream", {"name": name, "text": text}))

    def _ended(self, name, fields):
        msg_id = fields[0] if fields else None
        cell = self._cells.get(msg_id)
        if cell is None:
            return
        if name == "stdout" and len(fields) > 1:
            cell["status"] = int(fields[1])
        cell["left"].discard(name)
        if cell["left"]:
            return
        del self._cells[msg_id]
        if cell["status"] and not cell["silent"]:
            self._deliver(_msg(msg_id, "error", {"ename": "", "evalue": str(cell["status"]), "traceback": []}))
        self._deliver(_msg(msg_id, "status", {"execution_state": "idle"}))

    def execute(self, code, silent):
        msg_id = str(uuid.uuid4())
        # Named for the messages bash writes about it ("cell-3: line 1: syntax error ...").
        path = os.path.join(self._dir, f"cell-{self._count + 1}" if not silent else "setup")
        with open(path, "w") as f:
            f.write(code + "\n")
        self._cells[msg_id] = {"silent": silent, "left": {"stdout", "stderr"}, "status": 0}
        if not silent:
            self._count += 1
            # Later, not now: the caller registers the execution once execute has returned.
            msg = _msg(msg_id, "execute_input", {"code": code, "execution_count": self._count})
            asyncio.get_running_loop().call_soon(self._deliver, msg)
        mark = shlex.quote(MARK + msg_id)
        self.proc.stdin.write(
            f"source {shlex.quote(path)}; __cove_rc=$?; rm -f {shlex.quote(path)}; "
            f"printf '%s %s\\n' {mark} \"$__cove_rc\"; printf '%s\\n' {mark} >&2\n".encode()
        )
        return msg_id

    async def interrupt(self):
        if await self.is_alive():
            os.killpg(self.proc.pid, signal.SIGINT)

    async def is_alive(self):
        return self.proc is not None and self.proc.returncode is None

    async def _stop(self):
        for task in self._tasks:
            task.cancel()
        self._cells.clear()
        if await self.is_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def restart(self):
        await self._stop()
        await self._spawn()

    async def shutdown(self):
        await self._stop()

    # Values are single-quoted for bash (shlex.quote): nothing in them is expanded.
    @staticmethod
    def set_env_code(env):
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items() if k.isidentifier())

    @staticmethod
    def unset_env_code(keys):
        return "\n".join(f"unset {k}" for k in keys if k.isidentifier())

