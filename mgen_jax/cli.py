"""`mgen`: the command-line entry point (train, sample, eval, plan, bench, convert, text-embed, data)."""
import argparse
import json
import os
import sys


def _split_overrides(argv):
    """Pull `--config.a.b=v` (or `--config.a.b v`) out of argv; return (overrides, rest)."""
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    sys.exit(f"mgen: {arg} needs a value")
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def _cmd_train(args, overrides):
    from mgen_jax.configs.loading import load_config
    from mgen_jax.configs.validation import ConfigError
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        sys.exit(f"mgen train: bad config: {err}")
    if cfg.job == "tae":
        from mgen_jax.training.tae_job import run_tae as run
    else:
        from mgen_jax.training.text_to_video_job import run_text_to_video as run
    run(cfg, args.workdir, show_progress=not args.no_progress, evaluate=not args.skip_eval)


def _cmd_sample(args, _):
    import numpy as np
    from mgen_jax.inference.loading import load_text_to_video
    from mgen_jax.inference.video_io import write_mp4
    pipeline = load_text_to_video(args.workdir)
    videos = pipeline.generate(args.prompt, seed=args.seed, steps=args.steps, cfg_scale=args.cfg,
                               frames=args.frames, height=args.height, width=args.width)
    os.makedirs(args.out, exist_ok=True)
    mapping = {}
    for i, (prompt, video) in enumerate(zip(args.prompt, videos)):
        name = f"{i:03d}_" + "".join(c if c.isalnum() else "_" for c in prompt)[:80] + ".mp4"
        write_mp4(os.path.join(args.out, name), np.asarray(video), fps=pipeline.cfg.data.fps,
                  scale=args.scale)
        mapping[prompt] = name
    with open(os.path.join(args.out, "samples.json"), "w") as f:
        json.dump(mapping, f, indent=2)
    print(json.dumps(mapping, indent=2))


def _cmd_eval(args, _):
    from mgen_jax.training.text_to_video_job import load_workdir_config
    if load_workdir_config(args.workdir).job == "tae":
        from mgen_jax.training.tae_job import evaluate_tae_workdir as evaluate
    else:
        from mgen_jax.evaluation.heldout import evaluate_workdir as evaluate
    evaluate(args.workdir, args.out)


def _cmd_text_embed(args, _):
    from mgen_jax.inference.text_embed import write_text_embedding
    try:
        print(write_text_embedding(args.encoder, args.checkpoint, args.prompt, args.out,
                                   max_length=args.max_length))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"mgen text-embed: {err}")


def _cmd_plan(args, overrides):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile for TPU without opening one
    from mgen_jax.configs.loading import load_config
    from mgen_jax.configs.validation import ConfigError
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        sys.exit(f"mgen plan: bad config: {err}")
    from mgen_jax.planning.plan import format_plan, plan_train_step
    plan = plan_train_step(cfg, args.topology, correct_scan=not args.no_flops_variant,
                           hlo_path=args.hlo)
    plan = {"config_spec": args.config, "overrides": list(overrides), **plan}
    print(format_plan(plan))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(plan, f, indent=2)
        print(f"wrote {args.json}")


def _cmd_data_precompute_text(args, overrides):
    from mgen_jax.configs.loading import load_config
    from mgen_jax.configs.validation import ConfigError
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        sys.exit(f"mgen data precompute-text: bad config: {err}")
    from mgen_jax.parallel.mesh import build_mesh
    from mgen_jax.training.text_to_video_job import precompute_text_cache
    part = precompute_text_cache(cfg, args.data, args.out, build_mesh(cfg.mesh))
    print(json.dumps({"out": args.out, "shards": len(part["shards"]),
                      "records": sum(s["num_records"] for s in part["shards"]),
                      "encoders": part["encoders"], "dtype": part["dtype"],
                      "process": f"{part['process_index']}/{part['process_count']}"}, indent=2))


def _cmd_bench(args, _):
    from mgen_jax.benchmarks.registry import format_table, run_benchmark
    result = run_benchmark(args.name, quick=args.quick)
    print(format_table(result.get("summary", result)))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    else:
        print(json.dumps(result, indent=2))


