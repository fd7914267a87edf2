"""Named numpy arrays <-> msgpack-able dicts (dtype, shape, bytes), bfloat16 included.

The derived-data records (latents, text embeddings) carry a varying set of per-encoder arrays;
this keeps their encoding in one place."""
import ml_dtypes
import numpy as np

_DTYPES = {"float32": np.float32, "int32": np.int32, "int8": np.int8, "bool": np.bool_,
           "bfloat16": ml_dtypes.bfloat16}


def pack_arrays(arrays: dict) -> dict:
    out = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise ValueError(f"array field {name!r}: dtype {a.dtype} is not storable "
                             f"(use one of {sorted(_DTYPES)})")
        out[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.tobytes()}
    return out


def unpack_arrays(packed: dict) -> dict:
    return {name: np.frombuffer(f["data"], _DTYPES[f["dtype"]]).reshape(f["shape"]).copy()
            for name, f in packed.items()}
