"""models.conf: every validation rule names the file, the line and the key, and says what is valid."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_mcp.config.engines import EngineSettings
from llm_mcp.config.models_conf import (
    BUILTIN_DEFAULTS,
    DEFAULT_IMAGE,
    PROFILE_KEYS,
    Config,
    ConfigError,
    UnknownProfileError,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "models.conf"
CONF = Path("/srv/llm/models.conf")


def conf(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, path: Path = CONF) -> Config:
    return parse_config(conf(text), path)


def error(text: str, path: Path = CONF) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(conf(text), path)
    return info.value


def line_of(text: str, needle: str) -> int:
    """1-based number of the line of `text` that contains `needle` (exactly one)."""
    hits = [n for n, line in enumerate(conf(text).split("\n"), start=1) if needle in line]
    assert len(hits) == 1, hits
    return hits[0]


MINIMAL = """
    [defaults]
    models_dir = /models

    [tiny]
    model = tiny.gguf
"""


# -- the happy path ---------------------------------------------------------------


def test_a_minimal_config_gets_the_builtin_defaults() -> None:
    cfg = parse("[tiny]\nmodel = tiny.gguf\n")
    tiny = cfg.profile("tiny")
    assert cfg.instance == "default"
    assert cfg.default_profile is None
    assert list(cfg.profiles) == ["tiny"]
    assert tiny.name == "tiny"  # the id when no name is given
    assert tiny.image == DEFAULT_IMAGE == BUILTIN_DEFAULTS["image"]
    assert tiny.host == "127.0.0.1"
    assert tiny.port == 8080
    assert tiny.models_dir == Path.home() / "models"
    assert tiny.compose_file == CONF.parent / "compose" / "compose.yaml"
    assert (tiny.load_timeout, tiny.stall_timeout, tiny.drain_timeout, tiny.stop_grace) == (900, 180, 30, 10)
    assert tiny.verify is True
    assert tiny.bench is False
    assert tiny.flags == ()
    assert tiny.ctx_size is None and tiny.n_gpu_layers is None and tiny.override_tensor is None
    assert tiny.model_path() == Path.home() / "models" / "tiny.gguf"


def test_profiles_inherit_defaults_and_override_image_port_and_timeouts() -> None:
    cfg = parse("""
        [defaults]
        image = example/llama:one
        port = 9000
        load_timeout = 100
        stall_timeout = 20
        drain_timeout = 5
        stop_grace = 3
        verify = false
        instance = lab-2
        default = b

        [a]
        model = a.gguf

        [b]
        model = b.gguf
        image = example/llama:two
        port = 9100
        load_timeout = 2.5s
        stall_timeout = 7
        drain_timeout = 1
        stop_grace = 0.5
        verify = yes
    """)
    a, b = cfg.profile("a"), cfg.profile("b")
    assert cfg.instance == "lab-2"
    assert cfg.default_profile == "b"
    assert (a.image, a.port, a.load_timeout, a.stall_timeout, a.drain_timeout, a.stop_grace, a.verify) == (
        "example/llama:one", 9000, 100, 20, 5, 3, False)
    assert (b.image, b.port, b.load_timeout, b.stall_timeout, b.drain_timeout, b.stop_grace, b.verify) == (
        "example/llama:two", 9100, 2.5, 7, 1, 0.5, True)


def test_every_profile_field_is_parsed() -> None:
    cfg = parse(r"""
        [qwen]
        name = Qwen, experts on CPU
        description =   big MoE
        model = sub/Qwen-UD-Q5_K_XL.gguf
        ctx_size = 65536
        n_gpu_layers = all
        override_tensor = blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU,output\.weight=CUDA0
        batch_size = 4096
        ubatch_size = 4096
        flags = --jinja --temp 0.7
        speed = 35.5
        bench = on
        host = ::1
    """)
    q = cfg.profile("qwen")
    assert q.name == "Qwen, experts on CPU"
    assert q.description == "big MoE"
    assert q.model == "sub/Qwen-UD-Q5_K_XL.gguf"
    assert (q.ctx_size, q.n_gpu_layers, q.batch_size, q.ubatch_size) == (65536, "all", 4096, 4096)
    assert q.override_tensor == r"blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU,output\.weight=CUDA0"
    assert q.flags == ("--jinja", "--temp", "0.7")
    assert q.speed == 35.5
    assert q.bench is True
    assert q.host == "::1"
    assert q.to_dict()["flags"] == ["--jinja", "--temp", "0.7"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("Yes", True), ("1", True), ("ON", True),
    ("false", False), ("no", False), ("0", False), ("Off", False),
])
def test_booleans(raw: str, expected: bool) -> None:
    assert parse(f"[a]\nmodel = a.gguf\nbench = {raw}\n").profile("a").bench is expected


@pytest.mark.parametrize("raw", ["0", "99", "all", "auto"])
def test_n_gpu_layers_takes_a_count_all_or_auto(raw: str) -> None:
    assert parse(f"[a]\nmodel = a.gguf\nn_gpu_layers = {raw}\n").profile("a").n_gpu_layers == raw


def test_models_dir_and_compose_file_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "models.conf"
    cfg = parse("""
        [defaults]
        models_dir = ../weights
        compose_file = compose/compose.cpu.yaml

        [a]
        model = a.gguf

        [b]
        model = b.gguf
        models_dir = /abs/models
        compose_file = /abs/compose.yaml

        [c]
        model = c.gguf
        models_dir = ~/gguf
    """, path)
    assert cfg.profile("a").models_dir == tmp_path / "weights"
    assert cfg.profile("a").compose_file == tmp_path / "etc" / "compose" / "compose.cpu.yaml"
    assert cfg.profile("b").models_dir == Path("/abs/models")
    assert cfg.profile("b").compose_file == Path("/abs/compose.yaml")
    assert cfg.profile("c").models_dir == Path.home() / "gguf"


def test_load_config_resolves_the_path_and_keeps_the_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models.conf").write_text("[a]\nmodel = a.gguf\nmodels_dir = m\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("models.conf"))
    assert cfg.path == tmp_path / "models.conf"
    assert cfg.profile("a").models_dir == tmp_path / "m"
    assert cfg.source_text.startswith("[a]")


def test_comments_and_multiline_values() -> None:
    cfg = parse("""
        # a comment
        ; another
        [a]
        model = a.gguf
        flags = --jinja
            --temp 0.7
            --chat-template-kwargs '{"enable_thinking": false}'
    """)
    assert cfg.profile("a").flags == (
        "--jinja", "--temp", "0.7", "--chat-template-kwargs", '{"enable_thinking": false}')


# -- server_args: the argv, never a shell string ----------------------------------


def test_server_args_is_the_exact_argv() -> None:
    cfg = parse(r"""
        [defaults]
        models_dir = /m
        port = 9999

        [qwen]
        model = Qwen.gguf
        ctx_size = 8192
        n_gpu_layers = 99
        override_tensor = blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU
        batch_size = 1024
        ubatch_size = 512
        flags = --jinja --api-key "a b$c" --chat-template-kwargs '{"x": "it''s"}' --seed=1
            'semi;colon && rm -rf /'
    """)
    assert cfg.profile("qwen").server_args() == [
        "-m", "/models/Qwen.gguf",
        "--host", "0.0.0.0", "--port", "8080",  # inside the container; the host port is mapped
        "--ctx-size", "8192",
        "--n-gpu-layers", "99",
        "--override-tensor", r"blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU",
        "--batch-size", "1024",
        "--ubatch-size", "512",
        "--alias", "qwen",
        "--jinja", "--api-key", "a b$c", "--chat-template-kwargs", '{"x": "its"}', "--seed=1",
        "semi;colon && rm -rf /",
    ]


def test_server_args_leaves_out_unset_keys() -> None:
    assert parse("[a]\nmodel = dir/a.gguf\n").profile("a").server_args() == [
        "-m", "/models/dir/a.gguf", "--host", "0.0.0.0", "--port", "8080", "--alias", "a"]


# -- errors: file, line, key, and what would be valid --------------------------


def test_error_text_carries_file_line_section_and_key() -> None:
    text = "[a]\nmodel = a.gguf\nctx_size = lots\n"
    err = error(text)
    assert (err.path, err.line, err.section, err.key) == (CONF, 3, "a", "ctx_size")
    assert str(err) == (f"{CONF}:3: [a] ctx_size: 'lots' is not a whole number (must be between 1 and "
                        "16777216)")


def test_unknown_key_in_a_profile_suggests_the_near_one() -> None:
    text = """
        [defaults]
        port = 8080

        [a]
        model = a.gguf
        ctx_sise = 4096
    """
    err = error(text)
    assert (err.path, err.line, err.key, err.section) == (CONF, line_of(text, "ctx_sise"), "ctx_sise", "a")
    assert "unknown key" in err.message
    assert "did you mean 'ctx_size'?" in err.message
    for key in PROFILE_KEYS:
        assert key in err.message  # the valid keys are listed


def test_unknown_key_in_defaults_suggests_the_near_one() -> None:
    text = "[defaults]\nimgae = x/y:z\n[a]\nmodel = a.gguf\n"
    err = error(text)
    assert (err.line, err.key, err.section) == (2, "imgae", "defaults")
    assert "did you mean 'image'?" in err.message
    assert "instance" in err.message and "default" in err.message


def test_unknown_key_far_from_everything_lists_valid_keys_without_a_guess() -> None:
    err = error("[a]\nmodel = a.gguf\nzzzzqqq = 1\n")
    assert "did you mean" not in err.message
    assert "valid keys: name, model, ctx_size" in err.message


@pytest.mark.parametrize(("key", "raw", "expect"), [
    ("ctx_size", "32k", "'32k' is not a whole number"),
    ("batch_size", "2.5", "'2.5' is not a whole number"),
    ("ubatch_size", "", "'' is not a whole number"),
    ("port", "http", "'http' is not a whole number"),
    ("n_gpu_layers", "most", "'most' is not a whole number"),
])
def test_bad_integer(key: str, raw: str, expect: str) -> None:
    text = f"[a]\nmodel = a.gguf\n{key} = {raw}\n"
    err = error(text)
    assert (err.line, err.key, err.section) == (3, key, "a")
    assert expect in err.message


@pytest.mark.parametrize(("key", "raw", "expect"), [
    ("port", "0", "0 is out of range: must be between 1 and 65535"),
    ("port", "65536", "65536 is out of range: must be between 1 and 65535"),
    ("ctx_size", "0", "0 is out of range: must be between 1 and 16777216"),
    ("batch_size", "-1", "-1 is out of range: must be between 1 and 1048576"),
    ("n_gpu_layers", "-1", "-1 is out of range: must be between 0 and 100000, or all, or auto"),
])
def test_out_of_range(key: str, raw: str, expect: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\n{key} = {raw}\n")
    assert (err.line, err.key) == (3, key)
    assert expect in err.message


@pytest.mark.parametrize(("key", "raw", "expect"), [
    ("speed", "fast", "'fast' is not a number (tokens per second, e.g. 140)"),
    ("speed", "0", "0 is out of range: must be between 0.001 and 100000"),
    ("speed", "inf", "not a finite number"),
    ("load_timeout", "soon", "'soon' is not a number of seconds (e.g. 30 or 2.5)"),
    ("stall_timeout", "-5", "-5 is out of range: must be between 1 and 86400 seconds"),
    ("drain_timeout", "nan", "'nan' is not a finite number: must be between 0.1 and 3600 seconds"),
    ("stop_grace", "0s", "0 is out of range: must be between 0.1 and 3600 seconds"),
])
def test_bad_numbers_and_durations(key: str, raw: str, expect: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\n{key} = {raw}\n")
    assert (err.line, err.key) == (3, key)
    assert expect in err.message


@pytest.mark.parametrize("key", ["bench", "verify"])
def test_bad_bool(key: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\n{key} = maybe\n")
    assert (err.line, err.key) == (3, key)
    assert "'maybe' is not a boolean: use true or false" in err.message


@pytest.mark.parametrize(("raw", "expect"), [
    (r"blk\.(\d+\.ffn=CPU", "is not a valid regular expression: missing ), unterminated subpattern"),
    (r"blk\.[z-a]=CPU", "is not a valid regular expression: bad character range z-a"),
    ("a{99999999999999}=CPU", "is not a valid regular expression"),
    ("(" * 3000 + "=CPU", "is not a valid regular expression"),  # RecursionError inside re
    ("blk.0.ffn", "is not PATTERN=BUFFER"),
    ("=CPU", "is not PATTERN=BUFFER"),
    ("blk=CPU,exps=", "'exps=' is not PATTERN=BUFFER"),
])
def test_bad_override_tensor(raw: str, expect: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\noverride_tensor = {raw}\n")
    assert (err.line, err.key, err.section) == (3, "override_tensor", "a")
    assert expect in err.message
    assert "e.g." in err.message  # and shows a valid one


@pytest.mark.parametrize("raw", ['--api-key "abc', "--chat-template-kwargs '{\"a\": 1}", "--x \\"])
def test_flags_with_unbalanced_quotes(raw: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\nflags = {raw}\n")
    assert (err.line, err.key) == (3, "flags")
    assert "cannot split into arguments" in err.message and "check the quotes" in err.message


@pytest.mark.parametrize(("raw", "flag", "owner"), [
    ("-m other.gguf", "-m", "model"),
    ("--jinja --model=x.gguf", "--model", "model"),
    ("--port 9000", "--port", "port"),
    ("--host 0.0.0.0", "--host", "host (set by llm-mcp)"),
    ("-c 4096", "-c", "ctx_size"),
    ("-ngl 99", "-ngl", "n_gpu_layers"),
    ("--n-gpu-layers=99", "--n-gpu-layers", "n_gpu_layers"),
    ("-ot x=CPU", "-ot", "override_tensor"),
    ("-b 512", "-b", "batch_size"),
    ("-ub 512", "-ub", "ubatch_size"),
])
def test_a_managed_flag_in_flags_points_at_its_key(raw: str, flag: str, owner: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\nflags = {raw}\n")
    assert (err.line, err.key) == (3, "flags")
    assert err.message == f"'{flag}' is set by the '{owner}' key; use that instead"


@pytest.mark.parametrize("section", ["GLM", "glm flash", "-glm", ".hidden", "a/b", "ü", "x" * 64, "a:b"])
def test_a_profile_id_must_be_a_slug(section: str) -> None:
    text = f"[defaults]\nport = 8080\n\n[{section}]\nmodel = a.gguf\n"
    err = error(text)
    assert (err.path, err.line, err.section, err.key) == (CONF, 4, section, None)
    assert "a profile id must be a slug: lowercase letters, digits, '.', '_' or '-'" in err.message
    assert "[glm-4.7-flash]" in err.message


@pytest.mark.parametrize("section", ["a", "glm-4.7-flash", "q_4", "0", "x" * 63])
def test_slugs_are_accepted(section: str) -> None:
    assert section in parse(f"[{section}]\nmodel = a.gguf\n").profiles


def test_duplicate_section() -> None:
    err = error("[a]\nmodel = a.gguf\n\n[a]\nmodel = b.gguf\n")
    assert (err.path, err.line, err.section) == (CONF, 4, "a")
    assert "the section appears twice" in err.message


def test_duplicate_key_is_case_insensitive() -> None:
    err = error("[a]\nmodel = a.gguf\nctx_size = 1\nCTX_SIZE = 2\n")
    assert (err.line, err.section, err.key) == (4, "a", "ctx_size")
    assert "the key appears twice in this section" in err.message


def test_a_key_before_any_section() -> None:
    err = error("# models\nmodel = a.gguf\n[a]\nmodel = a.gguf\n")
    assert (err.path, err.line, err.key) == (CONF, 2, None)
    assert "a key comes before any [section]; start with [defaults]" in err.message


def test_a_line_that_is_not_key_value() -> None:
    err = error("[a]\nmodel = a.gguf\njust some words\n")
    assert err.line == 3
    assert err.message == "cannot parse 'just some words': expected 'key = value' (or a [section])"


def test_missing_model() -> None:
    text = "[defaults]\nport = 8080\n\n[glm]\nctx_size = 4096\n"
    err = error(text)
    assert (err.path, err.line, err.section, err.key) == (CONF, 4, "glm", "model")
    assert "every profile needs 'model = FILE.gguf'" in err.message


@pytest.mark.parametrize("key", ["name", "model"])
def test_profile_only_keys_are_refused_in_defaults(key: str) -> None:
    err = error(f"[defaults]\nport = 8080\n{key} = x\n\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.section, err.key) == (3, "defaults", key)
    assert err.message == "belongs in a profile section, not [defaults]"


def test_ubatch_larger_than_batch() -> None:
    text = "[a]\nmodel = a.gguf\nbatch_size = 512\nubatch_size = 1024\n"
    err = error(text)
    assert (err.line, err.section, err.key) == (4, "a", "ubatch_size")
    assert "1024 is larger than batch_size 512; llama-server needs ubatch_size <= batch_size" in err.message


def test_ubatch_against_an_inherited_batch() -> None:
    err = error("[defaults]\nbatch_size = 256\n[a]\nmodel = a.gguf\nubatch_size = 512\n")
    assert (err.line, err.key) == (5, "ubatch_size")


def test_unknown_default_profile() -> None:
    text = "[defaults]\ndefault = glm\n\n[glm-4.7-flash]\nmodel = a.gguf\n\n[qwen]\nmodel = q.gguf\n"
    err = error(text)
    assert (err.line, err.section, err.key) == (2, "defaults", "default")
    assert err.message == "'glm' is not a profile; valid ids: glm-4.7-flash, qwen"


def test_bad_instance() -> None:
    err = error("[defaults]\ninstance = My Box\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.key) == (2, "instance")
    assert "must be a slug" in err.message


@pytest.mark.parametrize("text", ["", "# nothing\n", "[defaults]\nport = 8080\n"])
def test_no_profiles(text: str) -> None:
    err = error(text)
    assert err.path == CONF and err.line is None
    assert "no profiles: add a section such as [my-model] with 'model = file.gguf'" in err.message


def test_a_bad_default_is_reported_in_defaults_even_without_profiles() -> None:
    err = error("[defaults]\nport = 99999\n")
    assert (err.line, err.section, err.key) == (2, "defaults", "port")
    assert "out of range" in err.message


def test_a_bad_inherited_value_points_at_defaults() -> None:
    text = "[defaults]\nflags = -m x.gguf\n[a]\nmodel = a.gguf\n"
    err = error(text)
    assert (err.line, err.section, err.key) == (2, "defaults", "flags")


@pytest.mark.parametrize(("key", "raw", "expect"), [
    ("model", "/abs/a.gguf", "must be a file name relative to models_dir"),
    ("model", "../a.gguf", "no '..'"),
    ("model", "", "must not be empty"),
    ("image", "my image", "is not an image reference: letters, digits and . _ - / : @ + only"),
    ("image", "img\\", "is not an image reference"),
    ("host", "localhost", "'localhost' is not an IP address (e.g. 127.0.0.1)"),
    ("models_dir", "/mnt/c:/models", "contains ':'"),
    ("models_dir", "/models\\", "ends with a backslash"),
])
def test_other_value_rules(key: str, raw: str, expect: str) -> None:
    where = "" if key == "model" else "model = a.gguf\n"
    err = error(f"[a]\n{where}{key} = {raw}\n")
    assert err.key == key
    assert err.line == 2 + bool(where)
    assert expect in err.message


@pytest.mark.parametrize(("key", "raw"), [
    ("flags", "--api-key ${SECRET}"),
    ("model", "${MODEL}.gguf"),
    ("override_tensor", "blk${X}=CPU"),
    ("image", "llama:${TAG}"),
    ("models_dir", "${HOME}/models"),
])
def test_what_compose_would_expand_in_env_is_refused(key: str, raw: str) -> None:
    """Compose v1 expands ${NAME} inside .env values with no escape: it cannot round-trip."""
    where = "" if key == "model" else "model = a.gguf\n"
    err = error(f"[a]\n{where}{key} = {raw}\n")
    assert err.key == key
    assert "contains '${', which docker compose would expand as a variable" in err.message


def test_a_lone_dollar_is_fine() -> None:
    assert parse("[a]\nmodel = a.gguf\nflags = --api-key 'p$ss' --x $HOME\n").profile("a").flags == (
        "--api-key", "p$ss", "--x", "$HOME")


def test_control_characters_are_refused() -> None:
    err = error("[a]\nmodel = a.gguf\nflags = --x 'a\x1bb'\n")
    assert err.key == "flags"
    assert "control character U+001B" in err.message
    err = error("[a]\nmodel = a.gguf\nflags = --x 'one\n  two'\n")
    assert "control character U+000A" in err.message


def test_an_unresolvable_home_is_a_config_error() -> None:
    err = error("[a]\nmodel = a.gguf\nmodels_dir = ~no-such-user-llm-mcp/models\n")
    assert (err.line, err.key) == (3, "models_dir")
    assert "cannot resolve" in err.message


def test_line_numbers_survive_comments_blank_lines_and_continuations() -> None:
    text = """
        [defaults]
        # port = 1
        port = 8080

        [a]
        model = a.gguf
        flags = --jinja
            --temp 0.7

            # a comment inside
            --top-k 40
          --min-p 0.05
        speed = slow
    """
    # configparser: a line indented deeper than its key continues the value.
    err = error(text)
    assert (err.key, err.line) == ("speed", line_of(text, "speed = slow"))


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == path
    assert "file not found; copy the example models.conf from the project or pass --config" in str(info.value)


def test_load_config_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "models.conf"
    path.write_bytes(b"[a]\nmodel = \xff\xfe.gguf\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "cannot read" in info.value.message
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)  # a directory
    assert "cannot read" in info.value.message


# -- UnknownProfileError ---------------------------------------------------------


def test_unknown_profile_lists_the_valid_ids() -> None:
    cfg = parse("[glm-4.7-flash]\nmodel = g.gguf\n[qwen3-coder-next]\nmodel = q.gguf\n")
    with pytest.raises(UnknownProfileError) as info:
        cfg.profile("glm-4.7")
    err = info.value
    assert isinstance(err, KeyError)
    assert (err.profile_id, err.valid) == ("glm-4.7", ["glm-4.7-flash", "qwen3-coder-next"])
    assert str(err) == ("unknown model 'glm-4.7'. Did you mean 'glm-4.7-flash'? "
                        "Valid ids: glm-4.7-flash, qwen3-coder-next")
    with pytest.raises(UnknownProfileError, match=r"^unknown model 'zzz'\. Valid ids: glm"):
        cfg.profile("zzz")


# -- the shipped example ----------------------------------------------------------


def test_the_shipped_models_conf_parses_with_realistic_profiles() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.default_profile == "glm-4.7-flash"
    glm = cfg.profile("glm-4.7-flash")
    assert glm.model == "GLM-4.7-Flash-Q4_K_M.gguf"
    assert glm.speed == 140
    assert glm.n_gpu_layers == "99"
    assert glm.ctx_size == 32768
    assert glm.override_tensor is None
    assert "--jinja" in glm.flags
    assert glm.flags[glm.flags.index("--flash-attn") + 1] == "on"
    assert glm.image == "ghcr.io/ggml-org/llama.cpp:server-cuda"
    assert glm.port == 8080
    assert glm.models_dir == Path.home() / "models"
    assert glm.compose_file == ROOT / "compose" / "compose.yaml"
    assert glm.bench is False

    qwen = cfg.profile("qwen3-coder-next")
    assert qwen.model == "Qwen3-Coder-Next-UD-Q5_K_XL.gguf"
    assert qwen.override_tensor is not None
    pattern, _, buffer = qwen.override_tensor.rpartition("=")
    assert buffer == "CPU"
    regex = re.compile(pattern)
    for name in ("blk.0.ffn_up_exps.weight", "blk.47.ffn_down_exps.weight", "blk.12.ffn_gate_exps.weight"):
        assert regex.search(name), name
    for name in ("blk.0.attn_q.weight", "blk.3.ffn_up_shexp.weight", "output.weight", "token_embd.weight"):
        assert not regex.search(name), name
    assert qwen.load_timeout > glm.load_timeout  # a per-profile override

    bench = [p for p in cfg.profiles.values() if p.bench]
    assert bench, "at least one bench profile"
    partial = cfg.profile("qwen3-coder-next-partial")
    assert partial.override_tensor is not None
    partial_re = re.compile(partial.override_tensor.rpartition("=")[0])
    assert partial_re.search("blk.24.ffn_up_exps.weight") and partial_re.search("blk.47.ffn_gate_exps.weight")
    assert not partial_re.search("blk.23.ffn_up_exps.weight")


# -- property: broken configs never end in another exception ----------------------

_KEYS = [*PROFILE_KEYS, "instance", "default", "Model", "ctx-size", "", "x y", "[", "#k"]
_IDS = ["defaults", "a", "glm-4.7-flash", "GLM", "x y", "", "-a", "ä", "a]b", "DEFAULT", "q" * 70]
_VALUES = [
    "", "0", "-1", "1", "99", "65536", "1e999", "nan", "inf", "2.5s", "all", "auto", "true", "maybe",
    "a.gguf", "/abs.gguf", "../up.gguf", "~/m", "~nouser/x", "/tmp/x:y", "dir\\", "${X}", "$$",
    r"blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU", "(=CPU", "a{9999999999}=CPU", "x=", "=y",
    '--jinja "unterminated', "-m x", "--port=1", "--a 'b c' \"d\" e=f", "::1", "localhost",
    "\x00", "\ud800", "a\tb", "glm", "a,b=CPU,c",
]

# Values aimed at one key's parser: the corners where another exception could escape.
_NASTY = {
    "override_tensor": ["a{99999999999}=CPU", "(" * 2000 + "=CPU", "(?P<a>x)(?P=b)=CPU", "[z-a]=CPU",
                        "\\=CPU", "x=CPU,", ",", "=", "(?", "\\N{NOPE}=CPU"],
    "models_dir": ["~nouser-llm-mcp/x", "~", "a\x00b", "/" + "x" * 5000, "~/" + "a/" * 300, "${A}", "d:e"],
    "compose_file": ["~nouser-llm-mcp/c.yaml", "c\x00.yaml", "/" + "x" * 5000, "."],
    "flags": ["'", '"', "\\", "-m", "--model=x", "--host=h", "a\x00", "$'x'", "--a=${b}", "# c"],
    "ctx_size": ["9" * 5000, "1_000", "+1", "٣", " 5 ", "0x10"],
    "speed": ["1e999", "-0", "nan", "1_0.5", "infinity"],
    "load_timeout": ["1e999s", "nans", "s", "ss", "-inf"],
    "port": ["0", "65535", "65536", "٨٠", "auto", "AUTO", "automatic"],
    "n_gpu_layers": ["all", "ALL", "-0", "1e3"],
    "gpus": ["all", "NONE", "0,1", "0,,1", "0,0", "-1", "GPU-", "gpu-AB12", "MIG-x", "1" * 5, "0, GPU-ab"],
    "engine": ["local", "Local", "nope", "", "a b", "engine"],
    "exclusive": ["yes", "maybe", ""],
    "aliases": ["x", "x, y", "x,x", "X", "", ",", "a"],
    "host": ["::1", "::ffff:1.2.3.4", "1.2.3.4%eth0", "fe80::1%lo"],
    "image": ["x y", "a\\", ":", "@", "a" * 5000],
    "model": ["/x", "..", "a/../b", "a/./b", "", "\x00"],
}


@st.composite
def structured_configs(draw: st.DrawFn) -> str:
    """Well-formed sections and known keys, so that every value parser meets bad values."""
    sections = draw(st.lists(st.sampled_from(["defaults", "a", "b-1", "glm-4.7-flash", "q_2"]),
                             min_size=1, max_size=3, unique=True))
    lines: list[str] = []
    for section in sections:
        lines.append(f"[{section}]")
        keys = draw(st.lists(st.sampled_from(list(_NASTY)), max_size=4, unique=True))
        if section != "defaults" and "model" not in keys:
            lines.append("model = a.gguf")
        for key in keys:
            value = draw(st.sampled_from(_NASTY[key]) | st.sampled_from(_VALUES) | st.text(max_size=12))
            lines.append(f"{key} = {value}")
    return "\n".join(lines)


_ENGINE_VALUES = {
    "url": ["unix:///run/d.sock", "unix://rel", "tcp://h:2376", "tcp://h", "tcp://u@h:1", "ssh://me@h",
            "ssh://me:pw@h", "http://h", "tcp://[::1]:2376", "tcp://h:99999", "", "ssh://", "tcp://h:2376/x"],
    "tls_ca": ["ca.pem", "", "~nouser-llm-mcp/x", "a\x00b"],
    "tls_cert": ["cert.pem"], "tls_key": ["key.pem"],
    "tls_verify": ["false", "maybe"],
    "models_dir": ["/srv/models", "models", "~/m", "/", "/etc", "/a/../b", "d:e"],
    "gpus": ["0,1", "GPU-ab, GPU-cd", "0, GPU-ab", "all", ""],
    "address": ["10.0.0.7", "gpu-box.lan", "[::1]", "bad host", "", "-x"],
}


@st.composite
def engine_configs(draw: st.DrawFn) -> str:
    """[engine NAME] sections with their keys, and profiles that name them."""
    lines: list[str] = []
    names = draw(st.lists(st.sampled_from(["local", "box", "b-2", "Bad", ""]), max_size=3, unique=True))
    for name in names:
        lines.append(f"[engine {name}]")
        for key in draw(st.lists(st.sampled_from(list(_ENGINE_VALUES)), max_size=5, unique=True)):
            lines.append(f"{key} = {draw(st.sampled_from(_ENGINE_VALUES[key]) | st.text(max_size=8))}")
    for profile in draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True)):
        lines += [f"[{profile}]", "model = a.gguf"]
        if draw(st.booleans()):
            lines.append(f"engine = {draw(st.sampled_from([*names, 'local', 'missing']))}")
        for key in draw(st.lists(st.sampled_from(["gpus", "aliases", "models_dir", "host"]), max_size=2,
                                 unique=True)):
            lines.append(f"{key} = {draw(st.sampled_from([*_NASTY.get(key, []), '0', 'a', '0.0.0.0']))}")
    return "\n".join(lines)


@st.composite
def chaotic_configs(draw: st.DrawFn) -> str:
    """Random sections, keys, separators and values."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{draw(st.sampled_from(_IDS) | st.text(max_size=8))}]")
        for _ in range(draw(st.integers(0, 6))):
            key = draw(st.sampled_from(_KEYS) | st.text(max_size=6))
            value = draw(st.sampled_from(_VALUES) | st.text(max_size=12))
            sep = draw(st.sampled_from([" = ", "=", ": ", " "]))
            indent = draw(st.sampled_from(["", "", "", "  "]))
            lines.append(f"{indent}{key}{sep}{value}")
    return "\n".join(lines)


