"""SwanLab: to the cloud when the user is logged in, to a local dashboard otherwise, never a login prompt.

Without a login, runs are written in SwanLab's 'local' mode when its dashboard (the swanboard package, `pip install
"swanlab[dashboard]"`, in requirements.txt) is installed: `swanlab watch swanlog` then shows them at
http://127.0.0.1:5092. Without swanboard they are written in 'offline' mode, which no dashboard reads: `swanlab login`
and `swanlab sync swanlog/run-...` upload them later. (Both modes keep everything in swanlog/; a local run's folder
can be synced too.)

test.py logs into the training run's own experiment: train.py records the run (`run_record`) in run_config.json,
and `resume_run` opens that experiment again, in each mode as that mode allows (see there).
"""

import importlib.util
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


def local_dashboard_installed() -> bool:
    """Whether swanboard, SwanLab's local dashboard, is installed: 'local' mode needs it to write a run, and
    `swanlab watch` is it."""
    return importlib.util.find_spec("swanboard") is not None


def choose_swanlab_mode() -> str:
    """Set SWANLAB_MODE unless the user did: 'online' when logged in, else 'local' when the local dashboard is
    installed, else 'offline'. Returns the mode."""
    if not os.environ.get("SWANLAB_MODE"):
        os.environ["SWANLAB_MODE"] = ("online" if swanlab_logged_in() else
                                      "local" if local_dashboard_installed() else "offline")
    return os.environ["SWANLAB_MODE"]


def log_dir() -> str:
    """Where SwanLab writes runs: SWANLAB_LOG_DIR, or swanlog/ in the working folder (SwanLab's own default)."""
    return os.environ.get("SWANLAB_LOG_DIR") or "swanlog"


def mode_note(mode: str) -> str:
    """One line saying where a run of this mode can be seen."""
    notes = {
        "online": "the run's page on swanlab.cn",
        "local": f"no login, so local: `swanlab watch {log_dir()}` shows it at http://127.0.0.1:5092",
        "offline": (f"no login and no local dashboard, so offline: `pip install \"swanlab[dashboard]\"` for a local "
                    f"one (`swanlab watch`), or `swanlab login` and `swanlab sync {log_dir()}/run-...` to upload it"),
        "disabled": "nothing is logged",
    }
    return f"SwanLab mode: {mode} ({notes.get(mode, 'see SwanLab')})"


def run_record(run, project: str) -> dict:
    """What test.py needs to log into this run's experiment again, kept in run_config.json: the run id, the mode,
    the project and the run's folder in swanlog/ (absolute: test.py may run from elsewhere). No key or login."""
    return {"id": run.id, "mode": run.mode, "project": project, "dir": str(Path(run.dir).resolve())}


def tracking_callback(project: str, experiment_name: str, mode: str):
    """SwanLab's own Trainer callback, made so that tracking never stops a run: when SwanLab cannot start (its server
    unreachable, an API key it refuses, a local dashboard of another version), a warning names the cause and the run
    logs in offline mode instead; when even that fails, the run goes on without SwanLab. Training for hours and
    losing it to the tracker is worse than a missing chart. After setup, `run_record` holds `run_record(...)` of the
    run (None where no run started: SwanLab failed, or a process other than the first)."""
    import swanlab
    from swanlab.integration.transformers import SwanLabCallback

    class NeverFatalSwanLabCallback(SwanLabCallback):
        # Every hook of SwanLabCallback calls setup() first and logs only while a SwanLab run exists, so a disabled
        # callback logs nothing.
        disabled = False
        run_record = None

        def setup(self, args, state, model=None):
            if self.disabled:
                return
            try:
                super().setup(args, state, model)
            except Exception as error:  # swanlab raises AuthenticationError, network errors, ImportError, ...
                cause = f"{type(error).__name__}: {error}"
                if self._init_kwargs.get("mode") == "offline":
                    print(f"warning: SwanLab could not start ({cause}); training goes on without it")
                    self.disabled = True
                    return
                print(f"warning: SwanLab could not start in {self._init_kwargs.get('mode')} mode ({cause}); "
                      f"logging offline to {log_dir()}/ instead (`swanlab sync` uploads it later)")
                self._init_kwargs["mode"] = os.environ["SWANLAB_MODE"] = "offline"
                self.setup(args, state, model)
                return
            if self.run_record is None and swanlab.has_run():  # get_run() raises where there is none
                self.run_record = run_record(swanlab.get_run(), project)

        def on_train_end(self, args, state, control, **kwargs):
            # SwanLab would finish the run at exit only: it shows 'running' while the model saves, and test.py in
            # the same process (a notebook, the tests) could start none
            super().on_train_end(args, state, control, **kwargs)
            if self.run_record is not None and swanlab.has_run() and swanlab.get_run().id == self.run_record["id"]:
                swanlab.finish()

    return NeverFatalSwanLabCallback(project=project, mode=mode, experiment_name=experiment_name)


