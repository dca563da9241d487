"""Replay an episode: its camera frames with the risk curve under them (MP4, GIF, or a PNG strip).

The curve panel is drawn once with matplotlib; each frame then only copies it and draws a cursor
at the current step, so a few hundred frames take a second or two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import DatasetError, InvalidInputError, InvalidNameError, MissingDependencyError

__all__ = [
    "REPLAY_FORMATS",
    "ReplayCurves",
    "compose_frames",
    "compose_strip",
    "write_replay",
    "replay_episode",
]

REPLAY_FORMATS = (".mp4", ".gif", ".png")
_MIN_WIDTH = 480  # pixels: narrower replays make the curve panel unreadable


@dataclass
class ReplayCurves:
    """What the panel under the frames shows: named per-step curves (T,), an optional alarm
    threshold (T,), the failure step (-1: none) and the first alarm step (-1: none)."""

    curves: dict[str, np.ndarray]
    ylabel: str = "failure probability"
    threshold: np.ndarray | None = None
    failure_step: int = -1
    alarm_step: int = -1
    title: str = ""

    def __post_init__(self) -> None:
        if not self.curves:
            raise InvalidInputError("a replay needs at least one curve")
        self.curves = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.curves.items()}
        lengths = {v.size for v in self.curves.values()}
        if len(lengths) != 1:
            raise InvalidInputError(f"replay curves must share one length T, got lengths {sorted(lengths)}")
        if self.threshold is not None:
            self.threshold = np.asarray(self.threshold, dtype=np.float64).reshape(-1)
            if self.threshold.size != self.length:
                raise InvalidInputError(
                    f"threshold has {self.threshold.size} steps, curves have {self.length}"
                )

    @property
    def length(self) -> int:
        return next(iter(self.curves.values())).size


def _tile_cameras(images: Sequence[np.ndarray], t: int, scale: int) -> np.ndarray:
    row = [np.repeat(np.repeat(im[t], scale, axis=0), scale, axis=1) for im in images]
    return np.concatenate(row, axis=1)


def _check_images(images: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    if not images:
        raise InvalidInputError("a replay needs at least one camera's frames")
    out = []
    for im in images:
        arr = np.asarray(im)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InvalidInputError(f"camera frames must be uint8 (T, H, W, 3), got {arr.dtype} {arr.shape}")
        if arr.shape[0] != length:
            raise InvalidInputError(f"camera has {arr.shape[0]} frames but the curves have {length} steps")
        out.append(arr)
    if len({a.shape[1] for a in out}) != 1:
        raise InvalidInputError(f"cameras must share a frame height, got {[a.shape for a in out]}")
    return out


def _draw_curves(ax: Any, curves: ReplayCurves, hz: float, marks: Sequence[int] = ()) -> np.ndarray:
    """Draw the curves, threshold, failure and alarm on ``ax``; returns the time axis (T,) seconds."""
    T = curves.length
    t = np.arange(T) / hz
    for i, (name, y) in enumerate(curves.curves.items()):
        ax.plot(t, y, lw=1.6 if i == 0 else 1.0, label=name)
    if curves.threshold is not None and np.isfinite(curves.threshold).any():
        ax.plot(t, curves.threshold, color="tab:green", lw=1.2, ls="--", label="alarm threshold")
    if curves.failure_step >= 0:
        ax.axvline(curves.failure_step / hz, color="tab:red", ls="--", lw=1.3, label="failure")
    if curves.alarm_step >= 0:
        ax.axvline(curves.alarm_step / hz, color="tab:purple", lw=1.3, label="first alarm")
    for k in marks:
        ax.axvline(k / hz, color="0.3", lw=0.8, ls=":")
    ax.set_xlim(0, max(t[-1], 1.0 / hz))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel(curves.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left", ncol=3)
    if curves.title:
        ax.set_title(curves.title, fontsize=8)
    return t


def _render(fig: Any) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()  # type: ignore[attr-defined]


def _panel(
    curves: ReplayCurves, width_px: int, height_px: int, hz: float
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The curve panel as RGB (h, w, 3), the x pixel of every step (T,), and the axes' y pixel span."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    t = _draw_curves(ax, curves, hz)
    fig.tight_layout(pad=0.4)
    rgb = _render(fig)
    h = rgb.shape[0]
    xs = ax.transData.transform(np.stack([t, np.zeros(curves.length)], axis=1))[:, 0]
    y0, y1 = ax.transData.transform([(0, ax.get_ylim()[0]), (0, ax.get_ylim()[1])])[:, 1]
    plt.close(fig)
    span = (int(h - max(y0, y1)), int(h - min(y0, y1)))
    return rgb, np.round(xs).astype(int), span


def compose_frames(
    images: Sequence[np.ndarray], curves: ReplayCurves, *, hz: float = 20.0, scale: int = 3, stride: int = 1
) -> list[np.ndarray]:
    """One RGB frame (h, w, 3) per ``stride`` steps: cameras side by side over the curve panel,
    with a cursor at the current step."""
    imgs = _check_images(images, curves.length)
    if scale < 1 or stride < 1:
        raise InvalidInputError(f"scale and stride must be >= 1, got {scale}, {stride}")
    raw_width = sum(im.shape[2] for im in imgs)
    scale = max(scale, -(-_MIN_WIDTH // raw_width))  # small frames are enlarged to a readable width
    top0 = _tile_cameras(imgs, 0, scale)
    width = top0.shape[1]
    width += width % 2  # even sizes for video encoders
    panel, xs, (ya, yb) = _panel(curves, width, max(200, int(width * 0.42)), hz)
    panel = panel[:, :width]
    frames = []
    for t in range(0, curves.length, stride):
        top = np.zeros((top0.shape[0], width, 3), dtype=np.uint8)
        top[:, : top0.shape[1]] = _tile_cameras(imgs, t, scale)
        p = panel.copy()
        x = int(np.clip(xs[t], 1, width - 2))
        p[ya:yb, x - 1 : x + 1] = (220, 30, 30)
        frame = np.concatenate([top, p], axis=0)
        if frame.shape[0] % 2:
            frame = np.concatenate([frame, np.full((1, width, 3), 255, np.uint8)], axis=0)
        frames.append(frame)
    return frames


def compose_strip(
    images: Sequence[np.ndarray], curves: ReplayCurves, *, hz: float = 20.0, n_frames: int = 8
) -> np.ndarray:
    """One RGB image: ``n_frames`` evenly spaced frames of the first camera (the failure and first
    alarm steps included), each titled with its time, over the curve panel with those steps marked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    imgs = _check_images(images, curves.length)
    T = curves.length
    steps = set(np.linspace(0, T - 1, num=min(n_frames, T)).round().astype(int).tolist())
    for k in (curves.failure_step, curves.alarm_step):
        if 0 <= k < T:
            steps.add(int(k))
    chosen = sorted(steps)
    n = len(chosen)
    fig = plt.figure(figsize=(max(8.0, 1.5 * n), 4.6), dpi=100)
    grid = fig.add_gridspec(
        2, n, height_ratios=(1.0, 1.5), hspace=0.3, wspace=0.05, left=0.06, right=0.98, top=0.93, bottom=0.09
    )
    for j, k in enumerate(chosen):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(imgs[0][k])
        ax.set_xticks([])
        ax.set_yticks([])
        tag = " failure" if k == curves.failure_step else (" alarm" if k == curves.alarm_step else "")
        ax.set_title(f"{k / hz:.2f} s{tag}", fontsize=8, color="tab:red" if tag else "black")
    ax = fig.add_subplot(grid[1, :])
    _draw_curves(ax, curves, hz, marks=chosen)
    buf = _render(fig)
    plt.close(fig)
    return buf


