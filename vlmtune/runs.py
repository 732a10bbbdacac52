"""A finished training run, loaded to answer with: what test.py and demo.py both read of a run folder.

One loader for both, so the demo answers exactly as test.py does: the same run_config.json, processor limits,
device, dtype and adapter. A folder without run_config.json (train.py writes it last) is an unfinished run or none.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .modeling import check_model_dir, inference_placement, load_model, load_processor, load_trained, model_info
from .tasks import TASKS, Task


@dataclass
class LoadedRun:
    run_dir: Path
    run: dict
    """run_config.json as train.py wrote it (data, model, tune, swanlab)."""
    task: Task
    processor: object
    model: torch.nn.Module
    """The fine-tuned model on `device`: base + adapter (disable_adapter() gives the base), or a fully tuned one."""
    has_adapter: bool
    device: str
    dtype: torch.dtype
    info: dict
    """vlmtune.modeling.model_info: what the task needs of the model (box convention, image limits)."""

    def load_base(self) -> torch.nn.Module:
        """The base model alone on `device`, for a fully fine-tuned run (a LoRA run has it under its adapter)."""
        model_cfg = self.run["model"]
        print(f"loading the base model {model_cfg['model_dir']} (the run is fully fine-tuned)", flush=True)
        return load_model(model_cfg["model_dir"], self.dtype, model_cfg["trust_remote_code"]).to(self.device)


def load_run(run_dir, script: str = "test.py") -> LoadedRun:
    """The run in `run_dir` ready to answer, saying what it loads as it goes; stops with one message for a missing
    or unfinished run and a base model that is gone or incomplete."""
    run_dir = Path(run_dir)
    if not (run_dir / "run_config.json").is_file():
        raise SystemExit(f"No run_config.json in {run_dir}: train first (`sh train.sh`) or pass --run_dir.")
    try:
        run = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
        task, model_cfg, trust = TASKS[run["data"]["task"]], run["model"], run["model"]["trust_remote_code"]
    except (ValueError, KeyError, TypeError) as error:  # not JSON, or not train.py's
        raise SystemExit(f"{script}: {run_dir / 'run_config.json'} is not a run_config.json of train.py ({error!r}): "
                         "train again (`sh train.sh`) or pass another --run_dir.") from None
    check_model_dir(model_cfg["model_dir"], trust)  # the base model: still there, whole, a vision-language model
    print(f"loading the processor of {model_cfg['model_dir']}", flush=True)
    processor = load_processor(model_cfg["model_dir"], model_cfg["image_min_pixels"], model_cfg["image_max_pixels"],
                               trust)
    device, dtype = inference_placement()
    print(f"answering on {device} in {str(dtype).removeprefix('torch.')}")
    print(f"loading the fine-tuned model of {run_dir} ({task.name})", flush=True)
    model, has_adapter = load_trained(str(run_dir), model_cfg["model_dir"], trust, dtype)
    model.to(device)
    return LoadedRun(run_dir, run, task, processor, model, has_adapter, device, dtype, model_info(model, processor))
