"""A small reader for compiled HLO text (`compiled.as_text()`): computations, instructions, the
call graph, and how many times each computation runs per step.

XLA's own cost analysis counts a while loop's body once. Here every computation gets a
multiplicity: the sum over its call sites of the caller's multiplicity, times the loop's trip
count for a while body. Trip counts come from the loop's `known_trip_count` backend config when
the compiler wrote one, or else from its condition (`i < N` against a constant, with the initial
value of `i` traced through copies to a constant).
"""
import dataclasses
import math
import re

import numpy as np

_DTYPE_BYTES = {
    "pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4,
    "s64": 8, "u64": 8, "f16": 2, "bf16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16,
    "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3b11fnuz": 1, "f8e4m3fnuz": 1, "f8e5m2fnuz": 1,
    "f8e4m3": 1, "f8e3m4": 1, "f8e8m0fnu": 1, "f4e2m1fn": 0.5, "token": 0,
}
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")
_COMMENT = re.compile(r"/\*.*?\*/")
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_CALLEE = re.compile(r"\b(calls|to_apply|body|condition|true_computation|false_computation)"
                     r"=%?([\w.\-]+)")
_CALLEE_LIST = re.compile(r"\b(branch_computations|called_computations)=\{([^}]*)\}")


@dataclasses.dataclass
class Instruction:
    name: str
    shape: str          # result type text, e.g. "bf16[64,512]{1,0}" or "(s32[], f32[8])"
    opcode: str
    operands: list      # operand texts (names, possibly with inline types)
    attrs: str          # everything after the operand list
    is_root: bool = False


@dataclasses.dataclass
class Computation:
    name: str
    is_entry: bool
    instructions: list = dataclasses.field(default_factory=list)
    by_name: dict = dataclasses.field(default_factory=dict)


def _matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index just past the bracket matching text[start] (== open_ch)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def split_top_level(text: str) -> list:
    """Split on commas at bracket depth 0."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _parse_instruction(line: str) -> Instruction | None:
    m = _INSTRUCTION.match(line)
    if not m:
        return None
    is_root, name, rest = bool(m.group(1)), m.group(2), _COMMENT.sub("", m.group(3)).strip()
    if rest.startswith("("):
        end = _matching(rest, 0, "(", ")")
    else:
        end = rest.find(" ")
        end = len(rest) if end < 0 else end
    shape, rest = rest[:end], rest[end:].strip()
    paren = rest.find("(")
    if paren < 0:
        return None
    opcode = rest[:paren].strip()
    close = _matching(rest, paren, "(", ")")
    operands = split_top_level(rest[paren + 1:close - 1])
    return Instruction(name, shape, opcode, operands, rest[close:], is_root)


def parse_hlo(text: str) -> dict:
    """{computation name: Computation} of an HLO module's text."""
    comps, current = {}, None
    for line in text.splitlines():
        if current is None:
            m = _HEADER.match(line.strip())
            if m and not line.startswith(" "):
                current = Computation(m.group(2), bool(m.group(1)))
                comps[current.name] = current
            continue
        if line.strip() == "}":
            current = None
            continue
        inst = _parse_instruction(line)
        if inst is not None:
            current.instructions.append(inst)
            current.by_name[inst.name] = inst
    return comps


def array_shapes(shape_text: str) -> list:
    """[(dtype, dims)] of every array in a (possibly tuple) type."""
    return [(m.group(1), tuple(int(d) for d in m.group(2).split(",") if d))
            for m in _ARRAY.finditer(shape_text) if m.group(1) in _DTYPE_BYTES]


def shape_bytes(shape_text: str) -> float:
    return sum(_DTYPE_BYTES[dt] * math.prod(dims) for dt, dims in array_shapes(shape_text))


def operand_shape(comp: Computation, operand: str) -> str:
    """The type of an operand: inline ("bf16[8]{0} %x") or looked up by name."""
    if _ARRAY.search(operand.split("%")[0] if "%" in operand else operand):
        return operand
    name = operand.strip().split()[-1].lstrip("%")
    inst = comp.by_name.get(name)
    return inst.shape if inst is not None else ""


def _resolve_constant(comp: Computation, operand: str, depth: int = 0):
    name = operand.strip().split()[-1].lstrip("%")
    inst = comp.by_name.get(name)
    if inst is None or depth > 8:
        return None
    if inst.opcode == "constant":
        try:
            return int(inst.operands[0])
        except (ValueError, IndexError):
            return None
    if inst.opcode in ("copy", "bitcast", "convert", "reshape") and inst.operands:
        return _resolve_constant(comp, inst.operands[0], depth + 1)
    return None


