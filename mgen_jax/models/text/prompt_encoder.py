"""Prompts -> each frozen encoder's embeddings: the one public way to encode prompts.

    encoder = load_prompt_encoder(cfg)          # checkpointing/text_encoder_checkpoint.py
    tokens = encoder.tokens(["a red ball moving up"])     # {name: {ids, mask}}
    embeddings = encoder.encode(["a red ball moving up"]) # {name: (float32 [N, L, D], bool [N, L])}

Prompts are formatted as in training (FPS tag, visual text for ByT5) and tokenized per encoder
(models/text/text_inputs.py); the encoders (models/text/encoder_set.py) run under one jit per
batch shape. `load_prompt_encoder` fills the params from each encoder's checkpoint; this class
only holds them. Text-embedding precompute, the text-cache phase and tests go through it; the DiT
itself sees these embeddings through its conditioner (models/text/conditioner.py)."""
import jax
import numpy as np

from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.text.text_inputs import tokenize_prompts


class PromptEncoder:
    def __init__(self, cfg, model: PureModel, params: dict):
        """cfg: the experiment config (its text and data.fps); model: build_text_encoders(cfg);
        params: that model's params."""
        self.cfg, self.model, self.params = cfg, model, params
        self._apply = jax.jit(lambda p, ids, mask: self.model.bind(p)(ids, mask))

    def tokens(self, prompts, fps=None) -> dict:
        """{name: {ids, mask}} int32 [N, L_name], prompts formatted as in training; fps: one rate
        or one per prompt (default: data.fps)."""
        return tokenize_prompts(self.cfg.text, list(prompts),
                                fps=self.cfg.data.fps if fps is None else fps)

    def encode(self, prompts, fps=None) -> dict:
        """{name: (embeddings float32 [N, L, D], mask bool [N, L])}."""
        tokens = self.tokens(prompts, fps)
        ids = {n: t["ids"] for n, t in tokens.items()}
        mask = {n: t["mask"] for n, t in tokens.items()}
        hidden = self._apply(self.params, ids, mask)
        return {n: (np.asarray(hidden[n], np.float32), mask[n].astype(bool)) for n in tokens}
