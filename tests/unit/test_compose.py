"""compose/compose*.yaml + a profile -> ContainerSpec, `.env` and the config hash."""

from __future__ import annotations

import shlex
import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_mcp.config.compose import (
    LABEL_ENGINE,
    LABEL_HASH,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_PROFILE,
    MANAGED_BY,
    SERVICE_KEYS,
    ComposeError,
    DeviceRequest,
    Mount,
    Ulimit,
    config_hash,
    container_name,
    env_file_path,
    env_file_text,
    env_files,
    profile_spec,
    remove_env_file,
    render,
    template_variables,
    write_env_file,
)
from llm_mcp.config.models_conf import Config, ConfigError, Profile, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {"gpu": ROOT / "compose" / "compose.yaml", "cpu": ROOT / "compose" / "compose.cpu.yaml"}
GPU = DeviceRequest(driver="nvidia", count=-1, device_ids=(), capabilities=("gpu",))


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """A models.conf beside a copy of both shipped templates."""
    (tmp_path / "compose").mkdir()
    (tmp_path / "models").mkdir()
    for source in TEMPLATES.values():
        shutil.copy(source, tmp_path / "compose" / source.name)
    return tmp_path


def config(root: Path, profiles: str, defaults: str = "", template: str = "compose.yaml") -> Config:
    text = (f"[defaults]\nmodels_dir = models\ncompose_file = compose/{template}\ninstance = box\n"
            f"{textwrap.dedent(defaults)}\n{textwrap.dedent(profiles)}")
    path = root / "models.conf"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


QWEN = r"""
[qwen]
model = Qwen3-Coder-Next-UD-Q5_K_XL.gguf
ctx_size = 65536
n_gpu_layers = 99
override_tensor = blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU
flags = --jinja --api-key "a b$c" --x=y
port = 8123
stop_grace = 7
"""


def write_template(root: Path, body: str) -> Path:
    path = root / "compose" / "custom.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def service(body: str, head: str = "services:\n  llama-server:\n") -> str:
    """A one-service template: `body` is indented under services.llama-server."""
    return head + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "    ")


BASE = """
image: img
command: ["a"]
"""


def render_text(root: Path, text: str, env: dict[str, str] | None = None) -> ComposeError:
    path = write_template(root, text)
    with pytest.raises(ComposeError) as info:
        render(path, env or {})
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: {info.value.key}: ")
    return info.value


# -- the shipped templates ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_a_shipped_template_renders_the_profile(setup: Path, kind: str) -> None:
    cfg = config(setup, QWEN, template=TEMPLATES[kind].name)
    qwen = cfg.profile("qwen")
    spec, env = profile_spec(qwen, cfg.instance)

    assert spec.image == "ghcr.io/ggml-org/llama.cpp:server-cuda"
    assert spec.name == "llm-mcp-box-qwen"
    assert spec.command == tuple(qwen.server_args())  # an argv, split exactly as built
    assert spec.command[spec.command.index("--override-tensor") + 1] == (
        r"blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU")
    assert spec.command[spec.command.index("--api-key") + 1] == "a b$c"
    assert spec.entrypoint is None
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 8123)}  # loopback only
    assert spec.mounts == (Mount(source=str(setup / "models"), target="/models", read_only=True),)
    assert spec.labels == {
        LABEL_MANAGED: MANAGED_BY, LABEL_INSTANCE: "box", LABEL_PROFILE: "qwen",
        LABEL_HASH: env["LLM_CONFIG_HASH"], LABEL_ENGINE: "local",
    }
    assert env["LLM_CONFIG_HASH"] == config_hash(qwen, "box")
    assert spec.stop_timeout == 7  # stop_grace_period: ${LLM_STOP_GRACE}s
    assert spec.shm_size == 1 << 30
    assert spec.restart is None
    assert spec.environment == {}
    if kind == "gpu":
        assert spec.device_requests == (GPU,)
        assert spec.ulimits == (Ulimit("memlock", -1, -1),)
    else:
        assert spec.device_requests == ()
    assert spec.to_dict()["image"] == spec.image


@pytest.mark.parametrize("template", TEMPLATES.values(), ids=TEMPLATES.keys())
def test_the_shipped_profiles_publish_on_loopback_only(template: Path) -> None:
    cfg = load_config(ROOT / "models.conf")
    for profile in cfg.profiles.values():
        env = {**template_variables(profile, cfg.instance), "LLM_CONFIG_HASH": "h"}
        spec = render(template, env)
        assert set(spec.ports) == {"8080/tcp"}
        assert {ip for ip, _ in spec.ports.values()} == {"127.0.0.1"}
        assert spec.command == tuple(profile.server_args())
        assert all(m.read_only for m in spec.mounts if m.target == "/models")