def resume_run(record: dict, config: dict):
    """Start a SwanLab run that logs into the experiment of the training run `record` describes (`run_record`).

    - online: SwanLab's own resume (`id=`, `resume="allow"`).
    - local: swanlab 0.10 resumes no local experiment (every local run is a new one), so the run is started
      offline, beside the training's, with a `LocalExperimentWriter` that adds what it logs to the training's
      dashboard experiment.
    - offline: the same run id, so that `swanlab sync` of both folders (which resumes by id) makes one experiment.

    Raises what SwanLab raises; the caller decides what a failure costs.
    """
    import swanlab

    mode, folder = record["mode"], Path(record["dir"])
    common = dict(project=record["project"], id=record["id"], config=config)
    if mode == "online":
        return swanlab.init(mode="online", resume="allow", **common)
    if mode == "local":
        writer = local_experiment_writer(folder)  # before init: a missing experiment fails here, not in a callback
        return swanlab.init(mode="offline", log_dir=str(folder.parent), callbacks=[writer], **common)
    return swanlab.init(mode="offline", log_dir=str(folder.parent), **common)


def local_experiment_writer(folder: Path):
    """A SwanLab callback that writes a run's charts into the existing local-dashboard experiment of `folder` (a
    run folder of 'local' mode), as SwanLab's own local writer (swanlab.deprecated.local.LocalCallbacker) writes a
    new one: swanlab 0.10 has no resume for local mode, and two experiments per run (training, test) are what this
    replaces. What it adds continues the experiment's chart folders; a chart already there (test.py run again) gets
    the new value at the same step in place of the old.

    Raises FileNotFoundError when the folder or its dashboard database is gone, LookupError when the database has no
    such experiment.
    """
    import json

    from swanboard.db import connect
    from swanboard.db.models import Experiment, Tag
    from swanlab.deprecated.local import LocalCallbacker, _MetricContext

    swanlog = folder.parent
    if not (folder.is_dir() and (swanlog / "runs.swanlab").is_file()):
        raise FileNotFoundError(f"no local SwanLab run at {folder} (or no {swanlog / 'runs.swanlab'})")
    connect(path=str(swanlog), autocreate=False)
    experiment = Experiment.filter(Experiment.run_id == folder.name).first()
    if experiment is None:
        raise LookupError(f"{swanlog / 'runs.swanlab'} has no experiment {folder.name}")
    tags = list(Tag.filter(Tag.experiment_id == experiment.id))

    class LocalExperimentWriter(LocalCallbacker):
        @property
        def name(self) -> str:
            return "vlmtune-local-experiment-writer"

        def on_run_initialized(self, run_dir, path, settings, *args, **kwargs):
            # LocalCallbacker's fields, pointed at the training's folder and experiment instead of new ones
            self._written_media = Path(run_dir) / "media"  # where SwanLab put this run's files
            self._run_dir = folder
            self._swanlog_dir, self._console_dir = folder / "logs", folder / "console"
            self._media_dir = folder / "media"
            self.exp = Experiment.get(id=experiment.id)
            self.exp.status = 0  # running again: LocalCallbacker writes only to a running experiment
            self.exp.save()
            for tag in tags:  # the charts already there keep their folders; their steps are overwritten in place
                context = _MetricContext(tag.name, tag.folder, scalar=tag.type == "line")
                for log in sorted((self._swanlog_dir / tag.folder).glob("*.log")):
                    for line in log.read_text(encoding="utf-8").splitlines():
                        step = json.loads(line)["index"]
                        context.steps.add(step)
                        context._step_epochs[step] = len(context.steps)
                self._metrics[tag.name] = context
                self._created_columns.add(tag.name)
            # a new chart takes the next free folder (an ECharts chart has a folder but no tag: not in the dashboard)
            folders = [int(tag.folder) for tag in tags] + [int(f.name) for f in self._swanlog_dir.glob("[0-9]*")]
            self._next_kid = 1 + max(folders, default=0)
            self._dashboard_ready = True

        def on_media_flush(self, media_records, *args, **kwargs):
            # LocalCallbacker links a medium from its own run's media/ folder: bring this run's files there first
            import shutil

            for record in media_records:
                medium = self._medium_name(record)
                for item in record.value.items:
                    source = self._written_media / medium / item.filename
                    target = self._media_dir / medium / item.filename
                    if source.is_file() and not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(source, target)
            super().on_media_flush(media_records, *args, **kwargs)

    return LocalExperimentWriter()
