"""Read back what a wandb (0.31) offline run logged, for tests.

wandb has no reader for its ``run-<id>.wandb`` transaction log, so this module
decodes it directly.  Layout (LevelDB log format, written by wandb-core):

* 7-byte file header: ``b":W&B"``, uint16 magic 0xBEE1, uint8 version 0;
* then 32 KiB blocks, counted from the start of the file (header included);
  each chunk is ``crc32 (uint32) | length (uint16) | type (uint8) | data``,
  little-endian, crc = zlib.crc32(type byte + data); types FULL=1, FIRST=2,
  MIDDLE=3, LAST=4; a block tail shorter than 7 bytes is zero padding;
* each reassembled payload is a ``wandb_internal_pb2.Record``.

Tables and their images are not in the run directory (its table JSON holds
"Image" placeholders).  Each logged table becomes an artifact record whose
manifest maps artifact paths (``x.table.json``, ``media/images/<hash>.png``)
to staged copies under ``$WANDB_DATA_DIR/artifacts/staging/tmpXXXX``.  The
history row for the table key names that artifact by client id in
``artifact_path`` ("wandb-client-artifact://<client_id>/<entry path>").
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image
from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
CLIENT_ARTIFACT = "wandb-client-artifact://"
TABLE_TYPES = {"table-file", "incremental-table-file"}


def _iter_payloads(data: bytes) -> Iterator[bytes]:
    ident, magic, version = FILE_HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"not a wandb transaction log: {ident!r} {magic:#x} v{version}")
    pos, pending = FILE_HEADER.size, None
    while pos + CHUNK_HEADER.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER.size:  # zero trailer of a block
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        start = pos + CHUNK_HEADER.size
        chunk = data[start : start + length]
        if kind == 0 and length == 0:  # zeroed (preallocated) space: skip the block
            pos += BLOCK - pos % BLOCK
            continue
        if len(chunk) < length:  # torn tail of a log still being written
            return
        if zlib.crc32(bytes([kind]) + chunk) != crc:
            raise ValueError(f"crc mismatch in chunk at offset {pos}")
        pos = start + length
        if kind in (FIRST, MIDDLE) and pos % BLOCK:  # a writer splits only at block ends
            raise ValueError(f"record fragment ends mid-block at offset {pos}")
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += chunk
            if kind == LAST:
                yield pending
                pending = None
        else:
            raise ValueError(f"bad chunk type {kind} at offset {pos}")


def read_records(path: Path) -> Iterator[pb.Record]:
    """Every Record in a ``run-<id>.wandb`` file, in write order."""
    for payload in _iter_payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


@dataclass
class ManifestEntry:
    path: str  # path inside the artifact
    digest: str  # base64 md5, as wandb records it
    size: int
    local_path: Path | None  # staged copy under WANDB_DATA_DIR, if any
    ref: str = ""

    def read_bytes(self) -> bytes:
        """The staged file's bytes, checked against the recorded md5."""
        if self.local_path is None or not self.local_path.exists():
            raise FileNotFoundError(f"no staged file for artifact entry {self.path}")
        data = self.local_path.read_bytes()
        if base64.b64encode(hashlib.md5(data).digest()).decode() != self.digest:
            raise ValueError(f"{self.local_path} does not match digest of {self.path}")
        return data


@dataclass
class ArtifactRecord:
    kind: str  # "logged" (artifact record) or "used" (use_artifact record)
    name: str  # for "used": the name as declared, e.g. "sd-model:latest"
    type: str
    aliases: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    digest: str = ""
    client_id: str = ""  # for "used": the id in the use record
    entries: dict[str, ManifestEntry] = field(default_factory=dict)


def _set(target: dict, item: Any) -> None:
    """Apply a history/summary/config item (key or nested_key) to a dict."""
    keys = list(item.nested_key) or [item.key]
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = json.loads(item.value_json)


def _remove(target: dict, item: Any) -> None:
    keys = list(item.nested_key) or [item.key]
    for k in keys[:-1]:
        target = target.get(k, {})
    target.pop(keys[-1], None)


def _staged(local_path: str, data_dir: Path | None) -> Path | None:
    if not local_path:
        return None
    path = Path(local_path)
    if not path.exists() and data_dir is not None:  # data dir moved since logging
        moved = Path(data_dir) / "artifacts" / "staging" / path.name
        path = moved if moved.exists() else path
    return path