def test_the_templates_default_to_the_cuda_image_and_loopback(setup: Path) -> None:
    env = {"LLAMA_ARGS": "-m /models/x.gguf", "LLM_MODELS_DIR": "/m", "LLM_PROFILE": "p",
           "LLM_CONFIG_HASH": "h"}
    for template in TEMPLATES.values():
        spec = render(template, env)
        assert spec.image == "ghcr.io/ggml-org/llama.cpp:server-cuda"
        assert spec.ports == {"8080/tcp": ("127.0.0.1", 8080)}
        assert spec.name == "llm-mcp-default"
        assert spec.stop_timeout == 10


def test_the_gpu_and_cpu_templates_differ_only_in_the_gpu(setup: Path) -> None:
    cfg = config(setup, QWEN)
    qwen = cfg.profile("qwen")
    env = template_variables(qwen, "box") | {"LLM_CONFIG_HASH": "h"}
    gpu, cpu = render(TEMPLATES["gpu"], env), render(TEMPLATES["cpu"], env)
    assert gpu.device_requests == (GPU,) and cpu.device_requests == ()
    assert gpu.to_dict() | {"device_requests": (), "ulimits": ()} == cpu.to_dict()


def test_the_template_cannot_take_over_the_management_labels(setup: Path) -> None:
    path = write_template(setup, service("""
        image: img
        command: ["x"]
        labels:
          io.llm-mcp.managed-by: someone-else
          io.llm-mcp.profile: wrong
          team: ml
    """))
    cfg = config(setup, "[a]\nmodel = a.gguf\ncompose_file = compose/custom.yaml\n")
    spec, env = profile_spec(cfg.profile("a"), cfg.instance)
    assert path.exists()
    assert spec.labels == {"team": "ml", LABEL_MANAGED: MANAGED_BY, LABEL_INSTANCE: "box",
                           LABEL_PROFILE: "a", LABEL_HASH: env["LLM_CONFIG_HASH"], LABEL_ENGINE: "local"}


def test_template_variables_are_what_env_holds(setup: Path) -> None:
    cfg = config(setup, QWEN)
    qwen = cfg.profile("qwen")
    variables = template_variables(qwen, "box")
    assert variables == {
        "LLM_IMAGE": "ghcr.io/ggml-org/llama.cpp:server-cuda",
        "LLM_CONTAINER_NAME": "llm-mcp-box-qwen",
        "LLAMA_ARGS": shlex.join(qwen.server_args()),
        "LLM_HOST": "127.0.0.1",
        "LLM_PORT": "8123",
        "LLM_MODELS_DIR": str(setup / "models"),
        "LLM_INSTANCE": "box",
        "LLM_PROFILE": "qwen",
        "LLM_STOP_GRACE": "7",
        "LLM_ENGINE": "local",
        "LLM_GPUS": "all",
    }
    _, env = profile_spec(qwen, "box")
    assert env == variables | {"LLM_CONFIG_HASH": config_hash(qwen, "box")}


# -- every supported key, and how it lands in the spec ----------------------------


def test_every_supported_key(setup: Path) -> None:
    path = write_template(setup, """
        version: "3.9"
        name: llm
        x-common: &common {anything: [1, 2]}
        services:
          llama-server:
            image: ${IMG}
            container_name: c1
            entrypoint: /app/llama-server --verbose
            command: ["-m", "/models/a b.gguf", "--n-predict", 5]
            environment:
              - LLAMA_ARG_THREADS=4
              - EMPTY=
            ports:
              - "127.0.0.1:9000:8080"
              - target: 9090
                published: 9091
                host_ip: 127.0.0.2
                protocol: udp
            volumes:
              - ./weights:/models:ro
              - type: bind
                source: /tmp
                target: /scratch
              - /cache:/cache:rw
            labels: [team=ml]
            deploy:
              resources:
                reservations:
                  devices:
                    - driver: nvidia
                      device_ids: ["0", "1"]
                      capabilities: [gpu, utility]
                    - count: 1
            ipc: host
            shm_size: 512m
            ulimits:
              memlock: -1
              nofile: {soft: 1024, hard: 4096}
            stop_grace_period: 1m30s
            stop_signal: SIGINT
            restart: unless-stopped
            user: 1000
            working_dir: /app
            network_mode: bridge
            cap_add: [SYS_NICE]
            tmpfs: ["/run:size=64m,mode=1777", /tmp2]
            init: true
    """)
    spec = render(path, {"IMG": "my/image:tag"})
    assert spec.image == "my/image:tag"
    assert spec.name == "c1"
    assert spec.entrypoint == ("/app/llama-server", "--verbose")
    assert spec.command == ("-m", "/models/a b.gguf", "--n-predict", "5")
    assert spec.environment == {"LLAMA_ARG_THREADS": "4", "EMPTY": ""}
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 9000), "9090/udp": ("127.0.0.2", 9091)}
    assert spec.mounts == (
        Mount(str(setup / "compose" / "weights"), "/models", True),  # relative to the compose file
        Mount("/tmp", "/scratch", False),
        Mount("/cache", "/cache", False),
    )
    assert spec.labels == {"team": "ml"}
    assert spec.device_requests == (
        DeviceRequest("nvidia", 0, ("0", "1"), ("gpu", "utility")),
        DeviceRequest("nvidia", 1, (), ()),
    )
    assert spec.ipc_mode == "host"
    assert spec.shm_size == 512 << 20
    assert spec.ulimits == (Ulimit("memlock", -1, -1), Ulimit("nofile", 1024, 4096))
    assert spec.stop_timeout == 90
    assert spec.stop_signal == "SIGINT"
    assert spec.restart == "unless-stopped"
    assert spec.user == "1000"
    assert spec.working_dir == "/app"
    assert spec.network_mode == "bridge"
    assert spec.cap_add == ("SYS_NICE",)
    assert spec.tmpfs == {"/run": "size=64m,mode=1777", "/tmp2": ""}
    assert spec.init is True


