"""metav1.Time on the wire: RFC 3339 in UTC with second precision ("...Z")."""
from __future__ import annotations

from datetime import datetime, timezone


def format_time(t: datetime | float | None = None) -> str:
    """t (a datetime or epoch seconds; now when None) as a metav1.Time string."""
    if isinstance(t, (int, float)):
        t = datetime.fromtimestamp(t, timezone.utc)
    return (t or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_time(ts: str | None) -> datetime | None:
    """A metav1.Time or MicroTime string as an aware datetime; None when absent or bad."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
