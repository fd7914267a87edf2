"""Growing the factorized position tables (t, h, w) between training stages, as Movie Gen does
(moviegen_spec.md section 4.1):

    256 px T2I   -> 256 px T2I/V : h, w EXTENDED (more aspect ratios), t table grown from 1 row
    256 px T2I/V -> 768 px T2I/V : h, w STRETCHED x3 (the same frame, three times the tokens)

One rule covers both: an axis grows by a stretch factor f. Old row r lands on new row r * f and
the rows in between interpolate linearly (so a frame f times larger starts with the same
embedding at the same relative location); rows past the stretched old table are zero.

    f = 1  extension: old rows kept, zero rows added. Positions are summed (t + h + w), so zero
           rows change nothing the old model computed: a 256 px image keeps its exact output.
    f = 3  the 256 -> 768 px stretch: old row r is new row 3r.

Stretching when the resolution stays would be wrong: a 256 px image would then read only the
first 1/f of its learned grid. Which factor each axis takes is decided where a stage is
initialised from the previous one (checkpointing/stage_init.py: from the two configs'
resolutions, or given explicitly)."""
import math

import numpy as np

AXES = ("t", "h", "w")


def stretched_length(length: int, factor: float) -> int:
    """Rows a table of `length` rows covers once stretched by `factor`."""
    return int(math.ceil(length * factor - 1e-9))


def grow_table(table: np.ndarray, new_length: int, factor: float = 1.0) -> np.ndarray:
    """[L, W] -> [new_length, W]: row p < L * factor is the old table linearly interpolated at
    p / factor (the last old row repeated past (L - 1) * factor); later rows are zero. Raises
    when the stretched table does not fit `new_length` (learned rows would be lost)."""
    old = np.asarray(table)
    if factor <= 0:
        raise ValueError(f"stretch factor {factor} must be > 0")
    covered = stretched_length(len(old), factor)
    if covered > new_length:
        raise ValueError(f"{len(old)} rows stretched x{factor:g} need {covered} rows, the new "
                         f"table has {new_length}")
    where = np.arange(covered) / factor
    lo = np.minimum(np.floor(where).astype(int), len(old) - 1)
    hi = np.minimum(lo + 1, len(old) - 1)
    frac = (where - lo)[:, None]
    out = np.zeros((new_length, old.shape[1]), old.dtype)
    out[:covered] = ((1 - frac) * old[lo] + frac * old[hi]).astype(old.dtype)
    return out


def stretch_table(table: np.ndarray, new_length: int) -> np.ndarray:
    """The whole table stretched over `new_length` rows (factor new_length / L)."""
    return grow_table(table, new_length, new_length / len(table))


def extend_table(table: np.ndarray, new_length: int) -> np.ndarray:
    """Old rows kept, new rows zero (factor 1)."""
    return grow_table(table, new_length, 1.0)

