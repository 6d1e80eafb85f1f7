"""`llm-mcp check`: what stands between this machine and a running model, with the fix for each.

Runs in the CLI process and looks at the world directly (models.conf, Docker,
NVML, the port), so it works when the daemon can't start; only the last item
asks the daemon, without starting one.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from llm_mcp.config.models_conf import Config, ConfigError, Profile, load_config

Level = Literal["ok", "warn", "error"]


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # config | docker | image | model | compose | gpu | port | proxy | daemon
    level: Level
    message: str
    fix: str = ""  # the command (or edit) that fixes it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _edit(path: Path, line: int | None = None) -> str:
    return f"$EDITOR {'+' + str(line) + ' ' if line else ''}{path}"


def check_config(path: Path) -> tuple[Config | None, Finding]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        if not path.exists():
            fix = (f"mkdir -p {path.parent} && cp models.conf {path}  # the example from the llm-mcp "
                   "checkout, then edit it; or pass --config / set LLM_MCP_CONFIG")
        else:
            fix = _edit(path, exc.line)
        return None, Finding("config", "error", str(exc), fix)
    ids = ", ".join(config.profiles)
    return config, Finding("config", "ok", f"{path}: {len(config.profiles)} profile(s): {ids}")


def config_warnings(config: Config) -> list[Finding]:
    """Valid but risky settings (a host other than loopback), each with where to change it."""
    out = []
    for warning in config.warnings:
        where = warning.split(": ", 1)[0].rpartition(":")[2]  # "file:LINE: [section] key: why"
        line = int(where) if where.isdigit() else None
        out.append(Finding("config", "warn", warning, _edit(config.path, line)))
    return out


def _key_line(config: Config, section: str, key: str) -> int | None:
    from llm_mcp.config.models_conf import _key_lines

    lines = _key_lines(config.source_text) if config.source_text else {}
    return lines.get((section, key)) or lines.get(("defaults", key))


def check_models(config: Config) -> list[Finding]:
    out: list[Finding] = []
    missing_dirs: set[Path] = set()
    for profile in config.profiles.values():
        engine = config.engine_of(profile)
        if engine.remote:  # the file is on that engine's host: the load itself says if it is missing
            out.append(Finding("model", "ok", f"[{profile.id}] {profile.model_path()} is on engine "
                               f"'{engine.name}' ({engine.url}); not checked from here"))
            continue
        if not profile.models_dir.is_dir():
            if profile.models_dir not in missing_dirs:
                missing_dirs.add(profile.models_dir)
                line = _key_line(config, profile.id, "models_dir")
                out.append(Finding("model", "error", f"models_dir {profile.models_dir} does not exist",
                                   f"mkdir -p {profile.models_dir}  # and put the GGUF files there, or "
                                   f"fix models_dir: {_edit(config.path, line)}"))
            continue
        path = profile.model_path()
        if path.is_file():
            out.append(_model_file(config, profile, path))
        else:
            line = _key_line(config, profile.id, "model")
            out.append(Finding("model", "error", f"[{profile.id}] model file {path} does not exist",
                               f"download {profile.model} into {profile.models_dir}/, or fix the name: "
                               f"{_edit(config.path, line)}"))
    return out


def _model_file(config: Config, profile: Profile, path: Path) -> Finding:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        return Finding("model", "error", f"[{profile.id}] cannot read {path}: {exc}",
                       f"chmod a+r {path}")
    if magic != b"GGUF":
        return Finding("model", "error", f"[{profile.id}] {path} is not a GGUF file (it starts with "
                       f"{magic!r}, not b'GGUF')", f"re-download {profile.model} into {profile.models_dir}/")
    from llm_mcp.hardware.gguf_info import GGUFError, read_model_info_cached

    try:  # the whole header, and every tensor inside the file: catches a cut-off download
        read_model_info_cached(path)
    except GGUFError as exc:
        return Finding("model", "error", f"[{profile.id}] {path}: {exc.reason}",
                       f"re-download {profile.model} into {profile.models_dir}/")
    return Finding("model", "ok", f"[{profile.id}] {path} ({path.stat().st_size / 1e9:.2f} GB)")


def check_compose(config: Config) -> tuple[list[Finding], bool]:
    """Each profile's container spec; also whether any of them reserves a GPU."""
    from llm_mcp.config.compose import ComposeError, profile_spec

    out: list[Finding] = []
    seen: set[str] = set()
    wants_gpu = False
    for profile in config.profiles.values():
        try:
            spec, _ = profile_spec(profile, config.instance)
        except (ComposeError, OSError) as exc:
            if str(exc) not in seen:
                seen.add(str(exc))
                out.append(Finding("compose", "error", f"[{profile.id}] {exc}", _edit(profile.compose_file)))
            continue
        wants_gpu = wants_gpu or bool(spec.device_requests)
    if not out:
        files = sorted({str(p.compose_file) for p in config.profiles.values()})
        out.append(Finding("compose", "ok", f"{', '.join(files)} renders for every profile"
                           + (" (reserves a GPU)" if wants_gpu else " (no GPU reservation)")))
    return out, wants_gpu


