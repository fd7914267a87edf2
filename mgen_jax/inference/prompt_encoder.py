"""Prompts -> each frozen encoder's embeddings, on the host's devices (one jit per batch size).

Used by text-embedding precompute (data_pipelines/precompute_text.py) and wherever prompts must
become embeddings outside a train step."""
import jax
import numpy as np

from mgen_jax.models.builders import build_text_encoders
from mgen_jax.models.text.encoder_set import text_encoder_params
from mgen_jax.models.text.text_inputs import tokenize_prompts


def text_fingerprint(cfg) -> dict:
    """What determines the embeddings: encoders, their inputs, and the FPS tag."""
    return {"text": cfg.text.to_dict(), "fps": float(cfg.data.fps) if cfg.text.fps_tag else None}


class PromptEncoder:
    def __init__(self, cfg, *, params: dict | None = None, shardings=None):
        self.cfg = cfg
        self.model = build_text_encoders(cfg)
        self.params = (params if params is not None
                       else text_encoder_params(cfg.text, self.model, shardings))
        self._apply = jax.jit(lambda p, ids, mask: self.model.bind(p)(ids, mask))

    def tokens(self, prompts) -> dict:
        """{name: {ids, mask}} int32 [N, L_name], prompts formatted as in training."""
        return tokenize_prompts(self.cfg.text, list(prompts), fps=self.cfg.data.fps)

    def encode(self, prompts) -> dict:
        """{name: (embeddings float32 [N, L, D], mask bool [N, L])}."""
        tokens = self.tokens(prompts)
        ids = {n: t["ids"] for n, t in tokens.items()}
        mask = {n: t["mask"] for n, t in tokens.items()}
        hidden = self._apply(self.params, ids, mask)
        return {n: (np.asarray(hidden[n], np.float32), mask[n].astype(bool)) for n in tokens}
