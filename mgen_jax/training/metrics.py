"""Metrics sinks: `metrics.jsonl` (one JSON object per logged step) and TensorBoard events."""
import json
import os

from tensorboardX import SummaryWriter


class MetricsWriter:
    def __init__(self, workdir: str, phase: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.phase = phase
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard", phase))

    def truncate_after(self, step: int) -> None:
        """On resume, drop this phase's lines logged after the restored checkpoint, so the
        curve continues the interrupted run instead of repeating steps."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [ln for ln in f if ln.strip()]
        kept = []
        for ln in lines:
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
            if not (rec.get("phase") == self.phase and rec.get("step", 0) > step):
                kept.append(json.dumps(rec) + "\n")
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> None:
        rec = {"phase": self.phase, "step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        for k, v in metrics.items():
            self.tb.add_scalar(f"{self.phase}/{k}", float(v), step)

    def close(self) -> None:
        self.tb.close()
