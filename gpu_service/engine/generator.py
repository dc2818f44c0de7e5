"""The warm generator: one base pipeline in memory, subjects' LoRAs switched in and out per request."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline
from PIL import Image

from gpu_service.engine.adapters import AdapterSwitcher
from gpu_service.engine.pipeline_loading import load_pipeline, native_size
from gpu_service.errors import InvalidRequest, PromptTooLong, SubjectNotFound
from gpu_service.prompts import build_prompt
from gpu_service.schemas import (
    MAX_SEED,
    GenerateRequest,
    GenerateResult,
    GeneratedImage,
    GenerationProgress,
    ModelVersion,
    Timings,
)

ProgressSink = Callable[[GenerationProgress], None]
# Requests may ask for up to 4x the model's native pixel count (1024x1024 on SD1.5); beyond that
# attention memory grows quadratically and one request could take the GPU down for everyone.
MAX_PIXEL_FACTOR = 4


def choose_seeds(seed: int | None, count: int) -> list[int]:
    """A given seed gives seed, seed+1, ...; otherwise each image gets its own random seed."""
    if seed is None:
        return [secrets.randbelow(MAX_SEED + 1) for _ in range(count)]
    return [(seed + offset) % (MAX_SEED + 1) for offset in range(count)]


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Generator:
    """Renders GenerateRequests on one warm pipeline. Not thread-safe: callers serialise (one worker)."""

    def __init__(
        self,
        pipe: DiffusionPipeline,
        *,
        model_name: str,
        adapters: AdapterSwitcher,
        default_subject: str,
        default_phrase: str,
        load_s: float = 0.0,
    ) -> None:
        self.pipe = pipe
        self.model_name = model_name
        self.adapters = adapters
        self.default_subject = default_subject
        self.default_phrase = default_phrase
        self.load_s = load_s
        self._img2img: StableDiffusionImg2ImgPipeline | None = None

    @classmethod
    def load(cls, base_model: str, *, adapters_factory, token: str | None = None, **kwargs) -> Generator:
        started = time.perf_counter()
        pipe = load_pipeline(base_model, token=token)
        return cls(
            pipe, model_name=base_model, adapters=adapters_factory(pipe),
            load_s=time.perf_counter() - started, **kwargs,
        )

    def generate(self, request: GenerateRequest, on_progress: ProgressSink | None = None) -> GenerateResult:
        started = time.perf_counter()
        version = self._select_subject(request)
        phrase = version.instance_phrase if version else self.default_phrase
        prompt = build_prompt(request.prompt_prefix, phrase, request.prompt_postfix)
        self.check_prompt_length(prompt, "prompt")
        self.check_prompt_length(request.negative_prompt, "negative_prompt")
        width, height = self.resolve_size(request.width, request.height)
        seeds = choose_seeds(request.seed, request.count)
        inference_started = time.perf_counter()
        output = self._render(request, prompt, width, height, seeds, on_progress)
        flagged = output.nsfw_content_detected or [False] * len(seeds)
        images = tuple(
            GeneratedImage(index=i, seed=seed, png=None if flag else encode_png(image), withheld=bool(flag))
            for i, (seed, image, flag) in enumerate(zip(seeds, output.images, flagged))
        )
        finished = time.perf_counter()
        return GenerateResult(
            prompt=prompt, negative_prompt=request.negative_prompt, images=images,
            model=self.model_name, subject=request.subject,
            version=version.version if version else None, base_fallback=version is None,
            steps=request.steps, guidance=request.guidance, width=width, height=height,
            timings=Timings(
                load_s=self.load_s, inference_s=finished - inference_started, total_s=finished - started
            ),
        )

    def _select_subject(self, request: GenerateRequest) -> ModelVersion | None:
        version = self.adapters.use(request.subject, request.subject_version)
        if version is None and request.subject != self.default_subject:
            raise SubjectNotFound(
                f"There is no trained subject called '{request.subject}'. An admin can train it with /train."
            )
        return version

    def check_prompt_length(self, text: str, field: str) -> None:
        """Refuse, never silently cut: the encoder ignores every token past its limit."""
        tokenizer = self.pipe.tokenizer
        length = len(tokenizer(text, truncation=False).input_ids)
        if length > tokenizer.model_max_length:
            raise PromptTooLong(
                f"The {field} is {length} tokens long; the model reads at most "
                f"{tokenizer.model_max_length} (start and end included). Please shorten it."
            )

    def resolve_size(self, width: int | None, height: int | None) -> tuple[int, int]:
        native = native_size(self.pipe)
        width, height = width or native, height or native
        limit = native * native * MAX_PIXEL_FACTOR
        if width * height > limit:
            raise InvalidRequest(
                f"width x height = {width}x{height} is too large for this model: at most {limit} pixels "
                f"(for example {native * 2}x{native * 2})."
            )
        return width, height

    def _render(self, request, prompt, width, height, seeds, on_progress):
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        common = dict(
            prompt=prompt, negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps, guidance_scale=request.guidance,
            num_images_per_prompt=len(seeds), generator=generators,
            callback_on_step_end=_progress_callback(on_progress, request),
        )
        with torch.inference_mode():
            if request.init_image is None:
                return self.pipe(width=width, height=height, **common)
            init = _decode_init_image(request.init_image).resize((width, height))
            return self._image_to_image()(image=init, strength=request.strength, **common)

    def _image_to_image(self) -> StableDiffusionImg2ImgPipeline:
        """Shares the warm pipeline's modules (and loaded LoRAs): no second copy of the weights."""
        if self._img2img is None:
            self._img2img = StableDiffusionImg2ImgPipeline.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img


def _decode_init_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # Pillow raises many types for bad bytes
        raise InvalidRequest(f"init_image is not a readable image ({error.__class__.__name__}).") from error
    return image.convert("RGB")


def _progress_callback(on_progress: ProgressSink | None, request: GenerateRequest):
    if on_progress is None:
        return None

    def report(pipe, step, timestep, tensors):
        on_progress(GenerationProgress(step=step + 1, total_steps=pipe.num_timesteps or request.steps))
        return tensors

    return report
