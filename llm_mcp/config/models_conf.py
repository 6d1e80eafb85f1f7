"""models.conf: INI profiles with inherited defaults, validated with file/line/key errors."""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import math
import re
import shlex
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_mcp.config.binds import is_loopback, parse_bind
from llm_mcp.config.engines import (
    ENGINE_KEYS,
    ENGINE_SECTION,
    LOCAL,
    TLS_FILES,
    EngineSettings,
    gpus_text,
    parse_address,
    parse_declared_gpus,
    parse_gpus,
    parse_url,
    undeclared,
    url_host,
)
from llm_mcp.config.proxy_conf import PROXY_SECTION, ProxySettings, proxy_section

DEFAULT_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda"
PROFILE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")
# Flags the profile keys own: setting them in `flags` would fight the container spec.
MANAGED_FLAGS = {
    "-m": "model",
    "--model": "model",
    "--host": "host (set by llm-mcp)",
    "--port": "port",
    "-c": "ctx_size",
    "--ctx-size": "ctx_size",
    "-ngl": "n_gpu_layers",
    "--n-gpu-layers": "n_gpu_layers",
    "--gpu-layers": "n_gpu_layers",
    "-ot": "override_tensor",
    "--override-tensor": "override_tensor",
    "-b": "batch_size",
    "--batch-size": "batch_size",
    "-ub": "ubatch_size",
    "--ubatch-size": "ubatch_size",
}


class ConfigError(Exception):
    """A models.conf problem, located precisely enough to fix without searching."""

    def __init__(
        self, path: Path, line: int | None, key: str | None, message: str, section: str | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.section = section
        self.message = message
        where = str(path) + (f":{line}" if line else "")
        what = f"[{section}] {key}" if section and key else (f"[{section}]" if section else key)
        super().__init__(f"{where}: {what + ': ' if what else ''}{message}")


@dataclass(frozen=True, slots=True)
class Profile:
    """One model and the server flags it needs; every field already validated."""

    id: str
    name: str
    model: str
    ctx_size: int | None
    n_gpu_layers: str | None
    override_tensor: str | None
    batch_size: int | None
    ubatch_size: int | None
    flags: tuple[str, ...]
    speed: float | None
    bench: bool
    description: str
    image: str
    models_dir: Path
    host: str
    port: int | None  # the host port; None: `auto` (Docker picks a free one, read back from the container)
    compose_file: Path
    load_timeout: float
    stall_timeout: float
    drain_timeout: float
    stop_grace: float
    verify: bool
    # Placement (docs/models-conf.md "Placement"); the defaults are the single-container behaviour.
    engine: str = LOCAL
    gpus: tuple[str, ...] | None = None  # None: all; (): none (CPU only); else normalised indices/UUIDs
    exclusive: bool = False
    aliases: tuple[str, ...] = ()
    # The endpoint's idle and start-up behaviour (docs/proxy.md): unload after `ttl` seconds
    # without a request (None: never); `preload`: ensured when the daemon starts.
    ttl: float | None = None
    preload: bool = False

    @property
    def gpus_text(self) -> str:
        """`gpus` as written in models.conf and on the wire: "all", "none" or "0,1"."""
        return gpus_text(self.gpus)

    def server_args(self) -> list[str]:
        """llama-server's argv (after the entrypoint); never passes through a shell."""
        args = ["-m", f"/models/{self.model}", "--host", "0.0.0.0", "--port", "8080"]  # noqa: S104 - inside the container
        if self.ctx_size is not None:
            args += ["--ctx-size", str(self.ctx_size)]
        if self.n_gpu_layers is not None:
            args += ["--n-gpu-layers", self.n_gpu_layers]
        if self.override_tensor:
            args += ["--override-tensor", self.override_tensor]
        if self.batch_size is not None:
            args += ["--batch-size", str(self.batch_size)]
        if self.ubatch_size is not None:
            args += ["--ubatch-size", str(self.ubatch_size)]
        args += ["--alias", self.id]
        return [*args, *self.flags]

    def model_path(self) -> Path:
        return self.models_dir / self.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "model": self.model,
            "ctx_size": self.ctx_size,
            "n_gpu_layers": gpu_layers_value(self.n_gpu_layers),
            "override_tensor": self.override_tensor,
            "batch_size": self.batch_size,
            "ubatch_size": self.ubatch_size,
            "flags": list(self.flags),
            "speed": self.speed,
            "bench": self.bench,
            "description": self.description,
            "image": self.image,
            "port": self.port if self.port is not None else "auto",
            "engine": self.engine,
            "gpus": self.gpus_text,
            "exclusive": self.exclusive,
            "aliases": list(self.aliases),
            "ttl": self.ttl,
            "preload": self.preload,
        }


