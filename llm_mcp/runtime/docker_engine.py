"""A Docker Engine, through the Docker SDK: the only module that imports `docker`.

Blocking calls by design (the SDK is synchronous); the core runs them in worker
threads. Every operation is restricted to containers carrying our labels, for this
instance and this engine. One DockerRuntime per engine: the local socket, tcp://
(with TLS) or ssh:// (through the `ssh` binary).

Every call is bounded: connecting takes at most CONNECT_S, `ping` answers within
PING_DEADLINE_S whatever the transport does, ordinary calls read for at most CALL_S,
and the long waits (wait, logs, events) run in slices or end on their stop event.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import docker  # noqa: TID251 - this module is the Docker boundary
import docker.errors  # noqa: TID251
import docker.tls  # noqa: TID251
import docker.types  # noqa: TID251
import docker.utils  # noqa: TID251
import requests

from llm_mcp.config.compose import (
    LABEL_HASH,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_PROFILE,
    MANAGED_BY,
    ContainerSpec,
)
from llm_mcp.config.engines import EngineSettings
from llm_mcp.runtime.base import (
    DEFAULT_ENGINE,
    LABEL_ENGINE,
    SERVER_PORT,
    ContainerGone,
    ContainerInfo,
    DockerUnavailable,
    RuntimeFailure,
    StartError,
)
from llm_mcp.runtime.docker_log_stream import DockerLogDecoder
from llm_mcp.runtime.docker_problem import describe, docker_host
from llm_mcp.runtime.log_lines import LineAssembler
from llm_mcp.runtime.log_signals import Failure

log = logging.getLogger("llm_mcp.docker")

__all__ = ["ContainerGone", "ContainerInfo", "DockerRuntime", "DockerUnavailable", "RuntimeFailure",
           "StartError", "TLSFiles"]

CONNECT_S = 2.0  # connecting to an engine, in every call
PING_S = 1  # a ping's connect and read timeout
PING_DEADLINE_S = 1.8  # ping() returns by then whatever the transport does (ssh has no socket timeout)
CALL_S = 30  # reading an ordinary call's answer (create, start and stop take seconds)
LOOK_S = 10  # reading the answer to a look (GET: inspect, list, top, stats), which is quick
WAIT_SLICE_S = 1  # `wait` asks again this often, so a cancel or a hung engine is noticed
WAIT_PINGS_EVERY = 5  # slices: a hung engine would hold a wait forever without this ping


class TLSFiles(NamedTuple):
    """An engine's TLS material (paths), as `docker --tlsverify --tlscacert ...` takes it."""

    ca: str | os.PathLike[str] | None
    cert: str | os.PathLike[str] | None
    key: str | os.PathLike[str] | None
    verify: bool = True


