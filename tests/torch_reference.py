"""Shared set-up for parity tests against PyTorch reference models (transformers, diffusers)."""
import torch


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add N(0, 0.1) noise to every parameter (norm weights and biases too, so a mix-up of two
    same-shaped tensors shows) and return the model in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def write_variant(tmp_path, name: str, state: dict) -> str:
    """A copy of the checkpoint folder tmp_path/orig (its config.json) with `state` as its
    safetensors weights: a checkpoint with keys renamed, added or removed."""
    import shutil

    from safetensors.numpy import save_file
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(tmp_path / "orig" / "config.json", folder / "config.json")
    save_file(state, str(folder / "model.safetensors"))
    return str(folder)
