"""mgen_jax: a JAX/TPU-native re-implementation of Meta's Movie Gen."""
from setuptools import find_packages, setup

DATA_EXTRA = ["apache-beam>=2.60", "tensorflow-datasets>=4.9.6"]

setup(
    name="mgen_jax",
    version="0.1.0",
    description="Movie Gen (text-to-video flow matching) in JAX / Flax NNX",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mgen_jax", "mgen_jax.*", "data_pipelines", "data_pipelines.*"]),
    install_requires=[
        "jax>=0.7",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "grain>=0.2.12",
        "array_record>=0.7",
        "transformers>=4.46",
        "ml-collections>=1.0",
        "numpy>=1.26",
        "av>=12",          # PyAV: mp4 encode/decode
        "pillow>=10",      # PNG contact sheets
        "matplotlib>=3.8",  # `mgen sweep`: plots of a sweep's results
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "msgpack>=1.0",
        "scipy>=1.11",     # connected components in the attribute evaluator
        "dm-pix>=0.4",     # SSIM for autoencoder reconstructions
        "ml-dtypes>=0.4",  # bfloat16 in numpy (cached text embeddings)
        # T5 / UL2 tokenizers shipped as spiece.model only. Below 0.2.3: its generated protobuf
        # code needs protobuf >= 7, which apache-beam (the data extra) does not allow yet.
        "sentencepiece>=0.2,<0.2.3",
        "protobuf>=4",     # transformers reads spiece.model through it
    ],
    extras_require={
        # `mgen data build`: the curation pipeline runs on Apache Beam (DirectRunner here,
        # Dataflow / Flink / Spark through Beam's options); tfds:NAME sources read through TFDS.
        # Kept out of the core install: they pull pyarrow and grpc (~300 MB) into every set-up.
        "data": DATA_EXTRA,
        # torch + diffusers: reference implementations the weight converters are tested against.
        # einops: descript-audio-codec's model modules (DAC itself is installed --no-deps by
        # .ci/run, see there).
        "test": ["pytest>=8", "pytest-xdist>=3", "torch==2.13.0", "diffusers>=0.30",
                 "safetensors>=0.4", "einops>=0.6"] + DATA_EXTRA,
        "tpu": ["libtpu"],
    },
    entry_points={"console_scripts": ["mgen=mgen_jax.cli:main"]},
)
