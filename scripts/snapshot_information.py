"""Is the gap to the Monte-Carlo ceiling missing information or missing data? (docs/predictor.md)

One classifier per split seed, fitted at one elapsed step on the at-risk episodes of the training and
validation split ("still running, no failure event", label: fails later), scored on the same step's
at-risk seen test episodes (the protocol's at-risk ROC-AUC, instantaneous score, no running max),
on three inputs: what the monitor sees (salus-risk's deployable feature groups), the simulator's
privileged state (object poses, contacts, perturbation parameters: not deployable), and both. If
privileged state alone came close to the ceiling, the monitor would lack information; if it stays
near the deployable inputs, the learner lacks data::

    python scripts/snapshot_information.py runs/benchmark-builtin/data.zarr --step 40 --seeds 0,1,2,3

Prints one JSON line per seed and a mean line. Single-threaded; about a minute per seed.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from salus.data import SalusDataset
    from salus.predictor.config import SplitConfig, holdout_for_seed
    from salus.predictor.episodes import episodes_from_dataset, split_episodes
    from salus.predictor.features import DEPLOYABLE_GROUPS, FeatureSpace
    from salus.predictor.protocol import at_risk_scores, roc_auc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--step", type=int, default=40)
    ap.add_argument(
        "--seeds", default="0,1,2,3", help="split seeds; the held-out task rotates as in the benchmark"
    )
    args = ap.parse_args()
    eps = episodes_from_dataset(SalusDataset(args.data))
    tasks = list(eps.tasks)
    recorded = [g for g in DEPLOYABLE_GROUPS if g != "hidden" or eps[0].hidden is not None]
    inputs = {"deployable": tuple(recorded), "privileged": ("privileged",), "both": (*recorded, "privileged")}
    rows = []
    for position, seed in enumerate(int(s) for s in args.seeds.split(",")):
        split = split_episodes(
            eps, SplitConfig(holdout_tasks=holdout_for_seed(("rotate",), tasks, position), seed=seed)
        )

        def at_risk(idx):  # noqa: ANN001, ANN202
            chosen = [eps[i] for i in idx]
            pos, lab, _ = at_risk_scores(chosen, [np.zeros(e.length) for e in chosen], args.step)
            return [chosen[k] for k in pos], lab

        fit, y_fit = at_risk((*split.train, *split.val))
        test, y_test = at_risk(split.test_seen)
        row = {
            "seed": seed,
            "step": args.step,
            "fit": len(fit),
            "test": len(test),
            "test_failed": int(y_test.sum()),
        }
        for name, groups in inputs.items():
            space = FeatureSpace(groups, seed=seed).fit([eps[i] for i in split.train])

            def snapshot(episodes, space=space):  # noqa: ANN001, ANN202
                out = []
                for e in episodes:
                    onehot = np.zeros(len(tasks), np.float32)
                    onehot[tasks.index(e.task)] = 1.0
                    out.append(np.concatenate([space.transform(e)[args.step], onehot]))
                return np.array(out)

            x_fit, x_test = snapshot(fit), snapshot(test)
            models = {
                "gbt": HistGradientBoostingClassifier(
                    max_iter=100,
                    max_leaf_nodes=15,
                    min_samples_leaf=20,
                    l2_regularization=1.0,
                    random_state=seed,
                ),
                "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)),
            }
            for kind, model in models.items():
                model.fit(x_fit, y_fit)
                row[f"{name}/{kind}"] = round(roc_auc(y_test, model.predict_proba(x_test)[:, 1]), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if "/" in k]
    print(json.dumps({"mean": {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}}))


if __name__ == "__main__":
    main()