@pytest.mark.parametrize(("raw", "seconds"), [("10s", 10), ("1m30s", 90), ("2h", 7200), (45, 45),
                                              ("1.5s", 2), ("500ms", 1)])
def test_stop_grace_period_becomes_stop_timeout(setup: Path, raw: object, seconds: int) -> None:
    path = write_template(setup, service(f"{BASE}stop_grace_period: {raw}\n"))
    assert render(path, {}).stop_timeout == seconds


@pytest.mark.parametrize(("raw", "size"), [("1g", 1 << 30), ("256m", 256 << 20), ("64k", 64 << 10),
                                           (1024, 1024), ("2gb", 2 << 30)])
def test_shm_size(setup: Path, raw: object, size: int) -> None:
    path = write_template(setup, service(f"{BASE}shm_size: {raw}\n"))
    assert render(path, {}).shm_size == size


@pytest.mark.parametrize("raw", ['"no"', "no", "false"])
def test_restart_no_means_none(setup: Path, raw: str) -> None:
    path = write_template(setup, service(f"{BASE}restart: {raw}\n"))
    assert render(path, {}).restart is None


def test_a_string_command_is_split_like_a_shell_would_without_one(setup: Path) -> None:
    path = write_template(setup, service("""
        image: img
        command: -m '/models/a b.gguf' --api-key "x;y && z" $$HOME
    """))
    assert render(path, {}).command == ("-m", "/models/a b.gguf", "--api-key", "x;y && z", "$HOME")


def test_the_only_service_may_have_another_name(setup: Path) -> None:
    path = write_template(setup, service(BASE, head="services:\n  llm:\n"))
    assert render(path, {}).image == "img"


# -- ${VAR} interpolation --------------------------------------------------------


@pytest.mark.parametrize(("image", "env", "expected"), [
    ("${A}", {"A": "x"}, "x"),
    ("$A", {"A": "x"}, "x"),
    ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
    ("${A:-dflt}", {}, "dflt"),
    ("${A:-dflt}", {"A": ""}, "dflt"),  # :- also covers empty
    ("${A:-dflt}", {"A": "set"}, "set"),
    ("${A-dflt}", {}, "dflt"),
    ("x${A-dflt}", {"A": ""}, "x"),  # - covers unset only
    ("${A-dflt}x", {"A": "set"}, "setx"),
    ("${A:?needed}", {"A": "ok"}, "ok"),
    ("${A?needed}x", {"A": ""}, "x"),  # ? only fails when unset
    ("cost$$5", {}, "cost$5"),  # $$ is a literal $
    ("$${A}", {"A": "x"}, "${A}"),
    ("${A}${B}", {"A": "1", "B": "2"}, "12"),
    ("${MISSING}z", {}, "z"),
])
def test_interpolation(setup: Path, image: str, env: dict[str, str], expected: str) -> None:
    path = write_template(setup, service(f"image: '{image}'\ncommand: [a]\n"))
    assert render(path, env).image == expected


@pytest.mark.parametrize(("body", "key"), [
    ("image: '${IMG:?set LLM image}'\n", "services.llama-server.image"),
    ("image: img\nports: ['${H?host}:1:2']\n", "services.llama-server.ports[0]"),
    ("image: img\nlabels: {a: '${L:?}'}\n", "services.llama-server.labels.a"),
])
def test_a_required_variable_names_the_key(setup: Path, body: str, key: str) -> None:
    err = render_text(setup, service(body), {"IMG": ""})
    assert err.key == key
    assert "required variable" in str(err) and "is missing" in str(err)


def test_required_variable_message(setup: Path) -> None:
    err = render_text(setup, service("image: '${IMG:?set LLM image}'\n"))
    assert str(err).endswith("required variable IMG is missing: set LLM image")


@pytest.mark.parametrize("image", ["a $ b", "${A:+x}", "${}", "${1A}", "$-", "trailing$"])
def test_an_invalid_interpolation_is_an_error(setup: Path, image: str) -> None:
    err = render_text(setup, service(f"image: '{image}'\n"))
    assert err.key == "services.llama-server.image"
    assert "invalid interpolation" in str(err) and "$$ for a literal $" in str(err)


