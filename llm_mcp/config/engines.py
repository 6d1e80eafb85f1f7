"""[engine NAME] sections: where a profile's container runs, and the GPU ids placement compares.

Pure value parsers (each raises ValueError with what would be valid) and the
settings they produce; models_conf.py reads the sections and locates errors.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCAL = "local"  # the engine every profile uses unless it names another
ENGINE_SECTION = "engine"  # `[engine NAME]`
ENGINE_KEYS = ("url", "tls_ca", "tls_cert", "tls_key", "tls_verify", "models_dir", "gpus", "address")
TLS_FILES = ("tls_ca", "tls_cert", "tls_key")
SCHEMES = ("unix", "tcp", "ssh")
REMOTE_SCHEMES = ("tcp", "ssh")

_INDEX = re.compile(r"[0-9]{1,4}\Z")
_UUID = re.compile(r"(GPU|MIG)-[0-9a-f][0-9a-f-]{0,99}\Z")
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")
_GPU_EXAMPLE = "e.g. 0,1 or GPU-8a3c9e1f-2b4d-4c6e-9f10-1a2b3c4d5e6f"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """One Docker Engine profiles may run on; every field already validated."""

    name: str
    url: str | None = None  # None: the environment's DOCKER_HOST, else the default socket
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_verify: bool = True
    models_dir: Path | None = None  # on that engine's host; None: the profiles' own
    gpus: tuple[str, ...] | None = None  # declared (normalised ids), for when NVML cannot see them
    address: str = "127.0.0.1"  # where its published ports are reached from here

    @property
    def scheme(self) -> str | None:
        return self.url.partition("://")[0] if self.url else None

    @property
    def remote(self) -> bool:
        """tcp:// or ssh://: paths and GPUs are on another host (or at least not checkable here)."""
        return self.scheme in REMOTE_SCHEMES

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @property
    def gpu_uuids(self) -> tuple[str, ...]:
        """The declared GPUs in index order when they are UUIDs (index i is UUID i), else ()."""
        if self.gpus and all(is_uuid(g) for g in self.gpus):
            return self.gpus
        return ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "tls": self.tls,
            "tls_verify": self.tls_verify,
            "models_dir": str(self.models_dir) if self.models_dir is not None else None,
            "gpus": list(self.gpus) if self.gpus is not None else None,
            "address": self.address,
        }


# ---- GPU ids ----------------------------------------------------------------------


def is_uuid(gpu: str) -> bool:
    return not gpu.isdigit()


def normalise_gpu(raw: str) -> str:
    """An index ("0", "01" -> "0") or a UUID ("gpu-8A3C…" -> "GPU-8a3c…", as nvidia-smi prints it)."""
    value = raw.strip()
    if _INDEX.match(value):
        return str(int(value))
    prefix, dash, rest = value.partition("-")
    candidate = f"{prefix.upper()}{dash}{rest.lower()}"
    if _UUID.match(candidate):
        return candidate
    raise ValueError(f"'{value}' is not a GPU index (0-9999) or UUID ({_GPU_EXAMPLE}; "
                     "nvidia-smi -L lists them)")


def parse_gpu_list(raw: str) -> tuple[str, ...]:
    """'0, 1' or 'GPU-…,GPU-…' -> normalised ids, in order; empty items and repeats refused."""
    items = raw.split(",")
    out: list[str] = []
    for item in items:
        if not item.strip():
            raise ValueError(f"'{raw.strip()}' has an empty item: list GPUs separated by commas "
                             f"({_GPU_EXAMPLE})")
        gpu = normalise_gpu(item)
        if gpu in out:
            raise ValueError(f"GPU {gpu} is listed twice")
        out.append(gpu)
    return tuple(out)


def parse_gpus(raw: str) -> tuple[str, ...] | None:
    """A profile's `gpus`: `all` -> None, `none` -> () (CPU only), else a list of ids."""
    word = raw.strip().lower()
    if word == "all":
        return None
    if word == "none":
        return ()
    try:
        return parse_gpu_list(raw)
    except ValueError as exc:
        raise ValueError(f"{exc}; or all, or none (CPU only)") from None


def gpus_text(gpus: tuple[str, ...] | None) -> str:
    """The inverse of parse_gpus: "all", "none" or "0,1"."""
    if gpus is None:
        return "all"
    return ",".join(gpus) if gpus else "none"


def parse_declared_gpus(raw: str) -> tuple[str, ...]:
    """An engine's `gpus`: indices or UUIDs (in index order), not both."""
    gpus = parse_gpu_list(raw)
    if len({is_uuid(g) for g in gpus}) > 1:
        raise ValueError("mixes indices and UUIDs: list the engine's GPUs either by index (0,1) or by "
                         "UUID, in index order (nvidia-smi -L on that host lists them)")
    return gpus


def undeclared(gpus: tuple[str, ...], declared: tuple[str, ...]) -> list[str]:
    """The ids of `gpus` an engine with `declared` GPUs does not have (only what can be told)."""
    if all(is_uuid(d) for d in declared):
        return [g for g in gpus if (int(g) >= len(declared) if not is_uuid(g) else g not in declared)]
    return [g for g in gpus if not is_uuid(g) and g not in declared]


# ---- url and address ---------------------------------------------------------------

_URL_EXAMPLES = "unix:///var/run/docker.sock, tcp://gpu-box:2376 or ssh://me@gpu-box"


def parse_url(raw: str) -> str:
    """unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]; returned as written (stripped)."""
    value = raw.strip()
    if not value:
        raise ValueError(f"must not be empty ({_URL_EXAMPLES})")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"'{value}' contains a space or a control character ({_URL_EXAMPLES})")
    scheme, sep, _ = value.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"'{value}' must start with unix://, tcp:// or ssh:// ({_URL_EXAMPLES})")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a valid URL: {exc} ({_URL_EXAMPLES})") from None
    if parts.query or parts.fragment:
        raise ValueError(f"'{value}' must not have a '?' or '#' part")
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"'{value}' must be unix:// followed by an absolute socket path "
                             "(three slashes: unix:///var/run/docker.sock)")
        return value
    if not parts.hostname:
        raise ValueError(f"'{value}' has no host ({_URL_EXAMPLES})")
    if parts.path not in ("", "/"):
        raise ValueError(f"'{value}' must not have a path after the host")
    if parts.password is not None:
        raise ValueError(f"'{value}' carries a password; use an SSH key (ssh-agent) instead")
    if scheme == "tcp":
        if parts.username is not None:
            raise ValueError(f"'{value}': tcp:// takes no user; authenticate with tls_cert and tls_key")
        if port is None:
            raise ValueError(f"'{value}' needs a port (Docker's TLS port is 2376: tcp://HOST:2376)")
    if port == 0:
        raise ValueError(f"'{value}': port 0 is not a port")
    return value


def url_host(url: str) -> str:
    """The host a tcp:// or ssh:// URL names (brackets of an IPv6 address removed)."""
    return urlsplit(url).hostname or ""


def parse_address(raw: str) -> str:
    """A host name or an IP address (an IPv6 one may be in brackets)."""
    value = raw.strip().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if _HOSTNAME.match(value):
        return value
    raise ValueError(f"'{raw.strip()}' is not a host name or an IP address (e.g. gpu-box.lan or 10.0.0.7)")

