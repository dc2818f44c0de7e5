"""How the intake shows links and refusals to people: no secrets, and short enough for a chat reply.

A link pasted in Discord may carry a password (https://user:pass@host/...) or a signed token in its
query string; neither may be echoed back, logged or stored. Names are cut to NAME_WIDTH characters
and a list of refusals to a character budget, so twenty long dead links still make a short reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gpu_service.intake.models import Rejection

NAME_WIDTH = 100
REASON_WIDTH = 120
REJECTIONS_BUDGET = 1500  # leaves room in a 2000-character Discord message for the text around it

_LINK = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/?#]*)(.*)$", re.IGNORECASE | re.DOTALL)


def redact_url(text: str) -> str:
    """`text` without the user:password@ part and without the query and fragment, if it is a link."""
    match = _LINK.match(text.strip())
    if match is None:
        return text
    scheme, authority, rest = match.groups()
    host = authority.rpartition("@")[2]
    path = re.split(r"[?#]", rest, maxsplit=1)[0]
    return f"{scheme}{host}{path}"


def clip(text: str, width: int) -> str:
    """`text` on one line and at most `width` characters, ending in "…" when it was cut."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def display_name(name: str) -> str:
    """A source's name as shown to people: redacted when a link, and clipped."""
    return clip(redact_url(name), NAME_WIDTH)


def rejection_line(rejection: Rejection) -> str:
    return f"- {display_name(rejection.name)}: {clip(rejection.reason, REASON_WIDTH)}"


def format_rejections(rejected: Sequence[Rejection], budget: int = REJECTIONS_BUDGET) -> str:
    """One line per refusal, as many as fit in `budget` characters, then "- … and N more".

    The result never exceeds `budget`; "" when there is nothing to report.
    """
    lines = [rejection_line(rejection) for rejection in rejected]
    shown: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        left_after = len(lines) - index - 1
        room_for_rest = len("\n" + _more(left_after)) if left_after else 0
        cost = len(line) + (1 if shown else 0)
        if used + cost + room_for_rest > budget:
            shown.append(_more(len(lines) - index))
            break
        shown.append(line)
        used += cost
    return "\n".join(shown)[:budget]


def _more(count: int) -> str:
    return f"- … and {count} more"
