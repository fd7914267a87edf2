"""Architecture presets of the CLIP vision tower (models/vision/clip_vision.py), as a config
builder: `clip_vision_config("metaclip_h14")`. The converter (checkpointing/clip_vision_convert.py)
fills the same keys from a transformers CLIPVisionConfig.

Keys: hidden_size, intermediate_size, num_layers, num_heads, patch_size, image_size,
num_channels, projection_dim (0 = no visual projection: a bare CLIPVisionModel), hidden_act
('quick_gelu' or 'gelu'), layer_norm_eps, image_mean / image_std (the per-channel pixel
normalisation the tower was trained with, applied by frame_embeddings)."""
import ml_collections

from mgen_jax.configs.registries import CLIP_VISION_PRESETS

# OpenAI CLIP's pixel statistics; MetaCLIP and OpenCLIP's ViT-H/14 preprocess with the same.
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

def clip_vision_config(preset: str = "metaclip_h14") -> ml_collections.ConfigDict:
    """Config of a CLIP vision tower preset."""
    cfg = dict(num_channels=3, layer_norm_eps=1e-5, image_mean=CLIP_IMAGE_MEAN,
               image_std=CLIP_IMAGE_STD)
    cfg.update(CLIP_VISION_PRESETS.load(preset))  # presets: configs/registries.py
    cfg["preset"] = preset
    # What conditions the audio DiT per frame (models/vision/clip_vision.py frame_features):
    # "image_embeds", the projected pooled embedding (Movie Gen Audio's MetaCLIP features), or
    # "patch_tokens", every patch's last hidden state concatenated: a tiny random tower's pooled
    # output keeps a frame's colours but not where things are (a linear read-out of the shape's
    # position from it is no better than its mean; from the patch tokens, within ~2 px at 32 px).
    cfg["features"] = "image_embeds"
    # A transformers CLIPVisionModelWithProjection / CLIPModel folder (MetaCLIP's weights), or
    # "": random frozen weights from init_seed (tiny experiments, as their text encoders).
    cfg["checkpoint"] = ""
    cfg["init_seed"] = 0
    return ml_collections.ConfigDict(cfg)
