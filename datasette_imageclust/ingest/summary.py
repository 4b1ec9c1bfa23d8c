"""What a load reports: its result (:class:`LoadSummary`) and its error (:class:`LoadError`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


class LoadError(Exception):
    """A problem with the run as a whole (not one file); the message says what to do."""


@dataclass
class LoadSummary:
    scanned: int = 0  # image files found
    unchanged: int = 0  # skipped: same path, size and mtime
    new: int = 0  # new images decoded and embedded
    duplicates: int = 0  # files whose bytes were already known (copies, renames, moves)
    reembedded: int = 0  # existing images given a vector by a new model
    errors: int = 0  # rows written to the errors table this run (files and folders)
    gone: int = 0  # files in the database no longer on disk
    pruned: int = 0  # of those, removed (--prune)
    seconds: float = 0.0
    pipeline_seconds: float = 0.0  # of which decoding + inference + writing (no start-up)
    images_per_second: float = 0.0
    interrupted: bool = False

    def record_seconds(self, seconds: float) -> None:
        """Record the run's length (start-up, scan, pipeline, index) and the rate it gives."""
        self.seconds = round(seconds, 3)
        if self.seconds > 0:
            self.images_per_second = round((self.new + self.reembedded) / self.seconds, 2)

    def as_dict(self) -> dict:
        return asdict(self)