class _BoundedAPIClient(docker.APIClient):
    """docker-py uses one number to connect and to read: connecting gets CONNECT_S at most,
    and a look (a GET; for a stream, its beginning) LOOK_S to be answered.

    A dead tcp:// engine fails to connect within CONNECT_S instead of the operating
    system's minutes. A stream without a read timeout (events) still gets LOOK_S for
    its answer to begin: a hung engine accepts the connection and never answers.
    """

    def send(self, request: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        if not (isinstance(timeout, int | float) or timeout is None):
            return super().send(request, **kwargs)
        endless = timeout is None and bool(kwargs.get("stream"))
        if endless:
            timeout = LOOK_S
        elif timeout == self.timeout and request.method == "GET":  # a stream (logs): its beginning
            timeout = min(timeout, LOOK_S)
        kwargs["timeout"] = (CONNECT_S if timeout is None else min(CONNECT_S, timeout), timeout)
        response = super().send(request, **kwargs)
        if endless:  # it began: from now on it may stay quiet as long as it likes
            try:
                sdk: Any = self  # docker-py's own helpers for this, absent from its type stubs
                sdk._disable_socket_timeout(sdk._get_raw_response_socket(response))
            except Exception:  # internals moved: the stream then ends after LOOK_S of quiet
                log.debug("could not lift the stream's read timeout", exc_info=True)
        return response

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Any:
        """The engine's own CA (or verify off) wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE,
        which requests would otherwise put first (psf/requests#3829)."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:
            settings["verify"] = self.verify
        return settings


def engine_words(sentence: str, engine: str) -> str:
    """"Docker is not running: ..." names the engine when there are several."""
    if engine != DEFAULT_ENGINE and sentence.startswith("Docker "):
        return f"Docker engine '{engine}' {sentence.removeprefix('Docker ')}"
    return sentence


@contextlib.contextmanager
def _translated(what: str, host: str | None, engine: str = DEFAULT_ENGINE) -> Iterator[None]:
    """The one place where the Docker SDK's and its HTTP stack's errors become ours."""
    try:
        yield
    except RuntimeFailure:
        raise
    except docker.errors.NotFound as exc:
        raise ContainerGone(f"{what}: {exc.explanation or exc}") from None
    except (requests.ConnectionError, requests.Timeout, ConnectionError, FileNotFoundError) as exc:
        raise _unavailable(exc, host, engine) from None
    except docker.errors.APIError as exc:
        raise RuntimeFailure(f"{what}: Docker answered {exc.status_code}: {exc.explanation or exc}") from None
    except docker.errors.DockerException as exc:
        # Raised before any request, e.g. the client could not read the engine's API version.
        raise _unavailable(exc, host, engine) from None
    except requests.RequestException as exc:
        raise RuntimeFailure(f"{what}: {exc}") from None
    except (KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        # Anything else the SDK's stack throws (a malformed answer, os.environ changing under
        # requests' proxy lookup): still the engine call failing, never a daemon-ending bug.
        log.warning("docker %s failed unexpectedly", what, exc_info=True)
        raise RuntimeFailure(f"{what}: {type(exc).__name__}: {exc}") from None


SSH_MISSING = "ssh:// engines need the paramiko package (the Docker SDK's ssh extra), even with `ssh`"


def _unavailable(exc: BaseException, host: str | None, engine: str = DEFAULT_ENGINE) -> DockerUnavailable:
    if "install paramiko" in str(exc).lower():
        return DockerUnavailable(engine_words(f"Docker cannot reach {host}: {SSH_MISSING}", engine),
                                 hint="pip install 'docker[ssh]' where llm-mcp is installed",
                                 detail=str(exc), engine=engine)
    problem = describe(str(exc), host)
    return DockerUnavailable(engine_words(problem.sentence, engine), hint=problem.hint, detail=str(exc),
                             engine=engine)


def _is_slice_timeout(exc: BaseException) -> bool:
    """A read timeout we asked for (waits run in 1 s slices), not an engine that went away."""
    return isinstance(exc, requests.exceptions.ReadTimeout) or (
        isinstance(exc, requests.ConnectionError) and "read timed out" in str(exc).lower())


def _parse_time(value: str | None) -> float | None:
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + frac[:6]) if frac else 0.0)


def _info(attrs: dict[str, Any]) -> ContainerInfo:
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels") or {}
    return ContainerInfo(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        status=state.get("Status", "unknown"),
        profile=labels.get(LABEL_PROFILE, ""),
        config_hash=labels.get(LABEL_HASH, ""),
        image=attrs.get("Config", {}).get("Image", ""),
        started_at=_parse_time(state.get("StartedAt")),
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        pid=state.get("Pid") or None,
        engine=labels.get(LABEL_ENGINE) or DEFAULT_ENGINE,
        host_port=_host_port(attrs),
        finished_at=_parse_time(state.get("FinishedAt")),
    )


def _host_port(attrs: dict[str, Any]) -> int | None:
    """The host port published for llama-server: what Docker bound (a running container),
    else the fixed port asked for; None for an auto port of a container that is not running."""
    bound = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    asked = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for ports in (bound, asked):
        keys = [SERVER_PORT] if SERVER_PORT in ports else sorted(k for k in ports if k.endswith("/tcp"))
        for key in keys:
            for binding in ports.get(key) or []:
                text = str(binding.get("HostPort") or "")
                if text.isdigit() and int(text) > 0:
                    return int(text)
    return None


def _port_bindings(ports: dict[str, tuple[str, int]]) -> dict[int | str, Any]:
    """Port 0 means any free port: the SDK's None (an empty HostPort), which Docker fills in."""
    return {key: (ip, port or None) for key, (ip, port) in ports.items()}


def client_host(bind_ip: str) -> str:
    """How this machine reaches a port published on `bind_ip` of itself."""
    return "127.0.0.1" if bind_ip in ("", "0.0.0.0", "::") else bind_ip  # noqa: S104


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


class _PingAttempt:
    """One ping in flight; every caller in the meantime waits for its outcome (never a second one)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def outcome(self) -> BaseException | None:
        """The error to raise in this caller's thread (a copy: one exception object per raise)."""
        if self.error is None:
            return None
        try:
            return copy.copy(self.error)
        except Exception:
            return self.error


def classify_start_error(message: str, spec: ContainerSpec) -> Failure:
    text = message.lower()
    if "port is already allocated" in text or "address already in use" in text:
        port = next(iter(spec.ports.values()), ("", 0))
        return Failure("port_in_use", f"port {port[1]} on {port[0]} is already in use",
                       "stop whatever listens there (`ss -ltnp`) or change 'port' in models.conf")
    if "bind source path does not exist" in text or "no such file or directory" in text:
        return Failure("models_dir_missing", "a mounted host path does not exist",
                       "check models_dir in models.conf (run `llm-mcp check`)")
    if "could not select device driver" in text or "nvidia" in text:
        return Failure("gpu_unavailable", "Docker cannot give the container a GPU",
                       "install the NVIDIA Container Toolkit, or use compose/compose.cpu.yaml")
    return Failure("docker_error", "Docker refused to start the container",
                   "read the detail; `docker info` shows whether the engine is healthy")


class DockerRuntime:
    """The Runtime (llm_mcp.runtime.base) on one Docker Engine: DOCKER_HOST, or `base_url` when given.

    `engine` is the engine's name; only containers labelled with it (or, for "local",
    with no engine label: the single-engine version's) are ours.
    """

    def __init__(self, instance: str, client: docker.DockerClient | None = None,
                 base_url: str | None = None, *, engine: str = DEFAULT_ENGINE,
                 tls: TLSFiles | None = None, ssh_client: bool = True) -> None:
        self.instance = instance
        self.base_url = base_url
        self._engine = engine
        self._tls = tls
        self._ssh_client = ssh_client
        self._client = client
        self._ping_api: docker.APIClient | None = None
        self._attempt: _PingAttempt | None = None  # the ping in flight
        self._lock = threading.Lock()
        self._ping_lock = threading.Lock()

    @classmethod
    def for_engine(cls, name: str, url: str | None, tls: TLSFiles | None = None, *, instance: str,
                   ssh_client: bool = True) -> DockerRuntime:
        """The runtime of one engine: url unix://, tcp:// (TLS when `tls` is given: ca, cert,
        key paths and whether to verify the engine) or ssh://user@host (through the `ssh`
        binary and its config); url None: DOCKER_HOST, as `docker` does."""
        return cls(instance, base_url=url or None, engine=name, tls=tls, ssh_client=ssh_client)

    @classmethod
    def for_settings(cls, settings: EngineSettings, *, instance: str) -> DockerRuntime:
        """The runtime of models.conf's `[engine NAME]` section."""
        files = (settings.tls_ca, settings.tls_cert, settings.tls_key)
        tls = TLSFiles(*files, verify=settings.tls_verify) if any(files) else None
        return cls.for_engine(settings.name, settings.url, tls, instance=instance)

    @property
    def engine(self) -> str:
        return self._engine

    @property
    def host(self) -> str:
        return self.base_url or docker_host()

    def published_host(self, bind_ip: str) -> str:
        """A remote engine's ports are on its machine: its URL's host, unless bound to one address.

        A port a remote engine publishes on loopback cannot be reached from here at all;
        its host is still the best answer (the connection error then says where it tried).
        """
        parts = urlsplit(self.host)
        if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
            if bind_ip in ("", "0.0.0.0", "::") or _is_loopback(bind_ip):  # noqa: S104
                return parts.hostname
            return bind_ip
        return client_host(bind_ip)

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _translated(what, self.host, self._engine)

    def _api(self, timeout: int, version: str | None = None) -> docker.APIClient:
        """A bounded SDK client for this engine; version None asks the engine (one request)."""
        if self.base_url is None:
            env = docker.utils.kwargs_from_env()
            base_url, tls = env.get("base_url"), env.get("tls", False)
        else:
            base_url = self.base_url
            files = self._tls
            tls = docker.tls.TLSConfig(
                client_cert=(os.fspath(files.cert), os.fspath(files.key)) if files.cert and files.key
                else None, ca_cert=os.fspath(files.ca) if files.ca else None,
                verify=files.verify) if files else False
        return _BoundedAPIClient(base_url=base_url, version=version, timeout=timeout, tls=tls,
                                 use_ssh_client=self._ssh_client)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is not None:
            return self._client
        self.ping()  # bounded, shared by callers at once; it learns the engine's API version
        with self._lock:
            if self._client is None:
                ping_api = self._ping_api
                if ping_api is None:  # closed meanwhile
                    raise _unavailable(ConnectionError("Connection aborted: closed"), self.host,
                                       self._engine)
                with self._errors("connect"):  # no request: the version is known
                    api = self._api(CALL_S, ping_api.api_version)
                client = docker.DockerClient.__new__(docker.DockerClient)
                client.api = api
                self._client = client
            return self._client

    def ping(self) -> None:
        """Return when the engine answers; EngineUnavailable within PING_DEADLINE_S when it does not.

        Its own connection with PING_S timeouts, in a thread of its own so that not even a
        transport without socket timeouts (ssh) can hold the caller longer. Callers while
        a ping is in flight share it: one stuck ping answers them all "not in time".
        """
        with self._ping_lock:
            attempt = self._attempt
            if attempt is None:
                attempt = self._attempt = _PingAttempt()
                threading.Thread(target=self._ping_once, args=(attempt,), name=f"ping-{self._engine}",
                                 daemon=True).start()
        if not attempt.done.wait(max(0.0, attempt.started + PING_DEADLINE_S - time.monotonic())):
            log.debug("ping %s: no answer after %.1f s", self.host, time.monotonic() - attempt.started)
            raise _unavailable(TimeoutError(f"timed out after {PING_DEADLINE_S:g} s"), self.host,
                               self._engine)
        error = attempt.outcome()
        if error is not None:
            raise error

    def _ping_once(self, attempt: _PingAttempt) -> None:
        try:
            with self._errors("ping"):
                if self._ping_api is None:
                    self._ping_api = self._api(PING_S)  # asks the engine its API version
                self._ping_api.ping()
        except BaseException as exc:  # the callers raise it, in their threads
            if isinstance(exc, RuntimeFailure):  # ours: its frames and cause would keep the failed
                exc.__context__ = exc.__traceback__ = None  # connection (an ssh process) alive
            attempt.error = exc
        finally:
            with self._ping_lock:
                if self._attempt is attempt:
                    self._attempt = None
            attempt.done.set()

    def close(self) -> None:
        """Close both connection pools; a later call connects again."""
        with self._lock:
            client, self._client = self._client, None
        ping_api, self._ping_api = self._ping_api, None
        for api in (client.api if client is not None else None, ping_api):
            if api is not None:
                try:
                    api.close()
                except Exception:
                    log.debug("closing the docker client", exc_info=True)

    def _filters(self) -> dict[str, Any]:
        labels = [f"{LABEL_MANAGED}={MANAGED_BY}", f"{LABEL_INSTANCE}={self.instance}"]
        if self._engine != DEFAULT_ENGINE:  # "local" also takes the unlabelled: filtered after
            labels.append(f"{LABEL_ENGINE}={self._engine}")
        return {"label": labels}

    def _ours(self, labels: dict[str, str]) -> bool:
        return (labels.get(LABEL_MANAGED) == MANAGED_BY and labels.get(LABEL_INSTANCE) == self.instance
                and (labels.get(LABEL_ENGINE) or DEFAULT_ENGINE) == self._engine)

    def managed(self) -> list[ContainerInfo]:
        """Our containers (any state), newest first."""
        with self._errors("list containers"):
            found = self.client.api.containers(all=True, filters=self._filters())
        infos = [info for item in found if (info := self.inspect(item["Id"])) is not None]
        return sorted(infos, key=lambda i: i.started_at or 0.0, reverse=True)

    def inspect(self, container_id: str) -> ContainerInfo | None:
        try:
            with self._errors("inspect"):
                attrs = self.client.api.inspect_container(container_id)
        except ContainerGone:
            return None
        if not self._ours(attrs.get("Config", {}).get("Labels") or {}):
            return None  # not ours (another instance's, another engine's, nobody's): invisible
        return _info(attrs)

    def image_present(self, image: str) -> bool:
        try:
            with self._errors("inspect image"):
                self.client.api.inspect_image(image)  # type: ignore[no-untyped-call]
        except ContainerGone:  # NotFound (ImageNotFound is one)
            return False
        return True

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        if not self.image_present(spec.image):
            raise StartError(Failure("image_missing", f"the image '{spec.image}' is not on this "
                                     "machine", f"docker pull {spec.image} (or build it)"), spec.image)
        self._remove_stale_by_name(spec.name)
        with self._errors("create"):
            return self._create_and_start(spec)

    def _create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        api = self.client.api
        labels = {**spec.labels, LABEL_ENGINE: self._engine}  # the engine it runs on, whatever the spec says
        host_config = api.create_host_config(
            port_bindings=_port_bindings(spec.ports),
            mounts=[docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only)
                    for m in spec.mounts],
            device_requests=[docker.types.DeviceRequest(
                driver=d.driver, count=d.count, device_ids=list(d.device_ids),
                capabilities=[list(d.capabilities)] if d.capabilities else [])
                for d in spec.device_requests] or None,
            ipc_mode=spec.ipc_mode,
            shm_size=spec.shm_size,
            ulimits=[docker.types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in spec.ulimits]
            or None,
            restart_policy={"Name": spec.restart} if spec.restart else None,
            network_mode=spec.network_mode,
            cap_add=list(spec.cap_add) or None,
            tmpfs=spec.tmpfs or None,
            init=spec.init,
        )
        try:
            created = api.create_container(
                spec.image,
                command=list(spec.command),
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=spec.name,
                labels=labels,
                environment=spec.environment or None,
                ports=[tuple(k.split("/")) for k in spec.ports] or None,
                host_config=host_config,
                stop_signal=spec.stop_signal,
                stop_timeout=spec.stop_timeout,
                user=spec.user,
                working_dir=spec.working_dir,
                detach=True,
            )
        except docker.errors.APIError as exc:
            detail = str(exc.explanation or exc)
            raise StartError(classify_start_error(detail, spec), detail) from None
        container_id = created["Id"]
        try:
            api.start(container_id)
        except docker.errors.APIError as exc:
            detail = str(exc.explanation or exc)
            self._force_remove(container_id)
            raise StartError(classify_start_error(detail, spec), detail) from None
        info = self.inspect(container_id)
        if info is None:
            raise StartError(Failure("docker_error", "the container vanished right after start",
                                     "check `docker events`"), container_id)
        return info

    def _remove_stale_by_name(self, name: str) -> None:
        """A leftover container of ours with the same name would block create: remove it."""
        try:
            with self._errors("inspect"):
                attrs = self.client.api.inspect_container(name)
        except ContainerGone:
            return
        labels = attrs.get("Config", {}).get("Labels") or {}
        if labels.get(LABEL_MANAGED) != MANAGED_BY:
            raise StartError(Failure("name_conflict", f"a container named '{name}' exists and is "
                                     "not managed by llm-mcp",
                                     f"rename or remove it yourself (`docker rm -f {name}`); "
                                     "llm-mcp never touches containers it did not label"), name)
        self._force_remove(attrs["Id"])

    def _force_remove(self, container_id: str) -> None:
        try:
            with self._errors("remove"):
                self.client.api.remove_container(container_id, force=True)
        except ContainerGone:
            pass
        except RuntimeFailure as exc:
            if isinstance(exc, DockerUnavailable) or "already in progress" not in str(exc):
                raise

    def stop_and_remove(self, container_id: str, grace: float) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; remove. Returns the exit code."""
        if self.inspect(container_id) is None:
            return None
        try:
            with self._errors("stop"):
                # A paused container cannot receive SIGTERM: Docker kills it at once (fine).
                self.client.api.stop(container_id, timeout=max(0, round(grace)))
        except ContainerGone:
            return None
        except DockerUnavailable:
            raise
        except RuntimeFailure as exc:
            log.warning("stop %s: %s", container_id[:12], exc)
        info = self.inspect(container_id)
        self._force_remove(container_id)
        return info.exit_code if info else None

    def wait(self, container_id: str, cancel: threading.Event | None = None) -> ContainerInfo | None:
        """Block until the container stops (or `cancel` is set); its final state.

        Returns None when it was removed (or on cancel). Waits in 1 s slices so that a
        daemon shutting down is never held by this thread, and pings now and then, so
        that an engine that hangs (or a network that drops everything) raises too.
        An engine going away raises DockerUnavailable: the container may well still
        run (--live-restore).
        """
        slices = 0
        while cancel is None or not cancel.is_set():
            try:
                with self._errors("wait"):
                    try:
                        self.client.api.wait(container_id, timeout=WAIT_SLICE_S)
                    except (requests.Timeout, requests.ConnectionError) as exc:
                        if _is_slice_timeout(exc):
                            slices += 1
                            if slices % WAIT_PINGS_EVERY == 0:
                                self.ping()
                            continue
                        raise
            except ContainerGone:
                return None
            except DockerUnavailable:
                raise
            except RuntimeFailure as exc:
                log.debug("wait %s: %s", container_id[:12], exc)
            info = self.inspect(container_id)
            if info is None or not info.running:
                return info
            # Still running: the engine let go of the wait without an exit (it is shutting
            # down, or it answered an error). Wait again; an engine that is gone raises above.
            if cancel is not None and cancel.wait(0.2):
                break
        return None

    def follow_logs(
        self,
        container_id: str,
        on_line: Callable[[str, str], None],
        stop: threading.Event,
        since: float | None = None,
    ) -> None:
        """Call on_line(docker_timestamp, text) per line until the container stops or `stop`.

        Never raises: a stream that cannot start or breaks just ends (the exit waiter and
        the events watcher are the ones that report a gone container or engine).
        """
        try:
            with self._errors("logs"):
                stream = self.client.api.logs(container_id, stream=True, follow=True, timestamps=True,
                                              since=since if since and since > 0 else None)
        except RuntimeFailure as exc:
            log.debug("logs %s: %s", container_id[:12], exc)
            stop.set()
            return
        closer = threading.Thread(target=_close_when, args=(stop, stream), daemon=True)
        closer.start()
        bulk = _bulk_body(self.client.api, stream)
        # Else docker-py's chunks: one log entry each; a long line comes as several (see log_lines).
        lines: DockerLogDecoder | LineAssembler = bulk[0] if bulk is not None else LineAssembler()
        try:
            if bulk is not None:
                decoder, body = bulk
                while not stop.is_set() and not decoder.done:
                    data = body.read1(65536)
                    if not data:
                        break
                    for ts, text in decoder.feed(data):
                        on_line(normalize_timestamp(ts), text)
                    if len(data) < _COALESCE_BELOW:
                        # A trickle: let lines gather in the socket buffer for a moment, so a
                        # server printing 1,000 lines/s costs 100 wake-ups, not 1,000.
                        stop.wait(_COALESCE_SECONDS)
            else:
                for chunk in stream:
                    for ts, text in lines.feed(chunk):
                        on_line(normalize_timestamp(ts), text)
                    if stop.is_set():
                        break
        except (docker.errors.DockerException, requests.RequestException, OSError, ValueError,
                AttributeError):
            pass  # stream closed under us: the stop path
        finally:
            stop.set()
            _close_stream(stream)
            for ts, text in lines.flush():
                on_line(normalize_timestamp(ts), text)

    def events(self, on_event: Callable[[str, str], None], stop: threading.Event) -> None:
        """Call on_event(action, container_id) for our containers until `stop` or the stream ends.

        Raises DockerUnavailable when the stream cannot start; a stream that breaks just ends.
        The stream has no read timeout (it is quiet when nothing happens): a hung engine
        is noticed by engine_link's pings, which then set `stop`.
        """
        with self._errors("events"):
            stream = self.client.api.events(decode=True, filters={**self._filters(), "type": "container"})
        closer = threading.Thread(target=_close_when, args=(stop, stream), daemon=True)
        closer.start()
        try:
            for event in stream:
                actor = event.get("Actor") or {}
                if not self._ours(actor.get("Attributes") or {}):  # a container event carries its labels
                    continue
                action = str(event.get("Action") or event.get("status") or "")
                on_event(action.split(":", maxsplit=1)[0], str(event.get("id") or actor.get("ID")))
                if stop.is_set():
                    break
        except (docker.errors.DockerException, requests.RequestException, OSError, ValueError,
                AttributeError):
            pass
        finally:
            stop.set()
            _close_stream(stream)

    def container_pids(self, container_id: str) -> set[int]:
        """Host PIDs of the container's processes, to mark its GPU memory as ours; never raises."""
        try:
            with self._errors("top"):
                top = self.client.api.top(container_id, ps_args="-eo pid")
        except RuntimeFailure:
            return set()
        pids = set()
        for row in top.get("Processes") or []:
            try:
                pids.add(int(row[0]))
            except (ValueError, IndexError):
                continue
        return pids

    def stats(self, container_id: str) -> dict[str, Any] | None:
        """One `docker stats` sample; None when there is none (never raises: it feeds a sampler)."""
        try:
            with self._errors("stats"):
                result: dict[str, Any] = self.client.api.stats(container_id, stream=False)
        except RuntimeFailure:
            return None
        return result

    def memory_stats(self, container_id: str) -> dict[str, Any] | None:
        """A one-shot stats document (no CPU delta, ~10 ms instead of `stats`' 1-2 s) for the
        pre-flight's memory figures; None when there is none (never raises)."""
        try:
            with self._errors("stats"):
                result: dict[str, Any] = self.client.api.stats(container_id, stream=False, one_shot=True)
        except RuntimeFailure:
            return None
        return result


