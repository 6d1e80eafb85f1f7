"""Docker trouble in words: the Docker SDK's exception text becomes a sentence and a fix.

`Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, ...))`
tells a user nothing; "Docker is not running (no socket at /var/run/docker.sock)" with the
command that starts it does. Pure functions; the raw text stays available as detail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

START = "start Docker: `sudo systemctl start docker` (or run `dockerd`); `docker info` must answer"


@dataclass(frozen=True, slots=True)
class DockerProblem:
    sentence: str
    hint: str


def docker_host(environ: dict[str, str] | None = None) -> str:
    """Where this process looks for the engine (the Docker SDK's rule)."""
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


_CASES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"permission denied|PermissionError", re.IGNORECASE),
     "Docker refused this user access to its socket at {host} (permission denied)",
     "add yourself to the docker group: `sudo usermod -aG docker $USER`, then log out and in"),
    (re.compile(r"FileNotFoundError|No such file or directory", re.IGNORECASE),
     "Docker is not running: nothing listens at {host}", START),
    (re.compile(r"connection refused|ConnectionRefusedError", re.IGNORECASE),
     "Docker is not running: {host} refuses connections", START),
    (re.compile(r"timed out|timeout", re.IGNORECASE),
     "Docker did not answer in time at {host}",
     "Docker may be hung or overloaded: `docker info` shows it; restart it if it does not answer"),
    (re.compile(r"connection aborted|connection reset|RemoteDisconnected|broken pipe", re.IGNORECASE),
     "Docker closed the connection at {host} (restarting or stopped)", START),
)


def describe(detail: str, host: str | None = None) -> DockerProblem:
    """The sentence and the fix for an exception text about the Docker Engine."""
    where = host or docker_host()
    for pattern, sentence, hint in _CASES:
        if pattern.search(detail):
            return DockerProblem(sentence.format(host=where), hint)
    return DockerProblem(f"Docker is not reachable at {where}", START)


def docker_down(status: Mapping[str, Any]) -> bool:
    """Whether a daemon status says the engine is gone (its `docker` block, code or reason)."""
    docker = status.get("docker")
    if isinstance(docker, Mapping) and docker.get("available") is False:
        return True
    return looks_like_docker_down(status.get("reason_code")) or looks_like_docker_down(status.get("reason"))


def status_words(status: Mapping[str, Any]) -> DockerProblem | None:
    """The sentence and fix to show for a status whose engine is gone; None when it answers."""
    if not docker_down(status):
        return None
    docker = status.get("docker")
    if isinstance(docker, Mapping) and docker.get("message"):
        return DockerProblem(str(docker["message"]), str(docker.get("hint") or START))
    reason = str(status.get("reason") or "")
    if reason.startswith(("Docker is not reachable", "Docker did not answer")):  # raw exception text
        return describe(reason)
    return DockerProblem(reason or "Docker is not reachable", str(status.get("hint") or START))


def looks_like_docker_down(reason: str | None) -> bool:
    """A status reason that means the engine is gone (the code, or the older free text)."""
    if not reason:
        return False
    return reason == "docker_unavailable" or reason.startswith(("Docker is not reachable",
                                                                 "Docker did not answer"))
