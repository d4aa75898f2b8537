"""Live processes of this machine's user: whether a pid still runs, and `Registry`, a per-user folder where
processes announce themselves while they do something the others should know of (training: `recsys.threads`)."""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts: it exists, we may just not signal it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runtime_dir() -> Path:
    """This user's recsys runtime folder: ``$XDG_RUNTIME_DIR/recsys`` (per user, emptied at logout) when that is
    set, else ``<tempdir>/recsys-<user>``; never the data folder or the working directory."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "recsys"
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"recsys-{user}"


class Registry:
    """A folder of ``<pid>.json`` files, one per registered process, holding what it announced. Whoever lists it
    removes the files of processes that are gone (killed before they could unregister)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _own(self) -> Path:
        return self.folder / f"{os.getpid()}.json"  # looked up at each call: a forked child is another pid

    def register(self, info: dict[str, Any]) -> None:
        """Announce (or update) this process with ``info``. The folder and its parent are created private to the
        user; the file is replaced whole, so a reader never sees half of it."""
        self.folder.parent.mkdir(mode=0o700, exist_ok=True)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        own = self._own()
        partial = own.with_name(f".{own.name}.partial")
        partial.write_text(json.dumps({"pid": os.getpid(), **info}))
        os.replace(partial, own)

    def unregister(self) -> None:
        """Remove this process's file (nothing happens when there is none)."""
        self._own().unlink(missing_ok=True)

    def live(self) -> list[int]:
        """Pids of the registered processes that still run; the files of the others are removed."""
        if not self.folder.is_dir():
            return []
        pids = []
        for entry in os.scandir(self.folder):
            stem, _, suffix = entry.name.partition(".")
            if suffix != "json" or not stem.isdigit():
                continue  # another file, or a registration being written
            if alive(int(stem)):
                pids.append(int(stem))
            else:
                Path(entry.path).unlink(missing_ok=True)
        return sorted(pids)