_COALESCE_BELOW = 16384
_COALESCE_SECONDS = 0.01


def _bulk_body(api: Any, stream: Any) -> tuple[DockerLogDecoder, Any] | None:
    """A followed log's body to read in large pieces, and its decoder; None: read via docker-py.

    docker-py reads a log two small reads per frame; that cost the daemon more CPU than
    all it does with a line. This reaches the response's socket file the way docker-py's
    own CancellableStream.close does, for the plain multiplexed stream over a Unix or
    TCP socket; anything else (a TTY stream, ssh, a changed docker-py) takes the slow path.
    """
    base_url = str(getattr(api, "base_url", ""))
    if "ssh" in base_url or "npipe" in base_url:
        return None
    try:
        if getattr(stream._stream, "__name__", "") != "_multiplexed_response_stream_helper":
            return None
        response = stream._response
        body, chunked = response.raw._fp.fp, bool(response.raw._fp.chunked)
        if not callable(getattr(body, "read1", None)):
            return None
        # docker-py does this when its generator starts; a quiet server must not time us out.
        api._disable_socket_timeout(api._get_raw_response_socket(response))
    except Exception:  # internals moved: the slow path still works
        log.debug("bulk log reading unavailable", exc_info=True)
        return None
    return DockerLogDecoder(chunked=chunked), body


def normalize_timestamp(ts: str) -> str:
    """Docker trims trailing zeros of nanoseconds; pad so timestamps compare as strings."""
    if not ts.endswith("Z"):
        return ts
    head, dot, frac = ts[:-1].partition(".")
    return f"{head}.{(frac if dot else '').ljust(9, '0')[:9]}Z"


def _close_when(stop: threading.Event, stream: Any) -> None:
    stop.wait()
    _close_stream(stream)


def _close_stream(stream: Any) -> None:
    """Unblock a reader of a Docker stream and give its connection back.

    CancellableStream.close() only shuts the socket of a stream still open; one that
    ended by itself (the container exited) keeps its connection until garbage
    collection, which leaks a socket per container run. Closing the response frees it.
    """
    try:
        stream.close()
    except Exception:
        log.debug("closing docker stream", exc_info=True)
    response = getattr(stream, "_response", None)
    if response is not None:
        try:
            response.close()
        except Exception:
            log.debug("closing docker response", exc_info=True)