def _cmd_convert(args, _):
    from mgen_jax.checkpointing.text_encoder_checkpoint import convert_text_encoder
    try:
        meta = convert_text_encoder(args.encoder, args.checkpoint, args.out, weights=args.weights)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        sys.exit(f"mgen convert: {err}")
    print(json.dumps({"out": os.path.abspath(args.out), **meta}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run an experiment (resumes from --workdir)")
    train.add_argument("--config", required=True, help="experiments/NAME.py[:arg]")
    train.add_argument("--workdir", required=True)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--skip-eval", action="store_true", help="do not evaluate at the end")
    train.set_defaults(func=_cmd_train)

    sample = sub.add_parser("sample", help="generate videos from prompts")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--prompt", action="append", required=True)
    sample.add_argument("--out", required=True)
    sample.add_argument("--steps", type=int, default=None)
    sample.add_argument("--cfg", type=float, default=None)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--frames", type=int, default=None)
    sample.add_argument("--height", type=int, default=None)
    sample.add_argument("--width", type=int, default=None)
    sample.add_argument("--scale", type=int, default=4, help="integer upscale of the mp4")
    sample.set_defaults(func=_cmd_sample)

    ev = sub.add_parser("eval", help="write the experiment's evaluation JSON")
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--out", default=None)
    ev.set_defaults(func=_cmd_eval)

    embed = sub.add_parser("text-embed", help="write one prompt's final hidden states "
                                              "[tokens, dim] float32 from a transformers "
                                              "text-encoder folder")
    embed.add_argument("--encoder", required=True, choices=["ul2", "byt5", "metaclip", "t5"])
    embed.add_argument("--checkpoint", required=True, help="transformers folder (config.json "
                       "+ weights + tokenizer files; byt5 may omit the tokenizer)")
    embed.add_argument("--prompt", required=True, help="the text to encode, as given")
    embed.add_argument("--out", required=True, help=".npy file to write")
    embed.add_argument("--max-length", type=int, default=None,
                       help="truncate to this many tokens (CLIP: at most its positions)")
    embed.set_defaults(func=_cmd_text_embed)

    plan = sub.add_parser("plan", help="compile the train step ahead of time for a TPU topology "
                                       "and report memory, FLOPs and collectives")
    plan.add_argument("--config", required=True, help="experiments/NAME.py[:arg]")
    plan.add_argument("--topology", required=True, help="TPU topology, e.g. v5p:8x8x4")
    plan.add_argument("--json", default=None, help="write the plan as JSON here")
    plan.add_argument("--no-flops-variant", action="store_true",
                      help="skip the second (unrolled-scan) compile that corrects XLA's FLOPs")
    plan.add_argument("--hlo", default=None, help="also write the compiled HLO text here")
    plan.set_defaults(func=_cmd_plan)

    data = sub.add_parser("data", help="derived-data jobs over a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    pre_text = data_sub.add_parser(
        "precompute-text", help="encode a dataset's captions once with the experiment's frozen "
                                "text encoders into ArrayRecord shards (bf16), this process's share")
    pre_text.add_argument("--config", required=True, help="experiments/NAME.py[:arg] (its "
                          "text.encoders and data.fps decide the embeddings)")
    pre_text.add_argument("--data", required=True, help="dataset directory (manifest.json + shards)")
    pre_text.add_argument("--out", required=True, help="cache directory to write")
    pre_text.set_defaults(func=_cmd_data_precompute_text)

    from mgen_jax.benchmarks.registry import BENCHMARKS
    bench = sub.add_parser("bench", help="run one benchmark; print a table and write JSON")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("--json", default=None, help="write the result as JSON here")
    bench.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    bench.set_defaults(func=_cmd_bench)

    convert = sub.add_parser("convert", help="convert a transformers text-encoder folder to an "
                                             "Orbax checkpoint (+ encoder.json)")
    convert.add_argument("--encoder", required=True, choices=["ul2", "byt5", "metaclip", "t5"])
    convert.add_argument("--checkpoint", required=True,
                         help="transformers folder (config.json + safetensors / .bin)")
    convert.add_argument("--out", required=True, help="new directory for the converted encoder")
    convert.add_argument("--weights", default=None,
                         help="weights file to use instead of the folder's own")
    convert.set_defaults(func=_cmd_convert)
    return parser


def main(argv=None) -> None:
    overrides, rest = _split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(rest)
    if overrides and args.command not in ("train", "plan", "data"):
        sys.exit(f"mgen {args.command}: --config.* overrides only apply to `mgen train`, "
                 "`mgen plan` and `mgen data`")
    args.func(args, overrides)


if __name__ == "__main__":
    main()
