"""Reading slash commands typed in a terminal."""

from __future__ import annotations

import pytest

from commands.generate import GenerateOptions
from bot.shell_parse import generate_options, help_text, parse_line, train_options
from gpu_service.errors import InvalidRequest


def test_the_readme_line_parses_into_qwerty_options():
    command = parse_line('/qwerty prompt_prefix:"a gorgeous painting of a" prompt_postfix:"in space" count:2 guidance:6.5')
    assert command.name == "qwerty"
    assert generate_options(command.options) == GenerateOptions(
        prompt_prefix="a gorgeous painting of a", prompt_postfix="in space", count=2, guidance=6.5
    )


@pytest.mark.parametrize("line", ["", "   ", "# a comment", "\n"])
def test_blank_lines_and_comments_are_nothing(line):
    assert parse_line(line) is None


@pytest.mark.parametrize(("line", "name"), [("help", "help"), ("quit", "quit"), ("exit", "quit"), ("/help", "help")])
def test_words(line, name):
    assert parse_line(line).name == name


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/draw prompt_prefix:a", "Unknown command '/draw'"),
        ("/qwerty prompt_prefix", "name:value"),
        ("/qwerty colour:red", "no option `colour`"),
        ("/qwerty count:two", "`count` must be a whole number"),
        ("/qwerty guidance:high", "`guidance` must be a number"),
        ("/qwerty prompt_prefix:a prompt_prefix:b", "given twice"),
        ('/qwerty prompt_prefix:"unclosed', "Could not read"),
    ],
)
def test_mistakes_are_named(line, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_line(line)


def test_qwerty_needs_a_prompt_prefix():
    with pytest.raises(InvalidRequest, match="prompt_prefix"):
        generate_options(parse_line("/qwerty count:2").options)


def test_train_options_collect_urls_and_image_options_as_local_sources():
    command = parse_line('/train urls:"a.png https://x/b.png" image2:c.png subject:cat steps:50')
    options = train_options(command.options)
    assert options.urls.split() == ["a.png", "https://x/b.png", "c.png"]
    assert (options.subject, options.steps, options.local_files) == ("cat", 50, True)


def test_shell_options_match_the_discord_commands():
    """The shell and Discord offer the same options under the same names, descriptions and bounds."""
    from bot.options import QWERTY_OPTIONS, TRAIN_OPTIONS
    from bot.slash import qwerty, train

    for command, specs in ((qwerty, QWERTY_OPTIONS), (train, TRAIN_OPTIONS)):
        assert [p.name for p in command.parameters] == [spec.name for spec in specs]
        for parameter, spec in zip(command.parameters, specs):
            assert parameter.description == spec.description
            assert parameter.required == spec.required, spec.name
            if spec.kind is not str and spec.low is not None:
                assert (parameter.min_value, parameter.max_value) == (spec.low, spec.high), spec.name


def test_options_come_from_the_request_models():
    """A field's description and bounds in the contract are what members are told."""
    from bot.options import QWERTY_OPTIONS
    from gpu_service.schemas import GenerateRequest

    count = next(spec for spec in QWERTY_OPTIONS if spec.name == "count")
    field = GenerateRequest.model_fields["count"]
    assert (count.kind, count.low, count.high, count.description) == (int, 1, 4, field.description)
    assert [spec.name for spec in QWERTY_OPTIONS if spec.required] == ["prompt_prefix"]


def test_help_lists_every_command_with_its_options():
    text = help_text()
    assert "/qwerty prompt_prefix:TEXT [prompt_postfix:TEXT] [seed:N]" in text and "[guidance:X]" in text
    for name in ("train", "reroll", "variations", "share", "delete", "vote", "remove", "top", "banned", "models",
                 "rollback", "export", "status"):
        assert f"/{name}" in text
    assert "/export subject:NAME version:N [format:diffusers|kohya]" in text
