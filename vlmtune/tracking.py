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


def tracking_callback(project: str, experiment_name: str, mode: str):
    """SwanLab's own Trainer callback, made so that tracking never stops a run: when SwanLab cannot start (its server
    unreachable, an API key it refuses), a warning names the cause and the run logs in offline mode instead; when
    even that fails, the run goes on without SwanLab. Training for hours and losing it to the tracker is worse than
    a missing chart."""
    from swanlab.integration.transformers import SwanLabCallback

    class NeverFatalSwanLabCallback(SwanLabCallback):
        # Every hook of SwanLabCallback calls setup() first and logs only while a SwanLab run exists, so a disabled
        # callback logs nothing.
        disabled = False

        def setup(self, args, state, model=None):
            if self.disabled:
                return
            try:
                super().setup(args, state, model)
            except Exception as error:  # swanlab raises AuthenticationError, network errors, ...
                cause = f"{type(error).__name__}: {error}"
                if self._init_kwargs.get("mode") == "offline":
                    print(f"warning: SwanLab could not start ({cause}); training goes on without it")
                    self.disabled = True
                    return
                print(f"warning: SwanLab could not start in {self._init_kwargs.get('mode')} mode ({cause}); "
                      "logging offline to swanlog/ instead (`swanlab sync` uploads it later)")
                self._init_kwargs["mode"] = os.environ["SWANLAB_MODE"] = "offline"
                self.setup(args, state, model)

    return NeverFatalSwanLabCallback(project=project, mode=mode, experiment_name=experiment_name)
