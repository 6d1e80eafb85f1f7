"""A small record of a switch that is stopping a container, for the daemon after us.

Written (0600, never through a symlink) before the previous model is stopped and
removed once the new container exists or the job ends. If the daemon is killed in
between (kill -9, OOM), the next daemon finds it and can say what happened: "the
previous daemon died while switching from A to B" instead of a silent "stopped".
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llm_mcp.util.safe_files import open_private, write_atomic

log = logging.getLogger("llm_mcp.intent")


@dataclass(frozen=True, slots=True)
class SwitchIntent:
    container: str  # the container being stopped
    from_profile: str | None
    from_name: str
    to_profile: str | None  # None: a stop, not a switch
    to_name: str
    pid: int
    time: float

    def sentence(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.time))
        if self.to_profile is None:
            doing = f"stopping {self.from_name or self.from_profile}"
        else:
            doing = (f"switching from {self.from_name or self.from_profile} "
                     f"to {self.to_name or self.to_profile}")
        return f"the previous daemon (pid {self.pid}) died at {when} while {doing}"


class IntentFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, intent: SwitchIntent) -> None:
        """Best effort: a state dir that cannot be written only loses this explanation."""
        try:
            write_atomic(self.path, json.dumps(asdict(intent)) + "\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)

    def read(self) -> SwitchIntent | None:
        try:
            with open_private(self.path, "r") as handle:
                data = json.load(handle)
            return SwitchIntent(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return None

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", self.path, exc)