def check_docker(runtime: Any, name: str = "local") -> Finding:
    """Whether the engine answers; `name` is its models.conf name (the finding says which)."""
    from llm_mcp.runtime.base import EngineUnavailable
    from llm_mcp.runtime.docker_problem import describe

    check = "docker" if name == "local" else f"docker {name}"
    try:
        runtime.ping()
        version = runtime.client.version().get("Version", "?")
    except EngineUnavailable as exc:  # already a sentence and its fix (the runtime translated it)
        if exc.hint:
            return Finding(check, "error", str(exc), exc.hint)
        problem = describe(str(exc), runtime.host)
        return Finding(check, "error", problem.sentence, problem.hint)
    except Exception as exc:  # anything else: not usable either
        problem = describe(str(exc), runtime.host)
        return Finding(check, "error", problem.sentence, problem.hint)
    where = "" if name == "local" else f" ('{name}', {runtime.host})"
    return Finding(check, "ok", f"Docker Engine {version} reachable{where}")


def check_other_engines(config: Config) -> list[Finding]:
    """Every [engine NAME] besides the local one: reachable or why not (bounded: ~2 s each)."""
    from llm_mcp.runtime.docker_engine import DockerRuntime

    out = []
    for name, settings in config.engines.items():
        if name == "local":
            continue
        runtime = DockerRuntime.for_settings(settings, instance=config.instance)
        try:
            out.append(check_docker(runtime, name))
        finally:
            runtime.close()
    return out


def check_images(config: Config, runtime: Any) -> list[Finding]:
    users: dict[str, list[str]] = {}
    for profile in config.profiles.values():
        users.setdefault(profile.image, []).append(profile.id)
    out = []
    for image, ids in users.items():
        try:
            present = runtime.image_present(image)
        except Exception as exc:
            out.append(Finding("image", "error", f"cannot inspect image {image}: {exc}", "docker info"))
            continue
        if present:
            out.append(Finding("image", "ok", f"{image} present ({', '.join(ids)})"))
        else:
            out.append(Finding("image", "error", f"image {image} is not on this machine "
                               f"(used by {', '.join(ids)})", f"docker pull {image}"))
    return out


def check_gpu(sampler_factory: Callable[[], Any], wants_gpu: bool, runtime: Any | None) -> list[Finding]:
    sampler = sampler_factory()
    try:
        snapshot = sampler.sample()
    finally:
        sampler.close()
    if not snapshot.available:
        reason = snapshot.reason or "no GPU visible"
        if wants_gpu:
            return [Finding("gpu", "error", f"the compose file reserves a GPU but none is visible: {reason}",
                            "install the NVIDIA driver (`nvidia-smi` must work), or set compose_file = "
                            "compose/compose.cpu.yaml in models.conf for CPU only")]
        return [Finding("gpu", "warn", f"no GPU visible ({reason}); fine for this CPU-only compose file")]
    names = ", ".join(f"{g.index}: {g.name or '?'}" for g in snapshot.gpus)
    out = [Finding("gpu", "ok", f"{len(snapshot.gpus)} GPU(s) ({names}), driver {snapshot.driver_version}")]
    if wants_gpu and runtime is not None:
        try:
            runtimes = runtime.client.info().get("Runtimes") or {}
        except Exception:
            runtimes = {}
        if "nvidia" not in runtimes and shutil.which("nvidia-container-runtime-hook") is None:
            out.append(Finding("gpu", "warn", "Docker shows no NVIDIA container runtime: containers may "
                               "not get the GPU", "sudo nvidia-ctk runtime configure --runtime=docker && "
                               "sudo systemctl restart docker  # NVIDIA Container Toolkit"))
    return out


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _our_ports(runtime: Any | None) -> dict[int, str]:
    """Host ports held by our running container -> its profile."""
    if runtime is None:
        return {}
    held: dict[int, str] = {}
    try:
        for info in runtime.managed():
            if not info.running:
                continue
            attrs = runtime.client.api.inspect_container(info.id)
            for bindings in (attrs.get("HostConfig", {}).get("PortBindings") or {}).values():
                for binding in bindings or []:
                    if str(binding.get("HostPort", "")).isdigit():
                        held[int(binding["HostPort"])] = f"{info.profile} ({info.short_id})"
    except Exception:  # Docker trouble is reported by the docker check
        return held
    return held


