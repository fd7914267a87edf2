"""Orbax checkpoints of one training phase: train state, frozen inputs, data-iterator state and
JSON metadata, saved together per step. Orbax writes each step to a temporary directory and
renames it when complete, so a run killed at any moment leaves only whole checkpoints."""
import os

import grain
import orbax.checkpoint as ocp


class PhaseCheckpointer:
    def __init__(self, directory: str, *, keep: int = 2):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=False))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, *, frozen=None, iterator=None, meta: dict | None = None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if frozen is not None:
            items["frozen"] = ocp.args.StandardSave(frozen)
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        if meta is not None:
            items["meta"] = ocp.args.JsonSave(meta)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state, *, abstract_frozen=None, iterator=None):
        """Restores straight into the shardings carried by the abstract pytrees. Returns
        (state, frozen, meta); the iterator, if given, is rewound in place."""
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if abstract_frozen is not None:
            items["frozen"] = ocp.args.StandardRestore(abstract_frozen)
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return out["state"], out.get("frozen") if abstract_frozen is not None else None, out["meta"]

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