def _load_image(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


@dataclass
class OfflineRun:
    run_dir: Path
    run_id: str
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    job_type: str | None = None
    project: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    exit_code: int | None = None  # None: no exit record (crashed or still running)
    artifacts: list[ArtifactRecord] = field(default_factory=list)

    @property
    def logged_artifacts(self) -> list[ArtifactRecord]:
        return [a for a in self.artifacts if a.kind == "logged"]

    @property
    def used_artifacts(self) -> list[ArtifactRecord]:
        return [a for a in self.artifacts if a.kind == "used"]

    def artifact(self, name: str, type: str | None = None) -> ArtifactRecord:
        """The last logged artifact called ``name`` (optionally of ``type``)."""
        for a in reversed(self.logged_artifacts):
            if a.name == name and type in (None, a.type):
                return a
        raise KeyError(f"no logged artifact {name!r} in run {self.run_id}")

    def values(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in step order (e.g. the loss curve)."""
        return [row[key] for row in self.history if key in row]

    def table_rows(self, key: str) -> list[dict]:
        """All rows of the table logged under ``key``: column -> value, images as PIL.

        INCREMENTAL tables: as W&B assembles them, the last logged increment plus
        its ``previous_increments_paths`` (so logging a *new* Table object under
        the same key starts over, exactly as in the W&B UI).
        IMMUTABLE / MUTABLE tables: the rows of the last logged version.
        """
        refs = [r[key] for r in self.history if isinstance(r.get(key), dict)]
        refs = [r for r in refs if r.get("_type") in TABLE_TYPES]
        last = refs[-1] if refs else self.summary.get(key)
        if not (isinstance(last, dict) and last.get("_type") in TABLE_TYPES):
            raise KeyError(f"no table logged under {key!r} in run {self.run_id}")
        rows = []
        for artifact_path in [*last.get("previous_increments_paths", []), last["artifact_path"]]:
            art, entry_path = self._artifact_for(artifact_path)
            table = json.loads(art.entries[entry_path].read_bytes())
            for values in table["data"]:
                row = dict(zip(table["columns"], values))
                rows.append({c: self._cell(v, art) for c, v in row.items()})
        return rows

    def image(self, key: str, step: int | None = None, index: int = 0) -> Image.Image:
        """An image logged as ``wandb.log({key: wandb.Image(...)})`` (or a list of them).

        ``step=None``: the last step that logged ``key``; ``index`` picks from a list.
        """
        rows = [r for r in self.history if key in r and step in (None, r.get("_step"))]
        if not rows:
            raise KeyError(f"no image under {key!r} (step {step}) in run {self.run_id}")
        value = rows[-1][key]
        if value.get("_type") == "images/separated":
            return _load_image(self.run_dir / "files" / value["filenames"][index])
        return self._cell(value, None)

    def _artifact_for(self, artifact_path: str) -> tuple[ArtifactRecord, str]:
        client_id, _, entry_path = artifact_path.removeprefix(CLIENT_ARTIFACT).partition("/")
        for art in self.logged_artifacts:
            if art.client_id == client_id.split(":")[0]:
                return art, entry_path
        raise KeyError(f"artifact {artifact_path} not recorded in run {self.run_id}")

    def _cell(self, value: Any, art: ArtifactRecord | None) -> Any:
        if not (isinstance(value, dict) and value.get("_type") == "image-file"):
            return value
        path = value["path"]
        candidates = [art] if art else []
        candidates += [a for a in reversed(self.logged_artifacts) if a is not art]
        for a in candidates:
            entry = a.entries.get(path)
            if entry and entry.local_path and entry.local_path.exists():
                entry.read_bytes()  # digest check: the right file, intact
                return _load_image(entry.local_path)
        in_run_dir = self.run_dir / "files" / path
        if in_run_dir.exists():
            return _load_image(in_run_dir)
        raise FileNotFoundError(f"image {path} not in run dir nor in any staged artifact")


def read_offline_run(run_dir: Path, data_dir: Path | None = None) -> OfflineRun:
    run_dir = Path(run_dir)
    (log_path,) = run_dir.glob("run-*.wandb")
    out = OfflineRun(run_dir=run_dir, run_id=log_path.stem.removeprefix("run-"))
    for rec in read_records(log_path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.run_id, out.project = r.run_id, r.project or None
            out.job_type, out.name = r.job_type or None, r.display_name or None
            out.tags = list(r.tags)
            for item in r.config.update:
                _set(out.config, item)
        elif kind == "config":
            for item in rec.config.update:
                _set(out.config, item)
            for item in rec.config.remove:
                _remove(out.config, item)
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _set(row, item)
            out.history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _set(out.summary, item)
            for item in rec.summary.remove:
                _remove(out.summary, item)
        elif kind == "artifact":
            a = rec.artifact
            entries = {
                e.path: ManifestEntry(
                    e.path, e.digest, e.size, _staged(e.local_path, data_dir), e.ref
                )
                for e in a.manifest.contents
            }
            out.artifacts.append(ArtifactRecord(
                "logged", a.name, a.type, list(a.aliases),
                json.loads(a.metadata) if a.metadata else {}, a.digest, a.client_id, entries,
            ))
        elif kind == "use_artifact":
            u = rec.use_artifact
            out.artifacts.append(ArtifactRecord("used", u.name, u.type, client_id=u.id))
        elif kind == "exit":
            out.exit_code = rec.exit.exit_code
    out.config.pop("_wandb", None)
    out.summary.pop("_wandb", None)
    return out


def _start_time(run_dir: Path) -> tuple[float, str]:
    for rec in read_records(next(run_dir.glob("run-*.wandb"))):
        if rec.WhichOneof("record_type") == "run":
            t = rec.run.start_time
            return t.seconds + t.nanos / 1e9, run_dir.name
    return float("inf"), run_dir.name


def read_offline_runs(wandb_dir: Path, data_dir: Path | None = None) -> list[OfflineRun]:
    """Every ``offline-run-*`` under WANDB_DIR (or its ``wandb/`` folder), oldest first."""
    root = Path(wandb_dir)
    if (root / "wandb").is_dir():
        root = root / "wandb"
    run_dirs = [d for d in root.glob("offline-run-*") if not d.is_symlink() and d.is_dir()]
    return [read_offline_run(d, data_dir) for d in sorted(run_dirs, key=_start_time)]
