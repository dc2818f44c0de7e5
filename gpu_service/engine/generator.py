"""The warm generator: one base pipeline in memory, subjects' LoRAs switched in and out per request.

Compatible requests (same LoRA, steps, guidance and size) are rendered in one batched pipeline call:
on a GPU four images cost little more than one.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline
from PIL import Image

from gpu_service.engine.adapters import AdapterSwitcher
from gpu_service.engine.pipeline_loading import load_pipeline, native_size
from gpu_service.engine.previews import preview_png
from gpu_service.errors import GpuServiceError, InvalidRequest, PromptTooLong, RemoteError, SubjectNotFound
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
from gpu_service.sizes import aspect_size

log = logging.getLogger(__name__)
ProgressSink = Callable[[GenerationProgress], None]
# Requests may ask for up to 4x the model's native pixel count (1024x1024 on SD1.5); beyond that
# attention memory grows quadratically and one request could take the GPU down for everyone.
MAX_PIXEL_FACTOR = 4
PREVIEW_EVERY = 5
MAX_INIT_PIXELS = 4096 * 4096


def choose_seeds(seed: int | None, count: int) -> list[int]:
    """A given seed gives seed, seed+1, ...; otherwise each image gets its own random seed."""
    if seed is None:
        return [secrets.randbelow(MAX_SEED + 1) for _ in range(count)]
    return [(seed + offset) % (MAX_SEED + 1) for offset in range(count)]


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class BatchItem:
    request: GenerateRequest
    on_progress: ProgressSink | None = None
    previews: bool = False
    cancel: threading.Event | None = None  # set by the caller who gave up: stop at the next step


@dataclass
class _Job:
    """A validated request, ready to render."""

    request: GenerateRequest
    version: ModelVersion | None
    prompt: str
    width: int
    height: int
    seeds: list[int]
    init_image: Image.Image | None
    on_progress: ProgressSink | None
    previews: bool
    started: float
    damaged_version: int | None = None  # the requested version, set aside because its file is damaged
    cancel: threading.Event | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def batch_key(self) -> tuple:
        # img2img jobs carry their own init image and strength: they never share a call
        own = id(self) if self.request.init_image is not None else None
        version = (self.version.subject, self.version.version) if self.version else None
        return (version, self.request.steps, self.request.guidance, self.width, self.height, own)


class Generator:
    """Renders GenerateRequests on one warm pipeline. Not thread-safe: callers serialise (one worker)."""

    def __init__(
        self, pipe: DiffusionPipeline, *, model_name: str, adapters: AdapterSwitcher, default_subject: str,
        default_phrase: str, load_s: float = 0.0,
    ) -> None:
        self.pipe = pipe
        self.model_name = model_name
        self.adapters = adapters
        self.default_subject = default_subject
        self.default_phrase = default_phrase
        self.load_s = load_s
        self.pipeline_calls = 0
        self._img2img: StableDiffusionImg2ImgPipeline | None = None

    @classmethod
    def load(cls, base_model: str, *, adapters_factory, token: str | None = None, **kwargs) -> Generator:
        started = time.perf_counter()
        pipe = load_pipeline(base_model, token=token)
        return cls(
            pipe, model_name=base_model, adapters=adapters_factory(pipe),
            load_s=time.perf_counter() - started, **kwargs,
        )

    def generate(
        self, request: GenerateRequest, on_progress: ProgressSink | None = None, previews: bool = False
    ) -> GenerateResult:
        [outcome] = self.generate_batch([BatchItem(request, on_progress, previews)])
        if isinstance(outcome, GpuServiceError):
            raise outcome
        return outcome

    def generate_batch(self, items: Sequence[BatchItem]) -> list[GenerateResult | GpuServiceError]:
        """One outcome per item, in order: a result, or the error that refused that request alone."""
        outcomes: list[GenerateResult | GpuServiceError | None] = [None] * len(items)
        groups: dict[tuple, list[tuple[int, _Job]]] = {}
        for position, item in enumerate(items):
            try:
                job = self._prepare(item.request, item.on_progress, item.previews)
            except GpuServiceError as error:
                outcomes[position] = error
                continue
            job.cancel = item.cancel
            groups.setdefault(job.batch_key(), []).append((position, job))
        for members in groups.values():
            for position, outcome in zip((p for p, _ in members), self._render_safely([j for _, j in members])):
                outcomes[position] = outcome
        return outcomes

    def _render_safely(self, jobs: list[_Job]) -> list[GenerateResult | GpuServiceError]:
        """One group's failure (a LoRA that will not load, out of memory) fails that group alone."""
        try:
            return self._render_group(jobs)
        except GpuServiceError as error:
            return [error] * len(jobs)
        except Exception as error:
            log.exception("rendering a batch of %d request(s) failed", len(jobs))
            return [RemoteError(f"The image engine failed ({error.__class__.__name__}).")] * len(jobs)

    def _prepare(self, request: GenerateRequest, on_progress: ProgressSink | None, previews: bool) -> _Job:
        started = time.perf_counter()
        requested = self._lookup_subject(request)
        version = self.adapters.usable(requested)
        damaged = requested.version if version != requested else None
        phrase = version.instance_phrase if version else self.default_phrase
        prompt = build_prompt(request.prompt_prefix, phrase, request.prompt_postfix)
        self.check_prompt_length(prompt, "prompt")
        self.check_prompt_length(request.negative_prompt, "negative_prompt")
        width, height = self.resolve_size(request.width, request.height, request.aspect)
        init_image = None
        if request.init_image is not None:
            init_image = _decode_init_image(request.init_image).resize((width, height))
        seeds = choose_seeds(request.seed, request.count)
        return _Job(
            request, version, prompt, width, height, seeds, init_image, on_progress, previews, started, damaged
        )

    def _lookup_subject(self, request: GenerateRequest) -> ModelVersion | None:
        version = self.adapters.lookup(request.subject, request.subject_version)
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

    def resolve_size(self, width: int | None, height: int | None, aspect: str | None = None) -> tuple[int, int]:
        native = native_size(self.pipe)
        if aspect is not None:
            return aspect_size(native, aspect, size_step(self.pipe))  # about native², under the cap
        width, height = width or native, height or native
        limit = native * native * MAX_PIXEL_FACTOR
        if width * height > limit:
            raise InvalidRequest(
                f"width x height = {width}x{height} is too large for this model: at most {limit} pixels "
                f"(for example {native * 2}x{native * 2})."
            )
        return width, height

    def _render_group(self, jobs: list[_Job]) -> list[GenerateResult]:
        first = jobs[0]
        self.adapters.activate(first.version)
        inference_started = time.perf_counter()
        output = self._call_pipeline(jobs)
        finished = time.perf_counter()
        flagged = output.nsfw_content_detected or [False] * len(output.images)
        results, offset = [], 0
        for job in jobs:
            count = len(job.seeds)
            images = output.images[offset: offset + count]
            flags = flagged[offset: offset + count]
            offset += count
            results.append(self._result(job, images, flags, finished - inference_started, finished))
        return results

    def _result(self, job: _Job, images, flags, inference_s: float, finished: float) -> GenerateResult:
        request = job.request
        generated = tuple(
            GeneratedImage(index=i, seed=seed, png=None if flag else encode_png(image), withheld=bool(flag))
            for i, (seed, image, flag) in enumerate(zip(job.seeds, images, flags))
        )
        return GenerateResult(
            prompt=job.prompt, negative_prompt=request.negative_prompt, images=generated,
            model=self.model_name, subject=request.subject,
            version=job.version.version if job.version else None, base_fallback=job.version is None,
            damaged_version=job.damaged_version,
            steps=request.steps, guidance=request.guidance, width=job.width, height=job.height,
            timings=Timings(load_s=self.load_s, inference_s=inference_s, total_s=finished - job.started),
        )

    def _call_pipeline(self, jobs: list[_Job]):
        first = jobs[0]
        prompts = [job.prompt for job in jobs for _ in job.seeds]
        negatives = [job.request.negative_prompt for job in jobs for _ in job.seeds]
        generators = [torch.Generator(device="cpu").manual_seed(seed) for job in jobs for seed in job.seeds]
        common = dict(
            prompt=prompts, negative_prompt=negatives if any(negatives) else None,
            num_inference_steps=first.request.steps, guidance_scale=first.request.guidance,
            generator=generators, callback_on_step_end=_progress_callback(jobs),
        )
        self.pipeline_calls += 1
        with torch.inference_mode():
            if first.init_image is None:
                return self.pipe(width=first.width, height=first.height, **common)
            images = [first.init_image] * len(prompts)
            return self._image_to_image()(image=images, strength=first.request.strength, **common)

    def _image_to_image(self) -> StableDiffusionImg2ImgPipeline:
        """Shares the warm pipeline's modules (and loaded LoRAs): no second copy of the weights."""
        if self._img2img is None:
            self._img2img = StableDiffusionImg2ImgPipeline.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img


