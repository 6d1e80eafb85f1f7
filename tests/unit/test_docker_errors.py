"""The Docker adapter's one translation point: whatever its SDK stack throws becomes ours.

A stand-in SDK call (named as such) raises what the real stack was seen raising; a
raw exception escaping the adapter would end the core's task group, and the daemon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker.errors import DockerException  # noqa: TID251 - what the SDK raises, for the translation

from llm_mcp.config.engines import EngineSettings
from llm_mcp.runtime.base import ContainerGone, EngineUnavailable, RuntimeFailure
from llm_mcp.runtime.docker_engine import DockerRuntime, _host_port, _port_bindings, _translated, engine_words


def test_an_unexpected_error_inside_an_sdk_call_becomes_a_runtime_failure() -> None:
    # Seen in a test run: requests iterating os.environ while another thread changed it.
    with pytest.raises(RuntimeFailure, match="wait: KeyError"), _translated("wait", None):
        raise KeyError("PYTHONDONTWRITEBYTECODE")


def test_a_vanished_socket_is_an_unavailable_engine_not_a_failure() -> None:
    with pytest.raises(EngineUnavailable), _translated("inspect", "unix:///nowhere.sock"):
        raise FileNotFoundError(2, "No such file or directory")


def test_our_own_errors_pass_through_unchanged() -> None:
    with pytest.raises(ContainerGone, match="gone"), _translated("inspect", None):
        raise ContainerGone("gone")


def test_an_engine_other_than_local_is_named_in_the_sentence() -> None:
    with pytest.raises(EngineUnavailable) as gone, _translated("ping", "tcp://gpu2:2376", "gpu2"):
        raise ConnectionRefusedError(111, "Connection refused")
    assert gone.value.message == "Docker engine 'gpu2' is not running: tcp://gpu2:2376 refuses connections"
    assert gone.value.engine == "gpu2"
    assert engine_words("Docker is not running: nothing listens at x", "local").startswith("Docker is")


def test_ssh_without_paramiko_says_what_to_install() -> None:
    with pytest.raises(EngineUnavailable) as gone, _translated("ping", "ssh://me@far", "far"):
        raise DockerException("Install paramiko package to enable ssh:// support")
    assert "paramiko" in gone.value.message and "docker[ssh]" in gone.value.hint


# Shapes of `docker inspect` (engine 20.10): a running container with an auto port (IPv4 and
# IPv6 bindings), and exited ones, whose NetworkSettings.Ports is empty.
RUNNING_AUTO = {"NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"},
                                                           {"HostIp": "::", "HostPort": "49153"}]}},
                "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": ""}]}}}
EXITED_AUTO = {"NetworkSettings": {"Ports": {}},
               "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}
EXITED_FIXED = {"NetworkSettings": {"Ports": {}},
                "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}]}}}
OTHER_PORT = {"NetworkSettings": {"Ports": {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]}}}


@pytest.mark.parametrize(("attrs", "port"), [(RUNNING_AUTO, 49153), (EXITED_AUTO, None), (EXITED_FIXED, 8081),
                                             (OTHER_PORT, 9001), ({}, None)])
def test_the_host_port_is_read_back_from_inspect(attrs: dict[str, Any], port: int | None) -> None:
    assert _host_port(attrs) == port


def test_port_zero_asks_docker_for_any_free_port() -> None:
    assert _port_bindings({"8080/tcp": ("127.0.0.1", 0), "9000/tcp": ("0.0.0.0", 9000)}) == {
        "8080/tcp": ("127.0.0.1", None), "9000/tcp": ("0.0.0.0", 9000)}


@pytest.mark.parametrize(("url", "bind", "host"), [
    ("unix:///var/run/docker.sock", "0.0.0.0", "127.0.0.1"),
    ("unix:///var/run/docker.sock", "10.0.0.5", "10.0.0.5"),
    ("tcp://gpu2.lan:2376", "0.0.0.0", "gpu2.lan"),
    ("tcp://gpu2.lan:2376", "127.0.0.1", "gpu2.lan"),
    ("tcp://gpu2.lan:2376", "10.0.0.7", "10.0.0.7"),
    ("ssh://me@far.lan", "0.0.0.0", "far.lan"),
])
def test_a_published_port_is_reached_on_the_engines_host(url: str, bind: str, host: str) -> None:
    runtime = DockerRuntime.for_engine("e", url, instance="t")  # connects to nothing until used
    assert runtime.published_host(bind) == host


def test_an_engine_section_becomes_its_runtime() -> None:
    settings = EngineSettings("gpu2", url="tcp://gpu2.lan:2376", tls_ca=Path("/etc/llm/ca.pem"),
                              tls_cert=Path("/etc/llm/cert.pem"), tls_key=Path("/etc/llm/key.pem"))
    runtime = DockerRuntime.for_settings(settings, instance="t")  # connects to nothing until used
    assert (runtime.engine, runtime.host, runtime.instance) == ("gpu2", "tcp://gpu2.lan:2376", "t")
    local = DockerRuntime.for_settings(EngineSettings("local"), instance="t")
    assert local.engine == "local" and local.base_url is None  # DOCKER_HOST, as `docker` does
