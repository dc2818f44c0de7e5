"""A loopback stand-in for Discord's REST API and gateway that the real discord.py client logs in to.

    async with DiscordStub() as stub:
        # a subprocess bot: env={**os.environ, **stub.bot_env()}
        # an in-process bot: `with discord_py_pointed_at(stub): await client.start(token)`
        await stub.wait_connected()
        interaction = await stub.slash_command("qwerty", {"prompt_prefix": "a photo of a", "steps": 4})
        ack = await interaction.wait_ack()          # ack.callback_type == 5, ack.at - interaction.sent_at
        result = await interaction.wait_response()  # result.files[0].data == the PNG the bot sent

Serves 127.0.0.1 only. Everything the bot sends is recorded: `stub.requests` (every REST call),
`interaction.responses`, `stub.messages` (channel messages), `stub.command_syncs`; each is a
`Recorder` whose `wait_for(predicate, timeout=...)` awaits a match.
"""

from .records import CommandSync, Interaction, Recorder, RestRequest, Sent, UploadedFile
from .stub import DiscordStub, discord_py_pointed_at

__all__ = [
    "CommandSync",
    "DiscordStub",
    "Interaction",
    "Recorder",
    "RestRequest",
    "Sent",
    "UploadedFile",
    "discord_py_pointed_at",
]
