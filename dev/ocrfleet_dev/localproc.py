"""Local servers as child processes: Redis and PostgreSQL on free loopback ports.

The embedded path (``ocrfleet process``), the benchmarks and the tests start the real
servers from Debian's packages this way. Each server gets its own temporary directory,
waits until it answers, and stops cleanly (its directory removed) on ``stop()`` or when the
``with`` block ends. A server that fails to start raises :class:`ServiceError` with its log
tail instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ocrfleet_operator.stores import SEAWEEDFS_ONE_VOLUME_AT_A_TIME

from ocrfleet.errors import ServiceError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def find_binary(name: str, *candidates: str) -> str:
    for c in (shutil.which(name), *candidates):
        if c and os.access(c, os.X_OK):
            return c
    raise ServiceError(f"{name} is not installed; run `make deps` (Debian package) first")


class LocalProcess:
    """A child process with a log file, a readiness check and a clean stop."""

    def __init__(self, name: str, argv: Sequence[str], *, workdir: Path, env: dict | None = None,
                 user: str | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.env = env
        self.user = user
        self.proc: subprocess.Popen | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 30.0) -> LocalProcess:
        """Spawn the process and wait until ``ready()`` answers true."""
        return self.spawn().wait_ready(ready, timeout)

    def spawn(self) -> LocalProcess:
        """Start the process in its own session (so a stop takes its children too)."""
        preexec = _demote(self.user) if self.user else None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.workdir, preexec_fn=preexec, start_new_session=True)
        return self

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 30.0) -> LocalProcess:
        """Poll ``ready()``; raise with the log tail if the process exits or the time runs out."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if ready():
                    return self
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name} did not become ready in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


def _demote(user: str) -> Callable[[], None]:
    entry = pwd.getpwnam(user)

    def preexec() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return preexec


class _Server:
    """A server process with a work directory: stopped (and its own directory removed) on exit."""

    process: LocalProcess | None = None
    workdir: Path
    _own_dir: bool
    stop_timeout = 10.0

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=self.stop_timeout)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RedisServer(_Server):
    """``redis-server`` on a free loopback port; AOF on so a restart loses nothing acknowledged.

    ``host`` binds another address of this machine instead (a test node's bridge, so that its
    pods reach the server); the port is still chosen free on loopback.
    """

    def __init__(self, workdir: Path | None = None, *, port: int | None = None, appendonly: bool = True,
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ocrfleet-redis-"))
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: LocalProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = find_binary("redis-server", "/usr/bin/redis-server")
        protected = "yes" if self.host == "127.0.0.1" else "no"  # no password: the bind is the boundary
        argv = [binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.workdir),
                "--save", "", "--protected-mode", protected, "--daemonize", "no"]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        self.process = LocalProcess("redis", argv, workdir=self.workdir).start(self._ping)
        return self

    def _ping(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def restart(self) -> None:
        """Kill Redis hard and start it again on the same port and data (AOF replay)."""
        assert self.process is not None
        self.process.kill()
        self.start()



class ObjectStoreServer(_Server):
    """SeaweedFS (``weed server -s3``) on free ports: a real S3-compatible object store.

    One process holds the master, a volume server, the filer and the S3 gateway, with its data
    under ``workdir``. The S3 credentials are an admin identity from the environment, as in
    the pool's managed object store. ``host`` binds another address of this machine (a test
    node's bridge).
    """

    def __init__(self, binary: str, workdir: Path | None = None, *, host: str = "127.0.0.1",
                 access_key: str = "ocrfleet-test", secret_key: str = "ocrfleet-test-secret") -> None:
        self.binary = binary
        self.host = host
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ocrfleet-objects-"))
        self.access_key, self.secret_key = access_key, secret_key
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
        ports: set[int] = set()
        while len(ports) < len(names):  # eight distinct ports (free_port may hand out one twice)
            ports.add(free_port())
        self.ports = dict(zip(names, sorted(ports), strict=True))
        self.process: LocalProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    def start(self, timeout: float = 60) -> ObjectStoreServer:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = self.ports
        argv = [self.binary, "server", f"-dir={data}", f"-ip={self.host}", f"-ip.bind={self.host}",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
                "-master.volumeSizeLimitMB=256", "-volume.max=0"]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
               **{e["name"]: e["value"] for e in SEAWEEDFS_ONE_VOLUME_AT_A_TIME}}
        self.process = LocalProcess("seaweedfs", argv, workdir=self.workdir, env=env).start(
            self._ready, timeout=timeout)
        return self

    def _ready(self) -> bool:
        import httpx

        # the gateway answers once the filer behind it is up; an anonymous list is refused (403)
        return httpx.get(self.endpoint, timeout=1).status_code in (200, 403)



class PostgresServer(_Server):
    """A throw-away PostgreSQL cluster (initdb) on a free loopback port.

    PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` user that
    Debian's package creates. ``host`` binds another address of this machine instead (a test
    node's bridge); clients on the networks it is attached to are then trusted too.
    """

    stop_timeout = 20.0

    def __init__(self, workdir: Path | None = None, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ocrfleet-pg-"))
        self.port = port or free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.process: LocalProcess | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://ocrfleet@{self.host}:{self.port}/ocrfleet"

    def start(self) -> PostgresServer:
        bindir = _pg_bindir()
        data = self.workdir / "data"
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        if not data.exists():
            preexec = _demote(self.user) if self.user else None
            init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "ocrfleet", "--auth=trust",
                                   "-E", "UTF8", "--no-sync"], capture_output=True, text=True,
                                  preexec_fn=preexec, cwd=self.workdir, timeout=120)
            if init.returncode != 0:
                raise ServiceError(f"initdb failed:\n{(init.stdout + init.stderr)[-3000:]}")
            if self.host != "127.0.0.1":
                with open(data / "pg_hba.conf", "a") as hba:
                    hba.write("host all all samenet trust\n")
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-h", self.host,
                "-k", str(self.workdir), "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200"]
        self.process = LocalProcess("postgres", argv, workdir=self.workdir, user=self.user)
        self.process.start(self._ready, timeout=60)
        return self

    def _ready(self) -> bool:
        bindir = _pg_bindir()
        ok = subprocess.run([str(bindir / "pg_isready"), "-h", self.host, "-p", str(self.port)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run([str(bindir / "createdb"), "-h", self.host, "-p", str(self.port),
                            "-U", "ocrfleet", "ocrfleet"], capture_output=True)
        return ok



def _pg_bindir() -> Path:
    for version in ("17", "16", "15"):
        d = Path(f"/usr/lib/postgresql/{version}/bin")
        if (d / "postgres").exists():
            return d
    raise ServiceError("PostgreSQL is not installed; run `make deps` (Debian package postgresql)")