# -- everything outside the subset is an error that names it ----------------------

UNSUPPORTED_SERVICE_KEYS = [
    "healthcheck: {test: [CMD, true]}", "networks: [default]", "depends_on: [db]", "build: .",
    "env_file: .env", "devices: [/dev/nvidia0]", "privileged: true", "expose: ['8080']",
    "extra_hosts: ['a:1.2.3.4']", "logging: {driver: none}", "profiles: [x]", "secrets: [s]",
    "runtime: nvidia", "gpus: all", "volumes_from: [x]", "pid: host", "hostname: h", "mem_limit: 1g",
    "cpus: 2", "platform: linux/amd64", "pull_policy: never", "security_opt: [x]", "sysctls: {a: 1}",
]


@pytest.mark.parametrize("line", UNSUPPORTED_SERVICE_KEYS)
def test_an_unsupported_service_key_is_named(setup: Path, line: str) -> None:
    key = line.split(":", maxsplit=1)[0]
    assert key not in SERVICE_KEYS
    err = render_text(setup, service(f"{BASE}{line}\n"))
    assert err.key == f"services.llama-server.{key}"
    assert "not supported by llm-mcp" in str(err)
    assert "stop_grace_period" in str(err) and "docs/compose.md" in str(err)  # the valid keys


@pytest.mark.parametrize("line", ["networks: {}", "volumes: {models: {}}", "configs: {}", "secrets: {}",
                                  "include: [a.yaml]"])
def test_an_unsupported_top_level_key_is_named(setup: Path, line: str) -> None:
    err = render_text(setup, service(BASE) + line + "\n")
    assert err.key == line.split(":", maxsplit=1)[0]
    assert "top-level key not supported" in str(err) and "x-* extensions" in str(err)


@pytest.mark.parametrize(("body", "key"), [
    ("deploy: {replicas: 2}", "deploy.replicas"),
    ("deploy: {resources: {limits: {memory: 1g}}}", "deploy.resources.limits"),
    ("deploy: {resources: {reservations: {cpus: '2'}}}", "deploy.resources.reservations.cpus"),
    ("deploy: {resources: {reservations: {devices: [{driver: nvidia, options: {a: b}}]}}}",
     "deploy.resources.reservations.devices[0].options"),
    ("ports: [{target: 8080, published: 1, mode: host}]", "ports.mode"),
    ("volumes: [{type: bind, source: /m, target: /models, bind: {propagation: rshared}}]", "volumes.bind"),
    ("ulimits: {nofile: {soft: 1, hard: 2, max: 3}}", "ulimits.nofile.max"),
])
def test_an_unsupported_nested_key_is_named(setup: Path, body: str, key: str) -> None:
    err = render_text(setup, service(f"{BASE}{body}\n"))
    assert err.key == f"services.llama-server.{key}"
    assert "supported" in str(err)


def test_a_second_service_is_an_error(setup: Path) -> None:
    err = render_text(setup, service(BASE) + "  sidecar:\n    image: busybox\n")
    assert err.key == "services.sidecar"
    assert "only one service (llama-server)" in str(err)


def test_several_services_without_llama_server(setup: Path) -> None:
    err = render_text(setup, "services:\n  a: {image: x}\n  b: {image: y}\n")
    assert err.key == "services"


@pytest.mark.parametrize("volume", ["models:/models:ro", "{type: volume, source: models, target: /models}",
                                    "hf-cache:/root/.cache"])
def test_named_volumes_are_rejected(setup: Path, volume: str) -> None:
    err = render_text(setup, service(f"{BASE}volumes: [{volume}]\n"))
    assert err.key.startswith("services.llama-server.volumes")
    assert "named volume" in str(err) or "only bind mounts" in str(err)


@pytest.mark.parametrize(("body", "key", "fragment"), [
    ("volumes: [/models]", "volumes", "must be HOST_PATH:CONTAINER_PATH[:ro]"),
    ("volumes: [{type: bind, target: /m}]", "volumes", "needs 'source' and 'target'"),
    ("volumes: /m:/m", "volumes", "must be a list"),
    ("ports: ['8080']", "ports", "must publish a host port"),
    ("ports: ['127.0.0.1:x:8080']", "ports", "not a number"),
    ("ports: ['127.0.0.1:8080-8081:8080']", "ports", "not a number"),
    ("ports: 8080", "ports", "must be a list"),
    ("shm_size: lots", "shm_size", "is not a size"),
    ("stop_grace_period: 10 seconds", "stop_grace_period", "is not a duration"),
    ("ulimits: {memlock: lots}", "ulimits.memlock", "must be a number"),
    ("ulimits: {nofile: {soft: 1}}", "ulimits.nofile", "must be a number"),
    ("ulimits: [memlock]", "ulimits", "must be a mapping"),
    ("deploy: {resources: {reservations: {devices: [{count: many}]}}}",
     "deploy.resources.reservations.devices[0].count", "must be a number or 'all'"),
    ("deploy: {resources: {reservations: {devices: [nvidia]}}}",
     "deploy.resources.reservations.devices[0]", "must be a mapping"),
    ("deploy: {resources: [1]}", "deploy.resources", "must be a mapping"),
    ("deploy: [1]", "deploy", "must be a mapping"),
    ("cap_add: SYS_NICE", "cap_add", "must be a list"),
    ("init: yes please", "init", "must be true or false"),
    ("ipc: {mode: host}", "ipc", "must be a single value"),
    ("environment: 5", "environment", "must be a mapping or a list"),
    ("command: {a: 1}", "command", "must be a string or a list"),
    ("command: \"-m 'unclosed\"", "command", "cannot split into arguments"),
    ("tmpfs: [{path: /run}]", "tmpfs", "must be a path or a list of paths"),
])
def test_bad_values_name_the_key(setup: Path, body: str, key: str, fragment: str) -> None:
    err = render_text(setup, service(f"{BASE}{body}\n"))
    assert err.key == f"services.llama-server.{key}"
    assert fragment in str(err)


