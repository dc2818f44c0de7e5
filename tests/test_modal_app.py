"""modal_app: imports light, follows the settings, and its class and functions run in-process with `.local()`."""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpu_service.boundary import boundary
from gpu_service.errors import GpuBusy, InvalidRequest, RemoteError, SubjectNotFound
from gpu_service.leases import SharedTrainingLease, deployment_slot
from gpu_service.modal_deployment import TRAIN_TIMEOUT_S, ModalNames
from gpu_service.registry import ModelRegistry, VersionMetadata
from gpu_service.schemas import GenerateRequest, GenerateResult, ModelVersion, TrainResult
from gpu_service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# `.local()` warns that Volumes are not mounted: here the fixture stands in for them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*executing locally and will not have access:UserWarning")

# Records what modal_app passes to Modal's decorators, then imports it: the public arguments are the spec.
INSPECT_APP = """
import json, sys, modal
seen = {"cls": [], "function": [], "concurrent": []}
def describe(value):
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
def recorder(kind, original):
    def wrapper(*args, **kwargs):
        decorate = original(*args, **kwargs)
        def apply(target):
            seen[kind].append({"target": getattr(target, "__name__", None), **describe(kwargs)})
            return decorate(target)
        return apply
    return wrapper
modal.App.cls = recorder("cls", modal.App.cls)
modal.App.function = recorder("function", modal.App.function)
modal.concurrent = recorder("concurrent", modal.concurrent)
import modal_app
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "peft") if m in sys.modules)
print(json.dumps({"app": modal_app.app.name, "heavy": heavy, **seen}))
"""


def inspect_app(tmp_path: Path, **env: str) -> dict:
    """Import modal_app in a fresh interpreter, in a directory without .env files."""
    variables = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", INSPECT_APP], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=variables | env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    return inspect_app(
        tmp_path_factory.mktemp("inspect"), PROJECT_NAME="qwerty-test", GPU_TYPE="H100",
        MODAL_MIN_CONTAINERS="1", MODAL_SCALEDOWN_WINDOW_S="120",
    )


def test_importing_the_app_never_imports_torch(spec):
    assert spec["heavy"] == []


def test_the_inference_class_follows_the_settings(spec):
    (inference,) = spec["cls"]
    assert spec["app"] == "qwerty-test"
    assert inference["gpu"] == "H100"
    assert (inference["min_containers"], inference["scaledown_window"]) == (1, 120)
    assert inference["enable_memory_snapshot"] is True and inference["timeout"] > 0
    assert sorted(inference["volumes"]) == ["/cache/huggingface", "/data/registry", "/data/wandb"]
    assert "qwerty-test-registry" in inference["volumes"]["/data/registry"]
    assert "qwerty-test-wandb" in inference["volumes"]["/data/wandb"]
    assert "qwerty-test-hf-cache" in inference["volumes"]["/cache/huggingface"]
    assert any("qwerty-test-huggingface" in secret for secret in inference["secrets"])
    (concurrent,) = spec["concurrent"]
    assert concurrent["target"] == "Inference" and concurrent["max_inputs"] >= concurrent["target_inputs"] > 1


def test_training_gets_a_gpu_its_volumes_both_secrets_and_a_long_timeout(spec):
    functions = {entry["target"]: entry for entry in spec["function"]}
    train = functions["train"]
    assert train["gpu"] == "H100" and train["timeout"] == TRAIN_TIMEOUT_S
    assert sorted(train["volumes"]) == ["/cache/huggingface", "/data/registry", "/data/wandb"]
    assert "qwerty-test-wandb" in train["volumes"]["/data/wandb"]
    secrets = " ".join(train["secrets"])
    assert "qwerty-test-huggingface" in secrets and "qwerty-test-wandb" in secrets
    for name in ("list_versions", "activate", "export_lora"):  # registry chores never wake a GPU
        assert "gpu" not in functions[name] and list(functions[name]["volumes"]) == ["/data/registry"]


def test_model_downloads_run_on_cpu_into_the_hugging_face_cache_volume(spec):
    download = {entry["target"]: entry for entry in spec["function"]}["download_models"]
    assert "gpu" not in download and list(download["volumes"]) == ["/cache/huggingface"]
    assert "qwerty-test-hf-cache" in download["volumes"]["/cache/huggingface"]
    assert any("qwerty-test-huggingface" in secret for secret in download["secrets"])


