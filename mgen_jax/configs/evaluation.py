"""Evaluation sub-config: how held-out prompts are sampled and scored."""
import ml_collections


def eval_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        samples_per_prompt=4, batch_size=16, seed=0,
        sample_steps=50, cfg_scale=7.5, contact_sheet_frames=4))
