"""Second, independent Docker Engines that a test can stop, hang and start.

Stopping the machine's own dockerd would break every other test running beside
ours, so tests of a lost engine, or of several engines, get their own: a `dockerd`
with its own socket, data root, exec root (its own containerd), bridge and pidfile.
Recipe: /work/shared/notes/docker-here.md. Two kinds, one of each per test session:

- `engine`: started with `--live-restore`, so its containers keep running while
  it is down, exactly as a restarted system dockerd leaves them; it also listens
  on tcp://127.0.0.1 with TLS (its own CA, server and client certificates:
  `engine.tls`), for the tcp:// + TLS transport.
- `plain_engine`: without live-restore: its containers stop with it.

Each costs a few seconds (start, and `docker save | docker load` of the fake
image), so one serves every module of the session that imports these fixtures
(the session fixtures share one dockerd through `_shared`). A test gets it
answering; whatever it leaves stopped or frozen is started again for the next.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_mcp.config.compose import LABEL_INSTANCE
from tests.conftest import FAKE_IMAGE, Setup


class Engine:
    """One dockerd process the test controls: start(), stop(), freeze()/thaw(), and always cleanup()."""

    def __init__(self, root: Path, *, live_restore: bool = True, tls: bool = False) -> None:
        self.root = root
        self.live_restore = live_restore
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.bridge = "llm" + uuid.uuid4().hex[:10]  # interface names: at most 15 characters
        self.subnet = _free_subnet()
        self.proc: subprocess.Popen[bytes] | None = None
        self._bridge_made = False
        self._frozen = False
        self.tls: tuple[str, str, str] | None = None  # the client's (ca, cert, key) paths
        self.tcp_host: str | None = None  # tcp://127.0.0.1:PORT (TLS) when tls
        if tls:
            self.tls = _make_certificates(root / "tls")
            self.tcp_host = f"tcp://127.0.0.1:{_free_port()}"
        (root / "daemon.json").write_text("{}\n")  # not the system's /etc/docker/daemon.json

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True, stdin: bytes | None = None,
               ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=stdin is None,
                              input=stdin, check=False, timeout=120)
        if check and done.returncode:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr!r}")
        return done

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        return self.docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        if self.running:
            return
        if not self._bridge_made:
            net = ipaddress.ip_network(self.subnet)
            gateway = f"{next(net.hosts())}/{net.prefixlen}"
            subprocess.run(["ip", "link", "add", "name", self.bridge, "type", "bridge"], check=True)
            self._bridge_made = True
            subprocess.run(["ip", "addr", "add", gateway, "dev", self.bridge], check=True)
            subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        r = self.root
        options = ["--live-restore"] if self.live_restore else []
        if self.tcp_host is not None:
            tls = r / "tls"
            options += ["--host", self.tcp_host, "--tlsverify", "--tlscacert", str(tls / "ca.pem"),
                        "--tlscert", str(tls / "server-cert.pem"), "--tlskey", str(tls / "server-key.pem")]
        with (r / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--config-file", str(r / "daemon.json"), "--host", self.host,
                 "--data-root", str(r / "data"), "--exec-root", str(r / "exec"),
                 "--pidfile", str(r / "docker.pid"), "--bridge", self.bridge, "--iptables=false",
                 *options],
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not answer within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM dockerd and wait for it to exit; with --live-restore containers keep running,
        without they are stopped first (SIGTERM, then SIGKILL after their stop timeout)."""
        if self.proc is None:
            return
        self.thaw()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP dockerd: a hung engine. Its sockets still accept connections; nothing answers."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        if self._frozen and self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self._frozen = False

    def load_image(self, image: str) -> None:
        if self.docker("image", "inspect", image, check=False).returncode == 0:
            return
        saved = subprocess.run(["docker", "save", image], capture_output=True, check=True, timeout=120).stdout
        self.docker("load", stdin=saved)

    def containers(self, instance: str) -> list[str]:
        out = self.docker("ps", "-aq", "--no-trunc", "--filter", f"label={LABEL_INSTANCE}={instance}").stdout
        return str(out).split()

    def log_tail(self, n: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-n:])
        return ""

    def cleanup(self) -> None:
        """In the documented order: containers, engine, the data root's mount, files, bridge."""
        self.thaw()
        with contextlib.suppress(Exception):
            if not self.running:
                self.start()
            ids = str(self.docker("ps", "-aq", check=False).stdout).split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        self.stop()
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)