def test_a_missing_image(setup: Path) -> None:
    err = render_text(setup, service("command: [a]\n"))
    assert err.key == "services.llama-server.image"
    assert "missing" in str(err) and "${LLM_IMAGE}" in str(err)
    err = render_text(setup, service("image: ${EMPTY}\n"), {"EMPTY": ""})
    assert err.key == "services.llama-server.image"


@pytest.mark.parametrize(("text", "fragment"), [
    ("services: [\n", "not valid YAML"),
    ("services:\n  a: {image: x\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping with a 'services' key"),
    ("", "must be a mapping with a 'services' key"),
])
def test_bad_yaml(setup: Path, text: str, fragment: str) -> None:
    err = render_text(setup, text)
    assert err.key == "(file)"
    assert fragment in str(err)


@pytest.mark.parametrize(("text", "key"), [
    ("services: {}\n", "services"),
    ("version: '3'\n", "services"),
    ("services:\n  llama-server: [image]\n", "services.llama-server"),
])
def test_no_usable_service(setup: Path, text: str, key: str) -> None:
    assert render_text(setup, text).key == key


def test_a_missing_or_unreadable_file(setup: Path) -> None:
    missing = setup / "compose" / "nope.yaml"
    with pytest.raises(ComposeError) as info:
        render(missing, {})
    assert (info.value.path, info.value.key) == (missing, "(file)")
    assert "compose file not found; set compose_file in models.conf [defaults]" in str(info.value)
    with pytest.raises(ComposeError, match="cannot read"):
        render(setup / "compose", {})  # a directory
    binary = setup / "compose" / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ComposeError, match="cannot read"):
        render(binary, {})


def test_profile_spec_reports_a_broken_template_as_compose_error(setup: Path) -> None:
    write_template(setup, service(f"{BASE}healthcheck: {{test: [CMD, true]}}\n"))
    cfg = config(setup, "[a]\nmodel = a.gguf\ncompose_file = compose/custom.yaml\n")
    with pytest.raises(ComposeError, match=r"services\.llama-server\.healthcheck: not supported"):
        profile_spec(cfg.profile("a"), cfg.instance)


# -- config_hash --------------------------------------------------------------------


def _profile(root: Path, extra: str = "", template: str = "compose.yaml") -> Profile:
    return config(root, f"[a]\nmodel = a.gguf\nflags = --jinja\n{extra}", template=template).profile("a")


def test_config_hash_is_stable_for_the_same_profile_and_template(setup: Path) -> None:
    first = config_hash(_profile(setup), "box")
    assert len(first) == 16 and int(first, 16) >= 0
    assert config_hash(_profile(setup), "box") == first  # reparsed: same hash
    # Keys that do not change the container do not change the hash either.
    cosmetic = ("speed = 10\nname = Other\ndescription = d\nbench = true\n"
                "load_timeout = 5\nstall_timeout = 5\nverify = false\n")
    assert config_hash(_profile(setup, cosmetic), "box") == first


@pytest.mark.parametrize("extra", [
    "ctx_size = 4096\n", "n_gpu_layers = 10\n", "override_tensor = x=CPU\n", "batch_size = 64\n",
    "image = other/image:tag\n", "port = 9001\n", "host = 127.0.0.2\n", "models_dir = elsewhere\n",
    "stop_grace = 3\n",
])
def test_config_hash_changes_with_the_profile(setup: Path, extra: str) -> None:
    assert config_hash(_profile(setup, extra), "box") != config_hash(_profile(setup), "box")


