"""compose.yaml + a profile -> a ContainerSpec (pure data) and the matching `.env`.

Only a documented subset of Compose is understood (docs/compose.md); any other
key is an error that names it, so nothing in the file is silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import stat
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from llm_mcp.config.models_conf import PROFILE_ID, Profile
from llm_mcp.util.safe_files import write_atomic

LABEL_MANAGED = "io.llm-mcp.managed-by"
LABEL_INSTANCE = "io.llm-mcp.instance"
LABEL_PROFILE = "io.llm-mcp.profile"
LABEL_HASH = "io.llm-mcp.config-hash"
LABEL_ENGINE = "io.llm-mcp.engine"
MANAGED_BY = "llm-mcp"

SERVICE_KEYS = {
    "image", "container_name", "command", "entrypoint", "environment", "ports", "volumes",
    "labels", "deploy", "ipc", "shm_size", "ulimits", "stop_grace_period", "stop_signal",
    "restart", "user", "working_dir", "network_mode", "cap_add", "tmpfs", "init",
}
TOP_KEYS = {"services", "version", "name"}


class ComposeError(Exception):
    def __init__(self, path: Path, key: str, message: str) -> None:
        self.path = path
        self.key = key
        super().__init__(f"{path}: {key}: {message}")


@dataclass(frozen=True, slots=True)
class Mount:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    driver: str
    count: int  # -1 = all
    device_ids: tuple[str, ...]
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything needed to create the container; the runtime maps it to the Docker SDK."""

    image: str
    name: str
    command: tuple[str, ...]
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    # "8080/tcp" -> (host ip, host port); port 0: Docker picks a free one (`port = auto`)
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    device_requests: tuple[DeviceRequest, ...] = ()
    ipc_mode: str | None = None
    shm_size: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    stop_timeout: int | None = None
    stop_signal: str | None = None
    restart: str | None = None
    user: str | None = None
    working_dir: str | None = None
    network_mode: str | None = None
    cap_add: tuple[str, ...] = ()
    tmpfs: dict[str, str] = field(default_factory=dict)
    init: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- ${VAR} interpolation, as Compose does it -----------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|(?P<invalid>))"
)


def interpolate(value: str, env: dict[str, str], where: str, path: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            bad = value[match.start() : match.start() + 12]
            raise ComposeError(path, where, f"invalid interpolation at '{bad}': use $NAME, ${{NAME}}, "
                               "${NAME:-default}, ${NAME-default}, ${NAME:?message}, or $$ for a "
                               "literal $")
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        present = bool(current) if op in (":-", ":?") else current is not None
        if op and op.endswith("-"):
            return current if present and current is not None else arg
        if op and op.endswith("?") and not present:
            raise ComposeError(path, where, f"required variable {name} is missing: {arg}")
        return current or ""

    return _VAR.sub(replace, value)


def _interpolate_tree(node: Any, env: dict[str, str], where: str, path: Path) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where, path)
    if isinstance(node, list):
        return [_interpolate_tree(item, env, f"{where}[{i}]", path) for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, f"{where}.{k}", path) for k, v in node.items()}
    return node


# ---- value parsers -------------------------------------------------------------

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s|us)")


def _size(raw: Any, key: str, path: Path) -> int:
    if isinstance(raw, int):
        return raw
    match = _SIZE.match(str(raw).strip())
    if not match:
        raise ComposeError(path, key, f"'{raw}' is not a size (e.g. 1g, 512m)")
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[match.group(2).lower()]
    return int(float(match.group(1)) * unit)


def _duration(raw: Any, key: str, path: Path) -> int:
    if isinstance(raw, int | float):
        return int(raw)
    text = str(raw).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ComposeError(path, key, f"'{raw}' is not a duration (e.g. 10s, 1m30s)")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return max(1, round(sum(float(n) * scale[u] for n, u in parts)))


def _argv(raw: Any, key: str, path: Path) -> tuple[str, ...]:
    if isinstance(raw, str):
        try:
            return tuple(shlex.split(raw))
        except ValueError as exc:
            raise ComposeError(path, key, f"cannot split into arguments: {exc}") from None
    if isinstance(raw, list):
        return tuple(str(x) for x in raw)
    raise ComposeError(path, key, "must be a string or a list of strings")


def _mapping(raw: Any, key: str, path: Path) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        out: dict[str, str] = {}
        for item in raw:
            name, _, value = str(item).partition("=")
            out[name] = value
        return out
    raise ComposeError(path, key, "must be a mapping or a list of NAME=VALUE")