def gpu_layers_value(raw: str | None) -> int | str | None:
    """n_gpu_layers on the wire: a count is a number; only the words `all`/`auto` are strings."""
    return int(raw) if raw is not None and raw.isdigit() else raw


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """models.conf's [daemon] section: what every daemon for this config does besides the socket."""

    http: str | None = None  # "HOST:PORT" of the HTTP API; None: off
    http_allow_remote: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    instance: str
    profiles: Mapping[str, Profile]
    default_profile: str | None = None
    source_text: str = field(default="", repr=False)
    # Valid but risky settings, each "file:line: [section] key: why" (shown by check and status).
    warnings: tuple[str, ...] = ()
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)  # [proxy]: the model endpoint
    # Always holds LOCAL; the [engine NAME] sections besides it.
    engines: Mapping[str, EngineSettings] = field(default_factory=lambda: {LOCAL: EngineSettings(LOCAL)})

    def engine_of(self, profile: Profile | str) -> EngineSettings:
        """The engine a profile (or profile id) runs on."""
        name = (self.profile(profile) if isinstance(profile, str) else profile).engine
        return self.engines[name]

    @property
    def gpu_uuids(self) -> dict[str, tuple[str, ...]]:
        """engine -> its declared GPU UUIDs in index order (placement.conflict's `gpu_uuids`)."""
        return {name: e.gpu_uuids for name, e in self.engines.items() if e.gpu_uuids}

    def profile(self, profile_id: str) -> Profile:
        try:
            return self.profiles[profile_id]
        except KeyError:
            raise UnknownProfileError(profile_id, list(self.profiles)) from None


