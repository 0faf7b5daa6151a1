"""The state file of a running `pixeltrack serve` (DATA/serve.json, mode 0600): how its commands reach it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "serve.json"  # where a running `serve` says how to reach it (mode 0600)
TRIGGER_FOLDERS = ("triggers", "recipient-events")
"""Where in its data folder `serve` keeps the files of its TriggerService and RecipientEventService."""


@dataclass(frozen=True, slots=True)
class ServeInfo:
    edge_url: str
    dashboard_url: str
    api_url: str
    api_key: str
    admin_url: str
    admin_token: str
    pid: int
    # The tenants this serve answers for (from its own tenants file, read at its start); None in the
    # state file of a serve that did not say. `forget` asks here, not its caller's environment.
    tenants: list[str] | None = None

    @classmethod
    def read(cls, data_dir: Path) -> ServeInfo | None:
        """The running server's info, or None when no live `serve` owns the folder."""
        try:
            info = cls(**json.loads((data_dir / STATE_FILE).read_text()))
            os.kill(info.pid, 0)
        except (OSError, ValueError, TypeError):
            return None
        return info

    def write(self, data_dir: Path) -> Path:
        """Writes the state file (mode 0600: it holds the admin token and the API key); its path."""
        state = data_dir / STATE_FILE
        fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)
        return state


def chdb_dsn(data_dir: Path) -> str:
    """The DSN of a serve data folder's chDB."""
    return f"chdb://{(data_dir / 'chdb').resolve()}"


def serve_owning(dsn: str) -> ServeInfo | None:
    """The running serve whose chDB folder `dsn` names (chdb://DATA/chdb), or None: any other DSN, or no
    live serve there."""
    if not dsn.startswith("chdb://"):
        return None
    path = Path(dsn[len("chdb://"):]).expanduser()
    return ServeInfo.read(path.parent) if path.name == "chdb" else None
