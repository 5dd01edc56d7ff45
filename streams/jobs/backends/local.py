"""The default backend: the job is a child process of the worker, in its own session.

`start_new_session=True` puts the job and everything it forks into a new process
group, so `kill()` (timeout, shutdown) and `close()` (leftover background
processes after the job exited) stop all of them, not only the first process.
The environment is exactly what the runner built plus PATH (the worker's, with
the worker's interpreter directory first), LANG, PYTHONUNBUFFERED=1 and HOME
(= the job's temp dir): nothing else of the worker's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from streams.jobs.exceptions import JobStartError
from streams.jobs.launcher import LogLine, StreamName
from streams.jobs.model import JobRequest

READ_LIMIT = 1 << 20  # longer lines are delivered in pieces of this size
EXIT_POLL_S = 0.05
QUEUE_LINES = 10_000
PIPE_CLOSE_S = 2.0
_EOF = object()


def local_process_environment(
    env: Mapping[str, str], workdir: Path, worker_environ: Mapping[str, str]
) -> dict[str, str]:
    """The child's environment: PATH/LANG from the worker, the job's env, HOME=workdir."""
    # the worker's interpreter directory first: `python -m streams.jobs.examples...` in a
    # rule runs with the labstream installation the worker itself runs from
    interpreter_dir = os.path.dirname(sys.executable)
    path = worker_environ.get("PATH", os.defpath)
    base = {
        "PATH": f"{interpreter_dir}{os.pathsep}{path}" if interpreter_dir else path,
        "LANG": worker_environ.get("LANG", "C.UTF-8"),
        # Python jobs: lines reach the log as they are printed, not at exit
        "PYTHONUNBUFFERED": "1",
    }
    base.update(env)
    base["HOME"] = str(workdir)
    return base


class LocalLauncher:
    """Runs `request.command` as a local subprocess (`JobLauncher` for backend 'local')."""

    name = "local"

    def __init__(
        self, *, kill_grace_s: float = 5.0, worker_environ: Mapping[str, str] | None = None
    ) -> None:
        self.kill_grace_s = kill_grace_s
        self._worker_environ = worker_environ

    async def start(
        self, request: JobRequest, *, job_id: str, workdir: Path, env: Mapping[str, str]
    ) -> LocalJob:
        worker_environ = os.environ if self._worker_environ is None else self._worker_environ
        child_env = local_process_environment(env, workdir, worker_environ)
        try:
            process = await asyncio.create_subprocess_exec(
                *request.command,
                cwd=workdir,
                env=child_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=READ_LIMIT,
            )
        except OSError as exc:  # FileNotFoundError, PermissionError, E2BIG, ENOMEM ...
            raise JobStartError(
                f"cannot start local job {job_id}: {request.command[0]!r}: {exc.strerror or exc}",
                hint="use an executable on the worker's PATH or an absolute path in the rule",
            ) from exc
        return LocalJob(process, kill_grace_s=self.kill_grace_s)


class LocalJob:
    """A running local process group (`RunningJob`)."""

    def __init__(self, process: asyncio.subprocess.Process, *, kill_grace_s: float) -> None:
        self._process = process
        self._kill_grace_s = kill_grace_s
        # bounded: a job printing faster than the lines are stored blocks on its own
        # pipe (backpressure) instead of growing the worker's memory
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=QUEUE_LINES)
        self._readers = [
            asyncio.create_task(self._read(process.stdout, "stdout")),
            asyncio.create_task(self._read(process.stderr, "stderr")),
        ]

    @property
    def backend_ref(self) -> str:
        return f"pid:{self._process.pid}"

    @property
    def pid(self) -> int:
        return self._process.pid

    async def _read(self, reader: asyncio.StreamReader | None, stream: StreamName) -> None:
        try:
            while reader is not None:
                try:
                    chunk = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:  # EOF; a last line without \n
                    if exc.partial:
                        await self._queue.put((stream, _decode(exc.partial)))
                    break
                except asyncio.LimitOverrunError as exc:  # a line longer than READ_LIMIT
                    chunk = await reader.readexactly(exc.consumed)
                await self._queue.put((stream, _decode(chunk)))
        finally:
            await self._queue.put(_EOF)

    async def lines(self) -> AsyncIterator[LogLine]:
        open_streams = len(self._readers)
        while open_streams:
            item = await self._queue.get()
            if item is _EOF:
                open_streams -= 1
                continue
            yield item  # type: ignore[misc]

    async def _exited(self) -> int:
        # not Process.wait(): on Python 3.11 it also waits for the pipes to close, which a
        # background process the job left behind keeps open for as long as it likes
        while self._process.returncode is None:
            await asyncio.sleep(EXIT_POLL_S)
        return self._process.returncode

    async def wait(self, timeout: float) -> int:
        return await asyncio.wait_for(self._exited(), timeout)

    def _signal_group(self, signum: int) -> bool:
        try:
            os.killpg(self._process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False  # the whole group is gone already
        return True

    async def kill(self) -> None:
        if not self._signal_group(signal.SIGTERM):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited(), self._kill_grace_s)
        # SIGKILL the group even if the leader obeyed SIGTERM: its children may not have
        self._signal_group(signal.SIGKILL)
        await self._exited()

    async def close(self) -> None:
        if self._process.returncode is None:
            await self.kill()
        # background processes the job left behind would keep the pipes open forever
        self._signal_group(signal.SIGKILL)
        # the pipes close once every process holding them is gone; then the readers end
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers), PIPE_CLOSE_S)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), PIPE_CLOSE_S)


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text
