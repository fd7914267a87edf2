"""Metrics sinks: `metrics.jsonl` (one JSON object per logged step) and TensorBoard events.

A job's processes all log the same (global) metrics, so only process 0 writes them; the
others' writers do nothing, and the workdir holds one curve with no repeated lines."""
import json
import os

from tensorboardX import SummaryWriter

from mgen_jax.parallel.distributed import is_coordinator


class MetricsWriter:
    def __init__(self, workdir: str, phase: str, *, active: bool | None = None):
        """active: whether this process writes (default: process 0 only)."""
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.phase = phase
        self.active = is_coordinator() if active is None else active
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard", phase)) if self.active else None

    def truncate_after(self, step: int) -> None:
        """On resume, drop this phase's lines logged after the restored checkpoint, so the
        curve continues the interrupted run instead of repeating steps."""
        if not self.active or not os.path.exists(self.path):
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
        if not self.active:
            return
        rec = {"phase": self.phase, "step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        for k, v in metrics.items():
            self.tb.add_scalar(f"{self.phase}/{k}", float(v), step)

    def image(self, tag: str, image, step: int, caption: str = "") -> None:
        """An HWC uint8 image to TensorBoard under <phase>/<tag> (the caption as a text entry)."""
        if not self.active:
            return
        self.tb.add_image(f"{self.phase}/{tag}", image, step, dataformats="HWC")
        if caption:
            self.tb.add_text(f"{self.phase}/{tag}", caption, step)

    def close(self) -> None:
        """Flush and close the event file (again: nothing)."""
        if self.active and self.tb is not None:
            self.tb.close()
            self.tb = None
