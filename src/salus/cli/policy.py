"""`salus policy train | eval | info`: the built-in policy's training and evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import progress_bar, split_values

__all__ = ["register"]

policy_app = typer.Typer(
    help="Train and evaluate policies (the built-in flow-matching VLA).", no_args_is_help=True
)


def _plain_log(message: str) -> None:
    """A plain progress line on stderr when it is not a terminal (background runs logging to a file)."""
    import sys

    if not sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def _check_tasks(tasks: list[str]) -> list[str]:
    from salus.errors import InvalidNameError
    from salus.sim import TASKS

    for t in tasks:
        if t not in TASKS:
            raise InvalidNameError("task", t, TASKS)
    return tasks


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


@policy_app.command("train")
def train(
    tasks: list[str] = typer.Option(
        None, "--tasks", "--task", help="Training tasks (repeat or comma-separate); default all."
    ),
    demos: int = typer.Option(100, "--demos", help="Successful expert demonstrations per task."),
    out: Path = typer.Option(
        ..., "--out", help="Folder to write config.json, model.safetensors, stats.safetensors."
    ),
    steps: int = typer.Option(4000, "--steps", help="Gradient steps."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(5e-4, "--lr", help="Peak AdamW learning rate."),
    image_shift: int = typer.Option(2, "--image-shift", help="Random-shift augmentation in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seeds the demonstrations and the training."),
    demo_noise: float = typer.Option(
        0.0,
        "--demo-noise",
        help="DART noise: every demonstration executes the expert action plus Gaussian noise of this std "
        "(normalised units, xyz only; labels stay clean). 0 keeps the original recipe. In [0, 1].",
    ),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the training log."),
) -> None:
    """Record scripted-expert demonstrations and train the built-in policy by behaviour cloning."""
    import torch

    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import save_pretrained
    from salus.policies.builtin.training import (
        TrainConfig,
        check_demo_noise,
        record_demonstrations,
        train_policy,
    )
    from salus.sim import TASKS

    demo_noise = check_demo_noise(demo_noise)
    torch.set_num_threads(threads)
    task_list = _check_tasks(split_values(tasks) or list(TASKS))
    train_cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, image_shift=image_shift, seed=seed)
    model_cfg = BuiltinConfig()
    t0 = time.perf_counter()
    with progress_bar() as bar:
        rec = bar.add_task("demonstrations", total=demos * len(task_list), info="")

        def on_demo(task: str, kept: int, total: int) -> None:
            bar.update(rec, advance=1, info=f"{task} {kept}/{total}")
            if kept == total:
                _plain_log(f"recorded {total} demonstrations of {task} ({time.perf_counter() - t0:.0f} s)")

        data = record_demonstrations(
            task_list,
            demos,
            seed=seed,
            image_size=model_cfg.image_size,
            cameras=model_cfg.cameras,
            demo_noise=demo_noise,
            progress=on_demo,
        )
        record_s = time.perf_counter() - t0
        fit = bar.add_task("training", total=steps, info="")

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(fit, completed=step, info=f"loss {loss:.4f}")
            if step % 100 == 0:
                _plain_log(f"step {step}/{total} loss {loss:.4f} ({time.perf_counter() - t0:.0f} s)")

        model, stats, log = train_policy(
            data,
            model_cfg,
            train_cfg,
            progress=on_step,
        )
    log["record_seconds"] = round(record_s, 1)
    log["tasks"] = task_list
    log["demos_per_task"] = demos
    log["demo_noise"] = demo_noise
    model.config.extra = {"tasks": task_list, "training": log}
    save_pretrained(out, model, stats)
    (Path(out) / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps({"out": str(out), **log}))
    else:
        typer.echo(
            f"wrote {out} ({log['frames']} frames, loss {log['loss_first']:.4f} -> {log['loss_last']:.4f})"
        )


@policy_app.command("eval")
def evaluate(
    policy: str = typer.Option(
        "builtin", "--policy", help="Policy spec: builtin, builtin:DIR, smolvla:PATH, ..."
    ),
    tasks: list[str] = typer.Option(
        None, "--task", "--tasks", help="Tasks (default: the policy's training tasks)."
    ),
    episodes: int = typer.Option(20, "--episodes", help="Episodes per task and condition."),
    seed: int = typer.Option(0, "--seed", help="Episode i uses env seed SEED + i."),
    perturb: list[str] = typer.Option(
        None, "--perturb", help="A perturbation condition NAME=STRENGTH[+NAME=STRENGTH]; repeat for several."
    ),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also evaluate unperturbed."),
    max_steps: int = typer.Option(None, "--max-steps", help="Override the task's step limit."),
    batch_size: int = typer.Option(10, "--batch-size", help="Environments run in lockstep."),
    n_action_steps: int = typer.Option(None, "--n-action-steps", help="Override actions executed per chunk."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Success rate per task, unperturbed and under each perturbation condition."""
    import torch

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
                _plain_log(f"{finished}/{total} episodes")

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
    policy: str = typer.Option("builtin", "--policy", help="Policy spec."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Architecture, sizes and training record of a policy."""
    from salus.policies import load_policy

    adapter = load_policy(policy)
    model = getattr(adapter, "model", None)
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
    typer.echo(json.dumps(data, indent=None if as_json else 2))


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
