"""`llm-mcp check`: every problem found, each with the command that fixes it, without a daemon."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest

from llm_mcp.clients.check import Finding, check_gpu, diagnose, report
from llm_mcp.hardware.gpu import GpuSample, GpuSnapshot
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, ROOT, Setup, free_port
from tests.daemons import Daemons, answers, cli

pytestmark = [pytest.mark.docker]


def _checks(done: subprocess.CompletedProcess[str]) -> dict[str, list[dict[str, str]]]:
    assert "Traceback" not in done.stderr + done.stdout
    data = json.loads(done.stdout)
    out: dict[str, list[dict[str, str]]] = {}
    for item in data["checks"]:
        out.setdefault(item["check"], []).append(item)
    return out


def test_a_good_cpu_setup_passes_with_a_gpu_warning_and_starts_no_daemon(
        setup: Setup, daemons: Daemons) -> None:
    done = cli(setup, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    for expected in ("ok    config", "ok    docker", "ok    image", "ok    model", "ok    compose",
                     "warn  gpu", "ok    port", "warn  daemon", "0 error(s)"):
        assert expected in text, text
    assert "fix: llm-mcp daemon" in text
    assert not answers(daemons.socket) and daemons.pids() == []
    data = json.loads(cli(setup, "check", "--json").stdout)
    assert data["ok"] is True and data["errors"] == 0


def test_a_running_daemon_and_our_own_container_on_the_port_are_fine(setup: Setup, daemons: Daemons) -> None:
    assert cli(setup, "switch", "fake-a").returncode == 0
    checks = _checks(cli(setup, "check", "--json"))
    assert checks["daemon"][0]["level"] == "ok" and "pid" in checks["daemon"][0]["message"]
    port = checks["port"][0]
    assert port["level"] == "ok" and "held by our container fake-a" in port["message"]


def test_missing_model_file_and_image_are_errors_with_their_fixes(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES + "\n[gone]\nname = Gone\nmodel = missing.gguf\n"
                "image = llm-mcp-test/not-built:1\n\n[junk]\nname = Junk\nmodel = not-gguf.gguf\n"
                f"image = {FAKE_IMAGE}\n")
    done = cli(setup, "check", "--json")
    assert done.returncode == 1
    checks = _checks(done)
    image = next(c for c in checks["image"] if c["level"] == "error")
    assert "llm-mcp-test/not-built:1" in image["message"]
    assert image["fix"] == "docker pull llm-mcp-test/not-built:1"
    missing = next(c for c in checks["model"] if "[gone]" in c["message"])
    line = setup.config_path.read_text().splitlines().index("model = missing.gguf") + 1
    assert missing["level"] == "error" and f"+{line} {setup.config_path}" in missing["fix"]
    junk = next(c for c in checks["model"] if "[junk]" in c["message"])
    assert junk["level"] == "error" and "not a GGUF file" in junk["message"]
    human = cli(setup, "check").stdout
    assert "fix: docker pull llm-mcp-test/not-built:1" in human and "3 error(s)" in human


def test_a_broken_config_is_named_by_file_and_line(setup: Setup) -> None:
    setup.write(FAKE_PROFILES + "\n[bad]\nname = Bad\nmodel = x.gguf\nctx_size = lots\n")
    line = setup.config_path.read_text().splitlines().index("ctx_size = lots") + 1
    done = cli(setup, "check", "--json")
    assert done.returncode == 1
    config = _checks(done)["config"][0]
    assert config["level"] == "error"
    assert f"{setup.config_path}:{line}" in config["message"] and "ctx_size" in config["message"]
    assert config["fix"] == f"$EDITOR +{line} {setup.config_path}"


def test_a_missing_config_says_how_to_create_one(setup: Setup) -> None:
    env = {**setup.env(), "LLM_MCP_CONFIG": str(setup.root / "nowhere" / "models.conf")}
    done = cli(setup, "check", env=env)
    assert done.returncode == 1
    assert "error config" in done.stdout and "cp models.conf" in done.stdout


def test_a_port_taken_by_another_program_is_an_error(setup: Setup) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", setup.port))
        squatter.listen()
        done = cli(setup, "check", "--json")
    assert done.returncode == 1
    port = _checks(done)["port"][0]
    assert port["level"] == "error" and f"sport = :{setup.port}" in port["fix"]


def test_a_gpu_compose_file_without_a_gpu_is_an_error(setup: Setup) -> None:
    shutil.copy(ROOT / "compose" / "compose.yaml", setup.root / "compose" / "compose.yaml")
    done = cli(setup, "check", "--json")
    assert done.returncode == 1
    checks = _checks(done)
    assert "reserves a GPU" in checks["compose"][0]["message"]
    gpu = checks["gpu"][0]
    assert gpu["level"] == "error" and "compose.cpu.yaml" in gpu["fix"]


def test_a_compose_file_with_an_unsupported_key_is_an_error(setup: Setup) -> None:
    text = (ROOT / "compose" / "compose.cpu.yaml").read_text()
    text = text.replace("    restart:", "    pid: host\n    restart:")
    (setup.root / "compose" / "compose.yaml").write_text(text)
    done = cli(setup, "check", "--json")
    assert done.returncode == 1
    compose = _checks(done)["compose"][0]
    assert compose["level"] == "error" and "pid" in compose["message"]
    assert compose["fix"].startswith("$EDITOR")


class _NoDocker:
    """A STAND-IN engine that refuses every call (an engine that is down), for check's wording."""

    host = "unix:///var/run/docker.sock"

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def ping(self) -> None:
        raise RuntimeError("Error while fetching server API version: Connection refused")

    def close(self) -> None:
        pass


