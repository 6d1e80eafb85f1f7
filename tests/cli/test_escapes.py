"""Terminal escapes from a container's log never reach the terminal; `--json` keeps them, encoded.

No stand-in: the real llama-server at `-lv 4` prints a model's `general.name` as it is, so a
GGUF file whose name holds an OSC title and a clear-screen sequence puts them in its log. With
`--cache-type-k q8_0` (head size 16 refuses it) the load then fails, and those lines are among a
failed switch's log lines too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from llm_mcp.demo.tiny_model import write_tiny_model
from tests.conftest import FAKE_IMAGE, Setup, real_profiles
from tests.daemons import Daemons, cli

pytestmark = [pytest.mark.docker]

ESC = "\x1b"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J"  # retitle the terminal, then clear it
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J"


def _ok(done: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    return done


def test_a_real_servers_escape_sequences_are_shown_not_obeyed(setup: Setup, daemons: Daemons, real_image: str,
                                                              tmp_path: Path) -> None:
    hostile = tmp_path / "hostile-models"
    hostile.mkdir()
    write_tiny_model(hostile / "evil.gguf", seed=0, n_layer=2, name=f"tiny {HOSTILE} evil")
    setup.write(real_profiles(real_image) + f"\n[evil]\nname = Evil\nmodel = evil.gguf\n"
                f"image = {real_image}\nmodels_dir = {hostile}\nctx_size = 256\nn_gpu_layers = 0\n"
                "flags = --threads 1 -lv 4 --cache-type-k q8_0\n")
    _ok(cli(setup, "switch", "real-a", timeout=120))
    failed = _ok(cli(setup, "switch", "evil", timeout=120), 1)
    assert ESC not in failed.stdout + failed.stderr
    assert f"general.name          = tiny {SHOWN} evil" in failed.stdout, failed.stdout  # shown, as text
    why = failed.stdout.split("the log lines that say why:\n", 1)[1].splitlines()[0]
    assert "K cache type q8_0 with block size 32 does not divide" in why, failed.stdout  # the cause first

    logs = _ok(cli(setup, "logs", "-n", "500", "--run", "all"))
    assert ESC not in logs.stdout and SHOWN in logs.stdout

    raw = _ok(cli(setup, "logs", "-n", "500", "--run", "all", "--json"))
    assert ESC not in raw.stdout  # JSON-encoded as \u001b ...
    texts = [line["text"] for line in json.loads(raw.stdout)["lines"]]
    assert any(HOSTILE in text for text in texts)  # ... and decodes to the raw bytes

    job = json.loads(_ok(cli(setup, "switch", "evil", "--json", timeout=120), 1).stdout)
    assert any(HOSTILE in line for line in job["log_lines"])


def test_a_bidi_override_from_a_container_is_shown_as_an_escape(setup: Setup, daemons: Daemons) -> None:
    setup.write(f"\n[liar]\nname = Liar\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                "flags = --fake-say 'file gnp.\u202eexe'\n")
    _ok(cli(setup, "switch", "liar"))
    logs = _ok(cli(setup, "logs", "-n", "200")).stdout
    assert "\u202e" not in logs and "file gnp.\\u202eexe" in logs
    raw = json.loads(_ok(cli(setup, "logs", "-n", "200", "--json")).stdout)
    assert any("file gnp.\u202eexe" in line["text"] for line in raw["lines"])