def _ports(raw: Any, key: str, path: Path) -> dict[str, tuple[str, int]]:
    if not isinstance(raw, list):
        raise ComposeError(path, key, "must be a list")
    out: dict[str, tuple[str, int]] = {}
    for item in raw:
        if isinstance(item, dict):
            _only(item, {"target", "published", "host_ip", "protocol"}, key, path)
            target, published = item.get("target"), item.get("published") or 0
            ip, proto = str(item.get("host_ip", "0.0.0.0")), str(item.get("protocol", "tcp"))  # noqa: S104
        else:
            text, _, proto = str(item).partition("/")
            proto = proto or "tcp"
            pieces = text.rsplit(":", 2)
            if len(pieces) == 3:
                ip, published, target = pieces
            elif len(pieces) == 2:
                ip, (published, target) = "0.0.0.0", pieces  # noqa: S104 - Compose's own default
            else:
                raise ComposeError(path, key, f"'{item}' must publish a host port (HOST:CONTAINER)")
        try:  # an empty host port ("127.0.0.1::8080"): Docker picks one, as Compose does
            out[f"{int(str(target))}/{proto}"] = (ip, int(str(published)) if str(published) else 0)
        except (TypeError, ValueError):
            raise ComposeError(path, key, f"'{item}' has a port that is not a number") from None
    return out


def _mounts(raw: Any, key: str, path: Path, base: Path) -> tuple[Mount, ...]:
    if not isinstance(raw, list):
        raise ComposeError(path, key, "must be a list")
    mounts = []
    for item in raw:
        if isinstance(item, dict):
            _only(item, {"type", "source", "target", "read_only"}, key, path)
            if item.get("type", "bind") != "bind":
                raise ComposeError(path, f"{key}.type", f"'{item.get('type')}': only bind mounts "
                                   "(host paths) are supported")
            if not item.get("source") or not item.get("target"):
                raise ComposeError(path, key, "a long-form volume needs 'source' and 'target'")
            source, target, ro = str(item["source"]), str(item["target"]), item.get("read_only") is True
        else:
            parts = str(item).split(":")
            if len(parts) < 2 or not parts[0]:
                raise ComposeError(path, key, f"'{item}' must be HOST_PATH:CONTAINER_PATH[:ro]")
            source, target = parts[0], parts[1]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
        if not source.startswith(("/", ".", "~")):
            raise ComposeError(path, key, f"'{source}' looks like a named volume; only host "
                               "paths are supported")
        try:
            resolved = (base / Path(source).expanduser()).resolve()
        except (RuntimeError, OSError, ValueError) as exc:
            raise ComposeError(path, key, f"cannot resolve '{source}': {exc}") from None
        mounts.append(Mount(str(resolved), target, ro))
    return tuple(mounts)


def _bool_or_none(raw: Any, key: str, path: Path) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    raise ComposeError(path, key, f"'{raw}' must be true or false")


def _ulimits(raw: Any, key: str, path: Path) -> tuple[Ulimit, ...]:
    if not isinstance(raw, dict):
        raise ComposeError(path, key, "must be a mapping")
    out = []
    for name, value in raw.items():
        where = f"{key}.{name}"
        try:
            if isinstance(value, dict):
                _only(value, {"soft", "hard"}, where, path)
                out.append(Ulimit(str(name), int(value["soft"]), int(value["hard"])))
            else:
                out.append(Ulimit(str(name), int(value), int(value)))
        except (KeyError, TypeError, ValueError):
            raise ComposeError(path, where, f"'{value}' must be a number or "
                               "{soft: N, hard: N}") from None
    return tuple(out)


def _devices(raw: Any, key: str, path: Path) -> tuple[DeviceRequest, ...]:
    # deploy: {resources: {reservations: {devices: [...]}}} and nothing beside, at any level
    resources = _one_key(raw, "resources", key, path) or {}
    reservations = _one_key(resources, "reservations", f"{key}.resources", path) or {}
    where = f"{key}.resources.reservations.devices"
    devices = _one_key(reservations, "devices", f"{key}.resources.reservations", path) or []
    if not isinstance(devices, list):
        raise ComposeError(path, where, "must be a list")
    requests = []
    for i, device in enumerate(devices):
        if not isinstance(device, dict):
            raise ComposeError(path, f"{where}[{i}]", "must be a mapping (driver, count, capabilities)")
        _only(device, {"driver", "count", "device_ids", "capabilities"}, f"{where}[{i}]", path)
        count = device.get("count")
        try:
            number = -1 if count == "all" else int(count) if count is not None else 0
        except (TypeError, ValueError):
            raise ComposeError(path, f"{where}[{i}].count", f"'{count}' must be a number or "
                               "'all'") from None
        requests.append(DeviceRequest(
            driver=str(device.get("driver", "nvidia")),
            count=number,
            device_ids=tuple(str(d) for d in _list(device.get("device_ids"), f"{where}[{i}].device_ids",
                                                   path)),
            capabilities=tuple(str(c) for c in _list(device.get("capabilities"),
                                                     f"{where}[{i}].capabilities", path)),
        ))
    return tuple(requests)


