"""`salus policy train | demos | eval | info`: train (built-in or LeRobot SmolVLA), export demonstrations, evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import (
    POLICY_SPEC_HELP,
    in_range,
    out_dir,
    positive_int,
    progress_bar,
    seed_option,
    split_values,
)
from salus.cli._jobs import job_command, json_option, threads_option
from salus.jobs.policy_train import STATE_FEATURES_HELP, TASK_DEMOS_HELP
from salus.policies import DEFAULT_POLICY

__all__ = ["register"]

policy_app = typer.Typer(
    help="Train and evaluate policies (the built-in flow-matching VLA, LeRobot's SmolVLA).",
    no_args_is_help=True,
)


def _check_tasks(tasks: list[str]) -> list[str]:
    from salus.sim.tasks import check_tasks

    return check_tasks(tasks)


def _parse_condition(spec: str) -> list[tuple[str, float]]:
    """``name=strength[+name=strength...]`` -> [(name, strength)] via ``salus.sim.parse_perturbation``."""
    from salus.sim import parse_perturbation

    out = []
    for part in spec.split("+"):
        parsed = parse_perturbation(part.strip())
        if isinstance(parsed, tuple):
            out.append((str(parsed[0]), float(parsed[1])))
        else:  # an object with name / strength
            out.append((str(parsed.name), float(parsed.strength)))
    return out


@policy_app.command("demos")
def demos_command(
    out: Path = typer.Option(
        ..., "--out", callback=out_dir, help="Folder to write the dataset to (LeRobotDataset root)."
    ),
    fmt: str = typer.Option(
        "lerobot", "--format", help="Dataset format: lerobot (LeRobot's LeRobotDataset v3)."
    ),
    tasks: list[str] = typer.Option(
        None, "--tasks", "--task", help="Tasks (repeat or comma-separate); default all."
    ),
    demos: int = typer.Option(
        100, "--demos", callback=positive_int, help="Successful expert demonstrations per task."
    ),
    task_demos: list[str] = typer.Option(None, "--task-demos", help=TASK_DEMOS_HELP),
    seed: int = typer.Option(0, "--seed", callback=seed_option, help="Seeds the demonstrations."),
    demo_noise: float = typer.Option(
        0.0, "--demo-noise", callback=in_range(0, 1), help="DART noise std on executed actions, as for train."
    ),
    image_size: int = typer.Option(
        96, "--image-size", callback=in_range(8), help="Camera image size in pixels."
    ),
    state_features: str = typer.Option(None, "--state-features", help=STATE_FEATURES_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset at --out."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Record scripted-expert demonstrations as a dataset that LeRobot's own tools train on."""
    from salus.errors import InvalidInputError, InvalidNameError
    from salus.jobs.policy_train import PolicyTrainJob, export, record
    from salus.policies.demonstrations import check_demo_noise
    from salus.policies.smolvla.lerobot_dataset import DEFAULT_STATE_FEATURES, state_layout

    if fmt != "lerobot":
        raise InvalidNameError("demonstration format", fmt, ("lerobot",))
    demo_noise = check_demo_noise(demo_noise)
    features = split_values([state_features]) if state_features else list(DEFAULT_STATE_FEATURES)
    state_layout(features)  # bad names fail before anything is recorded
    if Path(out).exists() and not overwrite:
        raise InvalidInputError(f"{out} already exists; pass --overwrite to replace it")
    job = PolicyTrainJob(
        out,
        arch="smolvla",
        tasks=tuple(split_values(tasks)),
        demos=demos,
        seed=seed,
        demo_noise=demo_noise,
        task_demos=tuple(split_values(task_demos)),
    )
    with progress_bar() as bar:
        data, record_s = record(bar, job, image_size)
        export_s = export(bar, data, out, features, job.recording(), overwrite)
    report = {
        "out": str(out),
        "format": fmt,
        "episodes": data.num_episodes,
        "frames": data.num_frames,
        "tasks": list(job.tasks),
        "record_seconds": round(record_s, 1),
        "export_seconds": round(export_s, 1),
    }
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(
            f"wrote {out} ({data.num_episodes} episodes, {data.num_frames} frames); load it with "
            f"LeRobotDataset('salus/demos', root='{out}')"
        )


def _train(job: Any, threads: int, as_json: bool) -> None:
    """Record scripted-expert demonstrations and train a policy by behaviour cloning.

    smolvla: rerun the same command after a kill to resume from the last checkpoint.
    """
    import torch

    from salus.jobs.policy_train import run_policy_train

    torch.set_num_threads(threads)
    with progress_bar() as bar:
        log = run_policy_train(job, bar=bar)
    out = job.out
    if as_json:
        typer.echo(json.dumps({"out": str(out), **{k: v for k, v in log.items() if k != "losses_every_100"}}))
    elif job.arch == "smolvla":
        typer.echo(
            f"wrote {out} ({log['frames']} frames, {log['parameters']:,} parameters, loss "
            f"{log['loss_first']:.4f} -> {log['loss_last']:.4f}); run it with --policy smolvla:{out}"
        )
    else:
        typer.echo(
            f"wrote {out} ({log['frames']} frames, loss {log['loss_first']:.4f} -> {log['loss_last']:.4f})"
        )


def _register_train() -> None:
    from salus.jobs.policy_train import PolicyTrainJob

    job_command(
        policy_app,
        "train",
        PolicyTrainJob,
        _train,
        extra=[threads_option(), json_option("Print one JSON object with the training log.")],
    )


_register_train()


