"""Mesh sub-config: sizes of the four mesh axes and the logical-rules preset."""
import ml_collections

MESH_AXES = ("data", "fsdp", "context", "tensor")


def mesh_config(data: int = -1, fsdp: int = 1, context: int = 1, tensor: int = 1,
                rules: str = "default") -> ml_collections.ConfigDict:
    """One axis may be -1: it takes whatever devices the others leave."""
    return ml_collections.ConfigDict(
        {"data": data, "fsdp": fsdp, "context": context, "tensor": tensor, "rules": rules})
