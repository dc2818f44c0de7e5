"""The Modal client against stand-ins for Modal's handles: timeouts, error mapping, streaming, training calls."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import modal.exception
import pytest

from gpu_service.errors import (
    GpuBusy,
    GpuTimeout,
    InvalidRequest,
    MissingCredentials,
    ModelNotDeployed,
    RemoteError,
    SubjectNotFound,
    TrainingFailed,
)
from gpu_service.modal_client import DEFAULT_COLD_START_S, ModalGpuClient
from gpu_service.modal_deployment import ModalNames
from gpu_service.schemas import (
    GenerateRequest,
    GenerateResult,
    GeneratedImage,
    GenerationProgress,
    ImageSource,
    ModelVersion,
    TrainProgress,
    TrainRequest,
    TrainResult,
)
from gpu_service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
REQUEST = GenerateRequest(prompt_prefix="a painting of a", subject="qwerty", seed=7)
TRAIN_REQUEST = TrainRequest(
    job_id="job-1", subject="rex", instance_phrase="rex dog", class_phrase="dog",
    images=(ImageSource(url="https://example.com/a.png"),),
)
VERSION = ModelVersion(
    subject="rex", version=3, instance_phrase="rex dog", class_phrase="dog", base_model="tiny",
    created_at=datetime(2025, 1, 1, tzinfo=UTC), active=True,
)


def result_for(request: GenerateRequest) -> dict:
    return GenerateResult(
        prompt=f"{request.prompt_prefix} qwerty dog", negative_prompt="", model="tiny", subject=request.subject,
        images=(GeneratedImage(index=0, seed=request.seed or 0, png=b"\x89PNG"),), version=None,
        base_fallback=True, steps=request.steps, guidance=request.guidance, width=64, height=64,
    ).model_dump()


async def hang(*args, **kwargs):
    await asyncio.sleep(3600)


def raising(error: BaseException):
    async def call(*args, **kwargs):
        raise error

    return call


def aio(handler) -> SimpleNamespace:
    """What Modal puts behind `.remote`, `.spawn`, `.get`...: an object whose `.aio` is the async call."""
    return SimpleNamespace(aio=handler)


class FakeCall:
    """A spawned call: 'not ready' (Modal's built-in TimeoutError) for `pending` polls, then the outcome."""

    def __init__(self, call_id: str, outcome, pending: int = 2, on_poll=None) -> None:
        self.object_id = call_id
        self.outcome, self.pending, self.on_poll = outcome, pending, on_poll
        self.polls = 0
        self.get = aio(self._get)

    async def _get(self, timeout=None):
        assert timeout == 0, "the client polls; it never blocks inside Modal"
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self.polls)
        if self.polls <= self.pending:
            raise TimeoutError()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FakeApp:
    """Stands in for the deployed app: the inference instance, functions, spawned calls, the progress Dict."""

    def __init__(self) -> None:
        self.generate = SimpleNamespace(
            remote=aio(self._generate), get_current_stats=aio(self._stats),
        )
        self.generate_stream = SimpleNamespace(remote_gen=aio(self._stream))
        self.functions: dict[str, SimpleNamespace] = {}
        self.calls: dict[str, FakeCall] = {}
        self.progress: dict[str, dict] = {}
        self.payloads: list = []
        self.stats = SimpleNamespace(num_total_runners=1, backlog=0)
        self.closed_streams = 0

    async def _generate(self, payload):
        self.payloads.append(payload)
        return result_for(GenerateRequest.model_validate(payload))

    async def _stream(self, payload):
        request = GenerateRequest.model_validate(payload)
        try:
            for step in (1, 2):
                yield {"kind": "progress", "data": GenerationProgress(step=step, total_steps=2).model_dump()}
            yield {"kind": "result", "data": result_for(request)}
        finally:
            self.closed_streams += 1

    async def _stats(self):
        return self.stats

    async def _progress_get(self, key):
        return self.progress.get(key)

    # ModalLookup

    def inference(self):
        return SimpleNamespace(generate=self.generate, generate_stream=self.generate_stream)

    def function(self, name: str):
        if name not in self.functions:
            raise AssertionError(f"no fake for function {name}")
        return self.functions[name]

    def function_call(self, call_id: str):
        return self.calls[call_id]

    def progress_store(self):
        return SimpleNamespace(get=aio(self._progress_get))


@pytest.fixture
def fake() -> FakeApp:
    return FakeApp()