def while_trip_count(comps: dict, parent: Computation, inst: Instruction):
    """Trip count of a while instruction, or None when it cannot be read."""
    m = re.search(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"?(\d+)', inst.attrs)
    if m:
        return int(m.group(1))
    cond_name = re.search(r"condition=%?([\w.\-]+)", inst.attrs)
    cond = comps.get(cond_name.group(1)) if cond_name else None
    if cond is None:
        return None
    root = next((i for i in cond.instructions if i.is_root), None)
    if root is None or root.opcode != "compare" or len(root.operands) != 2:
        return None
    direction = re.search(r"direction=(\w+)", root.attrs)
    direction = direction.group(1) if direction else ""
    a, b = root.operands
    bound_a, bound_b = _resolve_constant(cond, a), _resolve_constant(cond, b)
    if bound_b is not None and bound_a is None:
        counter, bound = a, bound_b
    elif bound_a is not None and bound_b is None:
        counter, bound = b, bound_a
        direction = {"GT": "LT", "GE": "LE", "LT": "GT", "LE": "GE"}.get(direction, direction)
    else:
        return None
    counter_inst = cond.by_name.get(counter.strip().split()[-1].lstrip("%"))
    if counter_inst is None or counter_inst.opcode != "get-tuple-element":
        return None
    index = int(re.search(r"index=(\d+)", counter_inst.attrs).group(1))
    init = 0
    init_tuple = parent.by_name.get(inst.operands[0].strip().split()[-1].lstrip("%"))
    if init_tuple is not None and init_tuple.opcode == "tuple" and index < len(init_tuple.operands):
        value = _resolve_constant(parent, init_tuple.operands[index])
        init = value if value is not None else 0
    if direction == "LT":
        return max(bound - init, 0)
    if direction == "LE":
        return max(bound - init + 1, 0)
    return None


def callees(inst: Instruction) -> list:
    """[(callee name, role)] called by an instruction."""
    out = [(m.group(2), m.group(1)) for m in _CALLEE.finditer(inst.attrs)]
    for m in _CALLEE_LIST.finditer(inst.attrs):
        out += [(n.strip().lstrip("%"), m.group(1)) for n in m.group(2).split(",") if n.strip()]
    return out


@dataclasses.dataclass
class HloModule:
    computations: dict
    multiplicity: dict      # computation name -> executions per step
    loops: list             # [{"while", "computation", "trip_count", "executions"}]

    def instructions(self):
        """(computation, instruction, multiplicity) of every instruction that runs."""
        for name, comp in self.computations.items():
            mult = self.multiplicity.get(name, 0)
            if mult:
                for inst in comp.instructions:
                    yield comp, inst, mult


def analyze(text: str) -> HloModule:
    comps = parse_hlo(text)
    entry = next((c for c in comps.values() if c.is_entry), None)
    if entry is None:
        raise ValueError("HLO text has no ENTRY computation")
    edges, loops = {}, []
    for comp in comps.values():
        for inst in comp.instructions:
            if inst.opcode in ("async-done", "async-update"):
                continue  # the same computation as its async-start
            trip = None
            if inst.opcode == "while":
                trip = while_trip_count(comps, comp, inst)
                loops.append({"while": inst.name, "computation": comp.name, "trip_count": trip})
            for callee, role in callees(inst):
                if callee not in comps:
                    continue
                factor = (trip if trip is not None else 1) if role == "body" else 1
                edges.setdefault(comp.name, []).append((callee, factor))
    # Propagate multiplicities in topological order from the entry computation.
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for callee, _ in edges.get(name, ()):
            visit(callee)
        order.append(name)

    visit(entry.name)
    mult = {name: 0 for name in comps}
    mult[entry.name] = 1
    for name in reversed(order):
        for callee, factor in edges.get(name, ()):
            mult[callee] += mult[name] * factor
    for loop in loops:
        loop["executions"] = mult.get(loop["computation"], 0)
    return HloModule(comps, mult, loops)


def _window(attrs: str, rank: int) -> dict:
    """Per-spatial-dimension window of a convolution (size, stride, pad, dilations)."""
    w = {"size": [1] * rank, "stride": [1] * rank, "pad": [(0, 0)] * rank,
         "lhs_dilate": [1] * rank, "rhs_dilate": [1] * rank}
    m = re.search(r"window=\{([^}]*)\}", attrs)
    if m:
        for item in m.group(1).split():
            key, _, value = item.partition("=")
            if key in ("size", "stride", "lhs_dilate", "rhs_dilate"):
                w[key] = [int(v) for v in value.split("x")]
            elif key == "pad":
                w["pad"] = [tuple(int(x) for x in v.split("_")) for v in value.split("x")]
    return w


def _valid_taps(in_size, out_size, k_size, stride, pad_lo, lhs_dilate, rhs_dilate) -> int:
    """Number of (output position, kernel tap) pairs that land on a real input element (not
    padding, not a hole of lhs dilation) along one spatial dimension."""
    if out_size * k_size > 20_000_000:  # never seen for dots written as convolutions
        return out_size * min(k_size, in_size)
    pos = (np.arange(out_size)[:, None] * stride - pad_lo
           + np.arange(k_size)[None, :] * rhs_dilate)
    ok = (pos >= 0) & (pos <= (in_size - 1) * lhs_dilate) & (pos % lhs_dilate == 0)
    return int(ok.sum())


def _convolution_flops(comp: Computation, inst: Instruction) -> float | None:
    """2 x (output batch x output features) x input features per group x valid window taps.

    TPU compilers write dots as convolutions, with batch and contraction dimensions turned into
    spatial dimensions (padded, dilated or reversed windows), so taps are counted exactly."""
    labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", inst.attrs)
    lhs = array_shapes(operand_shape(comp, inst.operands[0]))
    ker = array_shapes(operand_shape(comp, inst.operands[1]))
    out = array_shapes(inst.shape)
    if labels is None or not lhs or not ker or not out:
        return None
    ll, kl, ol = labels.groups()
    ld, kd, od = lhs[0][1], ker[0][1], out[0][1]
    if not (len(ll) == len(ld) and len(kl) == len(kd) and len(ol) == len(od)):
        return None
    spatial = sorted(c for c in ol if c.isdigit())
    w = _window(inst.attrs, len(spatial))
    taps = 1
    for d, name in enumerate(spatial):
        taps *= _valid_taps(ld[ll.index(name)], od[ol.index(name)], kd[kl.index(name)],
                            w["stride"][d], w["pad"][d][0], w["lhs_dilate"][d],
                            w["rhs_dilate"][d])
    return 2.0 * od[ol.index("b")] * od[ol.index("f")] * kd[kl.index("i")] * taps


def _dot_flops(comp: Computation, inst: Instruction) -> float | None:
    out = array_shapes(inst.shape)
    lhs = array_shapes(operand_shape(comp, inst.operands[0]))
    dims = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", inst.attrs)
    if not out or not lhs or dims is None:
        return None
    contract = math.prod(lhs[0][1][int(d)] for d in dims.group(1).split(",") if d)
    return 2.0 * math.prod(out[0][1]) * contract


def matmul_flops(module: HloModule) -> float:
    """FLOPs of every dot and convolution that runs (2 per multiply-add), loop trip counts
    included: the compiled program's matmul work, per device."""
    total = 0.0
    for comp, inst, mult in module.instructions():
        if inst.opcode == "dot":
            flops = _dot_flops(comp, inst)
        elif inst.opcode == "convolution":
            flops = _convolution_flops(comp, inst)
        else:
            continue
        total += (flops or 0.0) * mult
    return total


def custom_calls(module: HloModule) -> dict:
    """Pallas/Mosaic kernels (tpu_custom_call) that run per step: count, and whether they carry a
    cost estimate XLA can use (without one, their FLOPs are invisible to cost_analysis)."""
    count = with_estimate = 0
    flops_estimated = 0.0
    names = {}
    for _, inst, mult in module.instructions():
        if inst.opcode != "custom-call":
            continue
        target = re.search(r'custom_call_target="([^"]+)"', inst.attrs)
        if target is None or target.group(1) != "tpu_custom_call":
            continue
        count += mult
        key = re.sub(r"\.\d+$", "", inst.name)  # the kernel's name, e.g. splash_mha_fwd
        names[key] = names.get(key, 0) + mult
        est = re.search(r'"cost_estimate"\s*:\s*\{[^}]*"flops"\s*:\s*"?([0-9.e+]+)', inst.attrs)
        if est:
            with_estimate += mult
            flops_estimated += float(est.group(1)) * mult
    return {"count": count, "with_cost_estimate": with_estimate,
            "estimated_flops": flops_estimated, "kernels": names}


def largest_buffers(module: HloModule, top: int = 8) -> list:
    """The largest instruction results of the program (per device), for memory reports: not a
    liveness analysis, but what usually dominates temporaries."""
    found = []
    for comp, inst, mult in module.instructions():
        if inst.opcode in ("parameter", "get-tuple-element", "tuple", "bitcast", "while",
                           "call", "conditional", "copy-done", "async-done"):
            continue
        size = shape_bytes(inst.shape)
        op = re.search(r'op_name="([^"]+)"', inst.attrs)
        found.append((size, inst.name, inst.shape.split("{")[0] if not inst.shape.startswith("(")
                      else inst.shape[:120], op.group(1) if op else ""))
    found.sort(key=lambda x: -x[0])
    seen, out = set(), []
    for size, name, shape, op in found:
        if (shape, op) in seen:
            continue
        seen.add((shape, op))
        out.append({"bytes": size, "instruction": name, "shape": shape, "op_name": op[-160:]})
        if len(out) == top:
            break
    return out
