"""Flow-matching sub-config (Movie Gen: linear path, logit-normal t, Euler + linear-quadratic)."""
import ml_collections


def flow_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        sigma_min=1e-5,
        t_logit_mean=0.0,
        t_logit_std=1.0,
        text_dropout=0.1,            # probability of training on the empty prompt (for CFG)
        # Train on samples of the TAE posterior (as LDM / Movie Gen) or on its mean: a briefly
        # trained TAE still has a wide posterior whose noise would drown a tiny DiT's target.
        latent_sample="posterior",   # posterior | mean
        sample_steps=50,
        sampler="euler",             # configs/registries.py:SAMPLERS
        schedule="linear_quadratic",  # configs/registries.py:SCHEDULES
        lq_reference_steps=250,      # the N of "first 25 steps of an N-step linear schedule"
        guidance_scale=7.5,
    ))
