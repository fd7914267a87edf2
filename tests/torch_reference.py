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
