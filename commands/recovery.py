"""What a front end does at start with the jobs its last run left unfinished: never lose one silently.

Trainings are resumed where the front end can (the backend re-attaches to its call, or the job runs
again from its checkpoint); everything else is reported to whoever asked, then marked failed. Reported
first, marked after: a crash in between repeats a message rather than losing one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from commands.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted: the front end restarted while it ran"
CANCELLED = "cancelled: the member stopped it"  # failed by choice, finished: never recovered


@dataclass(frozen=True)
class Recovered:
    resumed: tuple[str, ...]  # job ids handed to resume
    reported: tuple[str, ...]  # job ids reported as failed


async def recover(
    jobs: JobStore, front_end: str, *, report: Callable[[JobRecord], Awaitable[None]],
    resume: Callable[[JobRecord], None] | None = None,
) -> Recovered:
    """`resume` (synchronous: it should start the work, not wait for it) gets trainings when given."""
    resumed, reported = [], []
    for record in await jobs.unfinished(front_end):
        if record.kind == "train" and resume is not None:
            resume(record)
            resumed.append(record.job_id)
            continue
        try:
            await report(record)
        except Exception:
            log.exception("could not report interrupted job %s; it is marked failed anyway", record.job_id)
        await jobs.update(record.job_id, state="failed", error=INTERRUPTED)
        reported.append(record.job_id)
    if resumed or reported:
        log.info("recovered %d unfinished job(s): %d resumed, %d reported", len(resumed) + len(reported),
                 len(resumed), len(reported))
    return Recovered(tuple(resumed), tuple(reported))


def interrupted_text(record: JobRecord) -> str:
    """What the member reads about a job a restart interrupted."""
    if record.kind == "generate":
        prompt = " ".join(
            part for part in (record.request.get("prompt_prefix"), record.request.get("prompt_postfix")) if part
        )
        about = f" (“{prompt[:200]}”)" if prompt else ""
        return f"Sorry, the bot restarted while your /qwerty{about} was running; please try again."
    subject = record.request.get("subject", "")
    return f"Sorry, the bot restarted while training `{subject}`; please run /train again."
