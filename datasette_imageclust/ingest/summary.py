"""What a load reports: its result (:class:`LoadSummary`) and its error (:class:`LoadError`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    # Busy seconds of each pipeline stage, summed over its threads (decode runs in
    # several), and each one's share of their total: where the time went.
    decode_seconds: float = 0.0
    inference_seconds: float = 0.0
    write_seconds: float = 0.0
    stage_shares: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    engine: str = "local"  # or "dask (N workers)": where read, decode and inference ran

    def record_stages(self, decode: float, inference: float, write: float) -> None:
        self.decode_seconds, self.inference_seconds, self.write_seconds = (
            round(decode, 3), round(inference, 3), round(write, 3))
        total = decode + inference + write
        if total > 0:
            self.stage_shares = {"decode": round(decode / total, 3), "inference": round(inference / total, 3),
                                 "write": round(write / total, 3)}

    def stage_line(self) -> str:
        """'decode 3.1s (62%), inference 1.5s (30%), write 0.4s (8%)', or '' when nothing ran."""
        if not self.stage_shares:
            return ""
        return ", ".join(f"{k} {getattr(self, k + '_seconds'):.1f}s ({self.stage_shares[k]:.0%})"
                         for k in ("decode", "inference", "write"))

    def record_seconds(self, seconds: float) -> None:
        """Record the run's length (start-up, scan, pipeline, index) and the rate it gives."""
        self.seconds = round(seconds, 3)
        if self.seconds > 0:
            self.images_per_second = round((self.new + self.reembedded) / self.seconds, 2)

    def as_dict(self) -> dict:
        return asdict(self)
