"""How refusals are shown: links without credentials or query, clipped, and a list within a budget."""

from __future__ import annotations

import pytest

from gpu_service.errors import IntakeError
from gpu_service.intake import IntakePolicy, Rejection, collect_images, display_name, format_rejections, redact_url
from gpu_service.intake.report import NAME_WIDTH, REJECTIONS_BUDGET, clip
from tests.gpu_service.test_intake import Site, SocketGuard, site, socket_guard  # noqa: F401 (fixtures)
from tests.gpu_service.test_intake_addresses import StubResolver

SECRET = "hunter2"
TOKEN = "sig=0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://me:hunter2@photos.test/a.png", "https://photos.test/a.png"),
        ("https://me@photos.test/a.png", "https://photos.test/a.png"),
        ("https://photos.test/a.png?sig=0123&exp=1", "https://photos.test/a.png"),
        ("https://photos.test/a.png#frag", "https://photos.test/a.png"),
        ("http://me:p@ss@photos.test:8080/a.png?x=1", "http://photos.test:8080/a.png"),  # last @ ends userinfo
        ("https://photos.test?token=1", "https://photos.test"),
        ("HTTPS://Me:pw@Photos.test/A.png", "HTTPS://Photos.test/A.png"),
        ("ftp://me:pw@files.test/a.png", "ftp://files.test/a.png"),
        ("cat.png", "cat.png"),  # not a link: a file name stays as it is
        ("image 3", "image 3"),
    ],
)
def test_redact_url_drops_credentials_query_and_fragment(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_display_name_is_redacted_then_clipped() -> None:
    long_link = f"https://me:{SECRET}@photos.test/{'a' * 300}.png?{TOKEN}"
    shown = display_name(long_link)
    assert len(shown) == NAME_WIDTH
    assert shown.startswith("https://photos.test/aaa") and shown.endswith("…")
    assert SECRET not in shown and "sig=" not in shown


@pytest.mark.parametrize(
    ("text", "width", "clipped"), [("abc", 3, "abc"), ("abcd", 3, "ab…"), ("a\nb  c", 9, "a b c")]
)
def test_clip_keeps_one_line_within_width(text: str, width: int, clipped: str) -> None:
    assert clip(text, width) == clipped


def _long_dead_links(count: int) -> list[Rejection]:
    return [
        Rejection(f"https://me:{SECRET}@host{n}.test/{'p' * 400}.png?{TOKEN}", f"host not found: host{n}.test")
        for n in range(count)
    ]


def test_twenty_long_refusals_fit_the_budget_with_a_count_of_the_rest() -> None:
    text = format_rejections(_long_dead_links(20))
    lines = text.splitlines()
    assert len(text) <= REJECTIONS_BUDGET
    shown = lines[:-1]
    assert lines[-1] == f"- … and {20 - len(shown)} more"
    assert len(shown) >= 5  # each line is clipped, so several still fit
    assert all(line.startswith("- https://host") and len(line) <= 2 + NAME_WIDTH + 2 + 120 for line in shown)
    assert SECRET not in text and "sig=" not in text


def test_refusals_that_fit_are_all_listed_without_a_summary() -> None:
    rejected = [Rejection("cat.png", "file not found"), Rejection("https://a.test/x.png?k=1", "HTTP 404")]
    assert format_rejections(rejected) == "- cat.png: file not found\n- https://a.test/x.png: HTTP 404"


def test_no_refusals_make_no_text() -> None:
    assert format_rejections([]) == ""


@pytest.mark.parametrize("budget", [0, 5, 20, 100, 250, 251, 500, 1000, 1500, 4000])
def test_the_budget_is_never_exceeded_and_nothing_is_lost_silently(budget: int) -> None:
    """Every refusal is either listed or counted in the "and N more" line (unless the budget is tiny)."""
    rejected = _long_dead_links(20)
    text = format_rejections(rejected, budget)
    assert len(text) <= budget
    lines = text.splitlines()
    if budget >= 20 and lines:
        listed = [line for line in lines if not line.startswith("- … and ")]
        more = int(lines[-1].split()[3]) if lines[-1].startswith("- … and ") else 0
        assert len(listed) + more == len(rejected)


async def test_too_few_images_from_twenty_long_dead_links_makes_a_short_message(
    socket_guard: SocketGuard,  # noqa: F811
) -> None:
    """The admin's reply stays within the budget and shows no password or query string."""
    links = [f"https://me:{SECRET}@dead{n}.test/{'p' * 2000}.png?{TOKEN}" for n in range(20)]
    with pytest.raises(IntakeError) as caught:
        await collect_images(links, IntakePolicy(min_images=3), resolver=StubResolver())
    message = str(caught.value)
    assert len(message) <= REJECTIONS_BUDGET
    assert message.startswith("Got 0 usable images; at least 3 are needed.\n- https://dead0.test/ppp")
    assert message.splitlines()[-1].startswith("- … and ")
    assert SECRET not in message and "sig=" not in message
    assert socket_guard.seen == []


async def test_names_keep_no_credentials_or_query(site: Site) -> None:  # noqa: F811
    """Names end up in replies, job records and logs: a kept image's and a refused one's alike."""
    base = site.url("/png").replace("http://", f"http://me:{SECRET}@")
    page = site.url("/page").replace("http://", f"http://me:{SECRET}@")
    policy = IntakePolicy(allow_private=True, min_images=1, resolution=64)
    result = await collect_images([f"{base}?{TOKEN}", f"{page}?{TOKEN}"], policy)
    assert [image.name for image in result.images] == [site.url("/png")]
    assert result.rejected == (Rejection(site.url("/page"), "not an image (text/html page)"),)
