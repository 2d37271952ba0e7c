"""A data check's findings: what would break training (errors), what would weaken it (warnings) and
a short description of the data (info lines). Tasks fill a ``DataReport`` in ``Task.check_data``;
`platform train` runs the quick form before Ray starts, `platform data check` the full one."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from .errors import DataError, PlatformError

#: errors listed in full by `platform data check`; the rest are counted
MAX_LISTED = 20


class DataCheckError(PlatformError):
    """Data that would break training, found before it started."""


@dataclass
class DataReport:
    """Findings of a data check. ``max_fault_fraction`` (``train.max_fault_fraction``) decides
    when missing or unreadable files stop being warnings: a run stops when an epoch skips more."""

    max_fault_fraction: float = 0.01
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    prefix: str = ""

    def error(self, text: str) -> None:
        self.errors.append(self.prefix + " ".join(str(text).split()))

    def warn(self, text: str) -> None:
        self.warnings.append(self.prefix + " ".join(str(text).split()))

    def say(self, text: str) -> None:
        self.info.append(self.prefix + text)

    @contextmanager
    def catching(self) -> Iterator[None]:
        """A ``DataError`` raised inside becomes an error of the report (the check goes on)."""
        try:
            yield
        except DataError as e:
            self.error(str(e))

    @contextmanager
    def member(self, name: str) -> Iterator["DataReport"]:
        """Findings of a multi-task member, prefixed with its name."""
        saved, self.prefix = self.prefix, f"{self.prefix}{name}: "
        try:
            yield self
        finally:
            self.prefix = saved

    def faulty_files(self, what: str, bad: list[str], total: int,
                     fix: str = "restore the files or fix the annotation file's paths") -> None:
        """``bad`` of ``total`` files cannot be read: an error when more than the fault fraction
        (training would stop in its first epoch), else a warning (those samples are skipped).
        ``fix`` says what to do about it."""
        if not bad:
            return
        text = f"{len(bad)} of {total} {what} missing or unreadable (e.g. {bad[0]})"
        if len(bad) > self.max_fault_fraction * total:
            self.error(f"{text}: more than train.max_fault_fraction={self.max_fault_fraction:g}, so the run would "
                       f"stop in its first epoch; {fix}")
        else:
            self.warn(f"{text}: those samples are skipped and counted in logs/faults.txt")

    def raise_errors(self, command_hint: str) -> None:
        """One line for the first error (and how many more): ``DataCheckError``."""
        if not self.errors:
            return
        more = f" (and {len(self.errors) - 1} more problem(s): {command_hint})" if len(self.errors) > 1 else ""
        raise DataCheckError(self.errors[0] + more)

    def listed_errors(self) -> list[str]:
        """The errors as printed by `platform data check`: the first ``MAX_LISTED`` and a count."""
        rest = len(self.errors) - MAX_LISTED
        return self.errors[:MAX_LISTED] + ([f"... and {rest} more error(s)"] if rest > 0 else [])