def _only_config_errors(text: str) -> None:
    try:
        cfg = parse_config(text, CONF)
    except ConfigError as err:
        assert err.path == CONF
        assert str(err).startswith(str(CONF))
        assert err.line is None or 1 <= err.line <= text.count("\n") + 1
        assert err.message
    else:
        assert cfg.profiles
        for profile in cfg.profiles.values():
            assert all(isinstance(arg, str) for arg in profile.server_args())


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(structured_configs())
def test_generated_structured_configs_only_raise_config_error(text: str) -> None:
    _only_config_errors(text)


@FAST
@given(chaotic_configs())
def test_generated_chaotic_configs_only_raise_config_error(text: str) -> None:
    _only_config_errors(text)


@FAST
@given(engine_configs())
def test_generated_engine_configs_only_raise_config_error(text: str) -> None:
    _only_config_errors(text)


@FAST
@given(st.text(max_size=300))
def test_random_text_only_raises_config_error(text: str) -> None:
    _only_config_errors(text)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_config_error(data: bytes) -> None:
    _only_config_errors(data.decode("utf-8", errors="surrogateescape"))


@FAST
@given(st.lists(st.sampled_from(["[a]", "[defaults]", "model = a.gguf", "  --x", "flags = '", "#", ";x",
                                 "ctx_size = 1", "[", "]", "=", ":", "", "bench = 2", "[b]",
                                 "override_tensor = (", "default = b", "name = n"]), max_size=12))
