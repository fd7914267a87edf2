"""Data sub-config: which source writes the dataset (configs/registries.py:DATA_SOURCES) and the
clips' shape; the Shapes source also reads num_clips, num_shards and seed."""
import ml_collections


def shapes_data_config(frames: int = 16, height: int = 32, width: int = 32,
                       num_clips: int = 2000) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        source="shapes",  # a DATA_SOURCES name
        frames=frames, height=height, width=width, num_clips=num_clips,
        num_shards=4, fps=8, seed=0,
        dir="",  # empty: <workdir>/data
    ))
