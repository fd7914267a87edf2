"""Vision encoders: the CLIP / MetaCLIP image tower (clip_vision.py), per-frame video features."""