def check_ports(config: Config, runtime: Any | None) -> list[Finding]:
    ours = _our_ports(runtime)
    out = []
    seen: dict[tuple[str, int], list[Profile]] = {}
    for profile in config.profiles.values():
        if profile.port is not None:  # `port = auto`: Docker picks a free one when it starts
            seen.setdefault((profile.host, profile.port), []).append(profile)
    for (host, port), profiles in seen.items():
        if port in ours:
            out.append(Finding("port", "ok", f"{host}:{port} is held by our container {ours[port]}"))
        elif _port_free(host, port):
            out.append(Finding("port", "ok", f"{host}:{port} is free"))
        else:
            line = _key_line(config, profiles[0].id, "port")
            out.append(Finding("port", "error", f"{host}:{port} is in use by another program",
                               f"ss -ltnp 'sport = :{port}'  # find it and stop it, or change the port: "
                               f"{_edit(config.path, line)}"))
    return out


def _served_by_llm_mcp(host: str, port: int) -> bool:
    """Does llm-mcp's endpoint answer there (its /health, with our Server header)?"""
    import httpx

    shown = f"[{host}]" if ":" in host else host
    try:
        answer = httpx.get(f"http://{shown}:{port}/health", timeout=2.0)
    except httpx.HTTPError:
        return False
    return str(answer.headers.get("server", "")).startswith("llm-mcp/")


def check_proxy(config: Config) -> list[Finding]:
    """[proxy]: where the model endpoint will listen, whether that port is free (or already ours),
    and that its keys are private."""
    from llm_mcp.config.binds import parse_bind

    settings = config.proxy
    if settings.listen is None:
        return [Finding("proxy", "ok", "[proxy] listen is off: no OpenAI/Anthropic endpoint (docs/proxy.md)")]
    host, port = parse_bind(settings.listen, allow_remote=True)  # models.conf checked it
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/v1"
    line = _key_line(config, "proxy", "listen")
    if _port_free(host, port):
        out = [Finding("proxy", "ok", f"the model endpoint will listen on {url} (the port is free)")]
    elif _served_by_llm_mcp(host, port):
        out = [Finding("proxy", "ok", f"the model endpoint is served on {url} (the daemon answers there)")]
    else:
        out = [Finding("proxy", "error", f"{host}:{port} ([proxy] listen) is in use by another program: "
                       "the daemon would run without the endpoint",
                       f"ss -ltnp 'sport = :{port}'  # stop it, or change listen: "
                       f"{_edit(config.path, line)}")]
    if settings.api_keys_file is not None:
        from llm_mcp.config.proxy_conf import read_api_keys_file

        try:
            keys = read_api_keys_file(settings.api_keys_file)
        except (OSError, ValueError) as exc:
            out.append(Finding("proxy", "error", f"api_keys_file: {exc}",
                               f"chmod 600 {settings.api_keys_file}"))
        else:
            out.append(Finding("proxy", "ok", f"api_keys_file {settings.api_keys_file}: {len(keys)} key(s), "
                               "private (0600)"))
    if settings.api_keys and config.path.stat().st_mode & 0o044:
        out.append(Finding("proxy", "warn", f"api_keys are written in {config.path}, which others can read",
                           f"move them to an api_keys_file (chmod 600), or chmod 600 {config.path}"))
    return out


