"""A run's history: one :class:`EpochRecord` per epoch, saved as JSON or CSV in the run folder and kept in
the checkpoint's header (``history``)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import atomic_write_bytes


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: an item of the header's ``history`` and a row of the history files."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    images_per_second: float


@dataclass
class History:
    """Per-epoch records; saved as JSON or CSV by file suffix (the run folder's :data:`HISTORY_NAMES`)."""

    records: list[EpochRecord] = field(default_factory=list)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]

    def to_list(self) -> list[dict]:
        """The records as the header's ``history`` field holds them."""
        return [asdict(r) for r in self.records]

    def to_json(self) -> str:
        return json.dumps(self.to_list(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(EpochRecord.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(self.to_list())
        return out.getvalue()

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix not in (".json", ".csv"):
            raise ValueError(f"history file must end in .json or .csv, got {path.name}")
        text = self.to_json() if path.suffix == ".json" else self.to_csv()
        return atomic_write_bytes(path, text.encode())

    @classmethod
    def from_list(cls, items) -> History:
        return cls([EpochRecord(**item) for item in items])
