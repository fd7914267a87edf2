"""Data sub-config: which source the job trains on (configs/registries.py:DATA_SOURCES) and how
batches are drawn from it.

  source="shapes"   synthetic Shapes clips written into <workdir>/data (num_clips, num_shards,
                    seed; every clip frames x height x width at `fps`).
  source="records"  a dataset built by `mgen data build` in `dir`: clips in shape buckets, each
                    with its own fps. Batches are homogeneous in shape (one bucket each), drawn
                    from the buckets named in `buckets` ("" = all), images and videos mixed by
                    `mixture` (Movie Gen: 1 image : 10 video), of a fixed batch size per bucket
                    (`<phase>_train.batch_size`) or, with batching="token_budget", as many clips
                    as fit `token_budget` DiT tokens. frames x height x width is then the shape
                    the job samples and evaluates at (it must be one of the buckets' shapes
                    divided as the TAE and DiT need).
"""
import ml_collections


def data_config(frames: int = 16, height: int = 32, width: int = 32,
                num_clips: int = 2000) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        source="shapes",  # a DATA_SOURCES name
        frames=frames, height=height, width=width, num_clips=num_clips,
        num_shards=4, fps=8, seed=0,
        audio_sample_rate=16000,  # shapes_av: the soundtracks' rate (Hz)
        dir="",  # empty: <workdir>/data (shapes); the built dataset (records)
        buckets="",  # records: comma-separated bucket names to train on; "" = every bucket
        mixture=ml_collections.ConfigDict(dict(images=1.0, videos=10.0)),  # records: weights
        batching="fixed",  # or "token_budget" (records)
        token_budget=0,  # DiT tokens per batch when batching="token_budget"
        # records: a bucket with fewer clips than one batch is dropped ("drop"), or its batches
        # repeat its clips ("repeat": small folders, where most buckets hold a few clips).
        small_buckets="drop",
    ))
