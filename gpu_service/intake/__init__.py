"""Safe intake of training images from links strangers paste in Discord, files and attachments.

Light on purpose (aiohttp + Pillow, no torch): it runs in the bot process. See `collect_images`.
"""

from gpu_service.intake.addresses import Resolver, SystemResolver, address_problem, check_url
from gpu_service.intake.collect import collect_images, parse_url_list
from gpu_service.intake.images import MAX_PIXELS, prepare_image
from gpu_service.intake.models import IntakeImage, IntakePolicy, IntakeResult, Rejection

__all__ = [
    "MAX_PIXELS",
    "IntakeImage",
    "IntakePolicy",
    "IntakeResult",
    "Rejection",
    "Resolver",
    "SystemResolver",
    "address_problem",
    "check_url",
    "collect_images",
    "parse_url_list",
    "prepare_image",
]