def make_client(fake: FakeApp, call_timeout_s: float = 5.0, cold_timeout_s: float = 5.0, **kwargs) -> ModalGpuClient:
    settings = Settings(
        _env_file=None, GPU_BACKEND="modal", MODAL_CALL_TIMEOUT_S=call_timeout_s,
        MODAL_COLD_START_TIMEOUT_S=cold_timeout_s,
    )
    kwargs.setdefault("poll_interval_s", 0.01)
    return ModalGpuClient(settings, lookup=fake, **kwargs)


# Generation


async def test_generate_sends_a_plain_dict_and_returns_the_validated_result(fake):
    result = await make_client(fake).generate(REQUEST)
    assert isinstance(fake.payloads[0], dict) and fake.payloads[0]["seed"] == 7
    assert isinstance(result, GenerateResult) and result.images[0].seed == 7


async def test_a_generation_that_hangs_ends_in_gpu_timeout_quickly(fake):
    fake.generate.remote = aio(hang)
    started = time.monotonic()
    with pytest.raises(GpuTimeout, match="0.2 s"):
        await make_client(fake, call_timeout_s=0.2).generate(REQUEST)
    assert time.monotonic() - started < 2


async def test_streaming_progress_reaches_the_callback_before_the_result(fake):
    seen: list = []
    result = await make_client(fake).generate(REQUEST, lambda progress: seen.append(progress))
    assert [p.step for p in seen] == [1, 2] and all(isinstance(p, GenerationProgress) for p in seen)
    assert result.images[0].seed == 7


async def test_a_stream_that_stalls_times_out_and_is_closed(fake):
    async def stall(payload):
        try:
            yield {"kind": "progress", "data": GenerationProgress(step=1, total_steps=9).model_dump()}
            await asyncio.sleep(3600)
        finally:
            fake.closed_streams += 1

    fake.generate_stream.remote_gen = aio(stall)
    seen: list = []
    started = time.monotonic()
    with pytest.raises(GpuTimeout):
        await make_client(fake, call_timeout_s=0.2).generate(REQUEST, seen.append)
    assert time.monotonic() - started < 2
    assert len(seen) == 1 and fake.closed_streams == 1


# Cold starts


def slow_start(fake: FakeApp, start_up_s: float) -> None:
    """No container is up; the first call waits `start_up_s` for one (its start-up), later calls do not."""
    fake.stats = SimpleNamespace(num_total_runners=0, backlog=0)
    plain, stream = fake._generate, fake._stream

    async def starting() -> None:
        if fake.stats.num_total_runners == 0:
            await asyncio.sleep(start_up_s)
            fake.stats = SimpleNamespace(num_total_runners=1, backlog=0)

    async def generate(payload):
        await starting()
        return await plain(payload)

    async def generate_stream(payload):
        await starting()
        async for item in stream(payload):
            yield item

    fake.generate.remote = aio(generate)
    fake.generate_stream.remote_gen = aio(generate_stream)


def counting_stats(fake: FakeApp) -> list[int]:
    reads: list[int] = []

    async def stats():
        reads.append(1)
        return fake.stats

    fake.generate.get_current_stats = aio(stats)
    return reads


async def test_the_first_call_survives_a_cold_start_longer_than_the_call_timeout(fake):
    slow_start(fake, start_up_s=0.5)
    client = make_client(fake, call_timeout_s=0.2, cold_timeout_s=5.0)
    seen: list[GenerationProgress] = []
    result = await client.generate(REQUEST, seen.append)
    assert result.images[0].seed == 7
    assert seen[0].warming_s == DEFAULT_COLD_START_S  # nothing measured yet: the documented default
    assert [p.step for p in seen[1:]] == [1, 2] and all(p.warming_s is None for p in seen[1:])
    assert client.last_cold_start_s is not None and client.last_cold_start_s >= 0.5  # up to the first answer
    status = await client.status()
    assert status.warm and status.last_cold_start_s == client.last_cold_start_s


async def test_a_call_without_a_listener_gets_the_cold_budget_too(fake):
    slow_start(fake, start_up_s=0.5)
    client = make_client(fake, call_timeout_s=0.2, cold_timeout_s=5.0)
    assert (await client.generate(REQUEST)).images[0].seed == 7
    assert client.last_cold_start_s >= 0.5


