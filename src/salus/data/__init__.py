"""salus.data: the zarr episode dataset (format, atomic writer, verified reader, outcome labels).

Splits and per-step targets live in one place, the predictor: ``salus.predictor.split_episodes``
and ``salus.predictor.horizon_labels`` on ``episodes_from_dataset(SalusDataset(path))``.
"""

from salus.data.check import CheckReport, check_dataset, dataset_info
from salus.data.format import FORMAT_VERSION
from salus.data.lock import DatasetLock
from salus.data.reader import SalusDataset
from salus.data.record import EpisodeRecord
from salus.data.robot import RobotSpec, panda_robot, robot_from_attrs
from salus.data.writer import DatasetWriter

__all__ = [
    "FORMAT_VERSION",
    "EpisodeRecord",
    "RobotSpec",
    "panda_robot",
    "robot_from_attrs",
    "DatasetWriter",
    "DatasetLock",
    "SalusDataset",
    "CheckReport",
    "check_dataset",
    "dataset_info",
]
