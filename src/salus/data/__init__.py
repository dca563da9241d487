"""salus.data: the zarr episode dataset (format, atomic writer, reader with splits and labels)."""

from salus.data.check import CheckReport, check_dataset, dataset_info
from salus.data.format import FORMAT_VERSION
from salus.data.lock import DatasetLock
from salus.data.reader import SalusDataset, Split, Windows
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
    "Split",
    "Windows",
    "CheckReport",
    "check_dataset",
    "dataset_info",
]
