from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


class FileRejected(Exception):
    """The file as a whole is not what it claims to be: nothing from it is stored."""


@dataclass(slots=True)
class Suspect:
    line: int
    ip: str
    port: int
    protocol: str
    seen: datetime | None = None
    hostname: str = ""
    asn: int | None = None
    country: str = ""
    source: str = ""
    source_data: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class RowError:
    line: int
    reason: str


Item = Suspect | RowError
