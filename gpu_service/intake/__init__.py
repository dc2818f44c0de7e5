"""Safe intake of training images from links strangers paste in Discord, files and attachments.

Light on purpose (aiohttp + Pillow, no torch): it runs in the bot process. See `collect_images`.
"""

from gpu_service.intake.addresses import Resolver, SystemResolver, address_problem, check_url
from gpu_service.intake.collect import collect_images
from gpu_service.intake.images import MAX_PIXELS, prepare_image
from gpu_service.intake.models import IntakeImage, IntakePolicy, IntakeResult, Rejection
from gpu_service.intake.report import REJECTIONS_BUDGET, display_name, format_rejections, redact_url
from gpu_service.intake.url_list import parse_url_list

__all__ = [
    "MAX_PIXELS",
    "REJECTIONS_BUDGET",
    "IntakeImage",
    "IntakePolicy",
    "IntakeResult",
    "Rejection",
    "Resolver",
    "SystemResolver",
    "address_problem",
    "check_url",
    "collect_images",
    "display_name",
    "format_rejections",
    "parse_url_list",
    "prepare_image",
    "redact_url",
]
