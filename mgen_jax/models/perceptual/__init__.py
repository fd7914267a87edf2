"""Frozen perceptual loss networks (LPIPS) used by TAE training."""