async def test_after_an_answer_the_service_counts_as_warm_without_asking(fake):
    reads = counting_stats(fake)
    fake.stats = SimpleNamespace(num_total_runners=1, backlog=0)
    client = make_client(fake)
    seen: list[GenerationProgress] = []
    await client.generate(REQUEST, seen.append)
    await client.generate(REQUEST, seen.append)
    assert len(reads) == 1  # the second call knew from the first answer
    assert all(p.warming_s is None for p in seen) and client.last_cold_start_s is None  # warm: nothing measured


async def test_the_warming_estimate_is_the_last_measured_cold_start(fake):
    slow_start(fake, start_up_s=0.0)
    client = make_client(fake)
    client.last_cold_start_s = 42.0
    seen: list[GenerationProgress] = []
    await client.generate(REQUEST, seen.append)
    assert seen[0].warming_s == 42.0


async def test_a_warm_service_keeps_the_short_call_budget(fake):
    fake.generate_stream.remote_gen = aio(lambda payload: hang_stream())
    with pytest.raises(GpuTimeout, match="0.2 s"):
        await make_client(fake, call_timeout_s=0.2, cold_timeout_s=60).generate(REQUEST, lambda progress: None)


async def hang_stream():
    await asyncio.sleep(3600)
    yield {}


async def test_a_cold_start_past_its_own_budget_is_a_timeout_naming_it(fake):
    slow_start(fake, start_up_s=3600)
    seen: list[GenerationProgress] = []
    with pytest.raises(GpuTimeout, match="0.3 s"):
        await make_client(fake, call_timeout_s=0.1, cold_timeout_s=0.3).generate(REQUEST, seen.append)
    assert [p.warming_s for p in seen] == [DEFAULT_COLD_START_S]


async def test_unknown_warmth_gets_the_cold_budget_without_a_warming_line(fake):
    slow_start(fake, start_up_s=0.5)
    fake.generate.get_current_stats = aio(raising(modal.exception.ConnectionError("blip")))
    seen: list[GenerationProgress] = []
    result = await make_client(fake, call_timeout_s=0.2, cold_timeout_s=5.0).generate(REQUEST, seen.append)
    assert result.images[0].seed == 7 and all(p.warming_s is None for p in seen)


def test_the_cold_budget_is_never_shorter_than_the_call_budget(fake):
    assert make_client(fake, call_timeout_s=200, cold_timeout_s=100).cold_call_timeout_s == 200


async def test_a_stream_without_a_result_is_a_remote_error(fake):
    async def progress_only(payload):
        yield {"kind": "progress", "data": GenerationProgress(step=1, total_steps=1).model_dump()}

    fake.generate_stream.remote_gen = aio(progress_only)
    with pytest.raises(RemoteError, match="without a result"):
        await make_client(fake).generate(REQUEST, lambda progress: None)


async def test_a_result_this_bot_cannot_read_is_a_remote_error_naming_deploy(fake):
    async def old_shape(payload):
        return {"prompt": "x"}

    fake.generate.remote = aio(old_shape)
    with pytest.raises(RemoteError, match="make deploy"):
        await make_client(fake).generate(REQUEST)


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (modal.exception.AuthError("Token missing"), MissingCredentials,
         ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "modal token new")),
        (modal.exception.NotFoundError("App not found"), ModelNotDeployed, ("make deploy",)),
        (modal.exception.FunctionTimeoutError("timeout"), GpuTimeout, ("time limit",)),
        (modal.exception.ConnectionError("refused"), RemoteError, ("could not be reached",)),
        (ValueError("bad tensor shape"), RemoteError, ("ValueError",)),
    ],
)
async def test_modal_and_unknown_errors_become_our_types(fake, raised, expected, words):
    fake.generate.remote = aio(raising(raised))
    with pytest.raises(expected) as caught:
        await make_client(fake).generate(REQUEST)
    assert all(word in str(caught.value) for word in words)
    assert "bad tensor shape" not in str(caught.value)  # internals stay in the log, not in Discord


@pytest.mark.parametrize("error", [InvalidRequest("width must be a multiple of 8"), GpuBusy("queue is full")])
async def test_our_own_errors_raised_remotely_pass_through_unchanged(fake, error):
    fake.generate.remote = aio(raising(error))
    with pytest.raises(type(error)) as caught:
        await make_client(fake).generate(REQUEST)
    assert caught.value is error


# Registry and status