def test_config_hash_changes_with_flags_model_instance_and_template(setup: Path) -> None:
    base = _profile(setup)
    other_flags = config(setup, "[a]\nmodel = a.gguf\nflags = --jinja --temp 0.1\n").profile("a")
    other_model = config(setup, "[a]\nmodel = b.gguf\nflags = --jinja\n").profile("a")
    assert len({config_hash(base, "box"), config_hash(other_flags, "box"), config_hash(other_model, "box"),
                config_hash(base, "other")}) == 4
    assert config_hash(_profile(setup, template="compose.cpu.yaml"), "box") != config_hash(base, "box")
    before = config_hash(base, "box")
    template = setup / "compose" / "compose.yaml"
    template.write_text(template.read_text(encoding="utf-8").replace("shm_size: 1g", "shm_size: 2g"),
                        encoding="utf-8")
    assert config_hash(base, "box") != before
    template.unlink()
    assert config_hash(base, "box") not in (before, "")  # no template: still a hash, never a crash


def test_config_hash_changes_with_placement_but_not_with_what_only_schedules(setup: Path) -> None:
    base = config_hash(_profile(setup), "box")
    for extra in ("gpus = 0\n", "gpus = none\n", "port = auto\n"):
        assert config_hash(_profile(setup, extra), "box") != base, extra
    engine = "[engine other]\nurl = unix:///run/other.sock\n"
    moved = config(setup, f"[a]\nmodel = a.gguf\nflags = --jinja\nengine = other\n\n{engine}").profile("a")
    assert config_hash(moved, "box") != base
    # exclusive and aliases decide what may run beside it, not what the container is.
    assert config_hash(_profile(setup, "exclusive = true\naliases = x, y\n"), "box") == base


# -- placement: one container per profile, port = auto, GPUs ------------------------

AUTO_TEMPLATE = "compose.auto.yaml"


@pytest.fixture
def auto_template(setup: Path) -> Path:
    """The shipped GPU template with the host port written so that an empty LLM_PORT means auto."""
    path = setup / "compose" / AUTO_TEMPLATE
    text = TEMPLATES["gpu"].read_text(encoding="utf-8").replace("${LLM_PORT:-8080}", "${LLM_PORT-8080}")
    assert "${LLM_PORT-8080}" in text
    path.write_text(text, encoding="utf-8")
    return path


def test_each_profile_gets_its_own_container_name(setup: Path) -> None:
    cfg = config(setup, "[a]\nmodel = a.gguf\n[b]\nmodel = b.gguf\n")
    names = {profile_spec(p, cfg.instance)[0].name for p in cfg.profiles.values()}
    assert names == {"llm-mcp-box-a", "llm-mcp-box-b"}
    assert container_name("box", "a") == "llm-mcp-box-a"
    assert container_name("box") == "llm-mcp-box"  # the one-container name of earlier versions


@pytest.mark.parametrize("line", ["127.0.0.1::8080", "127.0.0.1:${EMPTY}:8080"])
def test_an_empty_host_port_means_docker_picks_one(setup: Path, line: str) -> None:
    spec = render(write_template(setup, service(f"{BASE}ports: ['{line}']\n")), {"EMPTY": ""})
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 0)}


def test_a_long_form_port_without_published_means_docker_picks_one(setup: Path) -> None:
    body = f"{BASE}ports: [{{target: 8080, host_ip: 127.0.0.1}}]\n"
    spec = render(write_template(setup, service(body)), {})
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 0)}


def test_port_auto_leaves_llm_port_empty_and_docker_picks(setup: Path, auto_template: Path) -> None:
    cfg = config(setup, "[a]\nmodel = a.gguf\nport = auto\n", template=AUTO_TEMPLATE)
    a = cfg.profile("a")
    spec, env = profile_spec(a, cfg.instance)
    assert env["LLM_PORT"] == ""
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 0)}
    pinned = config(setup, "[a]\nmodel = a.gguf\nport = 8123\n", template=AUTO_TEMPLATE).profile("a")
    assert profile_spec(pinned, "box")[0].ports == {"8080/tcp": ("127.0.0.1", 8123)}


def test_a_chosen_port_is_published_without_changing_the_hash(setup: Path, auto_template: Path) -> None:
    a = config(setup, "[a]\nmodel = a.gguf\nport = auto\n", template=AUTO_TEMPLATE).profile("a")
    spec, env = profile_spec(a, "box", port=40123)
    assert spec.ports == {"8080/tcp": ("127.0.0.1", 40123)}
    assert env["LLM_PORT"] == "40123"
    assert env["LLM_CONFIG_HASH"] == config_hash(a, "box") == profile_spec(a, "box")[1]["LLM_CONFIG_HASH"]
    assert template_variables(a, "box", port=40123)["LLM_PORT"] == "40123"


@pytest.mark.parametrize("published", ["${LLM_PORT:-8080}", "8080"])
def test_port_auto_with_a_template_that_pins_the_port_is_an_error(setup: Path, published: str) -> None:
    # ${LLM_PORT:-8080} turns the empty LLM_PORT of `auto` into 8080: that must not pass silently.
    write_template(setup, service(f"{BASE}ports: ['127.0.0.1:{published}:8080']\n"))
    a = config(setup, "[a]\nmodel = a.gguf\nport = auto\ncompose_file = compose/custom.yaml\n").profile("a")
    with pytest.raises(ComposeError) as info:
        profile_spec(a, "box")
    assert info.value.key == "services.llama-server.ports"
    assert "port = auto" in str(info.value) and "${LLM_PORT-8080}" in str(info.value)