@policy_app.command("package")
def package(
    src: Path = typer.Argument(..., help="A finished `salus policy train --arch smolvla` folder."),
    out: Path = typer.Option(
        ..., "--out", callback=out_dir, help="Where the relocatable copy goes (replaced)."
    ),
) -> None:
    """Copy a trained SmolVLA folder so it loads from anywhere (how the packaged weights are made).

    Keeps the weights, processors, statistics, vlm/, salus_mapping.json, train_log.json and fitted
    signal statistics; the VLM path becomes relative; checkpoints and demonstrations stay behind.
    """
    from salus.policies.smolvla.training import package_smolvla

    dst = package_smolvla(src, out)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    typer.echo(f"wrote {dst} ({size / 1e6:.1f} MB); run it with --policy smolvla:{dst}")


def _train_log(spec: str) -> dict[str, Any]:
    """``train_log.json`` of a policy folder (``NAME:DIR``), or {} when there is none."""
    from salus.policies import PolicySpec

    path = PolicySpec.parse(spec).path
    log = Path(path) / "train_log.json" if path else None
    if log is None or not log.is_file():
        return {}
    data = json.loads(log.read_text())
    return data if isinstance(data, dict) else {}


@policy_app.command("eval")
def evaluate(
    policy: str = typer.Option(
        DEFAULT_POLICY,
        "--policy",
        help=POLICY_SPEC_HELP,
    ),
    tasks: list[str] = typer.Option(
        None, "--task", "--tasks", help="Tasks (default: the policy's training tasks)."
    ),
    episodes: int = typer.Option(
        20, "--episodes", callback=positive_int, help="Episodes per task and condition."
    ),
    seed: int = typer.Option(0, "--seed", callback=seed_option, help="Episode i uses env seed SEED + i."),
    perturb: list[str] = typer.Option(
        None, "--perturb", help="A perturbation condition NAME=STRENGTH[+NAME=STRENGTH]; repeat for several."
    ),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also evaluate unperturbed."),
    max_steps: int = typer.Option(
        None, "--max-steps", callback=positive_int, help="Override the task's step limit."
    ),
    batch_size: int = typer.Option(
        10, "--batch-size", callback=positive_int, help="Environments run in lockstep."
    ),
    n_action_steps: int = typer.Option(
        None, "--n-action-steps", callback=positive_int, help="Override actions executed per chunk."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Success rate per task, unperturbed and under each perturbation condition."""
    import torch

    from salus.jobs.policy_train import plain_log
    from salus.policies import load_policy
    from salus.policies.evaluation import evaluate_conditions
    from salus.sim import TASKS

    torch.set_num_threads(1)
    kwargs: dict[str, Any] = {"seed": seed}
    if n_action_steps is not None:
        kwargs["n_action_steps"] = n_action_steps
    adapter = load_policy(policy, **kwargs)
    config = getattr(adapter, "config", None)
    trained = list(getattr(config, "extra", {}).get("tasks", [])) if config is not None else []
    trained = trained or list(_train_log(policy).get("tasks", []))
    task_list = _check_tasks(split_values(tasks) or trained or list(TASKS))
    conditions: dict[str, list[tuple[str, float]]] = {}
    if baseline or not perturb:
        conditions["none"] = []
    for spec in split_values(perturb):
        conditions[spec] = _parse_condition(spec)
    total = episodes * len(task_list) * len(conditions)
    with progress_bar() as bar:
        job = bar.add_task("episodes", total=total, info=policy)
        finished = 0

        def on_episode(k: int) -> None:
            nonlocal finished
            finished += k
            bar.update(job, advance=k)
            if finished % 10 == 0 or finished == total:
                plain_log(f"{finished}/{total} episodes")

        result = evaluate_conditions(
            adapter,
            task_list,
            episodes,
            conditions,
            seed=seed,
            max_steps=max_steps,
            batch_size=batch_size,
            progress=on_episode,
        )
    report = {"policy": policy, "seed": seed, "episodes": episodes, "tasks": task_list, **result}
    if as_json:
        typer.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{policy}: success rate ({episodes} episodes per cell, seeds {seed}..{seed + episodes - 1})"
    )
    table.add_column("condition")
    for t in task_list:
        table.add_column(t, justify="right")
    table.add_column("all", justify="right")
    for cond, res in result["conditions"].items():
        table.add_row(
            cond, *(f"{res['tasks'][t]['success_rate']:.0%}" for t in task_list), f"{res['success_rate']:.0%}"
        )
    Console().print(table)


@policy_app.command("info")
def info(
    policy: str = typer.Option(
        DEFAULT_POLICY,
        "--policy",
        help=POLICY_SPEC_HELP,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Architecture, sizes and training record of a policy."""
    from salus.policies import load_policy

    adapter = load_policy(policy)
    model = getattr(adapter, "model", None) or getattr(adapter, "policy", None)  # SmolVLA: the LeRobot policy
    config = getattr(adapter, "config", None)
    data: dict[str, Any] = {
        "policy": policy,
        "class": type(adapter).__name__,
        "action_dim": adapter.action_dim,
        "chunk_size": getattr(adapter, "chunk_size", None),
        "n_action_steps": getattr(adapter, "n_action_steps", None),
        "parameters": None if model is None else int(sum(p.numel() for p in model.parameters())),
    }
    if config is not None and hasattr(config, "to_dict"):
        cfg = config.to_dict()
        data["num_steps"] = cfg.get("num_steps")
        data["embed_dim"] = cfg.get("embed_dim")
        data["expert_hidden"] = cfg.get("expert_hidden")
        data["training"] = cfg.get("extra", {})
    else:  # a LeRobot checkpoint folder written by `salus policy train --arch smolvla`
        log = _train_log(policy)
        data["num_steps"] = getattr(getattr(model, "config", None), "num_steps", None)
        data["training"] = {k: v for k, v in log.items() if k != "losses_every_100"}
    typer.echo(json.dumps(data, indent=None if as_json else 2))


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
