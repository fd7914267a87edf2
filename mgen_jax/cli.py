"""`mgen`: the command-line entry point (train, sample, eval, plan, bench, convert, text-embed,
data, config, sweep, average). Commands are thin: each parses its flags, calls one function of the
package and prints or writes its result. User errors (bad configs, missing folders, wrong
checkpoints) end in one line naming what is wrong; MGEN_DEBUG=1 shows the traceback instead."""
import argparse
import json
import os
import sys

from mgen_jax.configs.registries import BENCHMARKS, JOBS, TEXT_ENCODERS

# What a user can cause: a bad config or override, a path that does not exist or is not what it
# should be, a checkpoint that does not fit. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


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


def _load_config(args, overrides):
    from mgen_jax.configs.loading import load_config
    return load_config(args.config, overrides)


def _write_json(path: str, value: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
    print(f"wrote {path}")


def _evaluate(workdir: str, out: str | None = None) -> dict:
    """The evaluation of the workdir's job (configs/registries.py:JOBS)."""
    from mgen_jax.workdir import load_workdir_config, phase_timer
    with phase_timer(workdir, "eval"):
        return JOBS.load(load_workdir_config(workdir).job, "evaluate")(workdir, out)


def _cmd_train(args, overrides):
    from mgen_jax.parallel.distributed import (continue_alone, initialize_distributed,
                                               is_coordinator)
    # Before the config: validating it may already open the devices.
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    cfg = _load_config(args, overrides)
    JOBS.load(cfg.job)(cfg, args.workdir, show_progress=not args.no_progress)
    if args.skip_eval:
        return
    # Evaluation is process 0's alone: the others leave once training is done.
    coordinator = is_coordinator()
    if continue_alone():
        _evaluate(args.workdir)
    elif coordinator:
        print(f"mgen train: evaluation skipped (a multi-host accelerator job cannot continue on "
              f"one host); run `mgen eval --workdir={args.workdir}` in one process",
              file=sys.stderr)


def _cmd_sample(args, _):
    if args.video_to_audio:
        return _sample_audio_for_file(args)
    if not args.prompt:
        raise SystemExit("mgen sample: give --prompt (or --video-to-audio=IN.mp4)")
    import numpy as np
    from mgen_jax.inference.loading import load_text_to_video
    from mgen_jax.inference.video_io import write_mp4
    guidance = args.guidance
    if args.cfg is not None:
        print("mgen sample: --cfg is deprecated (it will be removed in the next release); "
              "use --guidance", file=sys.stderr)
        guidance = args.cfg if guidance is None else guidance
    pipeline = load_text_to_video(args.workdir)
    videos = pipeline.generate(args.prompt, seed=args.seed, steps=args.steps,
                               guidance_scale=guidance, frames=args.frames, height=args.height,
                               width=args.width)
    fps = pipeline.cfg.data.fps
    sound = None
    if args.audio:  # Movie Gen Audio adds sound to the sampled videos, with the same prompts
        from mgen_jax.inference.loading import load_video_to_audio
        sound = load_video_to_audio(args.audio)
        waveforms = sound.generate(np.asarray(videos), args.prompt, fps=fps, seed=args.seed)
    os.makedirs(args.out, exist_ok=True)
    mapping = {}
    for i, (prompt, video) in enumerate(zip(args.prompt, videos)):
        name = f"{i:03d}_" + "".join(c if c.isalnum() else "_" for c in prompt)[:80]
        if sound is None:
            write_mp4(os.path.join(args.out, name + ".mp4"), np.asarray(video), fps=fps,
                      scale=args.scale)
            mapping[prompt] = name + ".mp4"
        else:
            mapping[prompt] = _write_with_sound(args.out, name, np.asarray(video), fps,
                                                waveforms[i], sound.cfg.dac_vae.sample_rate,
                                                args.scale)
    with open(os.path.join(args.out, "samples.json"), "w") as f:
        json.dump(mapping, f, indent=2)
    print(json.dumps(mapping, indent=2))


def _write_with_sound(out: str, name: str, video, fps, waveform, sample_rate: int,
                      scale: int) -> dict:
    """NAME.wav at the model's rate and NAME.mp4 with the video and a 48 kHz AAC track."""
    from mgen_jax.inference.audio_io import (MP4_SAMPLE_RATE, to_sample_rate,
                                             write_mp4_with_audio, write_wav)
    write_wav(os.path.join(out, name + ".wav"), waveform, sample_rate)
    write_mp4_with_audio(os.path.join(out, name + ".mp4"), video, fps,
                         to_sample_rate(waveform, sample_rate, MP4_SAMPLE_RATE), MP4_SAMPLE_RATE,
                         scale=scale)
    return {"mp4": name + ".mp4", "wav": name + ".wav"}


def _sample_audio_for_file(args) -> None:
    """mgen sample --video-to-audio=IN.mp4: sound for a given video (prompt optional)."""
    from data_pipelines.media.decode import decode_media
    from mgen_jax.inference.loading import load_video_to_audio
    if args.audio:
        raise SystemExit("mgen sample: --video-to-audio takes its model from --workdir; "
                         "--audio is for sampled videos")
    prompts = args.prompt or [""]
    if len(prompts) != 1:
        raise SystemExit("mgen sample --video-to-audio: at most one --prompt (for the one video)")
    media = decode_media(args.video_to_audio)
    if media.kind != "video":
        raise SystemExit(f"mgen sample --video-to-audio={args.video_to_audio}: not a video")
    pipeline = load_video_to_audio(args.workdir)
    waveform = pipeline.generate(media.frames[None], prompts, fps=media.fps, seed=args.seed,
                                 steps=args.steps, guidance_scale=args.guidance)[0]
    os.makedirs(args.out, exist_ok=True)
    name = os.path.splitext(os.path.basename(args.video_to_audio))[0] + "_with_audio"
    written = _write_with_sound(args.out, name, media.frames, media.fps, waveform,
                                pipeline.cfg.dac_vae.sample_rate, 1)
    with open(os.path.join(args.out, "samples.json"), "w") as f:
        json.dump({args.video_to_audio: written}, f, indent=2)
    print(json.dumps({args.video_to_audio: written}, indent=2))


def _cmd_eval(args, _):
    _evaluate(args.workdir, args.out)


def _cmd_text_embed(args, _):
    from mgen_jax.inference.text_embed import write_text_embedding
    print(write_text_embedding(args.encoder, args.checkpoint, args.prompt, args.out,
                               max_length=args.max_length))


def _cmd_plan(args, overrides):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile for TPU without opening one
    cfg = _load_config(args, overrides)
    if args.mode == "sample":
        from mgen_jax.planning.sample_plan import format_sample_plan, plan_sample
        plan = plan_sample(cfg, args.topology, videos=args.videos,
                           correct_scan=not args.no_flops_variant,
                           include_text=not args.no_text, hlo_path=args.hlo)
        formatter = format_sample_plan
    else:
        from mgen_jax.planning.plan import format_plan, plan_train_step
        plan = plan_train_step(cfg, args.topology, correct_scan=not args.no_flops_variant,
                               hlo_path=args.hlo)
        formatter = format_plan
    plan = {"config_spec": args.config, "overrides": list(overrides), **plan}
    print(formatter(plan))
    if args.json:
        _write_json(args.json, plan)


def _cmd_data_precompute_text(args, overrides):
    cfg = _load_config(args, overrides)
    from mgen_jax.parallel.mesh import build_mesh
    from mgen_jax.training.precompute_phase import precompute_text_cache
    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data={args.data}: no such dataset directory")
    part = precompute_text_cache(cfg, args.data, args.out, build_mesh(cfg.mesh))
    print(json.dumps({"out": args.out, "shards": len(part["shards"]),
                      "records": sum(s["num_records"] for s in part["shards"]),
                      "encoders": part["encoders"], "dtype": part["dtype"],
                      "process": f"{part['process_index']}/{part['process_count']}"}, indent=2))


def _cmd_data_build(args, overrides):
    from data_pipelines.build.build_config import load_build_config
    from data_pipelines.build.driver import build_dataset
    cfg = load_build_config(args.config, overrides)
    summary = build_dataset(args.source, args.out, cfg, beam_args=args.beam_args,
                            tfds_data_dir=args.tfds_data_dir, show_progress=not args.no_progress)
    if summary["already_built"]:
        print(f"mgen data build: {summary['out']} already holds this build", file=sys.stderr)
    print(json.dumps(summary, indent=2))


def _cmd_bench(args, _):
    from mgen_jax.benchmarks.registry import format_table, run_benchmark
    result = run_benchmark(args.name, quick=args.quick)
    print(format_table(result.get("summary", result)))
    if args.json:
        _write_json(args.json, result)
    else:
        print(json.dumps(result, indent=2))


def _cmd_sweep(args, overrides):
    from mgen_jax.sweeps.launch import launch_lines
    from mgen_jax.sweeps.runner import run_sweep
    from mgen_jax.sweeps.spec import load_sweep, split_sweep_flags
    sweep_flags = split_sweep_flags(args.sweep_flags)
    sweep = load_sweep(args.sweep, sweep_flags, overrides)
    if args.print_launch:
        relaunch = [f"--sweep={args.sweep}", f"--out={args.out}",
                    *(f"--sweep.{f}" for f in sweep_flags), *(f"--config.{o}" for o in overrides)]
        print("\n".join(launch_lines(sweep, args.out, relaunch, args.launch_prefix)))
        return
    print(json.dumps(run_sweep(sweep, args.out, only=args.only), indent=2))


def _cmd_convert(args, _):
    from mgen_jax.checkpointing.text_encoder_checkpoint import convert_text_encoder
    meta = convert_text_encoder(args.encoder, args.checkpoint, args.out, weights=args.weights)
    print(json.dumps({"out": os.path.abspath(args.out), **meta}, indent=2))


def _cmd_average(args, _):
    from mgen_jax.training.average_runs import average_runs, parse_weights
    weights = parse_weights(args.weights) if args.weights else None
    record = average_runs(args.checkpoints, args.out, weights=weights)
    if record.get("already"):
        print(f"mgen average: {record['out']} already holds this average", file=sys.stderr)
    print(json.dumps(record, indent=2))


def _cmd_config_show(args, overrides):
    from mgen_jax.configs.flat import flatten_config
    cfg = _load_config(args, overrides)
    if args.json:
        print(cfg.to_json_best_effort(indent=2, sort_keys=True))
        return
    for key, value in flatten_config(cfg):
        print(f"{key} = {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgen", description=__doc__.split("\n\n")[0],
        epilog="Config overrides: --config.KEY=VALUE after --config=FILE (train, plan, data, "
               "config; sweep: every run), e.g. --config.dit_optimizer.lr=3e-4; `mgen config "
               "show` lists every key.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "experiment file, optionally with its argument: experiments/NAME.py[:ARG]"

    train = sub.add_parser("train", help="run an experiment (resumes from --workdir), then "
                                         "evaluate it")
    train.add_argument("--config", required=True, help=config_help)
    train.add_argument("--workdir", required=True, help="where the run keeps its config, data, "
                       "checkpoints, metrics and eval; re-running resumes from it")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--skip-eval", action="store_true",
                       help="do not evaluate at the end (run `mgen eval` later)")
    multi = train.add_argument_group(
        "multi-process (one process per host; default: env MGEN_COORDINATOR, MGEN_NUM_PROCESSES, "
        "MGEN_PROCESS_ID, else a TPU pod's own, else one process)")
    multi.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="address of process 0, the same for every process ('auto': let "
                            "JAX detect the cluster)")
    multi.add_argument("--num_processes", "--num-processes", type=int, default=None, metavar="N",
                       help="how many processes the job has")
    multi.add_argument("--process_id", "--process-id", type=int, default=None, metavar="I",
                       help="this process, 0..N-1 (0 writes the workdir's shared files)")
    train.set_defaults(func=_cmd_train)

    sample = sub.add_parser("sample", help="generate videos from prompts with a trained workdir "
                                           "(with sound: --audio), or sound for a video "
                                           "(--video-to-audio)")
    sample.add_argument("--workdir", required=True, help="a text-to-video training workdir (a "
                        "video_to_audio one with --video-to-audio)")
    sample.add_argument("--prompt", action="append", default=None,
                        help="text prompt (repeat the flag for several videos)")
    sample.add_argument("--audio", default=None, metavar="AUDIO_WORKDIR",
                        help="add sound to each sampled video with this video_to_audio workdir's "
                             "model (same prompt): NAME.mp4 with a 48 kHz AAC track and NAME.wav")
    sample.add_argument("--video-to-audio", default=None, metavar="IN.mp4",
                        help="generate sound for this video with --workdir's video_to_audio "
                             "model (--prompt optional); longer videos by multi-diffusion")
    sample.add_argument("--out", required=True, help="folder for the mp4s and samples.json")
    sample.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: the config's flow.sample_steps)")
    sample.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: flow.guidance_scale)")
    sample.add_argument("--cfg", type=float, default=None,
                        help="deprecated alias of --guidance (removed in the next release)")
    sample.add_argument("--seed", type=int, default=0, help="noise seed")
    sample.add_argument("--frames", type=int, default=None,
                        help="frames per video (default: the training data's)")
    sample.add_argument("--height", type=int, default=None, help="pixels (default: training's)")
    sample.add_argument("--width", type=int, default=None, help="pixels (default: training's)")
    sample.add_argument("--scale", type=int, default=4, help="integer upscale of the mp4")
    sample.set_defaults(func=_cmd_sample)

    ev = sub.add_parser("eval", help="write the experiment's evaluation JSON (jobs: "
                                     + JOBS.describe() + ")")
    ev.add_argument("--workdir", required=True, help="a training workdir")
    ev.add_argument("--out", default=None, help="JSON file to write (default: WORKDIR/eval.json)")
    ev.set_defaults(func=_cmd_eval)

    embed = sub.add_parser("text-embed", help="write one prompt's final hidden states "
                                              "[tokens, dim] float32 from a transformers "
                                              "text-encoder folder")
    embed.add_argument("--encoder", required=True, choices=TEXT_ENCODERS.names(),
                       help=TEXT_ENCODERS.describe())
    embed.add_argument("--checkpoint", required=True, help="transformers folder (config.json "
                       "+ weights + tokenizer files; byt5 may omit the tokenizer)")
    embed.add_argument("--prompt", required=True, help="the text to encode, as given")
    embed.add_argument("--out", required=True, help=".npy file to write")
    embed.add_argument("--max-length", type=int, default=None,
                       help="truncate to this many tokens (CLIP: at most its positions)")
    embed.set_defaults(func=_cmd_text_embed)

    plan = sub.add_parser("plan", help="compile the train step (or sampling) ahead of time for "
                                       "a TPU topology and report memory, FLOPs and collectives")
    plan.add_argument("--config", required=True, help=config_help)
    plan.add_argument("--topology", required=True, help="TPU topology, e.g. v5p:8x8x4")
    plan.add_argument("--mode", choices=("train", "sample"), default="train",
                      help="train: the DiT train step (default); sample: text-to-video inference "
                           "(one guided DiT sampling step, the TAE's tiled decode, the text "
                           "encoders) and the estimated seconds per video")
    plan.add_argument("--videos", type=int, default=None,
                      help="--mode=sample: videos per call (default: half dit_train.batch_size, "
                           "so the guided DiT batch equals the train batch)")
    plan.add_argument("--no-text", action="store_true",
                      help="--mode=sample: leave the text encoders out of the plan")
    plan.add_argument("--json", default=None, help="write the plan as JSON here")
    plan.add_argument("--no-flops-variant", action="store_true",
                      help="skip the second (unrolled-scan) compile that corrects XLA's FLOPs")
    plan.add_argument("--hlo", default=None, help="also write the compiled HLO text here")
    plan.set_defaults(func=_cmd_plan)

    data = sub.add_parser("data", help="derived-data jobs over a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    pre_text = data_sub.add_parser(
        "precompute-text", help="encode a dataset's captions once with the experiment's frozen "
                                "text encoders into ArrayRecord shards (bf16), this process's share")
    pre_text.add_argument("--config", required=True, help=config_help + " (its text.encoders "
                          "and data.fps decide the embeddings)")
    pre_text.add_argument("--data", required=True, help="dataset directory (manifest.json + shards)")
    pre_text.add_argument("--out", required=True, help="cache directory to write")
    pre_text.set_defaults(func=_cmd_data_precompute_text)

    build = data_sub.add_parser(
        "build", help="curate a video/image source into bucketed ArrayRecord shards + "
                      "manifest.json + report.json (an Apache Beam pipeline)",
        epilog="Any other --flag goes to Beam's PipelineOptions: --runner (default "
               "DirectRunner), --direct_num_workers=N --direct_running_mode=multi_processing, "
               "or a cluster runner's own options.")
    build.add_argument("--source", required=True,
                       help="folder:PATH | tfds:NAME[/CONFIG][:SPLIT] | shapes")
    build.add_argument("--out", required=True, help="dataset directory to create")
    build.add_argument("--config", default=None,
                       help="data-build config file with get_config(arg), FILE.py[:ARG] "
                            "(default: mgen_jax/configs/data_build.py; small media: "
                            "experiments/data_tiny.py)")
    build.add_argument("--tfds_data_dir", default=None, help="where tfds: sources are prepared")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=_cmd_data_build)
    # Beam's flags are many and Beam parses them itself: this parser hands on what it does not
    # know (as beam_args) instead of rejecting it.
    parse_own_flags = build.parse_known_args

    def parse_keeping_beam_flags(arg_strings=None, namespace=None):
        namespace, beam_args = parse_own_flags(arg_strings, namespace)
        namespace.beam_args = beam_args
        return namespace, []
    build.parse_known_args = parse_keeping_beam_flags

    bench = sub.add_parser("bench", help="run one benchmark; print a table and write JSON")
    bench.add_argument("name", choices=BENCHMARKS.names(), metavar="NAME",
                       help=BENCHMARKS.describe())
    bench.add_argument("--json", default=None, help="write the result as JSON here")
    bench.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    bench.set_defaults(func=_cmd_bench)

    sweep = sub.add_parser(
        "sweep", help="ablation sweep: run an experiment once per override set (resumable), "
                      "then write results.csv, results.md and PNG plots",
        epilog="--sweep.KEY=VALUE overrides a key of the sweep file, e.g. "
               "--sweep.axes.eval.guidance_scale=(1.0,7.5); --config.KEY=VALUE applies to every "
               "run's config. README 'Ablation sweeps' describes the sweep file.")
    sweep.add_argument("--sweep", required=True,
                       help="sweep file with get_sweep(), experiments/sweeps/NAME.py[:ARG]")
    sweep.add_argument("--out", required=True, help="folder of the sweep: one folder per run, "
                       "the results table and plots; re-running skips finished runs")
    sweep.add_argument("--print-launch", action="store_true",
                       help="print one launch command line per run (for TPU VMs); run nothing")
    sweep.add_argument("--launch-prefix", default="", metavar="PREFIX",
                       help="put each printed line behind this command, quoted as one word "
                            "(a TPU VM ssh command: README 'Ablation sweeps')")
    sweep.add_argument("--only", default=None, metavar="RUN",
                       help="run just this run of the sweep (its folder name)")
    sweep.set_defaults(func=_cmd_sweep)
    parse_sweep_own_flags = sweep.parse_known_args

    def parse_keeping_sweep_flags(arg_strings=None, namespace=None):
        namespace, sweep_flags = parse_sweep_own_flags(arg_strings, namespace)
        namespace.sweep_flags = sweep_flags  # --sweep.KEY=VALUE, checked by _cmd_sweep
        return namespace, []
    sweep.parse_known_args = parse_keeping_sweep_flags

    convert = sub.add_parser("convert", help="convert a transformers text-encoder folder to an "
                                             "Orbax checkpoint (+ encoder.json)")
    convert.add_argument("--encoder", required=True, choices=TEXT_ENCODERS.names(),
                         help=TEXT_ENCODERS.describe())
    convert.add_argument("--checkpoint", required=True,
                         help="transformers folder (config.json + safetensors / .bin)")
    convert.add_argument("--out", required=True, help="new directory for the converted encoder")
    convert.add_argument("--weights", default=None,
                         help="weights file to use instead of the folder's own")
    convert.set_defaults(func=_cmd_convert)

    average = sub.add_parser("average", help="average the DiT of several training runs (their "
                                              "EMA when kept) into a new workdir for eval and "
                                              "sample")
    average.add_argument("checkpoints", nargs="+", metavar="CKPT",
                         help="a training workdir (its newest DiT checkpoint) or WORKDIR@STEP; "
                              "at least two, of the same model")
    average.add_argument("--out", required=True, help="new workdir to write the average to "
                         "(its config and TAE are the first run's)")
    average.add_argument("--weights", default=None, metavar="W1,W2,...",
                         help="one weight per CKPT, comma separated, normalised to sum to 1 "
                              "(default: uniform)")
    average.set_defaults(func=_cmd_average)

    config = sub.add_parser("config", help="inspect experiment configs")
    config_sub = config.add_subparsers(dest="config_command", required=True,
                                       metavar="CONFIG_COMMAND")
    show = config_sub.add_parser("show", help="print the resolved config (overrides applied, "
                                              "validated), every key")
    show.add_argument("--config", required=True, help=config_help)
    show.add_argument("--json", action="store_true", help="print JSON instead of key = value lines")
    show.set_defaults(func=_cmd_config_show)
    return parser


OVERRIDABLE = ("train", "plan", "data", "config", "sweep")


def main(argv=None) -> None:
    overrides, rest = _split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(rest)
    if overrides and args.command not in OVERRIDABLE:
        sys.exit(f"mgen {args.command}: --config.* overrides only apply to "
                 + ", ".join(f"`mgen {c}`" for c in OVERRIDABLE))
    from mgen_jax.parallel.compilation_cache import enable_compilation_cache
    enable_compilation_cache()  # restarts and repeated commands reuse their compiled programs
    try:
        args.func(args, overrides)
    except USER_ERRORS as err:
        if os.environ.get("MGEN_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f"mgen {args.command}: {message}")


if __name__ == "__main__":
    main()