class UnknownProfileError(KeyError):
    def __init__(self, profile_id: str, valid: list[str]) -> None:
        self.profile_id = profile_id
        self.valid = valid
        near = difflib.get_close_matches(profile_id, valid, n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        self.message = f"unknown model '{profile_id}'.{hint} Valid ids: {', '.join(valid) or '(none)'}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


# ---- key schema -------------------------------------------------------------

Parser = Callable[[str], Any]


# Every value has a range that works end to end (llama-server's int32 flags, Docker's stop
# timeout, timers): a value check accepts must not fail later. docs/models-conf.md lists them.
RANGES: dict[str, tuple[float, float]] = {
    "ctx_size": (1, 16_777_216),  # 16M tokens: beyond any model's trained context
    "n_gpu_layers": (0, 100_000),
    "batch_size": (1, 1_048_576),
    "ubatch_size": (1, 1_048_576),
    "port": (1, 65535),
    "speed": (0.001, 100_000),  # tokens per second
    "load_timeout": (1, 86_400),  # seconds: a day
    "stall_timeout": (1, 86_400),
    "drain_timeout": (0.1, 3_600),
    "stop_grace": (0.1, 3_600),
    "ttl": (1, 31_536_000),  # a year; 0 or `never` means no ttl
}
MAX_CHARS: dict[str, int] = {
    "name": 100, "description": 2_000, "model": 1_024, "image": 512, "models_dir": 4_096,
    "compose_file": 4_096, "flags": 8_192, "override_tensor": 4_096,
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(key: str, unit: str = "") -> str:
    low, high = RANGES[key]
    return f"between {_number(low)} and {_number(high)}{unit}"


def _int(key: str) -> Parser:
    low, high = RANGES[key]

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"'{raw}' is not a whole number (must be {_range_text(key)})") from None
        if not low <= value <= high:
            digits = str(value)
            shown = digits if len(digits) <= 30 else f"{digits[:12]}... ({len(digits)} digits)"
            raise ValueError(f"{shown} is out of range: must be {_range_text(key)}")
        return value

    return parse


def _bounded_float(key: str, what: str, unit: str = "") -> Parser:
    low, high = RANGES[key]

    def parse(raw: str) -> float:
        try:
            value = float(raw.rstrip("s") if unit else raw)
        except ValueError:
            raise ValueError(f"'{raw}' is not {what}") from None
        if not math.isfinite(value):
            raise ValueError(f"'{raw}' is not a finite number: must be {_range_text(key, unit)}")
        if not low <= value <= high:
            raise ValueError(f"{value:g} is out of range: must be {_range_text(key, unit)}")
        return value

    return parse


def _seconds(key: str) -> Parser:
    return _bounded_float(key, "a number of seconds (e.g. 30 or 2.5)", " seconds")


_positive_float = _bounded_float("speed", "a number (tokens per second, e.g. 140)")


def _limited(key: str, parser: Parser) -> Parser:
    """`parser`, after a length check: a value that long is a paste gone wrong."""
    limit = MAX_CHARS[key]

    def parse(raw: str) -> Any:
        if len(raw.strip()) > limit:
            raise ValueError(f"the value is {len(raw.strip())} characters long: it must be at most {limit}")
        return parser(raw)

    return parse


_BOOLS = {"1": True, "yes": True, "true": True, "on": True,
          "0": False, "no": False, "false": False, "off": False}


def _bool(raw: str) -> bool:
    try:
        return _BOOLS[raw.lower()]
    except KeyError:
        raise ValueError(f"'{raw}' is not a boolean: use true or false") from None


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _passable(value: str, what: str = "") -> str:
    """Refuse what cannot reach the container intact through `.env` and `docker compose`.

    Compose reads `.env` with variable expansion (`${NAME}` is replaced even inside
    quotes, and there is no escape for it), and control characters cannot travel
    in a one-line argument; both would make `docker compose up` differ from llm-mcp.
    """
    label = f"{what} " if what else ""
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs"):
            raise ValueError(f"{label}{value!r} contains the control character U+{ord(char):04X}; "
                             "write it on one line with printable characters only")
    if "${" in value:
        raise ValueError(f"{label}'{value}' contains '${{', which docker compose would expand as a "
                         "variable when it reads .env; remove it (a lone '$' is fine)")
    return value


_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*\Z")


def _image(raw: str) -> str:
    value = _passable(_text(raw))
    if not _IMAGE_REF.match(value):
        raise ValueError(f"'{value}' is not an image reference: letters, digits and . _ - / : @ + "
                         "only (e.g. ghcr.io/ggml-org/llama.cpp:server-cuda)")
    return value


def _dir(raw: str) -> str:
    value = _passable(_text(raw))
    if ":" in value:
        raise ValueError(f"'{value}' contains ':', which the volume 'HOST:CONTAINER:ro' syntax "
                         "cannot carry; use a path without ':' (a symlink works)")
    if value.endswith("\\"):
        raise ValueError(f"'{value}' ends with a backslash, which docker compose cannot read back "
                         "from .env; remove it")
    return value


def _path(raw: str) -> str:
    return _passable(_text(raw))


def _gpu_layers(raw: str) -> str:
    if raw in ("all", "auto"):
        return raw
    try:
        return str(_int("n_gpu_layers")(raw))
    except ValueError as exc:
        raise ValueError(f"{exc}, or all, or auto") from None


def _model_file(raw: str) -> str:
    value = _passable(_text(raw))
    if value.startswith("/") or ".." in Path(value).parts:
        raise ValueError(f"'{value}' must be a file name relative to models_dir (no '/' prefix, no '..')")
    return value


def _override_tensor(raw: str) -> str:
    value = _passable(raw.strip())
    for part in value.split(","):
        pattern, sep, buffer = part.rpartition("=")
        if not sep or not pattern or not buffer:
            raise ValueError(
                f"'{part}' is not PATTERN=BUFFER (e.g. 'blk\\.\\d+\\.ffn_.*_exps\\.=CPU')"
            )
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise ValueError(f"'{pattern}' is not a valid regular expression: {exc or type(exc).__name__} "
                             "(e.g. 'blk\\.\\d+\\.ffn_.*_exps\\.=CPU')") from None
    return value


def _flags(raw: str) -> tuple[str, ...]:
    try:
        parts = shlex.split(raw)
    except ValueError as exc:
        raise ValueError(f"cannot split into arguments ({exc}); check the quotes") from None
    for part in parts:
        _passable(part, "the argument")
        flag = part.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            raise ValueError(f"'{flag}' is set by the '{MANAGED_FLAGS[flag]}' key; use that instead")
    return tuple(parts)


def _host(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError(f"'{raw}' is not an IP address (e.g. 127.0.0.1)") from None


def _instance(raw: str) -> str:
    value = raw.strip()
    if not PROFILE_ID.match(value):
        raise ValueError(f"'{value}' must be a slug: lowercase letters, digits, '.', '_' or '-'")
    return value


def _port(raw: str) -> int | None:
    if raw.strip().lower() == "auto":
        return None
    try:
        return int(_int("port")(raw))
    except ValueError as exc:
        raise ValueError(f"{exc}; or auto (Docker picks a free port)") from None


def _gpus(raw: str) -> tuple[str, ...] | None:
    return parse_gpus(raw)


def _engine_ref(raw: str) -> str:
    value = raw.strip()
    if not PROFILE_ID.match(value):
        raise ValueError(f"'{value}' is not an engine name: the NAME of an [engine NAME] section, a slug "
                         f"(lowercase letters, digits, '.', '_' or '-'), or {LOCAL}")
    return value


def _aliases(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in raw.split(","):
        alias = item.strip()
        if not PROFILE_ID.match(alias):
            raise ValueError(f"'{alias}' is not a valid alias: like a profile id, a slug of lowercase "
                             "letters, digits, '.', '_' or '-' (several: a, b)")
        if alias in out:
            raise ValueError(f"'{alias}' is listed twice")
        out.append(alias)
    return tuple(out)


def _ttl(raw: str) -> float | None:
    """Seconds, or 0 / `never` for no ttl."""
    if raw.strip().lower() in ("0", "never", "none", "off"):
        return None
    value: float | None = _seconds("ttl")(raw)
    return value


PROFILE_KEYS: dict[str, Parser] = {
    "name": _limited("name", _text),
    "model": _limited("model", _model_file),
    "ctx_size": _int("ctx_size"),
    "n_gpu_layers": _gpu_layers,
    "override_tensor": _limited("override_tensor", _override_tensor),
    "batch_size": _int("batch_size"),
    "ubatch_size": _int("ubatch_size"),
    "flags": _limited("flags", _flags),
    "speed": _positive_float,
    "bench": _bool,
    "description": _limited("description", str.strip),
    "image": _limited("image", _image),
    "models_dir": _limited("models_dir", _dir),
    "host": _host,
    "port": _port,
    "compose_file": _limited("compose_file", _path),
    "load_timeout": _seconds("load_timeout"),
    "stall_timeout": _seconds("stall_timeout"),
    "drain_timeout": _seconds("drain_timeout"),
    "stop_grace": _seconds("stop_grace"),
    "verify": _bool,
    "engine": _engine_ref,
    "gpus": _gpus,
    "exclusive": _bool,
    "aliases": _aliases,
    "ttl": _ttl,
    "preload": _bool,
}
DEFAULTS_ONLY_KEYS: dict[str, Parser] = {"instance": _instance, "default": str.strip}
NOT_IN_DEFAULTS = {"name", "model", "aliases"}

BUILTIN_DEFAULTS = {
    "image": DEFAULT_IMAGE,
    "models_dir": "~/models",
    "host": "127.0.0.1",
    "port": "8080",
    "compose_file": "compose/compose.yaml",
    "load_timeout": "900",
    "stall_timeout": "180",
    "drain_timeout": "30",
    "stop_grace": "10",
    "verify": "true",
    "bench": "false",
    "engine": LOCAL,
    "gpus": "all",
    "exclusive": "false",
    "ttl": "never",
    "preload": "false",
}


# ---- loading ------------------------------------------------------------------


_SECTION_LINE = re.compile(r"\[(?P<header>.+)\]")  # configparser's SECTCRE
_OPTION_LINE = re.compile(r"(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$")  # its OPTCRE


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Where each (section, key) sits: configparser forgets line numbers.

    Follows configparser's own reading rules (lines split on '\\n' only, comment
    lines, continuation lines indented deeper than their key) so the numbers match.
    """
    lines: dict[tuple[str, str], int] = {}
    section: str | None = None
    in_option = False
    indent_level = 0
    for number, line in enumerate(text.split("\n"), start=1):
        value = line.strip()
        if not value or value[0] in "#;":
            continue
        indent = len(line) - len(line.lstrip())
        if section is not None and in_option and indent > indent_level:
            continue  # a continuation of the previous value
        indent_level = indent
        header = _SECTION_LINE.match(value)
        if header:
            section = header.group("header")
            lines.setdefault((section, ""), number)
            in_option = False
            continue
        option = _OPTION_LINE.match(value)
        if section is not None and option and option.group("option"):
            lines.setdefault((section, option.group("option").rstrip().lower()), number)
            in_option = True
    return lines


def _resolve(base_dir: Path, raw: str) -> Path:
    """`raw` (may start with ~) relative to the config file's directory, made absolute."""
    try:
        return (base_dir / Path(raw).expanduser()).resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # ~unknownuser, a symlink loop
        raise ValueError(f"cannot resolve '{raw}': {exc}; use an absolute path or one relative "
                         "to this file") from None


# Directories a models_dir must never be: the container would see the whole system or home.
_SYSTEM_DIRS = frozenset(Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32",
                                            "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr", "/var"))


def _check_models_dir(path: Path) -> None:
    """models_dir is mounted into the container: it must be a directory of models, nothing wider."""
    try:
        home = Path.home().resolve()
    except (RuntimeError, OSError):
        home = None
    if path in _SYSTEM_DIRS or path == home:
        what = "your home directory" if path == home else "a system directory"
        raise ValueError(f"{path} is {what}; the container would see all of it. Use the directory "
                         "that holds the GGUF files (e.g. ~/models)")


def _suggest(key: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(key, valid, n=1)
    return f"did you mean '{near[0]}'? " if near else ""


def parse_config(text: str, path: Path) -> Config:
    """Parse models.conf text; `path` locates errors and relative paths."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00none")
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(path, exc.lineno, None, "the section appears twice", exc.section) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(path, exc.lineno, exc.option, "the key appears twice in this section",
                          exc.section) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(path, exc.lineno, None,
                          "a key comes before any [section]; start with [defaults]") from None
    except configparser.ParsingError as exc:
        # configparser keeps repr(line); quote the line itself instead.
        lineno = exc.errors[0][0] if exc.errors else None
        lines = text.split("\n")
        line = lines[lineno - 1].strip() if lineno and lineno <= len(lines) else ""
        raise ConfigError(path, lineno, None,
                          f"cannot parse '{line}': expected 'key = value' (or a [section])") from None
    except configparser.Error as exc:
        raise ConfigError(path, None, None, str(exc)) from None

    where = _key_lines(text)
    base_dir = path.parent

    def fail(section: str, key: str | None, message: str) -> ConfigError:
        return ConfigError(path, where.get((section, key or "")), key, message, section)

    raw_defaults = dict(BUILTIN_DEFAULTS)
    instance = "default"
    default_profile: str | None = None
    if parser.has_section("defaults"):
        for key, value in parser.items("defaults"):
            if key in DEFAULTS_ONLY_KEYS:
                try:
                    parsed = DEFAULTS_ONLY_KEYS[key](value)
                except ValueError as exc:
                    raise fail("defaults", key, str(exc)) from None
                if key == "instance":
                    instance = parsed
                else:
                    default_profile = parsed or None
                continue
            if key in NOT_IN_DEFAULTS or key not in PROFILE_KEYS:
                valid = sorted(k for k in [*PROFILE_KEYS, *DEFAULTS_ONLY_KEYS] if k not in NOT_IN_DEFAULTS)
                reason = ("belongs in a profile section, not [defaults]" if key in NOT_IN_DEFAULTS
                          else f"unknown key; {_suggest(key, valid)}valid keys: {', '.join(valid)}")
                raise fail("defaults", key, reason)
            try:  # report a bad default where it is written, even before any profile uses it
                PROFILE_KEYS[key](value)
            except ValueError as exc:
                raise fail("defaults", key, str(exc)) from None
            raw_defaults[key] = value

    profiles: dict[str, Profile] = {}
    warnings: list[str] = []
    engines = _engine_sections(parser, fail, base_dir, warnings)
    for section in parser.sections():
        if section in ("defaults", DAEMON_SECTION, PROXY_SECTION) or _engine_header(section) is not None:
            continue
        if not PROFILE_ID.match(section):
            hint = (f" (an engine section is [{ENGINE_SECTION} NAME], NAME a slug)"
                    if section.split()[:1] == [ENGINE_SECTION] else "")
            raise fail(section, None, "a profile id must be a slug: lowercase letters, digits, "
                       f"'.', '_' or '-', starting with a letter or digit (e.g. [glm-4.7-flash]){hint}")
        own = dict(parser.items(section))
        for key in own:
            if key not in PROFILE_KEYS:
                raise fail(section, key, f"unknown key; {_suggest(key, list(PROFILE_KEYS))}"
                           f"valid keys: {', '.join(PROFILE_KEYS)}")
        if "model" not in own:
            raise ConfigError(path, where.get((section, "")), "model",
                              "missing: every profile needs 'model = FILE.gguf' (the GGUF file under "
                              "models_dir)", section)
        merged = {**raw_defaults, **own}
        values: dict[str, Any] = {}
        for key, raw in merged.items():
            try:
                values[key] = PROFILE_KEYS[key](raw)
            except ValueError as exc:
                origin = section if key in own else "defaults"
                raise fail(origin, key, str(exc)) from None
        if values.get("ubatch_size") and values.get("batch_size") and \
                values["ubatch_size"] > values["batch_size"]:
            raise fail(section, "ubatch_size", f"{values['ubatch_size']} is larger than batch_size "
                       f"{values['batch_size']}; llama-server needs ubatch_size <= batch_size")
        def set_in(key: str) -> str:
            return section if key in own else "defaults"  # noqa: B023 - used within this iteration

        engine = engines.get(values["engine"])
        if engine is None:
            raise fail(set_in("engine"), "engine", f"unknown engine '{values['engine']}'; "
                       f"{_suggest(values['engine'], list(engines))}valid engines: {', '.join(engines)} "
                       f"(define others in an [{ENGINE_SECTION} NAME] section)")
        try:
            values["compose_file"] = _resolve(base_dir, values["compose_file"])
        except ValueError as exc:
            raise fail(set_in("compose_file"), "compose_file", str(exc)) from None
        try:
            values["models_dir"] = _profile_models_dir(values["models_dir"], "models_dir" in own, engine,
                                                       base_dir)
        except ValueError as exc:
            raise fail(set_in("models_dir"), "models_dir", str(exc)) from None
        if engine.gpus is not None and values["gpus"]:
            missing = undeclared(values["gpus"], engine.gpus)
            if missing:
                raise fail(set_in("gpus"), "gpus", f"GPU {', '.join(missing)} is not among engine "
                           f"{engine.name}'s declared gpus ({', '.join(engine.gpus)})")
        port_text = values["port"] if values["port"] is not None else "auto"
        if not ipaddress.ip_address(values["host"]).is_loopback:
            note = str(fail(set_in("host"), "host", f"{values['host']} is not a loopback address: "
                            f"llama-server (no API key by default) is reachable from other machines on "
                            f"port {port_text}; use 127.0.0.1 unless that is what you want"))
            if note not in warnings:
                warnings.append(note)
        elif engine.remote and not is_loopback(engine.address):
            note = str(fail(set_in("engine"), "engine", f"engine {engine.name} is reached at "
                            f"{engine.address}, but the port is published on {values['host']} of that "
                            f"host, which only it can reach; set host = 0.0.0.0 (or that host's own "
                            f"address) in [{section}], or address = 127.0.0.1 with an SSH tunnel"))
            if note not in warnings:
                warnings.append(note)
        profiles[section] = Profile(
            id=section,
            name=values.get("name", section),
            model=values["model"],
            ctx_size=values.get("ctx_size"),
            n_gpu_layers=values.get("n_gpu_layers"),
            override_tensor=values.get("override_tensor"),
            batch_size=values.get("batch_size"),
            ubatch_size=values.get("ubatch_size"),
            flags=values.get("flags", ()),
            speed=values.get("speed"),
            bench=values["bench"],
            description=values.get("description", ""),
            image=values["image"],
            models_dir=values["models_dir"],
            host=values["host"],
            port=values["port"],
            compose_file=values["compose_file"],
            load_timeout=values["load_timeout"],
            stall_timeout=values["stall_timeout"],
            drain_timeout=values["drain_timeout"],
            stop_grace=values["stop_grace"],
            verify=values["verify"],
            engine=engine.name,
            gpus=values["gpus"],
            exclusive=values["exclusive"],
            aliases=values.get("aliases", ()),
            ttl=values["ttl"],
            preload=values["preload"],
        )
    if not profiles:
        raise ConfigError(path, None, None, "no profiles: add a section such as [my-model] with "
                          "'model = file.gguf'")
    if default_profile is not None and default_profile not in profiles:
        raise fail("defaults", "default", f"'{default_profile}' is not a profile; valid ids: "
                   f"{', '.join(profiles)}")
    _check_aliases(profiles, fail)
    daemon = _daemon_section(parser, fail, warnings)
    proxy = proxy_section(dict(parser.items(PROXY_SECTION)) if parser.has_section(PROXY_SECTION) else None,
                          fail, warnings, lambda raw: _resolve(base_dir, raw))
    return Config(path=path, instance=instance, profiles=profiles,
                  default_profile=default_profile, source_text=text, warnings=tuple(warnings),
                  daemon=daemon, proxy=proxy, engines=engines)


Fail = Callable[[str, str | None, str], ConfigError]


def _check_aliases(profiles: Mapping[str, Profile], fail: Fail) -> None:
    """An alias names one profile: never a profile id, never another profile's alias."""
    owner: dict[str, str] = {}
    for profile in profiles.values():
        for alias in profile.aliases:
            if alias in profiles:
                raise fail(profile.id, "aliases", f"'{alias}' is the id of a profile"
                           f"{'' if alias != profile.id else ' (this one)'}; an alias must be another name")
            if alias in owner:
                raise fail(profile.id, "aliases", f"'{alias}' is already an alias of [{owner[alias]}]")
            owner[alias] = profile.id


def _profile_models_dir(raw: str, own: bool, engine: EngineSettings, base_dir: Path) -> Path:
    """The profile's own models_dir, else its engine's, else the one from [defaults] (or built in)."""
    if not own and engine.models_dir is not None:
        return engine.models_dir
    if engine.remote and not own:
        raise ValueError(f"engine {engine.name} runs on another host and sets no models_dir: set "
                         f"models_dir (the directory on that host) in [{ENGINE_SECTION} {engine.name}]")
    return _engine_models_dir(raw, engine.remote, base_dir)


def _engine_models_dir(raw: str, remote: bool, base_dir: Path) -> Path:
    """A local models_dir is resolved here; a remote one is a path on that host, taken as written."""
    if not remote:
        path = _resolve(base_dir, raw)
        _check_models_dir(path)
        return path
    if not raw.startswith("/"):
        raise ValueError(f"'{raw}' must be an absolute path on the engine's host ('~' and relative "
                         "paths would be read on this machine)")
    path = Path(raw)
    if path in _SYSTEM_DIRS or ".." in path.parts:
        raise ValueError(f"{path} is a system directory or climbs with '..'; the container would see "
                         "more than the models. Use the directory that holds the GGUF files")
    return path


# ---- [engine NAME] ---------------------------------------------------------------------


def _engine_header(section: str) -> str | None:
    """NAME of an `[engine NAME]` header, else None (`[engine]` alone stays a profile id, as before)."""
    parts = section.split()
    if len(parts) == 2 and parts[0] == ENGINE_SECTION and PROFILE_ID.match(parts[1]):
        return parts[1]
    return None


def _engine_sections(parser: configparser.ConfigParser, fail: Fail, base_dir: Path,
                     warnings: list[str]) -> dict[str, EngineSettings]:
    engines = {LOCAL: EngineSettings(LOCAL)}
    seen: set[str] = set()
    for section in parser.sections():
        name = _engine_header(section)
        if name is None:
            continue
        if name in seen:  # `[engine  x]` and `[engine x]`: two sections to configparser
            raise fail(section, None, f"engine {name} is defined twice")
        seen.add(name)
        engines[name] = _engine(section, dict(parser.items(section)), fail, base_dir, warnings)
    return engines


def _engine(section: str, own: dict[str, str], fail: Fail, base_dir: Path,
            warnings: list[str]) -> EngineSettings:
    name = section.split()[1]
    for key in own:
        if key not in ENGINE_KEYS:
            raise fail(section, key, f"unknown key; {_suggest(key, list(ENGINE_KEYS))}valid keys: "
                       f"{', '.join(ENGINE_KEYS)}")

    def parsed(key: str, parse: Parser) -> Any:
        try:
            return parse(own[key])
        except ValueError as exc:
            raise fail(section, key, str(exc)) from None

    url = parsed("url", parse_url) if "url" in own else None
    scheme = url.partition("://")[0] if url else None
    tls_keys = [key for key in (*TLS_FILES, "tls_verify") if key in own]
    if tls_keys and scheme != "tcp":
        raise fail(section, tls_keys[0], "TLS settings apply to a tcp:// url only (unix:// is a local "
                   "socket, ssh:// is encrypted by SSH)")
    files = [key for key in TLS_FILES if key in own]
    if files and len(files) < len(TLS_FILES):
        absent = [key for key in TLS_FILES if key not in own]
        raise fail(section, files[0], f"set all of {', '.join(TLS_FILES)} or none; missing: "
                   f"{', '.join(absent)}")
    tls = {key: parsed(key, lambda raw: _resolve(base_dir, _path(raw))) for key in files}
    verify = parsed("tls_verify", _bool) if "tls_verify" in own else True
    remote = scheme in ("tcp", "ssh")
    models_dir = None
    if "models_dir" in own:
        models_dir = parsed("models_dir", lambda raw: _engine_models_dir(PROFILE_KEYS["models_dir"](raw),
                                                                         remote, base_dir))
    gpus = parsed("gpus", parse_declared_gpus) if "gpus" in own else None
    address = parsed("address", parse_address) if "address" in own else (
        url_host(url) if url and remote else "127.0.0.1")
    if scheme == "tcp" and url and not files and not is_loopback(url_host(url)):
        warnings.append(str(fail(section, "url", f"{url} without TLS: anyone who reaches that port "
                                 "controls the Docker Engine (root on that host); set tls_ca, tls_cert "
                                 "and tls_key")))
    if not verify:
        warnings.append(str(fail(section, "tls_verify", "false: the engine's certificate is not checked, "
                                 "so anyone in between can pose as it")))
    return EngineSettings(name=name, url=url, tls_ca=tls.get("tls_ca"), tls_cert=tls.get("tls_cert"),
                          tls_key=tls.get("tls_key"), tls_verify=verify, models_dir=models_dir,
                          gpus=gpus, address=address)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, None, "file not found; copy the example models.conf "
                          "from the project or pass --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, None, f"cannot read: {exc}") from None


def load_config(path: Path) -> Config:
    return parse_config(_read(path), path.resolve())


class ConfigReader:
    """models.conf as the daemon sees it: read on every request (an edit counts at once),
    parsed again only when the text changed (status with 8 models must stay ~1 ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._text: str | None = None
        self._config: Config | None = None

    def __call__(self) -> Config:
        text = _read(self.path)
        if self._config is None or text != self._text:
            self._config = parse_config(text, self.path.resolve())  # raises: nothing cached
            self._text = text
        return self._config


# ---- [daemon] -------------------------------------------------------------------------

DAEMON_SECTION = "daemon"  # not a profile: settings of the daemon process itself
DAEMON_KEYS = ("http", "http_allow_remote")


def _daemon_section(parser: configparser.ConfigParser, fail: Fail, warnings: list[str]) -> DaemonSettings:
    """[daemon] http = HOST:PORT (the HTTP API, served by every daemon), http_allow_remote = bool."""
    if not parser.has_section(DAEMON_SECTION):
        return DaemonSettings()
    own = dict(parser.items(DAEMON_SECTION))
    for key in own:
        if key not in DAEMON_KEYS:
            raise fail(DAEMON_SECTION, key, f"unknown key; {_suggest(key, list(DAEMON_KEYS))}valid keys: "
                       f"{', '.join(DAEMON_KEYS)}")
    allow_remote = False
    if "http_allow_remote" in own:
        try:
            allow_remote = _bool(own["http_allow_remote"])
        except ValueError as exc:
            raise fail(DAEMON_SECTION, "http_allow_remote", str(exc)) from None
    http = own.get("http", "").strip()
    if not http or http.lower() == "off":
        return DaemonSettings(None, allow_remote)
    try:
        host, _ = parse_bind(http, allow_remote=True)
    except ValueError as exc:
        raise fail(DAEMON_SECTION, "http", f"{exc} (e.g. 127.0.0.1:8765, or off)") from None
    if not is_loopback(host):
        if not allow_remote:
            raise fail(DAEMON_SECTION, "http", f"{host} is not a loopback address and the HTTP API has no "
                       "authentication; use 127.0.0.1:PORT, or set http_allow_remote = true to expose it")
        warnings.append(str(fail(DAEMON_SECTION, "http", f"the HTTP API (no authentication) listens on "
                                 f"{host}: anyone who reaches it can switch and stop models")))
    return DaemonSettings(http, allow_remote)
