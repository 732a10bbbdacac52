"""SwanLab: to the cloud when the user is logged in, to the local folder swanlog/ otherwise, never a login prompt.

Without a login, runs are written in SwanLab's 'offline' mode: everything is kept in swanlog/ and `swanlab sync
swanlog/run-...` uploads it later. ('local' mode needs the extra package swanboard just to write the run.)
"""

import os
from pathlib import Path


def swanlab_logged_in() -> bool:
    """Whether SwanLab has an API key: the SWANLAB_API_KEY variable, or the .netrc that `swanlab login` writes.

    Checked here, before SwanLab starts, because SwanLab asks for a key at an interactive prompt when it has none,
    which blocks an unattended run.
    """
    if os.environ.get("SWANLAB_API_KEY"):
        return True
    user_dir = Path(os.environ.get("SWANLAB_ROOT") or os.environ.get("SWANLAB_SAVE_DIR") or Path.home() / ".swanlab")
    return any((folder / ".netrc").is_file() for folder in (Path.cwd() / ".swanlab", user_dir))


def choose_swanlab_mode() -> str:
    """Set SWANLAB_MODE unless the user did: 'online' when logged in, 'offline' otherwise. Returns the mode."""
    if not os.environ.get("SWANLAB_MODE"):
        os.environ["SWANLAB_MODE"] = "online" if swanlab_logged_in() else "offline"
    return os.environ["SWANLAB_MODE"]
