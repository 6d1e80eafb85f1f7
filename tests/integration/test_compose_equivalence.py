"""Compose itself reads compose/*.yaml + the `.env` llm-mcp writes into the same container as the core.

The second, independent reader is Debian's `docker-compose` (Compose v1.29):
`docker-compose config` interpolates the template with the `.env` beside it and
prints the result; it needs no Docker Engine. For every shipped profile, and
for profiles with awkward arguments, the image, the command argv, the ports and
the mounts it prints must equal the core's ContainerSpec.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm_mcp.config.compose import ContainerSpec, env_file_text, profile_spec, write_env_file
from llm_mcp.config.models_conf import Config, Profile, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_V1 = Path("/usr/bin/docker-compose")
TEMPLATES = ["compose.yaml", "compose.cpu.yaml"]

pytestmark = pytest.mark.skipif(
    not COMPOSE_V1.exists(),
    reason="Debian's docker-compose (Compose v1) is not installed at /usr/bin/docker-compose; "
           "`apt-get install docker-compose` (.ci/run installs it)",
)

# Arguments that stress every layer: INI, shlex, the .env quoting, Compose's
# interpolation and its own command splitting.
TRICKY = r"""
[tricky]
name = Tricky arguments
model = dir with space/it's "quoted" $x.gguf
override_tensor = blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU,token_embd\.weight=CPU
flags = --api-key "a b$c" --chat-template-kwargs '{"enable_thinking": false, "x": "y=z"}'
    --x=$HOME --dollars '$$' --lone $ --back "back\\slash" 'ends with\' --single "it's"
    --double 'say "hi"' --empty '' --hash '#not a comment' --semi 'a;b && c' --unicode 'ü€—'
    --percent '%d %s' --braces '{x}' --equals a=b=c --newline-escape '\n' --glob '*.gguf' -- -
port = 8123
stop_grace = 3
"""


def compose_config(template: Path) -> dict[str, Any]:
    """`docker-compose config` of `template`, reading the `.env` beside it; the llama-server service."""
    done = subprocess.run(
        [str(COMPOSE_V1), "--project-directory", str(template.parent), "-f", str(template), "config"],
        capture_output=True, text=True, timeout=120, check=False, cwd=template.parent,
        # Variables in Compose's own environment would override `.env`: give it none of ours.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(template.parent)},
    )
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    data = yaml.safe_load(done.stdout)
    service: dict[str, Any] = unescape(data["services"]["llama-server"])
    return service


def unescape(node: Any) -> Any:
    """`config` prints a file Compose could read again, so every literal `$` comes out as `$$`."""
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, list):
        return [unescape(item) for item in node]
    if isinstance(node, dict):
        return {key: unescape(value) for key, value in node.items()}
    return node


def command_argv(raw: Any) -> list[str]:
    """Compose v1 prints `command` as a string (split later with shlex) or a list."""
    if isinstance(raw, str):
        return shlex.split(raw)
    return [str(item) for item in raw]


def port_map(raw: list[Any]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for item in raw:
        if isinstance(item, dict):
            ip = str(item.get("host_ip", "0.0.0.0"))
            out[f"{item['target']}/{item.get('protocol', 'tcp')}"] = (ip, int(item["published"]))
        else:
            text, _, proto = str(item).partition("/")
            ip, published, target = text.rsplit(":", 2)
            out[f"{target}/{proto or 'tcp'}"] = (ip, int(published))
    return out


def mounts(raw: list[Any]) -> list[tuple[str, str, bool]]:
    out = []
    for item in raw:
        if isinstance(item, dict):
            out.append((str(item["source"]), str(item["target"]), bool(item.get("read_only"))))
        else:
            source, target, *mode = str(item).split(":")
            out.append((source, target, bool(mode) and "ro" in mode[0].split(",")))
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repo's models.conf (plus TRICKY) and compose/ in a scratch directory."""
    shutil.copytree(ROOT / "compose", tmp_path / "compose",
                    ignore=shutil.ignore_patterns(".env", ".env.tmp"))
    (tmp_path / "models").mkdir()
    text = (ROOT / "models.conf").read_text(encoding="utf-8")
    text = text.replace("models_dir = ~/models", "models_dir = models")
    (tmp_path / "models.conf").write_text(text + "\n" + TRICKY, encoding="utf-8")
    return tmp_path


def load(project: Path, template: str) -> Config:
    path = project / "models.conf"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("compose_file = compose/compose.yaml", f"compose_file = compose/{template}"),
                    encoding="utf-8")
    return load_config(path)


def assert_same_container(profile: Profile, spec: ContainerSpec, svc: dict[str, Any], gpu: bool) -> None:
    assert svc["image"] == spec.image
    assert svc["container_name"] == spec.name
    assert command_argv(svc["command"]) == list(spec.command) == profile.server_args()
    assert port_map(svc["ports"]) == spec.ports == {"8080/tcp": ("127.0.0.1", profile.port)}
    assert mounts(svc["volumes"]) == [(m.source, m.target, m.read_only) for m in spec.mounts] == [
        (str(profile.models_dir), "/models", True)]
    assert {str(k): str(v) for k, v in svc["labels"].items()} == spec.labels
    assert svc["stop_grace_period"] == f"{spec.stop_timeout}s"
    devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    assert bool(devices) is gpu is bool(spec.device_requests)
    if gpu:
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


