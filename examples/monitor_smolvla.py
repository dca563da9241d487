"""The salus monitor around LeRobot's SmolVLA (``pip install 'salus[lerobot]'`` / ``make install-lerobot``).

By default the policy is the SmolVLA that ships in the package (trained in our simulator; `make
demo` collects its rollouts and trains the predictor on them)::

    make demo                                     # -> runs/demo/models/<model>
    python examples/monitor_smolvla.py --model runs/demo/models/salus-risk

The predictor must be trained on rollouts of the same policy, so that its signal statistics match
the policy's internals. For your own checkpoint::

    salus signals fit --policy smolvla:DIR --episodes 64 --batch-size 16
    salus collect --policy smolvla:DIR --episodes 500 --save-hidden --out data/smolvla.zarr
    salus train data/smolvla.zarr --model salus-risk --out runs/smolvla-monitor
    python examples/monitor_smolvla.py --policy DIR --model runs/smolvla-monitor/salus-risk

``--policy`` is a LeRobot SmolVLA checkpoint folder or hub id (the hub needs network access; on a
GPU pass ``--device cuda``). The loop is the same as with the built-in policy: the adapter
tokenises the task, runs LeRobot's pre/post processors and captures ``action_out_proj`` at every
denoising step; the monitor adds one call per control step.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy", default=None, help="SmolVLA checkpoint folder or hub id (default: the packaged SmolVLA)"
    )
    parser.add_argument(
        "--model", required=True, help="predictor checkpoint trained on this policy's rollouts"
    )
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--envs", type=int, default=1, help="parallel environments (batched monitor)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from salus import Monitor
    from salus.policies import load_policy
    from salus.sim import make_env

    spec = "smolvla" if args.policy is None else f"smolvla:{args.policy}"
    policy = load_policy(spec, device=args.device, seed=args.seed)
    monitor = Monitor.load(args.model, policy=policy)
    envs = [make_env(args.task) for _ in range(args.envs)]

    def stack(observations: list[dict]) -> dict:
        """B single-env observations -> one batched observation (the monitor and policy take either)."""
        out = {k: np.stack([o[k] for o in observations]) for k in observations[0] if k != "task"}
        out["task"] = [o["task"] for o in observations]
        return out

    for episode in range(args.episodes):
        obs = [env.reset(seed=args.seed + 100 * episode + i)[0] for i, env in enumerate(envs)]
        monitor.reset()
        done = [False] * len(envs)
        while not all(done):
            actions, risk = monitor.step(stack(obs))
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                if risk.alarm[i]:
                    print(f"episode {episode} {risk.describe(i)}")
                    done[i] = True  # stop this arm; the others run on
                    continue
                obs[i], _, terminated, truncated, info = env.step(actions[i])
                if terminated or truncated:
                    done[i] = True
                    print(f"episode {episode} env {i}: {info['label']}")
    for env in envs:
        env.close()


if __name__ == "__main__":
    main()
