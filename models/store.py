"""The model store: versioned model artifacts on disk, checked by sha256 when loaded.

    <root>/<name>/<version>/config.json    architecture and training facts, JSON
    <root>/<name>/<version>/weights.npz    named float arrays, read with allow_pickle=False
    <root>/<name>/<version>/manifest.json  the contract's model-version record, with each file's sha256
    <root>/<name>/CURRENT                  the version workers load
    <root>/<name>/HISTORY                  versions made current, oldest first (for rollback)
    <root>/<name>/.served/<worker>.json    what each worker serves and last refused (`report_served`)

Nothing here unpickles or executes stored content: a model is JSON plus plain
arrays. The version's `sha256` is the digest of the sorted "file sha256" lines
of its files, so one value names the whole artifact; loading recomputes every
file's digest and refuses a version whose files changed. A version is written
in a temporary directory and renamed into place, and CURRENT is replaced
atomically, so a reader never sees half a model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILES = ("config.json", "weights.npz")
SERVED_FOLDER = ".served"  # a dot-name: never taken for a version


class ModelStoreError(Exception):
    """A model is missing or damaged; the message says which and what to do."""


@dataclass
class StoredModel:
    name: str
    version: str
    config: dict
    weights: dict[str, np.ndarray]
    manifest: dict


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _artifact_digest(file_digests: dict[str, str]) -> str:
    return _sha256("".join(f"{name} {digest}\n" for name, digest in sorted(file_digests.items())).encode())


def _npz_bytes(weights: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(array) for name, array in weights.items()})
    return buffer.getvalue()


class ModelStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def save(self, name: str, config: dict, weights: dict[str, np.ndarray], metrics: dict,
             status: str = "candidate", now: dt.datetime | None = None) -> dict:
        """Writes a new version and returns its manifest (the contract's model-version record)."""
        for array_name, array in weights.items():
            if np.asarray(array).dtype == object:
                raise ValueError(f"weight {array_name!r} is an object array; only numeric arrays can be stored")
        contents = {"config.json": json.dumps(config, indent=2, sort_keys=True).encode(),
                    "weights.npz": _npz_bytes(weights)}
        digests = {file: _sha256(data) for file, data in contents.items()}
        digest = _artifact_digest(digests)
        now = now or dt.datetime.now(dt.timezone.utc)
        version = f"{now:%Y%m%dT%H%M%SZ}-{digest[:6]}"
        directory = self.root / name / version
        manifest = {"name": name, "version": version, "created_at": int(now.timestamp() * 1000),
                    "uri": directory.resolve().as_uri(), "sha256": digest, "metrics": metrics, "status": status,
                    "files": digests}
        contents["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
        (self.root / name).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.root / name))
        for file, data in contents.items():
            (staging / file).write_bytes(data)
        if directory.exists():  # the same artifact saved twice in one second
            for file in staging.iterdir():
                file.unlink()
            staging.rmdir()
        else:
            staging.rename(directory)
        return manifest

    def set_current(self, name: str, version: str) -> None:
        """Make `version` the one workers load; it goes live, the one it replaces is retired."""
        self.load(name, version)  # never point workers at a damaged version
        before = self.current(name)
        self._write_pointer(name, "CURRENT", version + "\n")
        history = self.history(name)
        if not history or history[-1] != version:
            self._write_pointer(name, "HISTORY", "".join(f"{v}\n" for v in [*history, version]))
        self.set_status(name, version, "live")
        if before is not None and before != version and (self.root / name / before).is_dir():
            self.set_status(name, before, "retired")

    def history(self, name: str) -> list[str]:
        """Versions made current, oldest first."""
        path = self.root / name / "HISTORY"
        return path.read_text().split() if path.exists() else []

    def rollback(self, name: str) -> str:
        """Make the version that was current before this one current again; returns it.

        The version rolled back from is retired and leaves the history, so a
        second rollback goes one further back.
        """
        history = self.history(name)
        current = self.current(name)
        while history and history[-1] == current:
            history.pop()
        earlier = [v for v in history if (self.root / name / v).is_dir()]
        if not earlier:
            raise ModelStoreError(f"no earlier {name} version to roll back to in {self.root / name}")
        previous = earlier[-1]
        self.load(name, previous)
        self._write_pointer(name, "CURRENT", previous + "\n")
        self._write_pointer(name, "HISTORY", "".join(f"{v}\n" for v in earlier))
        self.set_status(name, previous, "live")
        if current is not None and (self.root / name / current).is_dir():
            self.set_status(name, current, "retired")
        return previous

    def set_status(self, name: str, version: str, status: str) -> dict:
        """Record a version's lifecycle status (candidate, live, rejected, retired) in its manifest.

        The manifest is not among the digested files: the status changes, the artifact does not.
        """
        return self._rewrite_manifest(name, version, lambda manifest: manifest.update(status=status))

    def _rewrite_manifest(self, name: str, version: str, change) -> dict:
        path = self.root / name / version / "manifest.json"
        manifest = json.loads(path.read_bytes())
        change(manifest)
        temporary = path.with_name(f".manifest.{os.getpid()}")
        temporary.write_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode())
        os.replace(temporary, path)
        return manifest

    def update_metrics(self, name: str, version: str, metrics: dict) -> dict:
        """Add to a version's recorded metrics (e.g. how long its training took); like the status, they
        live in the manifest, outside the digested files."""
        return self._rewrite_manifest(name, version, lambda manifest: manifest["metrics"].update(metrics))

    def manifest(self, name: str, version: str) -> dict:
        return json.loads((self.root / name / version / "manifest.json").read_bytes())

    def retain(self, name: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions, never the current one nor the one a rollback would
        restore; returns the versions deleted."""
        protected = set(self.history(name)[-2:]) | {self.current(name)}
        versions = self.versions(name)
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protected]
        for version in doomed:
            directory = self.root / name / version
            for file in directory.iterdir():
                file.unlink()
            directory.rmdir()
        return doomed

    def _write_pointer(self, name: str, file: str, text: str) -> None:
        pointer = self.root / name / file
        temporary = pointer.with_name(f".{file}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, pointer)

    def report_served(self, name: str, worker: str, report: dict) -> None:
        """What `worker` serves of `name` now (a JSON object; see stream.live). CURRENT says what workers
        should serve; these reports say what they do, e.g. still the old version after refusing the new."""
        folder = self.root / name / SERVED_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", worker).strip("_.") + ".json")
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(report, sort_keys=True))
        os.replace(temporary, path)

    def served(self, name: str) -> list[dict]:
        """Every worker's latest report for `name`; a report that cannot be read is left out."""
        folder = self.root / name / SERVED_FOLDER
        reports = []
        for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:
            try:
                reports.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return reports

    def current(self, name: str) -> str | None:
        pointer = self.root / name / "CURRENT"
        return pointer.read_text().strip() if pointer.exists() else None

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def load(self, name: str, version: str | None = None) -> StoredModel:
        version = version or self.current(name)
        if version is None:
            raise ModelStoreError(f"no {name} model in {self.root}: train one with `salescast retrain`")
        directory = self.root / name / version
        try:
            manifest = json.loads((directory / "manifest.json").read_bytes())
            contents = {file: (directory / file).read_bytes() for file in FILES}
        except FileNotFoundError as exc:
            raise ModelStoreError(f"{name} version {version} is incomplete in {directory} ({exc.filename} is "
                                  "missing): retrain with `salescast retrain`") from None
        except ValueError as exc:
            raise ModelStoreError(f"{directory / 'manifest.json'} is not valid JSON ({exc}): retrain with "
                                  "`salescast retrain`") from None
        except OSError as exc:  # a permission, a directory where a file should be, an I/O error
            raise ModelStoreError(f"{name} version {version} cannot be read from {directory} "
                                  f"({type(exc).__name__}: {exc}): check the files' owner and mode") from None
        recorded = manifest.get("files", {})
        for file, data in contents.items():
            if recorded.get(file) != _sha256(data):
                raise ModelStoreError(f"{directory / file} does not match the sha256 in its manifest: the file "
                                      "was changed or damaged. Retrain with `salescast retrain`, or point "
                                      f"{self.root / name / 'CURRENT'} at another version")
        if manifest.get("sha256") != _artifact_digest(recorded):
            raise ModelStoreError(f"{directory / 'manifest.json'}: its sha256 does not match its files' digests; "
                                  "retrain with `salescast retrain`")
        try:
            with np.load(io.BytesIO(contents["weights.npz"]), allow_pickle=False) as archive:
                weights = {key: archive[key] for key in archive.files}
        except (EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:  # empty, truncated, objects in it
            raise ModelStoreError(f"{directory / 'weights.npz'} is not a readable .npz archive of plain arrays "
                                  f"({type(exc).__name__}: {exc}), though its manifest matches it: retrain "
                                  "with `salescast retrain`") from None
        return StoredModel(name, version, json.loads(contents["config.json"]), weights, manifest)