async def test_list_versions_and_activate_go_through_their_functions(fake):
    calls: list = []

    async def list_versions(subject):
        calls.append(("list", subject))
        return [VERSION.model_dump()]

    async def activate(subject, version):
        calls.append(("activate", subject, version))
        return VERSION.model_dump()

    names = ModalNames("stable-qwerty")
    fake.functions[names.list_versions] = SimpleNamespace(remote=aio(list_versions))
    fake.functions[names.activate] = SimpleNamespace(remote=aio(activate))
    client = make_client(fake)
    assert await client.list_versions("rex") == [VERSION]
    assert await client.activate("rex", 3) == VERSION
    assert calls == [("list", "rex"), ("activate", "rex", 3)]


async def test_export_goes_through_its_function_and_a_refusal_comes_back_as_is(fake):
    calls: list = []

    async def export_lora(subject, version, fmt):
        calls.append((subject, version, fmt))
        if version == 9:
            raise SubjectNotFound("subject 'rex' has no version 9")
        return b"weights"

    fake.functions[ModalNames("stable-qwerty").export_lora] = SimpleNamespace(remote=aio(export_lora))
    client = make_client(fake)
    assert await client.export_lora("rex", 3, "kohya") == b"weights"
    with pytest.raises(SubjectNotFound, match="no version 9"):
        await client.export_lora("rex", 9)
    assert calls == [("rex", 3, "kohya"), ("rex", 9, "diffusers")]


async def test_a_registry_call_that_hangs_times_out(fake):
    fake.functions["list_versions"] = SimpleNamespace(remote=aio(hang))
    with pytest.raises(GpuTimeout):
        await make_client(fake, registry_timeout_s=0.1).list_versions()


async def test_status_reports_warm_containers_without_starting_one(fake):
    fake.stats = SimpleNamespace(num_total_runners=2, backlog=1)
    status = await make_client(fake).status()
    assert (status.backend, status.reachable, status.warm) == ("modal", True, True)
    assert "2 container(s)" in status.detail
    fake.stats = SimpleNamespace(num_total_runners=0, backlog=0)
    assert (await make_client(fake).status()).warm is False


@pytest.mark.parametrize(
    ("stats", "words"),
    [(raising(modal.exception.AuthError("no token")), "MODAL_TOKEN_ID"),
     (raising(modal.exception.NotFoundError("no app")), "make deploy"), (hang, "status check")],
)
async def test_status_never_raises_and_says_why_it_is_unreachable(fake, stats, words):
    fake.generate.get_current_stats = aio(stats)
    started = time.monotonic()
    status = await make_client(fake, status_timeout_s=0.1).status()
    assert status.reachable is False and status.warm is False and words in status.detail
    assert time.monotonic() - started < 2


# Training


def training_script(fake: FakeApp, outcome, pending: int = 3) -> FakeCall:
    """A spawned training that publishes progress as it is polled, then ends with `outcome`."""
    def publish(poll: int) -> None:
        state = "training" if poll <= pending else "done"
        fake.progress["job-1"] = TrainProgress(
            job_id="job-1", state=state, step=min(poll, pending), total_steps=pending
        ).model_dump(mode="json")

    call = FakeCall("fc-123", outcome, pending=pending, on_poll=publish)
    fake.calls[call.object_id] = call
    return call


def spawner(fake: FakeApp, calls: list[FakeCall]) -> list[dict]:
    """Deploys a fake `train` whose spawns hand out `calls` in turn; returns the payloads it receives."""
    payloads: list[dict] = []

    async def spawn(payload):
        payloads.append(payload)
        call = calls[len(payloads) - 1]
        fake.calls[call.object_id] = call
        return call

    fake.functions["train"] = SimpleNamespace(spawn=aio(spawn))
    return payloads


DONE = TrainResult(job_id="job-1", version=VERSION).model_dump()


async def test_train_spawns_reports_the_call_id_follows_progress_and_returns_the_result(fake):
    payloads = spawner(fake, [training_script(fake, DONE)])
    seen: list[TrainProgress] = []
    result = await make_client(fake).train(TRAIN_REQUEST, seen.append)
    assert payloads[0]["job_id"] == "job-1" and result == TrainResult(job_id="job-1", version=VERSION)
    assert [(p.state, p.step) for p in seen] == [
        ("queued", 0), ("training", 1), ("training", 2), ("training", 3), ("done", 3)
    ]
    assert {p.call_id for p in seen} == {"fc-123"}  # the first report already lets the bot store it


