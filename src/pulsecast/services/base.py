"""The contract of a local server, and what every launcher shares.

A :class:`Service` is one real server process (Kafka, PostgreSQL, the HTTP
ingest...) that pulsecast starts on this machine with its data, log and PID
file under the data directory. ``start`` is idempotent (a running server is
left alone), ``stop`` is idempotent (a stopped one is fine), and both survive a
stale PID file left by a crash.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from pulsecast.config import Settings
from pulsecast.services.errors import PortInUseError, ServiceStartError

__all__ = [
    "PidFile",
    "ProcessService",
    "Service",
    "ServiceStatus",
    "check_port_free",
    "port_open",
    "stop_process",
    "wait_until",
]

log = logging.getLogger(__name__)


@dataclass
class ServiceStatus:
    """What ``pulsecast status`` reports about one server."""

    name: str
    running: bool
    managed: bool = True
    pid: int | None = None
    address: str | None = None
    version: str | None = None
    data_dir: str | None = None
    log_file: str | None = None
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The status as plain JSON-able values."""
        return asdict(self)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def _port_holder(port: int) -> str | None:
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return None
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    return None


def check_port_free(service: str, host: str, port: int, setting: str) -> None:
    """Fail with one clear line when ``port`` is taken.

    Raises:
        PortInUseError: Something listens on the port already.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUseError(service, port, setting, _port_holder(port)) from None


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
    abort: Callable[[], str | None] | None = None,
) -> str | None:
    """Poll ``check`` until it is true.

    Args:
        check: Returns True once the condition holds.
        timeout_s: Give up after this long.
        interval_s: Pause between polls.
        abort: Returns a reason to stop waiting early (e.g. the process died).

    Returns:
        None on success, else why waiting stopped.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return None
        if abort is not None and (reason := abort()) is not None:
            return reason
        time.sleep(interval_s)
    return f"not ready after {timeout_s:.0f} s"


def stop_process(pid: int, *, timeout_s: float = 30.0) -> bool:
    """Stop a process group politely (SIGTERM), then by force (SIGKILL).

    Returns:
        True when the process was running and is gone now.
    """
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Servers are started as session leaders: signal the group so helpers go too.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        log.warning("pid %s ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
        proc.wait(timeout=10)
    return True


class PidFile:
    """A PID file that knows whether its process is really ours.

    Args:
        path: The file.
        marker: Strings that must all appear in the process's command line; a
            PID reused by an unrelated process is then not mistaken for ours.
        owned: Whether we write the file; a file the server writes itself
            (PostgreSQL's ``postmaster.pid``) is read but never removed.
    """

    def __init__(self, path: Path, marker: str | tuple[str, ...], *, owned: bool = True) -> None:
        self.path = path
        self.markers = (marker,) if isinstance(marker, str) else marker
        self.owned = owned

    def read(self) -> int | None:
        """The PID of our live process, or None (a stale file is removed with a warning)."""
        try:
            pid = int(self.path.read_text().split("\n", 1)[0].strip())
        except FileNotFoundError:
            return None
        except ValueError:
            if self.owned:
                log.warning("removed unreadable PID file %s", self.path)
                self.path.unlink(missing_ok=True)
            return None
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
            # Our own child is ours even before its exec shows the command line:
            # just after the fork it still carries this process's (seen on a busy machine).
            alive = proc.status() != psutil.STATUS_ZOMBIE and (
                all(marker in cmdline for marker in self.markers) or proc.ppid() == os.getpid()
            )
        except psutil.Error:
            alive = False
        if not alive:
            if self.owned:
                log.warning("removed stale PID file %s (process %s is gone)", self.path, pid)
                self.path.unlink(missing_ok=True)
            return None
        return pid

    def write(self, pid: int) -> None:
        """Record ``pid``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def remove(self) -> None:
        """Forget the process."""
        self.path.unlink(missing_ok=True)


class Service(abc.ABC):
    """One local server.

    Args:
        settings: The platform's settings.
    """

    #: Short name used in CLI output, file names and ``--with``.
    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_root = settings.data_dir
        self.log_file = self.data_root / "logs" / f"{self.name}.log"
        self.run_dir = self.data_root / "run"

    @property
    @abc.abstractmethod
    def managed(self) -> bool:
        """Whether pulsecast runs this server (False when settings point elsewhere)."""

    @abc.abstractmethod
    def start(self) -> ServiceStatus:
        """Start the server and block until it answers.

        Idempotent: a server already running is left as it is. Creates and
        initialises its data on first start.

        Raises:
            ServiceError: It could not be started; the message says why.
        """

    @abc.abstractmethod
    def stop(self) -> bool:
        """Stop the server cleanly and block until it is gone.

        Returns:
            True if it was running.
        """

    @abc.abstractmethod
    def status(self) -> ServiceStatus:
        """Report without changing anything."""


class ProcessService(Service):
    """A server that is one child process we start, with our own PID file.

    Subclasses set ``pid_file`` and ``stop_timeout_s`` and call :meth:`_spawn`.
    """

    pid_file: PidFile
    stop_timeout_s: float = 30.0

    def _spawn(
        self,
        cmd: list[str],
        ready: Callable[[], bool],
        *,
        timeout_s: float,
        env: dict[str, str] | None = None,
    ) -> int:
        """Start ``cmd`` detached, its output appended to the log, and wait until ``ready``.

        ``env`` adds to (or overrides) this process's environment for the child.

        Returns:
            The process id.

        Raises:
            ServiceStartError: It exited or was not ready in time (log tail included).
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the command that started it
                env={**os.environ, **env} if env else None,
            )
        self.pid_file.write(proc.pid)

        def died() -> str | None:
            code = proc.poll()
            return None if code is None else f"the process exited with code {code}"

        problem = wait_until(ready, timeout_s=timeout_s, abort=died)
        if problem is not None:
            stop_process(proc.pid, timeout_s=10)
            self.pid_file.remove()
            raise ServiceStartError(self.name, problem, self.log_file)
        return proc.pid

    def stop(self) -> bool:  # noqa: D102 (see base class)
        pid = self.pid_file.read()
        if pid is None:
            return False
        stop_process(pid, timeout_s=self.stop_timeout_s)
        self.pid_file.remove()
        return True


class Daemon(ProcessService):
    """One process of a server made of several (HDFS's NameNode, Spark's master).

    The owning :class:`Service` starts its daemons and waits until they work
    together; each daemon only launches its process and keeps its PID file.

    Args:
        settings: The platform's settings.
        name: Its name in PID and log file names (``hdfs-namenode``).
        command: Builds its command line (called at each start).
        marker: Arguments of that command line that make it ours (unique to
            this data directory), checked against a PID found in the PID file.
        env: Variables added to its environment.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        command: Callable[[], list[str]],
        *,
        marker: tuple[str, ...],
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name  # before the base class derives the log file from it
        super().__init__(settings)
        self.command = command
        self.env = dict(env or {})
        self.pid_file = PidFile(self.run_dir / f"{name}.pid", marker=marker)

    @property
    def managed(self) -> bool:
        return True

    @property
    def pid(self) -> int | None:
        """The daemon's PID while it runs."""
        return self.pid_file.read()

    def start(self) -> ServiceStatus:
        """Launch the process and return at once (the owning service waits for readiness)."""
        self._spawn(self.command(), lambda: True, timeout_s=1, env=self.env)
        return self.status()

    def status(self) -> ServiceStatus:
        pid = self.pid
        return ServiceStatus(
            name=self.name, running=pid is not None, pid=pid, log_file=str(self.log_file)
        )