def write_replay(
    out: str | Path,
    images: Sequence[np.ndarray],
    curves: ReplayCurves,
    *,
    hz: float = 20.0,
    fps: float | None = None,
) -> Path:
    """Write an ``.mp4`` / ``.gif`` (every step, at ``fps``, default real time) or a ``.png`` strip."""
    import imageio.v3 as iio

    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in REPLAY_FORMATS:
        raise InvalidNameError("replay format", suffix or str(path), REPLAY_FORMATS)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = float(fps or hz)
    if suffix == ".png":
        iio.imwrite(path, compose_strip(images, curves, hz=hz))
        return path
    frames = compose_frames(images, curves, hz=hz)
    if suffix == ".gif":
        iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return path
    import importlib.util

    stack = np.stack(frames)
    if importlib.util.find_spec("av") is not None:  # PyAV (comes with the LeRobot extra)
        iio.imwrite(path, stack, plugin="pyav", codec="libx264", fps=fps)
    elif importlib.util.find_spec("imageio_ffmpeg") is not None:
        iio.imwrite(path, stack, extension=".mp4", plugin="FFMPEG", fps=fps, codec="libx264", quality=7)
    else:
        raise MissingDependencyError(
            "writing .mp4 needs PyAV or imageio-ffmpeg (pip install av, or pip install imageio-ffmpeg); "
            "or write a .gif or a .png strip instead"
        )
    return path


