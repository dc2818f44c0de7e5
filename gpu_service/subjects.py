"""Subject keys: how the registry, the engine and W&B name a subject together with its owner. No torch.

A global subject's key is its name (`qwerty`); a server's own subject's key is `<name>@<guild id>`
(`dog@700`), so registry paths (`subjects/dog@700/`), adapter names and W&B artifacts carry the owner and two
servers can each have a `dog`. Keys written before owners existed are plain names: global.
"""

from __future__ import annotations

GLOBAL = ""  # the owner of a global subject


def subject_key(name: str, owner: str = GLOBAL) -> str:
    return f"{name}@{owner}" if owner else name


def subject_name(key: str) -> str:
    """What members type and read: `dog` for `dog@700`."""
    return key.partition("@")[0]


def subject_owner(key: str) -> str:
    """The guild id that owns the subject, or GLOBAL."""
    return key.partition("@")[2]


def artifact_slug(key: str) -> str:
    """The key within W&B's artifact-name alphabet (letters, digits, '-', '_', '.'): `dog@700` -> `dog.g700`."""
    name, _, owner = key.partition("@")
    return f"{name}.g{owner}" if owner else name
