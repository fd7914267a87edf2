"""`mgen` as a user meets it: every flag documented, user errors in one line, config show."""
import argparse
import json

import pytest

from mgen_jax import cli

SMOKE = "experiments/quickstart.py:smoke"


def _subparsers(parser, prefix=("mgen",)):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, prefix + (name,))


def test_every_flag_says_what_it_does():
    walked = {" ".join(path) for path, _ in _subparsers(cli.build_parser())}
    assert {"mgen train", "mgen sample", "mgen data precompute-text", "mgen config show"} <= walked
    undocumented = [f"{' '.join(path)} {action.option_strings or action.dest}"
                    for path, parser in _subparsers(cli.build_parser())
                    for action in parser._actions
                    if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
                    and not (action.help and action.help.strip())]
    assert undocumented == []


def _one_line_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    message = exit_info.value.code
    assert isinstance(message, str), f"{argv}: exit code {message!r} instead of a message"
    assert "\n" not in message and "Traceback" not in message
    assert "Traceback" not in capsys.readouterr().err
    return message


@pytest.mark.parametrize("argv, expected", [
    (["sample", "--workdir=/does/not/exist", "--prompt=a red ball", "--out=/tmp/x"],
     "mgen sample: workdir /does/not/exist does not exist"),
    (["eval", "--workdir=/does/not/exist"], "mgen eval: workdir /does/not/exist does not exist"),
    (["train", "--config=experiments/nope.py", "--workdir=/tmp/w"],
     "mgen train: config file 'experiments/nope.py' does not exist"),
    (["train", f"--config={SMOKE}", "--config.dit.widht=3", "--workdir=/tmp/w"],
     "mgen train: unknown config key 'dit.widht'"),
    (["plan", f"--config={SMOKE}", "--config.dit.attention=flash9", "--topology=v5p:2x2x1"],
     "mgen plan: dit.attention: 'flash9' unknown"),
    (["config", "show", f"--config={SMOKE}", "--config.data.frames=7"],
     "mgen config: data.frames: 7 is neither 1"),
    (["data", "precompute-text", f"--config={SMOKE}", "--data=/does/not/exist", "--out=/tmp/c"],
     "mgen data: --data=/does/not/exist: no such dataset directory"),
    (["convert", "--encoder=ul2", "--checkpoint=/does/not/exist", "--out=/tmp/never"],
     "mgen convert: "),
    (["text-embed", "--encoder=ul2", "--checkpoint=/does/not/exist", "--prompt=a", "--out=/tmp/e.npy"],
     "mgen text-embed: "),
])
def test_user_errors_are_one_line(argv, expected, capsys):
    assert _one_line_error(argv, capsys).startswith(expected)


def test_a_folder_that_is_not_a_workdir(tmp_path, capsys):
    message = _one_line_error(["sample", f"--workdir={tmp_path}", "--prompt=a", "--out=/tmp/x"],
                              capsys)
    assert message == f"mgen sample: {tmp_path} holds no config.json: not an mgen training workdir"


def test_overrides_are_refused_where_they_do_not_apply(capsys):
    message = _one_line_error(["eval", "--workdir=/tmp/w", "--config.dit.width=3"], capsys)
    assert message.startswith("mgen eval: --config.* overrides only apply to `mgen train`")


def test_config_show_prints_every_key(capsys):
    from mgen_jax.configs.flat import flatten_config
    from mgen_jax.configs.loading import load_config
    cli.main(["config", "show", f"--config={SMOKE}", "--config.dit_optimizer.lr=3e-4"])
    lines = capsys.readouterr().out.splitlines()
    cfg = load_config(SMOKE, ["dit_optimizer.lr=3e-4"])
    assert lines == [f"{k} = {v!r}" for k, v in flatten_config(cfg)]
    assert "dit_optimizer.lr = 0.0003" in lines and "text.encoders.ul2.model.d_model = 64" in lines
    cli.main(["config", "show", f"--config={SMOKE}", "--json"])
    assert json.loads(capsys.readouterr().out)["dit_train"]["steps"] == 4


def test_guidance_flag_and_its_deprecated_alias():
    parser = cli.build_parser()
    args = parser.parse_args(["sample", "--workdir=w", "--prompt=p", "--out=o", "--guidance=3"])
    assert (args.guidance, args.cfg) == (3.0, None)
    args = parser.parse_args(["sample", "--workdir=w", "--prompt=p", "--out=o", "--cfg=2.5"])
    assert (args.guidance, args.cfg) == (None, 2.5)