def _episode_images(steps: Mapping[str, Any], cameras: Sequence[str] | None, index: int) -> list[np.ndarray]:
    have = [k[len("image_") :] for k in steps if k.startswith("image_")]
    if not have:
        raise DatasetError(
            f"episode {index} has no saved camera images (its step keys: {sorted(steps)}); "
            "collect with images saved (salus collect ... --save-images) to replay it"
        )
    names = list(cameras) if cameras else have
    for name in names:
        if name not in have:
            raise InvalidNameError("camera", name, have)
    return [np.asarray(steps[f"image_{n}"]) for n in names]


def replay_episode(
    data: str | Path,
    episode: int,
    out: str | Path,
    *,
    model_dir: str | Path | None = None,
    cameras: Sequence[str] | None = None,
    fps: float | None = None,
) -> dict[str, Any]:
    """Replay episode ``episode`` of a dataset into ``out``.

    With ``model_dir`` the panel shows the predictor's failure probability per horizon and its
    alarm threshold (the monitor run offline over the stored signals); without it, the stored
    signals, z-scored over the episode. Returns a summary (path, steps, success, alarm step).
    """
    from salus.data import SalusDataset

    ds = SalusDataset(data)
    n = len(ds)
    if not 0 <= episode < n:
        raise InvalidInputError(
            f"episode index {episode} is out of range; the dataset has {n} episodes (0..{n - 1})"
        )
    ep = ds.episode(episode)
    steps = ep.steps
    images = _episode_images(steps, cameras, episode)
    hz = float(dict(getattr(ds, "attrs", {}) or {}).get("control_hz", 20.0))
    label = f"episode {episode} ({ep.task}): {'success' if ep.success else f'failure ({ep.failure_type})'}"
    if model_dir is not None:
        from salus.monitor.monitor import offline_risk

        risk = offline_risk(model_dir, steps)
        names = [
            f"P(fail within {h:.2f} s)" if np.isfinite(h) else f"{risk['model']} score"
            for h in risk["horizons_s"]
        ]
        curves = ReplayCurves(
            curves={name: risk["probability"][:, j] for j, name in enumerate(names)},
            threshold=risk["threshold"],
            failure_step=int(ep.failure_step),
            alarm_step=int(risk["alarm_step"]),
            title=label,
        )
        alarm = int(risk["alarm_step"])
    else:
        sig = np.asarray(steps["signals"], dtype=np.float64)
        valid = np.asarray(steps["signal_valid"], dtype=bool) & np.isfinite(sig)
        names = list(
            dict(getattr(ds, "attrs", {}) or {}).get(
                "signal_names", [f"signal {j}" for j in range(sig.shape[1])]
            )
        )
        z = {}
        for j in range(sig.shape[1]):
            col = np.where(valid[:, j], sig[:, j], np.nan)
            if np.isfinite(col).sum() < 2:
                continue
            mu, sd = np.nanmean(col), np.nanstd(col)
            z[names[j]] = np.nan_to_num((col - mu) / (sd if sd > 0 else 1.0), nan=0.0)
        if not z:
            z = {"(no valid signal)": np.zeros(sig.shape[0])}
        # the four signals that move most (largest |z|), so that the panel stays readable
        z = dict(sorted(z.items(), key=lambda kv: -float(np.abs(kv[1]).max()))[:4])
        curves = ReplayCurves(
            curves=z, ylabel="signal (z-score)", failure_step=int(ep.failure_step),
            title=label + "  (no --model: the 4 most active signals)",
        )  # fmt: skip
        alarm = -1
    path = write_replay(out, images, curves, hz=hz, fps=fps)
    return {
        "out": str(path),
        "episode": episode,
        "steps": curves.length,
        "success": bool(ep.success),
        "failure_step": int(ep.failure_step),
        "alarm_step": alarm,
    }