def _one_key(raw: Any, name: str, key: str, path: Path) -> Any:
    """`raw` must be a mapping holding nothing but `name` (deploy's levels); the value of `name`."""
    if not isinstance(raw, dict):
        raise ComposeError(path, key, "must be a mapping")
    for other in raw:
        if other != name:
            raise ComposeError(path, f"{key}.{other}", "not supported; under deploy only "
                               "resources.reservations.devices (the GPU reservation) is")
    return raw.get(name)


def _only(item: dict[Any, Any], allowed: set[str], key: str, path: Path) -> None:
    """Nothing in the file is silently ignored: an unknown nested key is an error."""
    for name in item:
        if name not in allowed:
            raise ComposeError(path, f"{key}.{name}", f"not supported by llm-mcp; supported here: "
                               f"{', '.join(sorted(allowed))} (docs/compose.md)")


def _list(raw: Any, key: str, path: Path) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ComposeError(path, key, "must be a list")
    return raw


def _scalar(raw: Any, key: str, path: Path) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, dict | list):
        raise ComposeError(path, key, "must be a single value, not a mapping or a list")
    return str(raw)


def _tmpfs(raw: Any, key: str, path: Path) -> dict[str, str]:
    """`/run` or `/run:size=64m,mode=1777` (a string or a list of them) -> {path: options}."""
    items = [raw] if isinstance(raw, str) else _list(raw, key, path)
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ComposeError(path, key, "must be a path or a list of paths (PATH[:OPTIONS])")
        target, _, options = item.partition(":")
        out[target] = options
    return out


# ---- the spec ------------------------------------------------------------------


def container_name(instance: str, profile: str | None = None) -> str:
    """`llm-mcp-<instance>-<profile>`; without a profile, the one-container name of earlier versions."""
    return f"llm-mcp-{instance}" if profile is None else f"llm-mcp-{instance}-{profile}"


def template_variables(profile: Profile, instance: str, port: int | None = None) -> dict[str, str]:
    """The ${VARS} compose.yaml uses; also exactly what `.env` holds (plus the hash).

    `port` publishes on that host port instead of the profile's; LLM_PORT is empty
    for `port = auto` (the template's `${LLM_PORT-8080}` then lets Docker pick).
    """
    host_port = port if port is not None else profile.port
    return {
        "LLM_IMAGE": profile.image,
        "LLM_CONTAINER_NAME": container_name(instance, profile.id),
        "LLAMA_ARGS": shlex.join(profile.server_args()),
        "LLM_HOST": profile.host,
        "LLM_PORT": str(host_port) if host_port is not None else "",
        "LLM_MODELS_DIR": str(profile.models_dir),
        "LLM_INSTANCE": instance,
        "LLM_PROFILE": profile.id,
        "LLM_STOP_GRACE": str(round(profile.stop_grace)),
        "LLM_ENGINE": profile.engine,
        "LLM_GPUS": profile.gpus_text,
    }