def size_step(pipe: DiffusionPipeline) -> int:
    """The side multiple the UNet divides evenly (64 px on SD1.5), never below the contract's 8."""
    downsamples = len(pipe.unet.config.block_out_channels) - 1
    return max(8, pipe.vae_scale_factor * 2**downsamples)


def _decode_init_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_INIT_PIXELS:  # refused from the header, before decoding
            raise InvalidRequest(f"init_image is too large ({image.width}x{image.height} pixels).")
        image.load()
    except InvalidRequest:
        raise
    except Image.DecompressionBombError:
        raise InvalidRequest("init_image is too large (a decompression bomb).") from None
    except Exception as error:  # Pillow raises many types for bad bytes
        raise InvalidRequest(f"init_image is not a readable image ({error.__class__.__name__}).") from error
    return image.convert("RGB")


def _progress_callback(jobs: list[_Job]):
    if not any(job.on_progress is not None or job.cancel is not None for job in jobs):
        return None

    def report(pipe, step, timestep, tensors):
        total = pipe.num_timesteps
        offset = 0
        for job in jobs:
            if job.on_progress is not None and not job.cancelled:
                want_preview = job.previews and ((step + 1) % PREVIEW_EVERY == 0 or step + 1 == total)
                preview = preview_png(tensors["latents"][offset]) if want_preview else None
                job.on_progress(GenerationProgress(step=step + 1, total_steps=total, preview_png=preview))
            offset += len(job.seeds)
        if all(job.cancelled for job in jobs):
            pipe._interrupt = True  # diffusers skips the remaining steps; nobody waits for these images
        return tensors

    return report