def test_deployed_names_are_the_ones_the_client_looks_up(spec):
    names = ModalNames("qwerty-test")
    looked_up = {names.train, names.list_versions, names.activate, names.export_lora}
    assert {entry["target"] for entry in spec["function"]} == looked_up | {"download_models"}  # make deploy runs it
    assert spec["concurrent"][0]["target"] == names.inference


# In-process: modal_app imported with settings pointing at the tiny model, Modal's storage faked.


class FakeVolume:
    """A Volume as one container sees it: `view` changes on reload only; commit publishes the view."""

    def __init__(self, view: Path | None = None, shared: Path | None = None) -> None:
        self.view, self.shared = view, shared
        self.reloads = self.commits = 0

    def reload(self) -> None:
        self.reloads += 1
        if self.shared is not None:
            _mirror(self.shared, self.view)

    def commit(self) -> None:
        self.commits += 1
        if self.shared is not None:
            _mirror(self.view, self.shared)


def _mirror(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target) if source.exists() else target.mkdir(parents=True)


class FakeDict:
    """The slice of modal.Dict the container uses, thread-safe like the real one."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.history: list = []
        self._lock = threading.Lock()

    def put(self, key, value, *, skip_if_exists: bool = False) -> bool:
        with self._lock:
            if skip_if_exists and key in self.data:
                return False
            self.data[key] = value
            self.history.append((key, value))
            return True

    def get(self, key, default=None):
        with self._lock:
            return self.data.get(key, default)

    def pop(self, key, default=None):
        with self._lock:
            return self.data.pop(key, default)


@pytest.fixture
def app_module(tmp_path, tiny_model_dir, monkeypatch):
    """modal_app as a container of this test would import it: settings from the environment, read once."""
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("HUGGINGFACE_TOKEN", "HF_TOKEN", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    sys.modules.pop("modal_app", None)
    module = importlib.import_module("modal_app")
    shared = tmp_path / "volume"  # the committed state of the registry Volume
    shared.mkdir()
    monkeypatch.setattr(module, "registry_volume", FakeVolume(module.settings.registry_dir, shared))
    monkeypatch.setattr(module, "hf_cache_volume", FakeVolume())
    monkeypatch.setattr(module, "wandb_volume", FakeVolume())
    monkeypatch.setattr(module, "training_progress", FakeDict())
    yield module
    sys.modules.pop("modal_app", None)


def write_lora(staging: Path, model_dir: Path, seed: int) -> None:
    """A random (but effective) LoRA for the tiny UNet, saved the way training saves one."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:  # B starts at zero, which would make the LoRA a no-op
                parameter.normal_(0.0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(staging, unet_lora_layers=layers, safe_serialization=True)


def publish_version(root: Path, model_dir: Path, subject: str, job_id: str, seed: int) -> ModelVersion:
    registry = ModelRegistry(root)
    write_lora(registry.staging_dir(subject, job_id), model_dir, seed)
    meta = VersionMetadata(
        job_id=job_id, subject=subject, instance_phrase=f"{subject} dog", class_phrase="dog",
        base_model=str(model_dir),
    )
    return registry.publish(subject, job_id, meta)


def request(**fields) -> dict:
    values = dict(prompt_prefix="a photo of a", subject="qwerty", seed=3, steps=2) | fields
    return GenerateRequest(**values).model_dump()


def test_container_settings_round_trip_through_the_image_environment(app_module, monkeypatch):
    deployed = Settings(
        _env_file=None, PROJECT_NAME="p1", BASE_MODEL="org/model", ALLOW_PRIVATE_URLS=True,
        MODAL_CALL_TIMEOUT_S=42.5, HUGGINGFACE_TOKEN="hf_secret", GPU_BACKEND="modal", WANDB_MODE="online",
    )
    env = app_module.container_env(deployed)
    assert "HUGGINGFACE_TOKEN" not in env and "hf_secret" not in json.dumps(env)  # secrets come from Secrets
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen = Settings(_env_file=None)
    assert str(seen.registry_dir) == str(app_module.REGISTRY_DIR) and env["HF_HOME"] == "/cache/huggingface"
    assert seen.ALLOW_PRIVATE_URLS is False  # a loopback-test setting never reaches the GPU side
    unchanged = {"DATA_DIR", "OUTPUTS_DIR", "GPU_BACKEND", "HUGGINGFACE_TOKEN", "ALLOW_PRIVATE_URLS", "WANDB_DIR"}
    assert seen.model_dump(exclude=unchanged) == deployed.model_dump(exclude=unchanged)


@pytest.mark.parametrize(("key", "mode"), [("", "offline"), ("wandb-key", "online")])
def test_containers_log_online_with_a_key_and_otherwise_onto_the_wandb_volume(app_module, monkeypatch, key, mode):
    """The deploying machine's own WANDB_DIR stays home; the Secret's key (empty when none) picks the mode."""
    deployed = Settings(_env_file=None, WANDB_DIR="/home/me/wandb-runs")
    for name, value in app_module.container_env(deployed).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", key)  # what the W&B Secret puts in the container
    seen = Settings(_env_file=None)
    assert seen.wandb_mode == mode
    assert str(seen.wandb_dir) == str(app_module.WANDB_DIR) and str(app_module.WANDB_DIR) in app_module.VOLUMES


def test_the_image_installs_the_engine_from_pyproject_and_not_the_bot_only_packages(app_module):
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = app_module.engine_requirements(REPO / "pyproject.toml")
    assert set(project["optional-dependencies"]["gpu"]) <= set(wanted)
    assert "torch==2.13.0" in wanted
    assert not [req for req in wanted if req.startswith(("modal", "discord"))]


def test_the_enter_hooks_load_and_generation_works_in_process(app_module):
    inference = app_module.Inference()
    result = GenerateResult.model_validate(inference.generate.local(request(count=2)))
    assert len(result.images) == 2 and result.base_fallback and result.width == 64
    assert app_module.hf_cache_volume.commits == 1  # the downloaded base model is shared once loaded
    items = list(inference.generate_stream.local(request()))
    assert [item["kind"] for item in items[:-1]] == ["progress"] * 2 and items[-1]["kind"] == "result"
    assert items[-2]["data"]["preview_png"]  # the last step always carries a preview
    status = inference.status.local()
    assert status["loaded"] and status["pipeline_calls"] == 2


def test_concurrent_requests_share_pipeline_calls(app_module):
    inference = app_module.Inference()
    inference.generate.local(request())  # load first
    before = inference.status.local()["pipeline_calls"]
    threads = [threading.Thread(target=inference.generate.local, args=(request(seed=s),)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert inference.status.local()["pipeline_calls"] - before <= 2


def test_errors_leave_the_container_as_small_picklable_types(app_module):
    inference = app_module.Inference()
    with pytest.raises(InvalidRequest, match="subject"):
        inference.generate.local({"prompt_prefix": "x", "subject": "Not Valid"})
    with pytest.raises(SubjectNotFound):
        inference.generate.local(request(subject="nobody"))
    with pytest.raises(RemoteError, match="ZeroDivisionError") as caught:
        with boundary("dividing"):
            1 / 0
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is RemoteError and str(again) == str(caught.value)


def test_a_container_catches_up_with_a_newer_version_between_requests(app_module, tiny_model_dir):
    """Instance A serves v1; v2 is committed elsewhere; a request naming v2 makes A reload, then serve v2."""
    volume = app_module.registry_volume
    publish_version(volume.shared, tiny_model_dir, "rex", "job-1", seed=1)
    _mirror(volume.shared, volume.view)  # A's container starts with v1 mounted
    inference = app_module.Inference()
    first = GenerateResult.model_validate(inference.generate.local(request(subject="rex", subject_version=1)))
    assert first.version == 1 and volume.reloads == 0

    publish_version(volume.shared, tiny_model_dir, "rex", "job-2", seed=2)  # a training container commits v2
    stale = GenerateResult.model_validate(inference.generate.local(request(subject="rex")))
    assert stale.version == 1 and volume.reloads == 0  # nobody asked for v2: A keeps its consistent view

    second = GenerateResult.model_validate(inference.generate.local(request(subject="rex", subject_version=2)))
    assert second.version == 2 and volume.reloads == 1
    assert second.images[0].png != first.images[0].png


def test_registry_functions_reload_first_and_activation_commits(app_module, tiny_model_dir):
    volume = app_module.registry_volume
    publish_version(volume.shared, tiny_model_dir, "rex", "job-1", seed=1)
    publish_version(volume.shared, tiny_model_dir, "rex", "job-2", seed=2)
    listed = [ModelVersion.model_validate(v) for v in app_module.list_versions.local("rex")]
    assert [(v.version, v.active) for v in listed] == [(1, False), (2, True)] and volume.reloads == 1
    chosen = ModelVersion.model_validate(app_module.activate.local("rex", 1))
    assert chosen.version == 1 and volume.commits == 1
    assert ModelRegistry(volume.shared).active("rex").version == 1  # committed for every container
    with pytest.raises(SubjectNotFound):
        app_module.activate.local("rex", 9)


def test_export_reads_the_committed_registry_and_converts_on_request(app_module, tiny_model_dir):
    import safetensors.torch

    volume = app_module.registry_volume
    publish_version(volume.shared, tiny_model_dir, "rex", "job-1", seed=1)
    stored = ModelRegistry(volume.shared).read_weights("rex", 1)
    assert app_module.export_lora.local("rex", 1) == stored and volume.reloads == 1
    kohya = safetensors.torch.load(app_module.export_lora.local("rex", 1, "kohya"))
    assert kohya and all(key.startswith("lora_unet_") for key in kohya)
    with pytest.raises(SubjectNotFound):
        app_module.export_lora.local("rex", 2)
    with pytest.raises(InvalidRequest, match="kohya"):
        app_module.export_lora.local("rex", 1, "ckpt")


def test_the_base_and_quality_models_are_fetched_from_the_hub_with_their_loaders_files(app_module):
    calls = []
    values = Settings(_env_file=None, BASE_MODEL="org/sd", HUGGINGFACE_TOKEN="hf_x",
                      QUALITY_CLIP_MODEL="org/clip", QUALITY_DINO_MODEL="org/dino")
    fetched = app_module.fetch_models(values, lambda repo_id, **options: calls.append((repo_id, options)))
    assert fetched == ["org/sd", "org/clip", "org/dino"] == [repo for repo, _ in calls]
    assert {options["token"] for _, options in calls} == {"hf_x"}
    base = calls[0][1]
    assert "*/*.safetensors" in base["allow_patterns"] and "*.fp16.*" in base["ignore_patterns"]
    calls.clear()
    assert app_module.fetch_models(values.model_copy(update={"QUALITY_ENABLED": False}),
                                   lambda repo_id, **options: calls.append(repo_id)) == ["org/sd"]


def test_download_models_skips_local_directories_and_commits_the_cache(app_module, tiny_quality_dirs, monkeypatch):
    clip, dino = tiny_quality_dirs
    monkeypatch.setattr(app_module, "settings", app_module.settings.model_copy(
        update={"QUALITY_CLIP_MODEL": str(clip), "QUALITY_DINO_MODEL": str(dino)}))
    assert app_module.download_models.local() == []  # the tiny models are directories: no network
    assert app_module.hf_cache_volume.commits == 1


def test_a_short_training_produces_a_version_and_publishes_progress(app_module):
    pytest.importorskip(
        "gpu_service.engine.training_job", reason="gpu_service.engine.training_job (run_training_job) not written yet"
    )
    from tests.gpu_service.test_training import IMAGES

    from gpu_service.schemas import ImageSource, TrainRequest

    train = TrainRequest(
        job_id="job-1", subject="rex", instance_phrase="rex dog", class_phrase="dog", steps=2,
        images=tuple(ImageSource(data=data) for data in IMAGES),
    )
    result = TrainResult.model_validate(app_module.train.local(train.model_dump()))
    assert result.version.version == 1
    assert ModelRegistry(app_module.registry_volume.shared).active("rex").version == 1  # committed
    store = app_module.training_progress
    states = [value["state"] for key, value in store.history if key == "job-1"]
    assert states and states[-1] == "done"
    assert "lease:rex" not in store.data  # released


def test_the_train_function_wraps_the_trainer_in_lease_progress_and_commit(app_module, monkeypatch):
    """Runs the real tiny trainer behind a stand-in for the training_job wrapper (its signature only)."""
    import types

    from tests.gpu_service.test_training import IMAGES, TINY

    from gpu_service.engine import training
    from gpu_service.engine.train_config import training_config
    from gpu_service.schemas import ImageSource, TrainRequest

    def run_training_job(settings, request, on_progress=None):
        assert app_module.training_progress.get("lease:rex")["job_id"] == request.job_id  # held meanwhile
        return training.train_version(
            request, [image.data for image in request.images], base_model=settings.BASE_MODEL,
            registry=ModelRegistry(settings.registry_dir), config=training_config(**TINY),
            instance_prefix=settings.INSTANCE_PREFIX, instance_postfix="",
            class_cache_dir=settings.DATA_DIR / "class-images", on_progress=on_progress, progress_interval_s=0,
        )

    wrapper = types.ModuleType("gpu_service.engine.training_job")
    wrapper.run_training_job = run_training_job
    monkeypatch.setitem(sys.modules, "gpu_service.engine.training_job", wrapper)
    train = TrainRequest(
        job_id="job-1", subject="rex", instance_phrase="rex dog", class_phrase="dog",
        images=tuple(ImageSource(data=data) for data in IMAGES),
    )
    result = TrainResult.model_validate(app_module.train.local(train.model_dump()))
    volume, store = app_module.registry_volume, app_module.training_progress
    assert result.version.version == 1 and (volume.reloads, volume.commits) == (1, 1)
    assert app_module.wandb_volume.commits == 1  # an offline run reaches the W&B Volume
    assert ModelRegistry(volume.shared).active("rex").version == 1  # committed for every container
    states = [value["state"] for key, value in store.history if key == "job-1"]
    assert "training" in states and states[-1] == "done"
    assert "lease:rex" not in store.data


# The lease: one training per subject across containers


def test_a_second_job_for_the_same_subject_is_refused_while_the_first_runs(app_module):
    store = FakeDict()
    with SharedTrainingLease(store, "rex", "job-1", heartbeat_s=0.05):
        with pytest.raises(GpuBusy, match="job-1"):
            with SharedTrainingLease(store, "rex", "job-2"):
                pass
        with SharedTrainingLease(store, "other", "job-3"):  # other subjects are free
            pass
    assert store.data == {}


def test_the_heartbeat_keeps_a_long_job_s_lease_fresh(app_module):
    store = FakeDict()
    with SharedTrainingLease(store, "rex", "job-1", heartbeat_s=0.02, stale_s=0.2):
        time.sleep(0.4)
        with pytest.raises(GpuBusy):
            SharedTrainingLease(store, "rex", "job-2", stale_s=0.2).__enter__()


def test_a_dead_holder_s_lease_is_taken_over_once_stale(app_module):
    store = FakeDict()
    store.put("lease:rex", {"job_id": "job-1", "token": "dead", "beat": time.time() - 10})
    with SharedTrainingLease(store, "rex", "job-2", stale_s=5):
        assert store.get("lease:rex")["job_id"] == "job-2"


def test_the_same_job_arriving_again_waits_for_the_lease_instead_of_failing(app_module):
    """Modal retrying a preempted input: the old attempt's lease goes stale, then the retry resumes."""
    store = FakeDict()
    store.put("lease:rex", {"job_id": "job-1", "token": "old-attempt", "beat": time.time()})
    started = time.monotonic()
    with SharedTrainingLease(store, "rex", "job-1", heartbeat_s=0.01, stale_s=0.2):
        waited = time.monotonic() - started
    assert 0.15 <= waited < 2


# The deployment's slots: MAX_CONCURRENT_TRAININGS across containers and bot processes


def test_the_deployment_runs_at_most_its_slots_of_trainings_whatever_the_subjects(app_module):
    store = FakeDict()
    with deployment_slot(store, "job-1", 2, heartbeat_s=0.05) as first, \
            deployment_slot(store, "job-2", 2, heartbeat_s=0.05) as second:
        assert (first, second) == (0, 1)
        with pytest.raises(GpuBusy, match="MAX_CONCURRENT_TRAININGS"):
            with deployment_slot(store, "job-3", 2):
                pass
    with deployment_slot(store, "job-3", 2) as freed:  # free again once they ended
        assert freed == 0
    assert store.data == {}


def test_a_dead_trainings_slot_is_taken_over_once_stale(app_module):
    store = FakeDict()
    store.put("lease:#slot-0", {"job_id": "killed", "token": "dead", "beat": time.time() - 10})
    with deployment_slot(store, "job-2", 1, stale_s=5) as slot:
        assert slot == 0 and store.get("lease:#slot-0")["job_id"] == "job-2"


def test_the_train_function_takes_a_deployment_slot(app_module, monkeypatch):
    """A second bot process (or a stale job) cannot start a training beyond MAX_CONCURRENT_TRAININGS."""
    from gpu_service.schemas import ImageSource, TrainRequest

    app_module.training_progress.put("lease:#slot-0", {"job_id": "elsewhere", "token": "t", "beat": time.time()})
    request = TrainRequest(job_id="job-9", subject="cat", instance_phrase="sks cat", class_phrase="cat",
                           images=(ImageSource(data=b"x"),))
    with pytest.raises(Exception, match="MAX_CONCURRENT_TRAININGS"):
        app_module.train.local(request.model_dump())
    assert "lease:cat" not in app_module.training_progress.data  # the subject's lease was given back