def test_listed_gpus_become_device_ids(setup: Path) -> None:
    gpus = "1, gpu-8A3C9E1F-2B4D-4C6E-9F10-1A2B3C4D5E6F"  # a UUID in any case, as nvidia-smi prints it
    a = config(setup, f"[a]\nmodel = a.gguf\ngpus = {gpus}\n").profile("a")
    spec, env = profile_spec(a, "box")
    ids = ("1", "GPU-8a3c9e1f-2b4d-4c6e-9f10-1a2b3c4d5e6f")
    assert spec.device_requests == (DeviceRequest(driver="nvidia", count=0, device_ids=ids,
                                                  capabilities=("gpu",)),)
    assert env["LLM_GPUS"] == ",".join(ids)


def test_gpus_none_removes_the_gpu_reservation(setup: Path) -> None:
    a = config(setup, "[a]\nmodel = a.gguf\ngpus = none\n").profile("a")
    spec, env = profile_spec(a, "box")
    assert spec.device_requests == ()
    assert env["LLM_GPUS"] == "none"
    cpu = config(setup, "[a]\nmodel = a.gguf\ngpus = none\n", template="compose.cpu.yaml").profile("a")
    assert profile_spec(cpu, "box")[0].device_requests == ()


def test_gpus_all_keeps_the_template_as_written(setup: Path) -> None:
    a = config(setup, "[a]\nmodel = a.gguf\ngpus = all\n").profile("a")
    assert profile_spec(a, "box")[0].device_requests == (GPU,)


def test_only_the_gpu_request_is_narrowed(setup: Path) -> None:
    devices = """
        deploy:
          resources:
            reservations:
              devices:
                - {driver: nvidia, count: all, capabilities: [gpu]}
                - {driver: other, count: 1, capabilities: [fpga]}
    """
    write_template(setup, service(textwrap.dedent(BASE) + textwrap.dedent(devices)))
    cfg = config(setup, "[a]\nmodel = a.gguf\ngpus = 0\ncompose_file = compose/custom.yaml\n")
    requests = profile_spec(cfg.profile("a"), "box")[0].device_requests
    assert requests == (DeviceRequest("nvidia", 0, ("0",), ("gpu",)),
                        DeviceRequest("other", 1, (), ("fpga",)))


def test_listed_gpus_with_a_cpu_template_is_an_error(setup: Path) -> None:
    a = config(setup, "[a]\nmodel = a.gguf\ngpus = 0\n", template="compose.cpu.yaml").profile("a")
    with pytest.raises(ComposeError) as info:
        profile_spec(a, "box")
    assert info.value.key == "services.llama-server.deploy"
    assert "gpus = 0" in str(info.value) and "reserves no GPU" in str(info.value)


def test_the_engine_is_a_label_and_its_models_dir_the_mount(setup: Path) -> None:
    (setup / "remote-models").mkdir()
    cfg = config(setup, "[a]\nmodel = a.gguf\nengine = box2\n\n"
                 "[engine box2]\nurl = unix:///run/box2.sock\nmodels_dir = remote-models\n")
    spec, env = profile_spec(cfg.profile("a"), "box")
    assert spec.labels[LABEL_ENGINE] == env["LLM_ENGINE"] == "box2"
    assert spec.mounts == (Mount(source=str(setup / "remote-models"), target="/models", read_only=True),)


# -- .env ----------------------------------------------------------------------------


def test_env_file_text_escapes_for_double_quotes() -> None:
    text = env_file_text({"PLAIN": "x", "QUOTE": 'say "hi"', "BACK": r"blk\.\d+=CPU", "DOLLAR": "a b$c",
                          "SINGLE": "it's", "NL": "a\nb\rc", "EMPTY": ""}, "qwen")
    assert text == (
        "# Written by llm-mcp for profile 'qwen'; regenerated on every switch.\n"
        'PLAIN="x"\n'
        'QUOTE="say \\"hi\\""\n'
        'BACK="blk\\\\.\\\\d+=CPU"\n'
        'DOLLAR="a b$c"\n'
        "SINGLE=\"it's\"\n"
        'NL="a\\nb\\rc"\n'
        'EMPTY=""\n'
    )
    assert len(text.splitlines()) == 8  # one line per variable, whatever the value


@pytest.mark.parametrize("value", ["${HOME}", "a${X:-y}b", "ends\\"])
def test_env_file_text_refuses_what_compose_would_misread(value: str) -> None:
    with pytest.raises(ValueError, match=r"^V=.* cannot be written to \.env"):
        env_file_text({"V": value}, "p")


