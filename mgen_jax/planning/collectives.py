"""Collectives of a compiled program, by kind: how many run per step and how many bytes they move.

Read from the compiled HLO text (planning/hlo.py), so a collective inside the scan over layers
counts once per layer (times the loop's trip count), not once.

Bytes are per device and per step: for each collective, the size of the larger of its input and
output buffers (an all-gather's gathered output, a reduce-scatter's unreduced input, an
all-reduce's buffer), times the number of times it runs.

TPU lowerings that change a collective's HLO kind are counted by what they do:
  * a reduce-scatter fused into an "all-reduce-scatter" fusion (an all-reduce whose result is
    sliced in place) counts as a reduce-scatter;
  * an all-gather lowered as an all-reduce of a zero buffer holding the local shard (an all-reduce
    whose operands all come from dynamic-update-slices; the TPU compiler does this, e.g., for
    FSDP weight gathers over large multi-dimensional device groups) counts as an all-gather, and
    is also reported under "all-gather"."lowered_as_all_reduce".
"""
import re

from mgen_jax.planning.hlo import HloModule, analyze, operand_shape, shape_bytes, split_top_level

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_OPCODES = {
    "all-gather": "all-gather", "all-gather-start": "all-gather",
    "reduce-scatter": "reduce-scatter",
    "all-reduce": "all-reduce", "all-reduce-start": "all-reduce",
    "all-to-all": "all-to-all", "ragged-all-to-all": "all-to-all",
    "collective-permute": "collective-permute", "collective-permute-start": "collective-permute",
}


def _result_bytes(inst) -> float:
    if inst.opcode.endswith("-start") and inst.shape.startswith("("):
        # Async start: (operands, outputs[, contexts]); the outputs are the second element.
        parts = split_top_level(inst.shape[1:-1])
        if len(parts) >= 2:
            return shape_bytes(parts[1])
    return shape_bytes(inst.shape)


def _from_dynamic_update_slice(module: HloModule, comp, operand: str, depth: int = 0) -> bool:
    """Whether an operand is (a bitcast/copy of) a dynamic-update-slice, or a fusion whose root
    is one."""
    inst = comp.by_name.get(operand.strip().split()[-1].lstrip("%"))
    if inst is None or depth > 3:
        return False
    if inst.opcode == "dynamic-update-slice":
        return True
    if inst.opcode in ("bitcast", "copy") and inst.operands:
        return _from_dynamic_update_slice(module, comp, inst.operands[0], depth + 1)
    if inst.opcode == "fusion":
        callee = re.search(r"calls=%?([\w.\-]+)", inst.attrs)
        fused = module.computations.get(callee.group(1)) if callee else None
        root = next((i for i in fused.instructions if i.is_root), None) if fused else None
        return root is not None and root.opcode == "dynamic-update-slice"
    return False


def collectives_summary(module: HloModule | str, top: int = 10) -> dict:
    """{kind: {"count": executions per step, "bytes": per device per step}} for every kind in
    KINDS (zeros included), plus "total" and "largest": the `top` collectives by bytes per step
    (kind, shape, executions, the JAX op that caused them), for finding what dominates."""
    if isinstance(module, str):
        module = analyze(module)
    out = {k: {"count": 0, "bytes": 0.0} for k in KINDS}
    largest = {}
    out["all-gather"]["lowered_as_all_reduce"] = {"count": 0, "bytes": 0.0}
    for comp, inst, mult in module.instructions():
        kind = _OPCODES.get(inst.opcode)
        if kind is None:
            continue
        operand_bytes = sum(shape_bytes(operand_shape(comp, o)) for o in inst.operands)
        size = max(operand_bytes, _result_bytes(inst))
        if kind == "all-reduce" and comp.name.startswith("all-reduce-scatter"):
            kind = "reduce-scatter"
        elif kind == "all-reduce" and inst.operands and all(
                _from_dynamic_update_slice(module, comp, o) for o in inst.operands):
            kind = "all-gather"
            out[kind]["lowered_as_all_reduce"]["count"] += mult
            out[kind]["lowered_as_all_reduce"]["bytes"] += size * mult
        out[kind]["count"] += mult
        out[kind]["bytes"] += size * mult
        op = re.search(r'op_name="([^"]+)"', inst.attrs)
        key = (kind, inst.shape.split("{")[0][:100], op.group(1)[-160:] if op else "")
        entry = largest.setdefault(key, {"kind": kind, "shape": key[1], "op_name": key[2],
                                         "count": 0, "bytes": 0.0})
        entry["count"] += mult
        entry["bytes"] += size * mult
    out["largest"] = sorted(largest.values(), key=lambda e: -e["bytes"])[:top]
    out["total"] = {"count": sum(out[k]["count"] for k in KINDS),
                    "bytes": sum(out[k]["bytes"] for k in KINDS)}
    return out
