"""Regression tests of the CLI defects of "Reliability, second round" (each failed before the fix).

1. training options accepted silently (``--lr inf`` trained a NaN policy, ``--steps 0`` became
   4000, ``--lr nan`` / ``--threads 0`` / ``--seed -1`` / ``--out FILE`` ended in tracebacks);
   every numeric option of every command is now validated where it is parsed;
2. every usage error (unknown option or command, missing argument, bad value) was a raw traceback
   of typer's vendored click with exit code 1;
3. other tracebacks: a binary ``--from`` label file, ``assist --models`` on a checkpoint folder named
   unlike its model, an ``--obs state=`` width the policy cannot take, a repeated ``--obs state=``,
   a non-object line in ``handovers.jsonl``; ``--failure-type ""`` stored as "unknown";
   ``benchmark --data`` ignoring ``--fresh-episodes``;
4. ``collect --help`` without ``python:FILE.py:FUNC``; training bars ending at N/N after early
   stopping; ``TorchPolicyAdapter.reset`` never reaching the wrapped model.

CLI tests run in-process through ``salus.cli.main.main()`` with ``sys.argv`` set, as the console
script runs it (``main(argv)`` takes the arguments directly too).
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
from torch import nn

from salus.cli.main import app, main
from salus.errors import InvalidInputError

from .helpers import write_dataset, write_signal_dataset

ROOT = Path(__file__).resolve().parents[2]


def salus(argv: list[str]) -> None:
    """``salus ARGV`` in-process, as the console script runs it (``main()`` reading ``sys.argv``)."""
    saved = sys.argv
    sys.argv = ["salus", *argv]
    try:
        main()
    finally:
        sys.argv = saved


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``salus ARGV`` in-process: (exit code, stdout + stderr with the rich boxes and wrapping removed)."""
    try:
        salus(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    text = re.sub(r"[│╭╮╰╯─]", " ", out.out + out.err)
    return code, " ".join(text.split())


class Reached(Exception):
    """Raised by a patched stage: the command got past its checks (and would have done work)."""


@pytest.fixture
def no_work(monkeypatch):
    """Every long-running stage a command could reach raises Reached, so a check that fails to
    refuse an option ends the test at once instead of starting a demo, a collection or a training."""
    import salus.collect.collector
    import salus.jobs.benchmark
    import salus.jobs.demo
    import salus.policies.builtin.training
    import salus.policies.demonstrations
    import salus.policies.evaluation
    import salus.signals.analysis
    import salus.sim.rollout

    def reached(*args: Any, **kwargs: Any) -> Any:
        raise Reached(args, kwargs)

    for module, name in (
        (salus.jobs.demo, "run_demo"),
        (salus.jobs.benchmark, "run_benchmark"),
        (salus.collect.collector, "collect"),
        (salus.policies.demonstrations, "record_demonstrations"),
        (salus.policies.builtin.training, "train_policy"),
        (salus.policies.evaluation, "evaluate_conditions"),
        (salus.signals.analysis, "fit_extractor_from_rollouts"),
        (salus.signals.analysis, "run_policy_rollouts"),
        (salus.sim.rollout, "run_rollouts"),
    ):
        monkeypatch.setattr(module, name, reached)


# --------------------------------------------------------------------------- the commands
def _leaves(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subs = getattr(cmd, "commands", None)
    if subs:
        return [leaf for name, sub in sorted(subs.items()) for leaf in _leaves(sub, (*path, name))]
    return [(path, cmd)]


def _groups(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(cmd, "commands", None)
    if not subs:
        return []
    return [path, *[g for name, sub in sorted(subs.items()) for g in _groups(sub, (*path, name))]]


ROOT_COMMAND = typer.main.get_command(app)
LEAVES = dict(_leaves(ROOT_COMMAND))
GROUPS = _groups(ROOT_COMMAND)
IDS = [" ".join(p) for p in LEAVES]


def _functions(t: typer.Typer, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """The Python function of every registered command, by command path."""
    out: dict[tuple[str, ...], Any] = {}
    for info in t.registered_commands:
        fn = info.callback
        name = info.name or fn.__name__.lower().replace("_", "-")
        out[(*path, name)] = fn
    for group in t.registered_groups:
        out.update(_functions(group.typer_instance, (*path, group.name)))
    return out


FUNCTIONS = _functions(app)


def _kind(fn: Any, name: str) -> type | None:
    """int or float when parameter ``name`` of ``fn`` is numeric (also ``int | None``, ``list[float]``)."""
    hint = typing.get_type_hints(fn)[name]
    args = {hint, *typing.get_args(hint)}
    args |= {a for x in list(args) for a in typing.get_args(x)}
    return next((t for t in (float, int) if t in args), None)


def _params(path: tuple[str, ...]) -> list[Any]:
    return [p for p in LEAVES[path].params if p.name != "help"]


def _option_name(p: Any) -> str:
    return max(p.opts, key=len)


def _value_option(path: tuple[str, ...]) -> Any | None:
    return next(
        (p for p in _params(path) if p.opts[0].startswith("-") and not getattr(p, "is_flag", False)), None
    )


def test_the_walk_finds_every_command() -> None:
    assert {"collect", "train", "evaluate", "benchmark", "assist"} <= {p[0] for p in LEAVES}
    assert ("policy", "train") in LEAVES and ("dataset", "label") in LEAVES and ("sim", "rollout") in LEAVES
    assert set(FUNCTIONS) == set(LEAVES)


# --------------------------------------------------------------------------- defect 2: usage errors
@pytest.mark.parametrize("path", list(LEAVES), ids=IDS)
def test_2_unknown_option_exits_2_with_typers_message(path: tuple[str, ...], capsys) -> None:
    code, text = run([*path, "--no-such-option"], capsys)
    assert code == 2, text
    assert "No such option: --no-such-option" in text and "Traceback" not in text
    assert f"Try 'salus {' '.join(path)} --help' for help" in text


@pytest.mark.parametrize("path", list(LEAVES), ids=IDS)
def test_2_missing_argument_exits_2(path: tuple[str, ...], capsys, no_work) -> None:
    required = [p for p in _params(path) if p.required]
    option = _value_option(path)
    if required:  # nothing given: the first required parameter is named
        code, text = run(list(path), capsys)
        assert code == 2, text
        assert "Missing" in text and "Traceback" not in text
    elif option is not None:  # an option without its value (never run: demo would collect)
        code, text = run([*path, _option_name(option)], capsys)
        assert code == 2, text
        assert f"Option '{_option_name(option)}' requires an argument" in text
    else:  # flags only: an argument it does not take
        code, text = run([*path, "surplus"], capsys)
        assert code == 2, text
        assert "unexpected extra argument" in text and "(surplus)" in text


@pytest.mark.parametrize("path", list(LEAVES), ids=IDS)
def test_2_bad_value_exits_2_naming_the_option(path: tuple[str, ...], capsys, no_work) -> None:
    fn = FUNCTIONS[path]
    numeric = [p for p in _params(path) if p.opts and p.opts[0].startswith("-") and _kind(fn, p.name)]
    flags = [p for p in _params(path) if getattr(p, "is_flag", False) and p.opts]
    if numeric:
        name = _option_name(numeric[0])
        code, text = run([*path, name, "abc"], capsys)
        assert code == 2, text
        assert f"Invalid value for '{name}'" in text and "Traceback" not in text
    elif flags:
        name = _option_name(flags[0])
        code, text = run([*path, f"{name}=yes"], capsys)
        assert code == 2, text
        assert "does not take a value" in text
    else:
        code, text = run([*path, "--out"], capsys)
        assert code == 2, text


@pytest.mark.parametrize("path", list(LEAVES), ids=IDS)
def test_2_misspelt_command_exits_2(path: tuple[str, ...], capsys) -> None:
    code, text = run([*path[:-1], path[-1] + "x"], capsys)
    assert code == 2, text
    assert f"No such command '{path[-1]}x'" in text and "Traceback" not in text


@pytest.mark.parametrize("group", GROUPS, ids=[" ".join(g) or "salus" for g in GROUPS])
def test_2_unknown_subcommand_of_every_group_exits_2(group: tuple[str, ...], capsys) -> None:
    code, text = run([*group, "no-such-command"], capsys)
    assert code == 2, text
    assert "No such command 'no-such-command'" in text


def test_2_main_takes_argv_directly(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--no-such-option"])
    assert exc.value.code == 2 and "No such option: --no-such-option" in capsys.readouterr().err


def test_2_typer_is_pinned_to_the_tested_range() -> None:
    from importlib.metadata import version

    from packaging.requirements import Requirement

    lines = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    assert "torch==2.13.0" in lines
    pins = [Requirement(ln) for ln in lines if ln.startswith("typer")]
    assert len(pins) == 1 and pins[0].specifier, lines
    assert pins[0].specifier.contains(version("typer")), (pins[0], version("typer"))


# --------------------------------------------------------------------------- defect 1: numeric options
ALLOWED_UNCHECKED = {
    # an index into --horizons, checked against them by TrainConfig before the data is read
    (("train",), "score_horizon"),
}


def _numeric_params() -> list[tuple[tuple[str, ...], str, type]]:
    out = []
    for path, fn in FUNCTIONS.items():
        for name in inspect.signature(fn).parameters:
            kind = _kind(fn, name)
            if kind is not None:
                out.append((path, name, kind))
    return out


NUMERIC = _numeric_params()


def test_1_every_numeric_option_has_a_range_check() -> None:
    assert len(NUMERIC) > 50
    unchecked = []
    for path, name, _ in NUMERIC:
        info = inspect.signature(FUNCTIONS[path]).parameters[name].default
        has_range = getattr(info, "min", None) is not None or getattr(info, "max", None) is not None
        if info.callback is None and not has_range and (path, name) not in ALLOWED_UNCHECKED:
            unchecked.append(f"{' '.join(path)} {name}")
    assert not unchecked, f"numeric options without a range check: {unchecked}"


FLOATS = [(path, name) for path, name, kind in NUMERIC if kind is float]


@pytest.mark.parametrize("path,name", FLOATS, ids=[f"{' '.join(p)} {n}" for p, n in FLOATS])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_1_float_options_refuse_nan_and_infinities(path, name, value, capsys, no_work) -> None:
    param = next(p for p in _params(path) if p.name == name)
    option = _option_name(param)
    code, text = run([*path, option, value], capsys)
    assert code == 2, text
    assert f"Invalid value for '{option}': must be a finite number" in text, text


@pytest.fixture
def no_training(monkeypatch):
    """`salus policy train` (builtin) records nothing and trains nothing: the patched recorder
    raises Reached with the TrainConfig the command built."""
    from salus.policies import demonstrations
    from salus.policies.builtin import training

    seen: dict[str, Any] = {}

    def fake_record(*args: Any, **kwargs: Any) -> Any:
        raise Reached("recording")

    def fake_train(data: Any, model_config: Any, train_config: Any, **kwargs: Any) -> Any:
        seen["config"] = train_config
        raise Reached("training")

    monkeypatch.setattr(demonstrations, "record_demonstrations", fake_record)
    monkeypatch.setattr(training, "train_policy", fake_train)
    return seen


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lr", "inf"], "Invalid value for '--lr': must be a finite number > 0, got inf"),
        (["--lr", "nan"], "Invalid value for '--lr': must be a finite number > 0, got nan"),
        (["--lr", "0"], "Invalid value for '--lr': must be a finite number > 0, got 0.0"),
        (["--lr", "-1e-3"], "Invalid value for '--lr': must be a finite number > 0"),
        (["--steps", "0"], "Invalid value for '--steps': must be an integer >= 1, got 0"),
        (["--batch-size", "0"], "Invalid value for '--batch-size': must be an integer >= 1, got 0"),
        (["--threads", "0"], "Invalid value for '--threads': must be an integer >= 1, got 0"),
        (["--seed", "-1"], "Invalid value for '--seed': must be an integer in [0, 4294967295], got -1"),
        (["--demos", "0"], "Invalid value for '--demos': must be an integer >= 1, got 0"),
        (["--image-shift", "-2"], "Invalid value for '--image-shift': must be an integer >= 0, got -2"),
        (["--demo-noise", "nan"], "Invalid value for '--demo-noise': must be a finite number in [0, 1]"),
        (["--arch", "smolvla", "--checkpoint-every", "0"], "Invalid value for '--checkpoint-every'"),
    ],
)
def test_1_policy_train_refuses_bad_numbers_up_front(args, message, tmp_path, capsys, no_training) -> None:
    code, text = run(["policy", "train", "--out", str(tmp_path / "p"), *args], capsys)
    assert code == 2, text
    assert message in text, text
    assert not (tmp_path / "p").exists()


def test_1_policy_train_out_naming_a_file_is_refused(tmp_path, capsys, no_training) -> None:
    f = tmp_path / "a_file"
    f.write_text("x")
    code, text = run(["policy", "train", "--out", str(f)], capsys)
    message = f"Invalid value for '--out': {f} must be a folder (existing or new), not a file"
    squeeze = "".join  # rich may wrap a long path anywhere: compare without whitespace
    assert code == 2 and squeeze(message.split()) in squeeze(text.split()), text
    code, text = run(["policy", "train", "--out", str(f / "sub")], capsys)
    assert code == 2 and squeeze(f"({f} is a file)".split()) in squeeze(text.split()), text


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "DATA", "--out", "FILE"],
        ["evaluate", "M", "DATA", "--out", "FILE"],
        ["report", "M", "DATA", "--out", "FILE"],
        ["assist", "DATA", "--models", "M", "--fresh", "F", "--out", "FILE"],
        ["collect", "--out", "FILE"],
        ["dataset", "repair", "DATA", "--out", "FILE"],
        ["benchmark", "--out", "FILE"],
        ["demo", "--out", "FILE"],
        ["policy", "demos", "--out", "FILE"],
        ["sim", "rollout", "--save-frames", "FILE"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_1_output_folders_naming_a_file_are_refused(argv, tmp_path, capsys, no_work) -> None:
    f = tmp_path / "a_file"
    f.write_text("x")
    code, text = run([str(f) if a == "FILE" else a for a in argv], capsys)
    assert code == 2, text
    assert "must be a folder (existing or new), not a file" in text, text


def test_1_explicit_values_reach_the_train_config_and_defaults_are_the_configs(
    tmp_path, capsys, monkeypatch, no_training
) -> None:
    """No more `x or default`: given values are used as given, absent ones are TrainConfig's."""
    from salus.jobs import policy_train as policy_job
    from salus.policies.builtin.training import TrainConfig

    monkeypatch.setattr(policy_job, "record", lambda *a, **k: (None, 0.0))
    with pytest.raises(Reached):
        salus(
            [
                "policy",
                "train",
                "--out",
                str(tmp_path / "p"),
                "--steps",
                "7",
                "--batch-size",
                "5",
                "--lr",
                "0.02",
            ]
        )
    cfg = no_training["config"]
    assert (cfg.steps, cfg.batch_size, cfg.lr) == (7, 5, 0.02)
    with pytest.raises(Reached):
        salus(["policy", "train", "--out", str(tmp_path / "q")])
    cfg, default = no_training["config"], TrainConfig()
    assert (cfg.steps, cfg.batch_size, cfg.lr) == (default.steps, default.batch_size, default.lr)


def test_1_training_configs_refuse_non_finite_numbers() -> None:
    from salus.policies.builtin.training import TrainConfig as PolicyTrainConfig
    from salus.policies.smolvla.training import SmolVLATrainConfig
    from salus.predictor.config import TrainConfig as PredictorTrainConfig

    for cls in (PolicyTrainConfig, SmolVLATrainConfig, PredictorTrainConfig):
        for field in ("lr", "weight_decay"):
            for bad in (math.inf, math.nan):
                with pytest.raises(InvalidInputError, match="finite"):
                    cls(**{field: bad})
    with pytest.raises(InvalidInputError, match="grad_clip"):
        PolicyTrainConfig(grad_clip=math.nan)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "D", "--out", "o", "--epochs", "0"], "'--epochs': must be an integer >= 1"),
        (
            ["train", "D", "--out", "o", "--alpha", "1"],
            "'--alpha': must be a finite number in (0, 1), got 1.0",
        ),
        (
            ["train", "D", "--out", "o", "--val-fraction", "0"],
            "'--val-fraction': must be a finite number in (0, 1)",
        ),
        (["train", "D", "--out", "o", "--threads", "0"], "'--threads': must be an integer >= 1, got 0"),
        (
            ["train", "D", "--out", "o", "--split-seeds", "0,-3"],
            "every --split-seeds seed must be an integer in",
        ),
        (
            ["train", "D", "--out", "o", "--score-horizon", "9"],
            "score_horizon 9 is not an index into horizons",
        ),
        (
            ["evaluate", "M", "D", "--alpha", "0.1", "--alpha", "2"],
            "'--alpha': must be a finite number in (0, 1)",
        ),
        (["report", "M", "D", "--out", "o", "--threads", "-1"], "'--threads': must be an integer >= 1"),
        (["replay", "D", "--episode", "-1", "--out", "x.png"], "'--episode': must be an integer >= 0"),
        (
            ["replay", "D", "--episode", "0", "--out", "x.png", "--fps", "0"],
            "'--fps': must be a finite number in (0, 1000]",
        ),
        (["collect", "--out", "o", "--episodes", "0"], "'--episodes' / '-n': must be an integer >= 1"),
        (["collect", "--out", "o", "--workers", "0"], "'--workers' / '-w': must be an integer >= 1"),
        (["collect", "--out", "o", "--samples", "0"], "'--samples': must be an integer >= 1"),
        (["collect", "--out", "o", "--max-steps", "0"], "'--max-steps': must be an integer >= 1"),
        (["collect", "--out", "o", "--seed", "-1"], "'--seed': must be an integer in [0, 4294967295]"),
        (["demo", "--episodes", "7"], "'--episodes' / '-n': must be an integer >= 8, got 7"),
        (["demo", "--alpha", "0"], "'--alpha': must be a finite number in (0, 1)"),
        (["benchmark", "--fresh-episodes", "-1"], "'--fresh-episodes': must be an integer >= 0"),
        (["benchmark", "--split-seeds", "x"], "--split-seeds must be a comma list of integers"),
        (
            ["assist", "D", "--models", "M", "--fresh", "F", "--alphas", "0.1,nan"],
            "every --alphas value must be",
        ),
        (
            ["assist", "D", "--models", "M", "--fresh", "F", "--sweep-rates", "0.5,0"],
            "every --sweep-rates value must be",
        ),
        (
            ["assist", "D", "--models", "M", "--fresh", "F", "--workers", "0"],
            "'--workers' / '-w': must be an integer >= 1",
        ),
        (["policy", "eval", "--episodes", "0"], "'--episodes': must be an integer >= 1"),
        (["policy", "eval", "--batch-size", "0"], "'--batch-size': must be an integer >= 1"),
        (["policy", "demos", "--out", "o", "--image-size", "4"], "'--image-size': must be an integer >= 8"),
        (["signals", "check", "--rollouts", "-1"], "'--rollouts': must be an integer >= 0"),
        (["signals", "fit", "--batch-size", "0"], "'--batch-size': must be an integer >= 1"),
        (["sim", "rollout", "--image-size", "0"], "'--image-size': must be an integer >= 8"),
        (["dataset", "label", "D", "--success", "--", "-1"], "must be an integer >= 0, got -1"),
        (["dataset", "label", "D", "0", "--failure-step", "-2"], "'--failure-step': must be an integer >= 0"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else None,
)
def test_1_numeric_options_of_every_command_are_checked_with_the_range_in_the_message(
    argv, message, tmp_path, capsys, monkeypatch, no_work
) -> None:
    monkeypatch.chdir(tmp_path)  # relative --out paths never land in the repository
    code, text = run(argv, capsys)
    assert code == 2, text
    assert message in text, text
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- defect 3
def test_3_binary_label_file_is_refused_clearly(tmp_path, capsys) -> None:
    data = tmp_path / "d.zarr"
    write_dataset(data, 3)
    for suffix in (".csv", ".json"):
        f = tmp_path / f"labels{suffix}"
        f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
        code, text = run(["dataset", "label", str(data), "--from", str(f)], capsys)
        assert code == 2, text
        assert (
            f"label file {f} is not UTF-8 text" in text
            and "episode,success,failure_step,failure_type" in text
        )
    csv = tmp_path / "bom.csv"  # a spreadsheet's CSV (UTF-8 with a byte-order mark) still reads
    csv.write_bytes("\ufeffepisode,success,failure_step,failure_type\n1,false,2,drop\n".encode())
    code, text = run(["dataset", "label", str(data), "--from", str(csv), "--overwrite", "--json"], capsys)
    assert code == 0, text
    assert '"failure_type": "drop"' in text


def test_3_empty_failure_type_is_refused_not_stored_as_unknown(tmp_path, capsys) -> None:
    from salus.data import SalusDataset

    data = tmp_path / "d.zarr"
    write_dataset(data, 3)
    argv = ["dataset", "label", str(data), "1", "--failure-step", "2", "--overwrite"]
    code, text = run([*argv, "--failure-type", ""], capsys)
    assert code == 2, text
    assert "a failure needs a --failure-type other than ''" in text
    assert not SalusDataset(data).attrs.get("salus_labels")
    code, text = run([*argv, "--json"], capsys)
    assert code == 0 and '"failure_type": "unknown"' in text, text  # not given at all: unknown


def test_3_repeated_obs_state_is_refused(tmp_path, capsys) -> None:
    from salus.collect.envs import ObservationMap

    argv = ["collect", "--env", "gym_pusht/PushT-v0", "--out", str(tmp_path / "o.zarr")]
    code, text = run([*argv, "--obs", "state=agent_pos", "--obs", "state=environment_state"], capsys)
    assert code == 2, text
    assert "--obs gives state twice ('state=agent_pos' and 'state=environment_state')" in text
    assert "state=KEY,KEY" in text
    assert not (tmp_path / "o.zarr").exists()
    for items in (["task=a", "task=b"], ["robot_state=a", "robot_state=b"], ["image_top=a", "image_top=b"]):
        with pytest.raises(InvalidInputError, match="twice"):
            ObservationMap.parse(items)
    assert ObservationMap.parse(["state=a,b", "task=t"]).state == ("a", "b")


class _FiveWide(nn.Module):
    """A chunk policy whose trunk takes a 5-wide state (like examples/byo_pusht.py's)."""

    def __init__(self, state_dim: int | None = None):
        super().__init__()
        if state_dim is not None:
            self.state_dim = state_dim
        self.trunk = nn.Linear(5, 8)
        self.action_out_proj = nn.Linear(8 + 3, 3)
        self.calls = 0
        self.resets: list[dict[str, Any]] = []

    def sample_actions(self, batch: dict[str, Any], noise: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = torch.tanh(self.trunk(batch["state"].float()))  # (N, 8)
        h = h[:, None].expand(-1, noise.shape[1], -1)
        return noise + self.action_out_proj(torch.cat([h, noise], dim=-1))


def _adapter(model: nn.Module, **kwargs: Any) -> Any:
    from salus.policies import TorchPolicyAdapter

    return TorchPolicyAdapter(
        model, output_layer="action_out_proj", embedding_layer="trunk", chunk_size=4, n_action_steps=2,
        action_dim=3, **kwargs,
    )  # fmt: skip


def test_3_a_state_width_the_policy_cannot_take_is_a_clear_error() -> None:
    obs = {"state": np.zeros(2, np.float32), "task": "push"}
    ok = {"state": np.zeros(5, np.float32), "task": "push"}
    # Undeclared: torch's shape error inside the model (was a RuntimeError) becomes an
    # InvalidInputError with the shapes.
    ad = _adapter(_FiveWide())
    with pytest.raises(
        InvalidInputError, match=r"cannot take inputs of shapes \{'state': \(1, 2\)\}.*--obs state="
    ):
        ad.act(obs)
    assert ad.act(ok).shape == (3,)
    # Declared (argument, or the model's state_dim): refused before the model runs.
    for ad in (_adapter(_FiveWide(), state_dim=5), _adapter(_FiveWide(state_dim=5))):
        with pytest.raises(
            InvalidInputError, match=r"takes a state of 5 entries.*gives \(2,\).*--obs state="
        ):
            ad.act(obs)
        assert ad.model.calls == 0
        assert ad.act(ok).shape == (3,)


def test_3_state_width_through_collect_is_exit_2(tmp_path, capsys) -> None:
    """`salus collect --env` with a 2-wide state for the example's 5-wide policy."""
    out = tmp_path / "o.zarr"
    argv = [
        "collect", "--env", "gym_pusht/PushT-v0", "--env-kwargs", '{"obs_type": "environment_state_agent_pos"}',
        "--obs", "state=agent_pos", "--task-text", "push the T", "--policy",
        f"python:{ROOT / 'examples' / 'byo_pusht.py'}:make_policy", "--episodes", "1", "--max-steps", "3",
        "--signal-stats", "none", "--out", str(out),
    ]  # fmt: skip
    code, text = run(argv, capsys)
    assert code == 2, text
    assert re.search(r"cannot take inputs of shapes \{'state': \(\d+, 2\)\}", text), text
    assert "mat1 and mat2 shapes cannot be multiplied" in text and "--obs state=KEY" in text
    assert not out.exists()  # nothing is left behind


def test_3_handover_file_lines_that_are_not_records_are_skipped_and_said(tmp_path) -> None:
    """A non-object line of handovers.jsonl is treated like a torn line: its episode is simulated
    again (the file is a cache of deterministic results; refusing would force deleting all of it)."""
    from salus.monitor.assist import _load_done, _run_jobs

    good = {"key": "ep0", "outcomes": [{"step": -1, "success": True}]}
    lines = [
        json.dumps(good),
        "[1, 2]",
        '"a string"',
        "17",
        "null",
        json.dumps({"key": 3, "outcomes": []}),
        json.dumps({"key": "ep1", "outcomes": [1, 2]}),
        json.dumps({"key": "ep2"}),
        "",
        '{"key": "ep3", "outc',
    ]
    path = tmp_path / "handovers.jsonl"
    path.write_text("\n".join(lines))
    assert _load_done(path) == {"ep0": good["outcomes"]}  # was a TypeError on "[1, 2]"
    skipped: list[int] = []
    assert _load_done(path, skipped) == {"ep0": good["outcomes"]}
    assert skipped == [2, 3, 4, 5, 6, 7, 8, 10]
    said: list[str] = []
    done = _run_jobs([], path, 1, None, said.append)
    assert done == {"ep0": good["outcomes"]}
    assert len(said) == 1 and "ignored 8 line(s)" in said[0] and "simulated again" in said[0]


# ------------------------------------------------- a small benchmark + fresh dataset, trained by the CLI
def _write_signal_dataset(path: Path, n: int, seed0: int, rng: np.random.Generator) -> None:
    collect = {"policy": "builtin", "tasks": ["pick_place", "push", "stack"], "seed": seed0, "episodes": n}
    write_signal_dataset(path, n, seed0, rng, fit_rows=64, attrs={"collect": collect})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A benchmark and a fresh dataset, and `salus train --model salus-mlp` into a folder named
    unlike its model, with every progress bar of the run recorded."""
    import rich.progress

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    _write_signal_dataset(root / "bench.zarr", 72, 1000, rng)
    _write_signal_dataset(root / "fresh.zarr", 24, 5000, rng)
    bars: list[Any] = []
    original = rich.progress.Progress

    class Recorded(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

    out = root / "my-checkpoint"
    mp = pytest.MonkeyPatch()
    mp.setattr(rich.progress, "Progress", Recorded)
    try:
        salus(["train", str(root / "bench.zarr"), "--model", "salus-mlp", "--out", str(out), "--epochs", "40",
              "--patience", "1", "--holdout-task", "stack", "--calib-fraction", "0.3", "--json"])  # fmt: skip
    finally:
        mp.undo()
    return {"root": root, "out": out, "bars": bars}


def test_4_training_bar_ends_at_the_epoch_early_stopping_stopped(trained) -> None:
    from salus.predictor import TrainedPredictor

    ran = TrainedPredictor.load(trained["out"]).meta["training"]["epochs_run"]
    assert ran < 40, "patience 1 stops well before 40 epochs on these episodes"
    tasks = [t for bar in trained["bars"] for t in bar.tasks if "salus-mlp" in str(t.description)]
    assert len(tasks) == 1
    assert (tasks[0].completed, tasks[0].total) == (ran, ran)  # not 40/40
    assert tasks[0].fields["info"] == f"stopped early at epoch {ran} of 40"


def test_3_assist_on_a_checkpoint_folder_named_unlike_its_model(trained, monkeypatch, tmp_path) -> None:
    """`salus assist --models DIR` where DIR is one checkpoint folder named `my-checkpoint` (the
    model is salus-mlp): the selection is the model's name, not the folder's (was a KeyError)."""
    from salus.monitor import assist

    seen: dict[str, Any] = {}

    def stop(fresh: Any, steps: Any, keys: Any) -> Any:
        seen["steps"] = steps
        raise Reached("handover jobs")

    monkeypatch.setattr(assist, "handover_jobs", stop)
    root = trained["root"]
    with pytest.raises(Reached):
        assist.run_assist(root / "bench.zarr", trained["out"], root / "fresh.zarr", tmp_path / "assist")
    assert len(seen["steps"]) == 24


# --------------------------------------------------------------------------- benchmark --data
def test_3_benchmark_with_data_refuses_fresh_episode_options(tmp_path, capsys, monkeypatch) -> None:
    from salus.jobs import benchmark

    def stages(*args: Any, **kwargs: Any) -> Any:
        raise Reached(*args)

    monkeypatch.setattr(benchmark, "run_benchmark", stages)
    argv = ["benchmark", "--data", str(tmp_path / "mine.zarr"), "--out", str(tmp_path / "b")]
    for extra in (["--fresh-episodes", "10"], ["--fresh-seed", "9"]):
        code, text = run([*argv, *extra], capsys)
        assert code == 2, text
        assert "--fresh-episodes / --fresh-seed run the closed loop" in text and "needs our simulator" in text
    with pytest.raises(Reached) as got:  # without them (or with 0) --data goes ahead, without a closed loop
        salus([*argv, "--fresh-episodes", "0"])
    assert got.value.args[0].fresh_count() == 0
    assert "assist" not in [s.name for s in got.value.args[0].stages()]
    with pytest.raises(Reached) as got:
        salus(["benchmark", "--out", str(tmp_path / "b")])  # our simulator: the default closed loop
    assert got.value.args[0].fresh_count() == benchmark.benchmark_size("smolvla").fresh_episodes
    fresh = next(s.job for s in got.value.args[0].stages() if s.name == "collect fresh")
    assert fresh.seed == benchmark.FRESH_SEED


# --------------------------------------------------------------------------- small items
def test_4_collect_help_names_the_python_policy_spec(capsys) -> None:
    code, text = run(["collect", "--help"], capsys)
    assert code == 0, text
    assert "python:FILE.py:FUNC" in text and "python:MODULE:FUNC" in text


class _Stateful(_FiveWide):
    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        self.resets.append({"env_index": env_index, "seed": seed})


class _WholeBatch(_FiveWide):
    def reset(self) -> None:
        self.resets.append({})


class _SeedOnly(_FiveWide):
    def reset(self, *, seed: int | None = None) -> None:
        self.resets.append({"seed": seed})


class _Kwargs(_FiveWide):
    def reset(self, **kwargs: Any) -> None:
        self.resets.append(kwargs)


def test_4_adapter_reset_reaches_the_wrapped_model() -> None:
    obs = {"state": np.zeros((2, 5), np.float32), "task": ["push", "push"]}
    ad = _adapter(_Stateful())
    ad.reset()
    ad.act(obs)
    ad.reset(env_index=1, seed=7)
    ad.reset(seed=3)
    assert ad.model.resets == [
        {"env_index": None, "seed": None},
        {"env_index": 1, "seed": 7},
        {"env_index": None, "seed": 3},
    ]
    whole = _adapter(_WholeBatch())
    whole.act(obs)
    whole.reset(env_index=0)  # would wipe environment 1's state too: not forwarded
    whole.reset(seed=5)
    assert whole.model.resets == [{}]
    seed_only = _adapter(_SeedOnly())
    seed_only.reset(seed=4)
    assert seed_only.model.resets == [{"seed": 4}]
    kw = _adapter(_Kwargs())
    kw.act(obs)
    kw.reset(env_index=1)
    assert kw.model.resets == [{"env_index": 1, "seed": None}]
    plain = _adapter(_FiveWide())  # no reset method: nothing to forward
    plain.reset(seed=1)
    assert plain.model.resets == []


def test_4_the_builtin_adapter_still_resets(tmp_path) -> None:
    """The built-in policy has no reset of its own: its adapter's reset is unchanged."""
    from salus.policies import load_policy

    policy = load_policy("builtin")
    policy.reset(seed=0)
    policy.reset()