class _NoGpu:
    def sample(self) -> GpuSnapshot:
        return GpuSnapshot(False, "NVML library not found", None, (), 0.0)

    def close(self) -> None:
        pass


def test_docker_unreachable_is_an_error_and_the_rest_is_still_checked(setup: Setup) -> None:
    findings = diagnose(setup.config_path, runtime_factory=_NoDocker, gpu_sampler_factory=_NoGpu)
    docker = next(f for f in findings if f.check == "docker")
    assert docker.level == "error" and "systemctl start docker" in docker.fix
    assert {f.check for f in findings} >= {"config", "model", "compose", "gpu", "port"}
    assert "image" not in {f.check for f in findings}


def test_a_visible_gpu_is_reported_by_name() -> None:
    class OneGpu(_NoGpu):
        def sample(self) -> GpuSnapshot:
            return GpuSnapshot(True, None, "550.54", (GpuSample(0, name="NVIDIA H100"),), 0.0)

    found = check_gpu(OneGpu, wants_gpu=True, runtime=None)
    assert found == [Finding("gpu", "ok", "1 GPU(s) (0: NVIDIA H100), driver 550.54")]


def test_the_report_puts_each_fix_under_its_problem() -> None:
    text = report([Finding("image", "error", "image x is missing", "docker pull x"),
                   Finding("gpu", "warn", "no GPU")])
    assert text.splitlines() == ["error image  image x is missing", "             fix: docker pull x",
                                 "warn  gpu    no GPU", "1 error(s), 1 warning(s)"]


# ---- [proxy]: the model endpoint ----------------------------------------------------------


def _proxy(setup: Setup, section: str) -> list[Finding]:
    from llm_mcp.clients.check import check_proxy
    from llm_mcp.config.models_conf import load_config

    setup.write(FAKE_PROFILES + "\n[proxy]\n" + section)
    return check_proxy(load_config(setup.config_path))


def test_proxy_says_where_the_endpoint_will_listen_and_whether_the_port_is_free(setup: Setup) -> None:
    from llm_mcp.clients.check import check_proxy
    from llm_mcp.config.models_conf import load_config

    off = check_proxy(load_config(setup.config_path))
    assert [(f.level, f.message) for f in off] == [
        ("ok", "[proxy] listen is off: no OpenAI/Anthropic endpoint (docs/proxy.md)")]
    port = free_port()
    free = _proxy(setup, f"listen = 127.0.0.1:{port}\n")
    assert [(f.level, f.message) for f in free] == [
        ("ok", f"the model endpoint will listen on http://127.0.0.1:{port}/v1 (the port is free)")]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        taken = _proxy(setup, f"listen = 127.0.0.1:{port}\n")
    line = setup.config_path.read_text().splitlines().index(f"listen = 127.0.0.1:{port}") + 1
    assert taken[0].level == "error" and "in use by another program" in taken[0].message
    assert f"sport = :{port}" in taken[0].fix and f"+{line} {setup.config_path}" in taken[0].fix


def test_proxy_keys_private_in_a_file_and_a_warning_for_keys_in_a_readable_models_conf(setup: Setup) -> None:
    keys = setup.root / "keys"
    keys.write_text("# rotated 2026-12\nsk-one\nsk-two\n")
    keys.chmod(0o600)
    found = _proxy(setup, f"listen = 127.0.0.1:{free_port()}\napi_keys_file = {keys}\n")
    assert found[1].level == "ok" and found[1].message == f"api_keys_file {keys}: 2 key(s), private (0600)"
    setup.config_path.chmod(0o644)
    inline = _proxy(setup, f"listen = 127.0.0.1:{free_port()}\napi_keys = sk-three\n")
    assert inline[1].level == "warn" and "others can read" in inline[1].message
    assert "api_keys_file" in inline[1].fix
