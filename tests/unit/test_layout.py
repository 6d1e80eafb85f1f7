"""The package layout shows the architecture: imports point one way, with no cycle.

clients -> protocol -> (socket) -> daemon -> core -> runtime / hardware -> config -> util.
Read from the source (ast), so a new import against the arrows fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "llm_mcp"

# What each group may import (besides itself). protocol and wire are the leaves every
# side shares: the wire contract. util is below everything.
ALLOWED: dict[str, set[str]] = {
    "util": {"protocol"},
    "protocol": set(),
    "wire": set(),
    "demo": {"util"},
    "config": {"util"},
    "runtime": {"config", "util"},
    "hardware": {"config", "util", "runtime"},
    "core": {"config", "util", "runtime", "hardware", "protocol", "wire"},
    "daemon": {"core", "config", "util", "runtime", "hardware", "protocol", "wire"},
    # Clients talk to the daemon through the socket only; they may use the pure helpers below
    # the core (config for paths and models.conf, runtime's text about Docker, hardware's fit).
    "clients": {"protocol", "wire", "util", "config", "runtime", "hardware"},
    "__main__": {"clients"},
    "__init__": set(),
}
# Deliberate exceptions, each with its reason.
EXCEPTIONS = {
    ("clients/cli.py", "daemon"): "`llm-mcp daemon` runs the daemon in this process",
    ("clients/cli.py", "core"): "`logs -f` filters lines as the daemon does (core/log_query's bounded regex)",
}


def group_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_groups(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "llm_mcp" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_every_import_follows_the_arrows() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        group = group_of(path)
        rel = str(path.relative_to(ROOT))
        for target in imported_groups(path) - {group, "__version__"}:
            if target not in ALLOWED.get(group, set()) and (rel, target) not in EXCEPTIONS:
                wrong.append(f"llm_mcp/{rel} ({group}) imports llm_mcp.{target}")
    assert wrong == [], "\n".join(wrong)


def test_the_groups_have_no_cycle() -> None:
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in ALLOWED.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [g for g in ALLOWED if reaches(g, g, set())] == []


def test_no_module_sits_outside_a_group() -> None:
    loose = sorted(p.name for p in ROOT.glob("*.py")) + sorted(
        p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert set(loose) <= {f"{g}.py" for g in ALLOWED} | set(ALLOWED) | {"__pycache__"}, loose


# The monitor is a client: it talks to the daemon through the socket client only, and
# borrows pure helpers (no I/O, no Docker, no NVML) for what it shows.
MONITOR_MAY_IMPORT = {
    "llm_mcp", "llm_mcp.clients.client", "llm_mcp.protocol", "llm_mcp.wire", "llm_mcp.config",
    "llm_mcp.config.paths", "llm_mcp.util.terminal_text", "llm_mcp.hardware.levels",
    "llm_mcp.runtime.failure_lines", "llm_mcp.util", "llm_mcp.util.durations",
}


def test_the_monitor_imports_only_the_client_the_wire_and_pure_helpers() -> None:
    wrong = []
    for path in sorted((ROOT.parent / "monitor").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_mcp"):
                modules = [node.module] if node.module != "llm_mcp" and node.module != "llm_mcp.config" else [
                    f"{node.module}.{a.name}" if a.name != "__version__" else node.module for a in node.names]
                wrong += [f"{path.name}: {m}" for m in modules if m not in MONITOR_MAY_IMPORT]
            elif isinstance(node, ast.Import):
                wrong += [f"{path.name}: {a.name}" for a in node.names
                          if a.name.startswith("llm_mcp") and a.name not in MONITOR_MAY_IMPORT]
    assert wrong == [], wrong