@pytest.mark.parametrize("template", TEMPLATES)
def test_compose_reads_every_profile_like_the_core(project: Path, template: str) -> None:
    cfg = load(project, template)
    assert {"glm-4.7-flash", "qwen3-coder-next", "tricky"} <= set(cfg.profiles)
    assert any(p.bench for p in cfg.profiles.values())
    for profile in cfg.profiles.values():
        assert profile.compose_file == project / "compose" / template
        spec, env = profile_spec(profile, cfg.instance)
        write_env_file(profile.compose_file.parent, env, profile.id)  # what a switch writes
        svc = compose_config(profile.compose_file)
        assert_same_container(profile, spec, svc, gpu=template == "compose.yaml")


def test_the_awkward_arguments_survive(project: Path) -> None:
    cfg = load(project, "compose.cpu.yaml")
    tricky = cfg.profile("tricky")
    spec, env = profile_spec(tricky, cfg.instance)
    write_env_file(tricky.compose_file.parent, env, tricky.id)
    argv = command_argv(compose_config(tricky.compose_file)["command"])
    assert argv == list(spec.command)
    pairs = dict(zip(argv, [*argv[1:], ""], strict=True))
    assert pairs["-m"] == """/models/dir with space/it's "quoted" $x.gguf"""
    assert pairs["--override-tensor"] == r"blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU,token_embd\.weight=CPU"
    assert pairs["--api-key"] == "a b$c"
    assert pairs["--chat-template-kwargs"] == '{"enable_thinking": false, "x": "y=z"}'
    assert "--x=$HOME" in argv  # not expanded by anyone
    assert pairs["--dollars"] == "$$"
    assert pairs["--lone"] == "$"
    assert pairs["--back"] == "back\\slash"
    assert "ends with\\" in argv
    assert pairs["--single"] == "it's"
    assert pairs["--double"] == 'say "hi"'
    assert pairs["--empty"] == ""
    assert pairs["--hash"] == "#not a comment"
    assert pairs["--semi"] == "a;b && c"
    assert pairs["--unicode"] == "ü€—"
    assert pairs["--equals"] == "a=b=c"
    assert pairs["--newline-escape"] == "\\n"
    assert pairs["--glob"] == "*.gguf"
    assert argv[-2:] == ["--", "-"]


def test_compose_reads_back_every_variable_of_the_env_file(project: Path) -> None:
    """Each `.env` value, as Compose v1 understands it, equals what llm-mcp meant."""
    cfg = load(project, "compose.cpu.yaml")
    compose_dir = project / "compose"
    for profile in cfg.profiles.values():
        _, env = profile_spec(profile, cfg.instance)
        echo = compose_dir / "echo.yaml"
        echo.write_text(yaml.safe_dump({"services": {"llama-server": {
            "image": "x", "environment": {key: f"${{{key}}}" for key in env}}}}), encoding="utf-8")
        write_env_file(compose_dir, env, profile.id)
        seen = compose_config(echo)["environment"]
        assert {key: str(value) for key, value in seen.items()} == env


# -- property: Compose v1's own `.env` reader gives back exactly what was written --

# Compose v1's own `.env` reader, kept running: importing Compose costs most of a second.
READER = """
import json, sys
from compose.config.environment import env_vars_from_file
for line in sys.stdin:
    print(json.dumps(env_vars_from_file(line.rstrip("\\n"))), flush=True)
"""


@pytest.fixture(scope="module")
def compose_env_reader() -> Iterator[subprocess.Popen[str]]:
    interpreter = COMPOSE_V1.read_text(encoding="utf-8").splitlines()[0].removeprefix("#!").strip()
    with subprocess.Popen([interpreter, "-c", READER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}) as reader:
        yield reader  # leaving the block closes its pipes and waits for it


# Mostly the characters that quoting and escaping are about, plus anything else.
_ANY_CHAR = st.characters(blacklist_categories=["Cs"])
_ESCAPY = st.sampled_from(list("\\\"'${}#= abfnrtv\n\r\t"))
_VALUE = (st.text(_ESCAPY, max_size=16) | st.text(_ESCAPY | _ANY_CHAR, max_size=16)).filter(
    lambda v: "${" not in v and not v.endswith("\\"))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(_VALUE, min_size=1, max_size=30))
@example(values=["\\x", "\\n", "a\\\\b", 'say "hi"', "\\\"", "it's", "\\'", "$HOME", "$", "$$", "a\nb",
                 "a\rb", "\t", " lead", "trail ", "# c", "a #b", "k=v", "", "ü€", "\\a\\b\\f\\v\\t\\r"])
def test_env_file_text_round_trips_through_composes_reader(
        compose_env_reader: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory,
        values: list[str]) -> None:
    env = {f"V{i}": value for i, value in enumerate(values)}
    path = tmp_path_factory.getbasetemp() / "round-trip.env"
    path.write_text(env_file_text(env, "p"), encoding="utf-8")
    assert compose_env_reader.stdin is not None and compose_env_reader.stdout is not None
    compose_env_reader.stdin.write(f"{path}\n")
    compose_env_reader.stdin.flush()
    assert json.loads(compose_env_reader.stdout.readline()) == env