def _mounts_under(root: Path) -> list[str]:
    """Mount points below root, deepest first (dockerd bind-mounts its data root)."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1]
            if point == str(root) or point.startswith(f"{root}/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _free_subnet() -> str:
    """A private /24 that no interface of this machine uses (only ever reached locally)."""
    used = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    taken = {ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
             for iface in json.loads(used) for a in iface.get("addr_info", [])}
    start = os.getpid() % 150
    for i in range(150):
        net = ipaddress.ip_network(f"172.30.{100 + (start + i) % 150}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise AssertionError("no free 172.30.x.0/24 subnet for the second engine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_certificates(directory: Path) -> tuple[str, str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as Docker's TLS guide
    makes them; returns the client's (ca, cert, key) paths."""
    directory.mkdir(parents=True)
    d = str(directory)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=llm-mcp test CA",
            "-keyout", "ca-key.pem", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (directory / f"{name}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}-cert.pem")
    return (str(directory / "ca.pem"), str(directory / "client-cert.pem"), str(directory / "client-key.pem"))


_ENGINES: dict[str, tuple[Engine, list[int]]] = {}


def _shared(kind: str, **options: bool) -> Iterator[Engine]:
    """One engine of a kind for the whole session, however many modules import the fixtures
    (each import is a fixture of its own to pytest); the last user to finish cleans it up."""
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.fail("these tests start a second dockerd: they need root and the docker.io package")
    if kind not in _ENGINES:
        made = Engine(Path(tempfile.mkdtemp(prefix=f"llm-eng-{kind}-", dir="/tmp")), **options)
        try:
            made.start()
            made.load_image(FAKE_IMAGE)
        except BaseException:
            made.cleanup()
            raise
        _ENGINES[kind] = (made, [0])
    engine, users = _ENGINES[kind]
    users[0] += 1
    try:
        yield engine
    finally:
        users[0] -= 1
        if not users[0]:
            del _ENGINES[kind]
            engine.cleanup()


@pytest.fixture(scope="session")
def _module_engine(docker_engine: None) -> Iterator[Engine]:
    """The session's --live-restore engine (the name is older than the sharing: modules import it)."""
    yield from _shared("live-restore", live_restore=True, tls=True)


@pytest.fixture(scope="session")
def _plain_engine(docker_engine: None) -> Iterator[Engine]:
    yield from _shared("plain", live_restore=False)


@pytest.fixture
def engine(_module_engine: Engine) -> Engine:
    """The second engine with --live-restore, answering (a test before may have left it stopped)."""
    _module_engine.thaw()
    _module_engine.start()
    return _module_engine


@pytest.fixture
def plain_engine(_plain_engine: Engine) -> Engine:
    """A second engine WITHOUT live-restore (its containers stop with it), answering."""
    _plain_engine.thaw()
    _plain_engine.start()
    return _plain_engine


class EngineSetup(Setup):
    """A Setup whose containers live on the second engine (and whose processes are told so)."""

    def __init__(self, root: Path, models: Path, engine: Engine) -> None:
        super().__init__(root, models)
        self.engine = engine

    def env(self) -> dict[str, str]:
        return {**super().env(), "DOCKER_HOST": self.engine.host}

    def containers(self) -> list[str]:
        return self.engine.containers(self.instance)

    def cleanup(self) -> None:
        self.engine.thaw()
        if not self.engine.running:
            self.engine.start()
        ids = self.containers()
        if ids:
            self.engine.docker("rm", "-f", *ids, check=False)


@pytest.fixture
def engine_setup(tmp_path: Path, models_dir: Path, engine: Engine) -> Iterator[EngineSetup]:
    from tests.conftest import FAKE_PROFILES

    s = EngineSetup(tmp_path, models_dir, engine)
    s.write(FAKE_PROFILES)
    yield s
    s.cleanup()
