"""The fallback for when the database is down: one JSON file per call.

A spool file always holds the whole record as far as it is known, written
atomically (temp file, fsync, rename), so replaying it is an idempotent upsert
and a crash mid-write never leaves half a file behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from agent.records.codec import record_from_dict, record_to_dict
from agent.records.errors import InvalidRecord
from agent.records.schema import CallRecord

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        # Files that can never be replayed (corrupt, or refused by the DB) go here for a human.
        self.failed_directory = self.directory / "failed"

    def path_for(self, call_id: str) -> Path:
        return self.directory / f"{_SAFE_NAME.sub('_', call_id)}.json"

    def write(self, record: CallRecord) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(record.call_id)
        tmp = final.with_suffix(".json.tmp")
        data = json.dumps(record_to_dict(record), ensure_ascii=False, indent=1)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return final

    def pending(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)

    def has(self, call_id: str) -> bool:
        return self.path_for(call_id).exists()

    def read(self, path: Path) -> CallRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRecord(f"spool file {path} is unreadable: {exc}") from None
        return record_from_dict(data)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def quarantine(self, path: Path, reason: str) -> Path:
        self.failed_directory.mkdir(parents=True, exist_ok=True)
        target = self.failed_directory / path.name
        os.replace(path, target)
        log.error("call record %s cannot be replayed (%s); kept at %s", path.name, reason, target)
        return target