async def check_daemon(socket_path: Path, config_path: Path, timeout: float = 5.0) -> Finding:
    from llm_mcp.clients.client import DaemonClient, DaemonUnavailable

    try:
        with anyio.fail_after(timeout):
            async with DaemonClient(socket_path, autostart=False, name="check") as client:
                status = await client.call("status", gpu=False)
                hello = client.hello
    except (DaemonUnavailable, OSError, TimeoutError):
        return Finding("daemon", "warn", f"no daemon on {socket_path} (any llm-mcp command starts it)",
                       "llm-mcp daemon  # to run it in the foreground")
    except Exception as exc:
        return Finding("daemon", "error", f"the daemon on {socket_path} does not answer properly: {exc}",
                       f"kill $(cat {socket_path}.lock) && llm-mcp status  # restarts it")
    state = status.get("state")
    profile = (status.get("profile") or {}).get("id")
    text = (f"daemon pid {hello.get('pid')} (protocol {hello.get('protocol')}) on {socket_path}: "
            f"{state}{' ' + profile if profile else ''}")
    if hello.get("config") and Path(str(hello["config"])) != config_path:
        return Finding("daemon", "warn", f"{text}; it reads {hello['config']}, not {config_path}",
                       f"kill $(cat {socket_path}.lock) && llm-mcp --config {config_path} status  "
                       "# restart it on this config (the model keeps running)")
    return Finding("daemon", "ok", text)


def diagnose(config_path: Path, *, runtime_factory: Callable[[str], Any] | None = None,
             gpu_sampler_factory: Callable[[], Any] | None = None) -> list[Finding]:
    """Everything but the daemon check (async; see check_daemon)."""
    if runtime_factory is None:
        from llm_mcp.runtime.docker_engine import DockerRuntime

        runtime_factory = DockerRuntime
    if gpu_sampler_factory is None:
        from llm_mcp.hardware.gpu import GpuSampler

        gpu_sampler_factory = GpuSampler
    config, found = check_config(config_path)
    findings = [found, *(config_warnings(config) if config else [])]
    runtime = runtime_factory(config.instance if config else "default")
    try:
        return findings + _with_engine(config, runtime, gpu_sampler_factory)
    finally:
        runtime.close()


def _with_engine(config: Config | None, runtime: Any,
                 gpu_sampler_factory: Callable[[], Any]) -> list[Finding]:
    findings = []
    docker = check_docker(runtime)
    findings.append(docker)
    if config is not None:
        findings += check_other_engines(config)
    docker_ok = docker.level == "ok"
    if config is None:
        findings += check_gpu(gpu_sampler_factory, False, runtime if docker_ok else None)
        return findings
    if docker_ok:
        findings += check_images(config, runtime)
    findings += check_models(config)
    compose, wants_gpu = check_compose(config)
    findings += compose
    findings += check_gpu(gpu_sampler_factory, wants_gpu, runtime if docker_ok else None)
    findings += check_ports(config, runtime if docker_ok else None)
    findings += check_proxy(config)
    return findings


def llm_mcp_command(executable: str | None = None) -> list[str]:
    """This installation's `llm-mcp`, absolute: Claude Code does not see the venv on its PATH."""
    python = Path(executable or sys.executable)
    beside = python.parent / "llm-mcp"  # the console script next to the venv's python
    if beside.is_file():
        return [str(beside.absolute())]
    found = shutil.which("llm-mcp")
    if found:
        return [str(Path(found).absolute())]
    return [str(python.absolute()), "-m", "llm_mcp"]


def claude_registration(config_path: Path, environ: Mapping[str, str], socket_path: Path | None = None,
                        executable: str | None = None) -> list[str]:
    """`claude mcp add` for this setup: absolute paths, the socket and state dir when not default.

    The name comes before `-e`: Claude Code's `-e` takes several values and would swallow it.
    """
    env = {}
    if socket_path is not None or environ.get("LLM_MCP_SOCKET"):
        env["LLM_MCP_SOCKET"] = str(Path(socket_path or environ["LLM_MCP_SOCKET"]).absolute())
    if environ.get("LLM_MCP_STATE_DIR"):
        env["LLM_MCP_STATE_DIR"] = str(Path(environ["LLM_MCP_STATE_DIR"]).absolute())
    argv = ["claude", "mcp", "add", "--scope", "user", "llm"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, "--", *llm_mcp_command(executable), "--config", str(config_path.absolute()), "serve"]


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(arg) for arg in argv)


def report(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings) if findings else 0
    lines = []
    for f in findings:
        lines.append(f"{f.level:<5} {f.check:<{width}}  {f.message}")
        if f.fix and f.level != "ok":
            lines.append(f"{'':<5} {'':<{width}}  fix: {f.fix}")
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    lines.append(f"{errors} error(s), {warnings} warning(s)" if errors or warnings else "all good")
    return "\n".join(lines)