def load_template(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComposeError(path, "(file)", "compose file not found; set compose_file in "
                           "models.conf [defaults]") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(path, "(file)", f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ComposeError(path, "(file)", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ComposeError(path, "(file)", "must be a mapping with a 'services' key")
    return data


def _service(data: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    for key in data:
        if key not in TOP_KEYS and not str(key).startswith("x-"):
            raise ComposeError(path, str(key), f"top-level key not supported; supported: "
                               f"{', '.join(sorted(TOP_KEYS))} and x-* extensions")
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise ComposeError(path, "services", "must define the llama-server service")
    if len(services) > 1 and "llama-server" not in services:
        raise ComposeError(path, "services", "several services and none named 'llama-server'")
    name = "llama-server" if "llama-server" in services else next(iter(services))
    for other in services:
        if other != name:  # `docker compose up` would start it too; llm-mcp would not
            raise ComposeError(path, f"services.{other}", "only one service (llama-server) is "
                               "supported; move other services to another compose file")
    service = services[name]
    if not isinstance(service, dict):
        raise ComposeError(path, f"services.{name}", "must be a mapping")
    return name, service


def render(path: Path, env: dict[str, str]) -> ContainerSpec:
    """Read compose.yaml with `env` for its variables and build the container spec."""
    data = load_template(path)
    name, raw = _service(data, path)
    prefix = f"services.{name}"
    for key in raw:
        if key not in SERVICE_KEYS:
            raise ComposeError(path, f"{prefix}.{key}", "not supported by llm-mcp; supported "
                               f"keys: {', '.join(sorted(SERVICE_KEYS))} (docs/compose.md)")
    svc: dict[str, Any] = _interpolate_tree(raw, env, prefix, path)
    if not svc.get("image"):
        raise ComposeError(path, f"{prefix}.image", "missing or empty: the service needs an image "
                           "(the shipped templates use ${LLM_IMAGE})")
    restart = svc.get("restart")
    return ContainerSpec(
        image=str(_scalar(svc["image"], f"{prefix}.image", path)),
        name=_scalar(svc.get("container_name"), f"{prefix}.container_name", path)
        or env.get("LLM_CONTAINER_NAME", "llm-mcp"),
        command=_argv(svc.get("command", []), f"{prefix}.command", path),
        entrypoint=_argv(svc["entrypoint"], f"{prefix}.entrypoint", path)
        if "entrypoint" in svc else None,
        environment=_mapping(svc.get("environment", {}), f"{prefix}.environment", path),
        ports=_ports(svc.get("ports", []), f"{prefix}.ports", path),
        mounts=_mounts(svc.get("volumes", []), f"{prefix}.volumes", path, path.parent),
        labels=_mapping(svc.get("labels", {}), f"{prefix}.labels", path),
        device_requests=_devices(svc["deploy"], f"{prefix}.deploy", path) if svc.get("deploy") else (),
        ipc_mode=_scalar(svc.get("ipc"), f"{prefix}.ipc", path),
        shm_size=_size(svc["shm_size"], f"{prefix}.shm_size", path) if "shm_size" in svc else None,
        ulimits=_ulimits(svc.get("ulimits", {}), f"{prefix}.ulimits", path),
        stop_timeout=_duration(svc["stop_grace_period"], f"{prefix}.stop_grace_period", path)
        if "stop_grace_period" in svc else None,
        stop_signal=_scalar(svc.get("stop_signal"), f"{prefix}.stop_signal", path),
        restart=None if restart in (None, "no", False) else _scalar(restart, f"{prefix}.restart", path),
        user=_scalar(svc.get("user"), f"{prefix}.user", path),
        working_dir=_scalar(svc.get("working_dir"), f"{prefix}.working_dir", path),
        network_mode=_scalar(svc.get("network_mode"), f"{prefix}.network_mode", path),
        cap_add=tuple(str(c) for c in _list(svc.get("cap_add"), f"{prefix}.cap_add", path)),
        tmpfs=_tmpfs(svc.get("tmpfs") or [], f"{prefix}.tmpfs", path),
        init=_bool_or_none(svc.get("init"), f"{prefix}.init", path),
    )


def config_hash(profile: Profile, instance: str) -> str:
    """Changes whenever the container would differ: the variables and the template text."""
    try:
        template = profile.compose_file.read_bytes()
    except OSError:
        template = b""
    payload = json.dumps(template_variables(profile, instance), sort_keys=True).encode() + template
    return hashlib.sha256(payload).hexdigest()[:16]


def profile_spec(profile: Profile, instance: str,
                 port: int | None = None) -> tuple[ContainerSpec, dict[str, str]]:
    """The container for `profile`, and the variables (for `.env`) it was made from.

    `port`: publish on this host port (see template_variables); the hash ignores it,
    so a port Docker picked never makes the container look stale.
    """
    env = {**template_variables(profile, instance, port), "LLM_CONFIG_HASH": config_hash(profile, instance)}
    spec = render(profile.compose_file, env)
    if profile.port is None and port is None:
        _check_auto_port(spec, profile.compose_file)
    # The labels are how the daemon recognises its container; never trust the template for them.
    labels = {**spec.labels, LABEL_MANAGED: MANAGED_BY, LABEL_INSTANCE: instance,
              LABEL_PROFILE: profile.id, LABEL_HASH: env["LLM_CONFIG_HASH"], LABEL_ENGINE: profile.engine}
    devices = _placed_devices(spec.device_requests, profile, profile.compose_file)
    return replace(spec, labels=labels, device_requests=devices), env


def _check_auto_port(spec: ContainerSpec, path: Path) -> None:
    """`port = auto` must reach the template: a fixed host port there would be used silently."""
    fixed = sorted({port for _, port in spec.ports.values() if port})
    if fixed:
        raise ComposeError(path, _service_key(path, "ports"), f"the profile sets port = auto, but the "
                           f"template publishes host port {fixed[0]}; write the host port as "
                           "${LLM_PORT-8080} (no ':'), empty for auto, so Docker picks a free port")


def _service_key(path: Path, key: str) -> str:
    """`services.<name>.<key>`, for an error about a template that rendered."""
    return f"services.{_service(load_template(path), path)[0]}.{key}"


def _is_gpu_request(request: DeviceRequest) -> bool:
    return "gpu" in request.capabilities or request.driver == "nvidia"


def _placed_devices(requests: tuple[DeviceRequest, ...], profile: Profile,
                    path: Path) -> tuple[DeviceRequest, ...]:
    """The template's GPU reservation, narrowed to the profile's `gpus` (`all` leaves it as written)."""
    if profile.gpus is None:
        return requests
    if profile.gpus == ():
        return tuple(r for r in requests if not _is_gpu_request(r))
    if not any(_is_gpu_request(r) for r in requests):
        raise ComposeError(path, _service_key(path, "deploy"), f"the profile sets gpus = "
                           f"{profile.gpus_text}, but the template reserves no GPU (deploy.resources."
                           "reservations.devices); use a GPU template (compose/compose.yaml), or gpus = none")
    return tuple(replace(r, count=0, device_ids=profile.gpus) if _is_gpu_request(r) else r
                 for r in requests)


def env_file_text(env: dict[str, str], profile_id: str) -> str:
    """`.env` for `docker compose`: one double-quoted value a line.

    Compose v1 (python-dotenv) decodes \\\\, \\" and \\n, \\r inside double quotes, so
    those are escaped; it also expands `${NAME}` with no way to escape it, which
    is why models.conf refuses '${' in anything that reaches this file. A value
    ending in a backslash cannot be written either (the closing quote would read
    as escaped). Such values raise ValueError rather than produce a wrong `.env`.
    """
    lines = [f"# Written by llm-mcp for profile '{profile_id}'; regenerated on every switch."]
    for key, value in env.items():
        if "${" in value or value.endswith("\\"):  # models.conf refuses both; never write a wrong .env
            raise ValueError(f"{key}={value!r} cannot be written to .env: Compose would expand '${{' "
                             "and misreads a value ending in a backslash")
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n").replace("\r", "\\r"))
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


ENV_SUFFIX = ".env"
_ENV_HEADER = re.compile(r"# Written by llm-mcp for profile '(?P<id>[^']*)'")


def env_file_path(directory: Path, profile_id: str) -> Path:
    """`<profile>.env` in `directory`: the variables of that running model."""
    if not PROFILE_ID.match(profile_id):
        raise ValueError(f"'{profile_id}' is not a profile id")
    return directory / f"{profile_id}{ENV_SUFFIX}"


def write_env_file(directory: Path, env: dict[str, str], profile_id: str) -> Path:
    """Write `<profile>.env` and `.env` (the last model started, for `docker compose up` by hand).

    Each is replaced at once (a new 0600 file renamed over it: a symlink there is
    replaced, never written through). Returns the path of `.env`.
    """
    text = env_file_text(env, profile_id)
    write_atomic(env_file_path(directory, profile_id), text, durable=False)
    target = directory / ENV_SUFFIX
    write_atomic(target, text, durable=False)
    return target


def remove_env_file(directory: Path, profile_id: str) -> bool:
    """Remove `<profile>.env` when llm-mcp wrote it (its header says so); True if removed.

    `.env` stays: it is the last model started, as before several could run.
    """
    path = env_file_path(directory, profile_id)
    if _env_file_profile(path) != profile_id:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def env_files(directory: Path) -> dict[str, Path]:
    """profile id -> its `<profile>.env`, for every file llm-mcp wrote there, sorted by id."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    found: dict[str, Path] = {}
    for name in names:
        profile_id = name.removesuffix(ENV_SUFFIX)
        if name.endswith(ENV_SUFFIX) and PROFILE_ID.match(profile_id):
            path = directory / name
            if _env_file_profile(path) == profile_id:
                found[profile_id] = path
    return found


def _env_file_profile(path: Path) -> str | None:
    """The profile id in the header of a regular file (not followed through a symlink), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, 512).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    match = _ENV_HEADER.match(head)
    return match.group("id") if match else None