async def test_resume_re_attaches_to_a_running_call_without_spawning(fake):
    training_script(fake, DONE)
    payloads = spawner(fake, [])
    seen: list[TrainProgress] = []
    result = await make_client(fake).resume_training(TRAIN_REQUEST, "fc-123", seen.append)
    assert result.version == VERSION and payloads == []
    assert seen and all(p.call_id == "fc-123" for p in seen)


@pytest.mark.parametrize(
    "gone", [None, modal.exception.OutputExpiredError(), modal.exception.NotFoundError("no such call")]
)
async def test_resume_runs_the_job_again_when_there_is_no_call_to_attach_to(fake, gone):
    if gone is not None:
        training_script(fake, gone, pending=0)
    payloads = spawner(fake, [FakeCall("fc-new", DONE, pending=1)])
    seen: list[TrainProgress] = []
    result = await make_client(fake).resume_training(TRAIN_REQUEST, gone and "fc-123", seen.append)
    assert result.job_id == "job-1" and len(payloads) == 1
    assert seen[0].state == "queued" and seen[0].call_id == "fc-new"  # the bot stores the new id


@pytest.mark.parametrize(
    "error", [TrainingFailed("Training job-1 failed (OutOfMemoryError)."), GpuBusy("rex is training")]
)
async def test_a_failed_training_raises_its_own_error_even_on_resume(fake, error):
    training_script(fake, error, pending=1)
    spawner(fake, [])
    with pytest.raises(type(error)):
        await make_client(fake).resume_training(TRAIN_REQUEST, "fc-123")


async def test_following_a_training_gives_up_after_its_limit(fake):
    training_script(fake, DONE, pending=10**6)
    with pytest.raises(GpuTimeout, match="job-1"):
        await make_client(fake, train_follow_s=0.1).resume_training(TRAIN_REQUEST, "fc-123")


async def test_polls_that_hang_count_as_not_ready(fake):
    call = training_script(fake, DONE, pending=0)
    polls = 0

    async def sometimes_hangs(timeout=None):
        nonlocal polls
        polls += 1
        if polls == 1:
            await asyncio.sleep(3600)
        return call.outcome

    call.get = aio(sometimes_hangs)
    result = await make_client(fake, status_timeout_s=0.05).resume_training(TRAIN_REQUEST, "fc-123")
    assert result.job_id == "job-1" and polls == 2


async def test_the_bot_chooses_this_client_for_the_modal_backend():
    from bot.wiring import make_gpu_client

    client = make_gpu_client(Settings(_env_file=None, GPU_BACKEND="modal"))
    assert isinstance(client, ModalGpuClient)
    await client.close()


# The real Modal library, offline and without a token


def test_without_a_token_the_real_modal_lookup_ends_in_missing_credentials(tmp_path):
    """No MODAL_* variables, HOME in a temp dir (no ~/.modal.toml); the server address is loopback anyway."""
    code = (
        "import asyncio, time\n"
        "from gpu_service.modal_client import ModalGpuClient\n"
        "from gpu_service.errors import MissingCredentials\n"
        "from gpu_service.schemas import GenerateRequest\n"
        "from gpu_service.settings import Settings\n"
        "async def main():\n"
        "    client = ModalGpuClient(Settings(_env_file=None, MODAL_CALL_TIMEOUT_S=30))\n"
        "    started = time.monotonic()\n"
        "    try:\n"
        "        await client.generate(GenerateRequest(prompt_prefix='a', subject='qwerty'))\n"
        "    except MissingCredentials as error:\n"
        "        print('MissingCredentials', round(time.monotonic() - started, 2), error)\n"
        "    status = await client.status()\n"
        "    print('status', status.reachable, status.detail)\n"
        "asyncio.run(main())\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO), MODAL_SERVER_URL="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first.startswith("MissingCredentials") and "modal token new" in first
    assert float(first.split()[1]) < 5
    assert second.startswith("status False") and "MODAL_TOKEN_ID" in second


async def test_a_network_blip_while_following_a_training_is_retried(fake):
    call = training_script(fake, DONE, pending=0)
    real_get = call._get
    blips = [modal.exception.ConnectionError("connection reset")]

    async def flaky_get(timeout=None):
        if blips:
            raise blips.pop()
        return await real_get(timeout=timeout)

    call.get = aio(flaky_get)
    spawner(fake, [])
    result = await make_client(fake).resume_training(TRAIN_REQUEST, "fc-123")
    assert result.version == VERSION and blips == []