def test_write_env_file_writes_dot_env_beside_the_template(setup: Path) -> None:
    cfg = config(setup, QWEN)
    qwen = cfg.profile("qwen")
    _, env = profile_spec(qwen, cfg.instance)
    target = write_env_file(qwen.compose_file.parent, env, qwen.id)
    assert target == setup / "compose" / ".env"
    assert target.read_text(encoding="utf-8") == env_file_text(env, "qwen")
    assert not (setup / "compose" / ".env.tmp").exists()
    write_env_file(qwen.compose_file.parent, {"A": "1"}, "other")  # replaced, not appended
    assert target.read_text(encoding="utf-8").splitlines()[1:] == ['A="1"']


def test_each_running_model_has_its_env_file_and_dot_env_is_the_last(setup: Path) -> None:
    cfg = config(setup, "[a]\nmodel = a.gguf\n[b]\nmodel = b.gguf\n")
    directory = setup / "compose"
    envs = {p.id: profile_spec(p, cfg.instance)[1] for p in cfg.profiles.values()}
    for profile_id, env in envs.items():
        write_env_file(directory, env, profile_id)
    assert env_files(directory) == {"a": directory / "a.env", "b": directory / "b.env"}
    for profile_id, env in envs.items():
        assert _read_env(env_file_path(directory, profile_id).read_text(encoding="utf-8")) == env
        assert (env_file_path(directory, profile_id).stat().st_mode & 0o777) == 0o600
    last = (directory / "b.env").read_text(encoding="utf-8")
    assert (directory / ".env").read_text(encoding="utf-8") == last

    assert remove_env_file(directory, "a") is True
    assert env_files(directory) == {"b": directory / "b.env"}
    assert remove_env_file(directory, "a") is False  # already gone: not an error
    assert (directory / ".env").exists()  # the last started stays, as before


def test_env_files_ignore_what_llm_mcp_did_not_write(setup: Path) -> None:
    directory = setup / "compose"
    (directory / "secrets.env").write_text("TOKEN=x\n", encoding="utf-8")
    # A header that names another profile than the file name says:
    (directory / "c.env").write_text(env_file_text({"A": "1"}, "other"), encoding="utf-8")
    (directory / "Bad Name.env").write_text(env_file_text({"A": "1"}, "Bad Name"), encoding="utf-8")
    target = setup / "elsewhere.env"
    target.write_text(env_file_text({"A": "1"}, "d"), encoding="utf-8")
    (directory / "d.env").symlink_to(target)
    assert env_files(directory) == {}
    assert remove_env_file(directory, "secrets") is False
    assert remove_env_file(directory, "d") is False
    assert (directory / "secrets.env").exists() and (directory / "d.env").is_symlink() and target.exists()
    assert env_files(setup / "missing") == {}


def test_write_env_file_replaces_a_symlink_instead_of_writing_through_it(setup: Path) -> None:
    directory = setup / "compose"
    victim = setup / "victim"
    victim.write_text("keep\n", encoding="utf-8")
    (directory / "a.env").symlink_to(victim)
    (directory / ".env").symlink_to(victim)
    write_env_file(directory, {"A": "1"}, "a")
    assert victim.read_text(encoding="utf-8") == "keep\n"
    assert not (directory / "a.env").is_symlink() and not (directory / ".env").is_symlink()
    assert env_files(directory) == {"a": directory / "a.env"}


def test_env_file_names_must_be_profile_ids(setup: Path) -> None:
    with pytest.raises(ValueError, match="not a profile id"):
        write_env_file(setup / "compose", {"A": "1"}, "../escape")


def _read_env(text: str) -> dict[str, str]:
    """A reader of the escapes env_file_text writes (the integration test uses Compose's own)."""
    out = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition("=")
        assert value.startswith('"') and value.endswith('"')
        chars, body, i = [], value[1:-1], 0
        while i < len(body):
            if body[i] == "\\":
                chars.append({"n": "\n", "r": "\r"}.get(body[i + 1], body[i + 1]))
                i += 2
            else:
                chars.append(body[i])
                i += 1
        out[key] = "".join(chars)
    return out


# -- property: any accepted flags reach the container argv unchanged --------------

_ARG = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12).filter(lambda a: "${" not in a)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(_ARG, max_size=5))
def test_accepted_flags_reach_the_argv_unchanged(setup: Path, args: list[str]) -> None:
    flags = shlex.join(["--x", *args])
    try:
        cfg = config(setup, f"[a]\nmodel = a.gguf\nflags = {flags}\n")
    except ConfigError:  # a managed flag among the random ones
        return
    profile = cfg.profile("a")
    for template in ("compose.yaml", "compose.cpu.yaml"):
        profile = parse_config(cfg.source_text.replace("compose/compose.yaml", f"compose/{template}"),
                               cfg.path).profile("a")
        spec, env = profile_spec(profile, cfg.instance)
        assert list(spec.command) == profile.server_args()
        assert _read_env(env_file_text(env, "a")) == env