def test_random_lines_only_raise_config_error(lines: list[str]) -> None:
    _only_config_errors("\n".join(lines))


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    lines = EXAMPLE.read_text(encoding="utf-8").split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "value", "value", "delete", "duplicate", "insert", "truncate",
                                   "indent", "swap"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "value":
            keyed = [n for n, line in enumerate(lines) if "=" in line and not line.startswith("#")]
            if keyed:
                n = draw(st.sampled_from(keyed))
                key = lines[n].split("=", 1)[0]
                lines[n] = key + "= " + draw(st.sampled_from(_VALUES) | st.text(max_size=10))
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=20)))
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "indent":
            lines[i] = "   " + lines[i]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        if not lines:
            lines = [""]
    return "\n".join(lines)


@FAST
@given(mutated_example())
def test_mutations_of_the_example_only_raise_config_error(text: str) -> None:
    _only_config_errors(text)


# -- ranges: a value that passes must work ------------------------------------------


@pytest.mark.parametrize(("key", "raw", "expect"), [
    ("stop_grace", "1e308", "1e+308 is out of range: must be between 0.1 and 3600 seconds"),
    ("ctx_size", "1" + "0" * 35, "(36 digits) is out of range: must be between 1 and 16777216"),
    ("ctx_size", "1e35", "'1e35' is not a whole number (must be between 1 and 16777216)"),
    ("ctx_size", "16777217", "16777217 is out of range: must be between 1 and 16777216"),
    ("n_gpu_layers", "100001", "100001 is out of range: must be between 0 and 100000, or all, or auto"),
    ("batch_size", "1048577", "must be between 1 and 1048576"),
    ("speed", "1e9", "1e+09 is out of range: must be between 0.001 and 100000"),
    ("load_timeout", "0.5", "0.5 is out of range: must be between 1 and 86400 seconds"),
    ("load_timeout", "86401", "86401 is out of range: must be between 1 and 86400 seconds"),
    ("stall_timeout", "1e6s", "1e+06 is out of range: must be between 1 and 86400 seconds"),
    ("drain_timeout", "0.01", "0.01 is out of range: must be between 0.1 and 3600 seconds"),
    ("name", "n" * 101, "the value is 101 characters long: it must be at most 100"),
    ("flags", "--x " * 3000, "it must be at most 8192"),
])
def test_a_value_out_of_its_range_names_file_line_key_range_and_value(key: str, raw: str,
                                                                       expect: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\n{key} = {raw}\n")
    assert (err.line, err.key, err.section) == (3, key, "a")
    assert expect in err.message
    assert str(err).startswith(f"{CONF}:3: [a] {key}: ")


@pytest.mark.parametrize("key", ["ctx_size", "n_gpu_layers", "batch_size", "port", "speed", "load_timeout",
                                 "stall_timeout", "drain_timeout", "stop_grace"])
def test_both_ends_of_every_range_are_accepted(key: str) -> None:
    from llm_mcp.config.models_conf import RANGES

    low, high = RANGES[key]
    for value in (low, high):
        raw = str(int(value)) if float(value).is_integer() else str(value)
        extra = "ubatch_size = 1\n" if key == "batch_size" else ""
        profile = parse(f"[a]\nmodel = a.gguf\n{extra}{key} = {raw}\n").profile("a")
        got = getattr(profile, key)
        assert float(got) == value


@pytest.mark.parametrize("raw", ["/", "/etc", "/usr", "/proc", "/home", "/./etc/../", "~"])
def test_models_dir_may_not_be_the_root_a_system_directory_or_home(raw: str) -> None:
    err = error(f"[defaults]\nmodels_dir = {raw}\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.key, err.section) == (2, "models_dir", "defaults")
    assert "the container would see all of it" in err.message


def test_models_dir_through_a_symlink_to_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models").symlink_to("/")
    err = error("[a]\nmodel = a.gguf\nmodels_dir = models\n", tmp_path / "models.conf")
    assert err.key == "models_dir" and "/ is a system directory" in err.message


def test_a_loopback_host_gives_no_warning() -> None:
    assert parse("[a]\nmodel = a.gguf\nhost = ::1\n").warnings == ()
    assert parse(MINIMAL).warnings == ()


def test_a_host_other_than_loopback_is_a_warning_with_file_line_and_key() -> None:
    text = "[defaults]\nhost = 0.0.0.0\n[a]\nmodel = a.gguf\n[b]\nmodel = b.gguf\nhost = 192.168.1.5\n"
    cfg = parse(text)
    assert cfg.warnings == (
        f"{CONF}:2: [defaults] host: 0.0.0.0 is not a loopback address: llama-server (no API key by "
        "default) is reachable from other machines on port 8080; use 127.0.0.1 unless that is what you want",
        f"{CONF}:7: [b] host: 192.168.1.5 is not a loopback address: llama-server (no API key by "
        "default) is reachable from other machines on port 8080; use 127.0.0.1 unless that is what you want",
    )


def test_n_gpu_layers_is_a_number_on_the_wire_and_only_the_words_are_strings() -> None:
    cfg = parse("[a]\nmodel = a.gguf\nn_gpu_layers = 99\n[b]\nmodel = b.gguf\nn_gpu_layers = all\n"
                "[c]\nmodel = c.gguf\n")
    assert [cfg.profile(p).to_dict()["n_gpu_layers"] for p in "abc"] == [99, "all", None]
    assert cfg.profile("a").server_args()[cfg.profile("a").server_args().index("--n-gpu-layers") + 1] == "99"


_NUMERIC = ["ctx_size", "n_gpu_layers", "batch_size", "ubatch_size", "port", "speed", "load_timeout",
            "stall_timeout", "drain_timeout", "stop_grace"]
_INT32 = 2**31 - 1


@FAST
@given(st.sampled_from(_NUMERIC),
       st.integers(-(2**70), 2**70).map(str) | st.floats(allow_nan=True).map(repr)
       | st.floats(min_value=-1e7, max_value=1e7).map(lambda f: f"{f:g}")
       | st.text(st.characters(blacklist_characters="\n"), max_size=8))
def test_every_numeric_value_that_passes_works_downstream(key: str, raw: str) -> None:
    """llama-server reads its flags as int32, Docker takes a whole-second stop timeout, timers
    need a finite deadline: whatever validation accepts fits all of them."""
    from llm_mcp.config.models_conf import RANGES

    try:
        profile = parse_config(f"[a]\nmodel = a.gguf\n{key} = {raw}\n", CONF).profile("a")
    except ConfigError as err:
        assert err.key == key and err.line == 3
        return
    value = getattr(profile, key)
    low, high = RANGES[key]
    if (key == "n_gpu_layers" and value in ("all", "auto")) or (key == "port" and value is None):
        return
    number = float(value)
    assert low <= number <= high
    assert abs(number) < _INT32
    for arg in profile.server_args():
        if arg.lstrip("-").isdigit():
            assert int(arg) <= _INT32
    assert round(profile.stop_grace) < _INT32


# -- placement: engine, gpus, exclusive, port = auto, aliases ----------------------------

OLD_PROFILE_KEYS = {"id", "name", "model", "ctx_size", "n_gpu_layers", "override_tensor", "batch_size",
                    "ubatch_size", "flags", "speed", "bench", "description", "image", "port"}
UUID = "GPU-8a3c9e1f-2b4d-4c6e-9f10-1a2b3c4d5e6f"


def test_a_config_of_the_previous_version_parses_to_the_single_container_placement() -> None:
    cfg = load_config(EXAMPLE)
    assert dict(cfg.engines) == {"local": EngineSettings("local")}
    assert cfg.gpu_uuids == {}
    assert cfg.warnings == ()
    for profile in cfg.profiles.values():
        assert (profile.engine, profile.gpus, profile.exclusive, profile.port, profile.aliases) == (
            "local", None, False, 8080, ())
        assert profile.gpus_text == "all"
        data = profile.to_dict()
        assert set(data) >= OLD_PROFILE_KEYS and data["port"] == 8080
        assert {k: data[k] for k in set(data) - OLD_PROFILE_KEYS} == {
            "engine": "local", "gpus": "all", "exclusive": False, "aliases": [], "ttl": None,
            "preload": False}
        assert cfg.engine_of(profile) is cfg.engines["local"] == cfg.engine_of(profile.id)
        assert profile.models_dir == Path.home() / "models"


def test_placement_keys_parse() -> None:
    cfg = parse(f"""
        [a]
        model = a.gguf
        gpus = 1, 0
        exclusive = yes
        port = auto
        aliases = coder, cdr
        [b]
        model = b.gguf
        gpus = {UUID.lower()}, 2
        [c]
        model = c.gguf
        gpus = NONE
    """)
    a, b, c = cfg.profile("a"), cfg.profile("b"), cfg.profile("c")
    assert (a.gpus, a.exclusive, a.port, a.aliases) == (("1", "0"), True, None, ("coder", "cdr"))
    assert a.gpus_text == "1,0" and c.gpus == () and c.gpus_text == "none"
    assert b.gpus == (UUID, "2")  # UUIDs normalised as nvidia-smi prints them
    assert a.to_dict()["port"] == "auto" and b.to_dict()["port"] == 8080
    assert a.to_dict()["aliases"] == ["coder", "cdr"] and a.to_dict()["gpus"] == "1,0"
    assert (a.to_dict()["exclusive"], b.to_dict()["exclusive"]) == (True, False)


def test_placement_keys_inherit_from_defaults() -> None:
    cfg = parse("""
        [defaults]
        gpus = none
        exclusive = true
        port = auto
        [a]
        model = a.gguf
        [b]
        model = b.gguf
        gpus = 0
        port = 9000
    """)
    assert (cfg.profile("a").gpus, cfg.profile("a").exclusive, cfg.profile("a").port) == ((), True, None)
    assert (cfg.profile("b").gpus, cfg.profile("b").port) == (("0",), 9000)


def test_aliases_belong_in_a_profile() -> None:
    err = error("[defaults]\naliases = x\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.section, err.key) == (2, "defaults", "aliases")
    assert "belongs in a profile section" in err.message


@pytest.mark.parametrize(("key", "raw", "expect"), [
    ("gpus", "some", "'some' is not a GPU index (0-9999) or UUID"),
    ("gpus", "0,,1", "has an empty item"),
    ("gpus", "0, 00", "GPU 0 is listed twice"),
    ("gpus", "-1", "is not a GPU index"),
    ("gpus", "GPU-zz", "is not a GPU index"),
    ("gpus", "٣", "is not a GPU index"),
    ("exclusive", "sometimes", "'sometimes' is not a boolean"),
    ("port", "automatic", "'automatic' is not a whole number (must be between 1 and 65535); or auto"),
    ("port", "0", "0 is out of range: must be between 1 and 65535; or auto"),
    ("aliases", "Coder", "'Coder' is not a valid alias"),
    ("aliases", "a,,b", "'' is not a valid alias"),
    ("aliases", "x, x", "'x' is listed twice"),
    ("engine", "Big Box", "'Big Box' is not an engine name"),
])
def test_bad_placement_values_name_file_line_key_and_what_is_valid(key: str, raw: str, expect: str) -> None:
    err = error(f"[a]\nmodel = a.gguf\n{key} = {raw}\n")
    assert (err.line, err.key, err.section) == (3, key, "a")
    assert expect in err.message
    if key == "gpus":
        assert "or all, or none" in err.message


def test_an_unknown_engine_names_the_valid_ones() -> None:
    text = """
        [a]
        model = a.gguf
        engine = gpu-bx

        [engine gpu-box]
        url = ssh://me@gpu-box
        models_dir = /srv/models
    """
    err = error(text)
    assert (err.line, err.key, err.section) == (line_of(text, "engine = gpu-bx"), "engine", "a")
    assert "unknown engine 'gpu-bx'" in err.message
    assert "did you mean 'gpu-box'?" in err.message
    assert "valid engines: local, gpu-box" in err.message


def test_an_unknown_engine_from_defaults_is_reported_in_defaults() -> None:
    err = error("[defaults]\nengine = elsewhere\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.key, err.section) == (2, "engine", "defaults")
    assert "valid engines: local" in err.message


def test_an_alias_may_not_be_a_profile_id_or_another_profiles_alias() -> None:
    text = "[a]\nmodel = a.gguf\naliases = x\n[b]\nmodel = b.gguf\naliases = y, x\n"
    err = error(text)
    assert (err.line, err.key, err.section) == (6, "aliases", "b")
    assert "'x' is already an alias of [a]" in err.message
    err = error("[a]\nmodel = a.gguf\naliases = b\n[b]\nmodel = b.gguf\n")
    assert (err.line, err.key, err.section) == (3, "aliases", "a")
    assert "'b' is the id of a profile" in err.message
    err = error("[a]\nmodel = a.gguf\naliases = a\n")
    assert "(this one)" in err.message


# -- [engine NAME] -------------------------------------------------------------------------


def test_engine_sections_tcp_with_tls_and_ssh(tmp_path: Path) -> None:
    path = tmp_path / "models.conf"
    text = conf("""
        [engine gpu-box]
        url = tcp://gpu-box.lan:2376
        tls_ca = certs/ca.pem
        tls_cert = certs/cert.pem
        tls_key = ~/.docker/key.pem
        models_dir = /srv/models
        gpus = GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0, GPU-8A3C9E1F-2B4D-4C6E-9F10-1A2B3C4D5E6F

        [engine lab]
        url = ssh://me@10.0.0.7:2222
        models_dir = /data/gguf
        address = 10.0.0.8

        [engine sock]
        url = unix:///run/user/1000/docker.sock

        [big]
        model = big.gguf
        engine = gpu-box
        host = 0.0.0.0
        gpus = 1

        [small]
        model = small.gguf
        engine = lab
        models_dir = /other/models
        host = 0.0.0.0
    """)
    cfg = parse_config(text, path)
    box, lab, sock = cfg.engines["gpu-box"], cfg.engines["lab"], cfg.engines["sock"]
    assert list(cfg.engines) == ["local", "gpu-box", "lab", "sock"]
    assert (box.url, box.tls_ca, box.tls_cert, box.tls_key, box.tls_verify, box.tls) == (
        "tcp://gpu-box.lan:2376", tmp_path / "certs" / "ca.pem", tmp_path / "certs" / "cert.pem",
        Path.home() / ".docker" / "key.pem", True, True)
    assert box.models_dir == Path("/srv/models") and box.remote and box.address == "gpu-box.lan"
    assert box.gpus == box.gpu_uuids == ("GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", UUID)
    assert cfg.gpu_uuids == {"gpu-box": box.gpus}
    assert (lab.url, lab.address, lab.tls, lab.remote) == ("ssh://me@10.0.0.7:2222", "10.0.0.8", False, True)
    assert (sock.address, sock.remote, sock.models_dir) == ("127.0.0.1", False, None)
    big, small = cfg.profile("big"), cfg.profile("small")
    assert big.engine == "gpu-box" and big.models_dir == Path("/srv/models")  # the engine's
    assert small.models_dir == Path("/other/models")  # its own, on that host, as written
    assert cfg.engine_of(big) is box
    assert box.to_dict()["tls"] is True and box.to_dict()["models_dir"] == "/srv/models"
    assert not [w for w in cfg.warnings if "engine" in w and "TLS" in w]


def test_the_engines_models_dir_wins_over_defaults_and_the_profiles_own_wins_over_both() -> None:
    cfg = parse("""
        [defaults]
        models_dir = /models
        [engine other]
        url = unix:///run/other.sock
        models_dir = /other
        [a]
        model = a.gguf
        engine = other
        [b]
        model = b.gguf
        engine = other
        models_dir = /mine
        [c]
        model = c.gguf
    """)
    assert [cfg.profile(p).models_dir for p in "abc"] == [Path("/other"), Path("/mine"), Path("/models")]


def test_local_may_be_redefined() -> None:
    cfg = parse("""
        [engine local]
        url = unix:///run/user/1000/docker.sock
        gpus = 0, 1
        models_dir = /models
        [a]
        model = a.gguf
        gpus = 1
    """)
    local = cfg.engines["local"]
    assert (local.url, local.gpus, local.gpu_uuids) == ("unix:///run/user/1000/docker.sock", ("0", "1"), ())
    assert cfg.profile("a").models_dir == Path("/models")
    assert list(cfg.engines) == ["local"]


def test_an_engine_section_is_not_a_profile_and_engine_alone_still_is() -> None:
    cfg = parse("[engine]\nmodel = e.gguf\n[engine box]\nurl = unix:///run/box.sock\n")
    assert list(cfg.profiles) == ["engine"]
    assert list(cfg.engines) == ["local", "box"]


@pytest.mark.parametrize(("header", "expect"), [
    ("engine Box", "an engine section is [engine NAME], NAME a slug"),
    ("engine a b", "an engine section is [engine NAME]"),
])
def test_a_bad_engine_header_says_how_to_write_one(header: str, expect: str) -> None:
    err = error(f"[{header}]\nurl = unix:///x\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.section, err.key) == (1, header, None)
    assert expect in err.message


@pytest.mark.parametrize(("url", "expect"), [
    ("http://box:2375", "must start with unix://, tcp:// or ssh://"),
    ("box:2376", "must start with unix://, tcp:// or ssh://"),
    ("tcp://box", "needs a port"),
    ("tcp://box:notaport", "is not a valid URL"),
    ("tcp://me@box:2376", "tcp:// takes no user"),
    ("tcp://box:2376/path", "must not have a path"),
    ("tcp://box:2376?x=1", "must not have a '?' or '#' part"),
    ("tcp://:2376", "has no host"),
    ("ssh://me:secret@box", "carries a password"),
    ("ssh://me@box:0", "port 0 is not a port"),
    ("unix://docker.sock", "absolute socket path"),
    ("unix:///run/docker sock", "contains a space"),
])
def test_a_bad_url_names_the_line_and_the_valid_forms(url: str, expect: str) -> None:
    text = f"[engine box]\nmodels_dir = /m\nurl = {url}\n[a]\nmodel = a.gguf\n"
    err = error(text)
    assert (err.line, err.section, err.key) == (3, "engine box", "url")
    assert expect in err.message
    assert str(err).startswith(f"{CONF}:3: [engine box] url: ")


def test_an_unknown_engine_key_lists_the_valid_ones() -> None:
    err = error("[engine box]\nurl = unix:///x\nmodel_dir = /m\n[a]\nmodel = a.gguf\n")
    assert (err.line, err.section, err.key) == (3, "engine box", "model_dir")
    assert "did you mean 'models_dir'?" in err.message
    assert "valid keys: url, tls_ca, tls_cert, tls_key, tls_verify, models_dir, gpus, address" in err.message


@pytest.mark.parametrize(("lines", "key", "expect"), [
    ("url = ssh://me@box\ntls_ca = ca.pem", "tls_ca", "apply to a tcp:// url only"),
    ("url = unix:///x\ntls_verify = false", "tls_verify", "apply to a tcp:// url only"),
    ("tls_ca = ca.pem", "tls_ca", "apply to a tcp:// url only"),
    ("url = tcp://box:2376\ntls_cert = c.pem\ntls_key = k.pem", "tls_cert",
     "set all of tls_ca, tls_cert, tls_key or none; missing: tls_ca"),
    ("url = tcp://box:2376\ntls_verify = perhaps", "tls_verify", "'perhaps' is not a boolean"),
    ("url = unix:///x\ngpus = 0, GPU-ab12", "gpus", "mixes indices and UUIDs"),
    ("url = unix:///x\ngpus = all", "gpus", "is not a GPU index"),
    ("url = unix:///x\naddress = not a host", "address", "is not a host name or an IP address"),
    ("url = ssh://me@box\nmodels_dir = srv/models", "models_dir", "must be an absolute path on the engine"),
    ("url = ssh://me@box\nmodels_dir = ~/models", "models_dir", "must be an absolute path"),
    ("url = ssh://me@box\nmodels_dir = /etc", "models_dir", "is a system directory"),
    ("url = unix:///x\nmodels_dir = /", "models_dir", "is a system directory"),
])
def test_bad_engine_values_name_file_line_key(lines: str, key: str, expect: str) -> None:
    text = f"[engine box]\n{lines}\n[a]\nmodel = a.gguf\n"
    err = error(text)
    assert (err.section, err.key) == ("engine box", key)
    assert err.line == line_of(text, f"{key} =")
    assert expect in err.message


def test_a_profile_on_a_remote_engine_needs_a_models_dir_on_that_host() -> None:
    text = ("[defaults]\nmodels_dir = /models\n[engine box]\nurl = ssh://me@box\n"
            "[a]\nmodel = a.gguf\nengine = box\n")
    err = error(text)
    assert (err.line, err.section, err.key) == (2, "defaults", "models_dir")
    assert "set models_dir (the directory on that host) in [engine box]" in err.message
    err = error("[engine box]\nurl = ssh://me@box\n[a]\nmodel = a.gguf\nengine = box\nmodels_dir = m\n")
    assert (err.line, err.section, err.key) == (6, "a", "models_dir")
    assert "absolute path on the engine's host" in err.message


def test_gpus_an_engine_does_not_declare_are_an_error() -> None:
    text = "[engine box]\nurl = unix:///x\ngpus = 0, 1\n[a]\nmodel = a.gguf\nengine = box\ngpus = 1, 2\n"
    err = error(text)
    assert (err.line, err.section, err.key) == (7, "a", "gpus")
    assert "GPU 2 is not among engine box's declared gpus (0, 1)" in err.message
    uuids = f"[engine box]\nurl = unix:///x\ngpus = {UUID}\n[a]\nmodel = a.gguf\nengine = box\n"
    assert parse(uuids + "gpus = 0\n").profile("a").gpus == ("0",)
    assert parse(uuids + f"gpus = {UUID}\n").profile("a").gpus == (UUID,)
    assert "GPU 1 is not among" in error(uuids + "gpus = 1\n").message
    assert "GPU GPU-ab is not among" in error(uuids + "gpus = GPU-ab\n").message


def test_risky_engine_settings_are_warnings() -> None:
    cfg = parse("""
        [engine plain]
        url = tcp://10.0.0.7:2375
        models_dir = /m
        [engine noverify]
        url = tcp://box:2376
        tls_ca = ca.pem
        tls_cert = cert.pem
        tls_key = key.pem
        tls_verify = false
        models_dir = /m
        [engine loop]
        url = tcp://127.0.0.1:2375
        [a]
        model = a.gguf
    """)
    assert cfg.warnings == (
        f"{CONF}:2: [engine plain] url: tcp://10.0.0.7:2375 without TLS: anyone who reaches that port "
        "controls the Docker Engine (root on that host); set tls_ca, tls_cert and tls_key",
        f"{CONF}:9: [engine noverify] tls_verify: false: the engine's certificate is not checked, so anyone "
        "in between can pose as it",
    )


def test_a_loopback_port_on_a_remote_engine_is_a_warning() -> None:
    text = """
        [engine box]
        url = ssh://me@box
        models_dir = /m
        [engine tunnel]
        url = ssh://me@box
        models_dir = /m
        address = 127.0.0.1
        [a]
        model = a.gguf
        engine = box
        [b]
        model = b.gguf
        engine = tunnel
    """
    cfg = parse(text)
    assert len(cfg.warnings) == 1
    assert cfg.warnings[0].startswith(f"{CONF}:{line_of(text, 'engine = box')}: [a] engine: engine box is "
                                      "reached at box, but the port is published on 127.0.0.1")


def test_the_host_warning_says_auto_for_an_auto_port() -> None:
    cfg = parse("[a]\nmodel = a.gguf\nhost = 0.0.0.0\nport = auto\n")
    assert "reachable from other machines on port auto" in cfg.warnings[0]
