"""The one exception the TrackML file layer raises for bad input files."""

from __future__ import annotations

from typing import Any


class TrackMLFormatError(ValueError):
    """A TrackML file (event part or submission) is missing, malformed or inconsistent.

    The message always names the file; where it applies it also names the column, the
    line in the file (1-based, header = line 1), the ``hit_id`` and the offending value.
    The same facts are kept as attributes for programmatic use.

    Attributes:
      file: the file the problem is in (for a zip member: ``"archive.zip:member"``).
      column: the column name, or ``None``.
      line: 1-based line number in the file, or ``None``.
      hit_id: the ``hit_id`` of the offending row, or ``None``.
      value: the offending value (as text), or ``None``.
      reason: the bare description, without the location.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: object,
        column: str | None = None,
        line: int | None = None,
        hit_id: int | None = None,
        value: Any = None,
    ) -> None:
        self.reason = reason
        self.file = str(file)
        self.column = column
        self.line = line
        self.hit_id = hit_id
        self.value = value
        where = []
        if column is not None:
            where.append(f"column {column!r}")
        if line is not None:
            where.append(f"line {line}")
        if hit_id is not None:
            where.append(f"hit_id {hit_id}")
        if value is not None:
            where.append(f"value {str(value)!r}")
        msg = f"{self.file}: {reason}"
        if where:
            msg += " (" + ", ".join(where) + ")"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default exception pickling.
        return (
            _rebuild,
            (self.reason, self.file, self.column, self.line, self.hit_id, self.value),
        )


def _rebuild(
    reason: str,
    file: str,
    column: str | None,
    line: int | None,
    hit_id: int | None,
    value: Any,
) -> TrackMLFormatError:
    return TrackMLFormatError(
        reason, file=file, column=column, line=line, hit_id=hit_id, value=value
    )
