"""The model registry: which models exist, where to get them, and a verified local cache.

A registry is a JSON file: `{"models": [{"name", "version", "description", "card_url",
"card_sha256", "weights_url", "weights_sha256", "size"}, ...]}`. URLs may be `https://`, `http://`,
`file://` or paths relative to the registry file (the models shipped inside the package use those).
Downloads go to a user cache (`$MPUNET_CACHE`, else `~/.cache/mpunet/models`) and are verified
against their SHA-256 before they are used; once cached, a model works offline.

`$MPUNET_REGISTRY` may name extra registry files (separated by the OS path separator); their entries
are added to, and override, the built-in ones.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from MPUNetCore.fileutils import atomic_output, sha256_of

BUILTIN_REGISTRY = Path(__file__).resolve().parent / "models" / "registry.json"
DEFAULT_MODEL = "demo-phantom"

ProgressCallback = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)


class RegistryError(ValueError):
    """A model that cannot be found, downloaded or verified; the message says what to do."""


@dataclass
class RegistryEntry:
    """One model of a registry; URLs are already resolved against the registry's location."""

    name: str
    card_url: str
    card_sha256: str
    weights_url: str
    weights_sha256: str
    size: int = 0
    version: str = ""
    description: str = ""

    @property
    def is_local(self) -> bool:
        """True when both files are on this machine (shipped with the package or `file://`)."""
        return self.card_url.startswith("file://") and self.weights_url.startswith("file://")


def cache_dir() -> Path:
    """The folder where downloaded models are kept."""
    return Path(os.environ.get("MPUNET_CACHE", Path.home() / ".cache" / "mpunet" / "models"))


def _resolve_url(url: str, base: Path) -> str:
    if urllib.parse.urlparse(url).scheme in ("http", "https", "file"):
        return url
    return (base.parent / url).resolve().as_uri()


def read_registry(path: Union[str, Path]) -> List[RegistryEntry]:
    """Read one registry file.

    Raises:
        RegistryError: the file is missing or not a valid registry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = []
        for item in data["models"]:
            item = dict(item)
            for key in ("card_url", "weights_url"):
                item[key] = _resolve_url(item[key], path)
            entries.append(RegistryEntry(**item))
        return entries
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise RegistryError(f"cannot read the model registry {path}: {error}") from None


def available_models(extra: Optional[List[Union[str, Path]]] = None) -> Dict[str, RegistryEntry]:
    """All known models by name: the built-in registry, then `$MPUNET_REGISTRY`, then `extra`."""
    sources: List[Union[str, Path]] = [BUILTIN_REGISTRY]
    sources += [p for p in os.environ.get("MPUNET_REGISTRY", "").split(os.pathsep) if p]
    sources += list(extra or [])
    models: Dict[str, RegistryEntry] = {}
    for source in sources:
        for entry in read_registry(source):
            models[entry.name] = entry
    return models


def _download(url: str, sha256: str, target: Path, progress: Optional[ProgressCallback]) -> Path:
    """Fetch `url` into `target` (atomically), refusing content whose SHA-256 differs."""
    if target.exists() and sha256_of(target) == sha256:
        return target
    try:
        with (
            urllib.request.urlopen(url, timeout=60) as response,
            atomic_output(target, overwrite=True) as tmp,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            done = 0
            with open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            if sha256_of(tmp) != sha256:
                raise RegistryError(
                    f"the file downloaded from {url} does not match its registered SHA-256; it was not "
                    "kept. Try again later, or report the registry entry"
                )
    except OSError as error:
        raise RegistryError(
            f"cannot download {url}: {error}. Check the network, or put the model's files in {target.parent}"
        ) from None
    return target


def fetch_model(
    name: str, progress: Optional[ProgressCallback] = None, models: Optional[Dict[str, RegistryEntry]] = None
) -> Path:
    """Make a registered model available locally and return the path of its card.

    Shipped models are used where they lie (after checking their SHA-256); others are downloaded
    into the cache once and verified.

    Raises:
        RegistryError: an unknown name, a failed download or a checksum mismatch.
    """
    models = available_models() if models is None else models
    if name not in models:
        raise RegistryError(f"unknown model {name!r}; known models: {', '.join(sorted(models)) or 'none'}")
    entry = models[name]
    if entry.is_local:
        card = Path(urllib.request.url2pathname(urllib.parse.urlparse(entry.card_url).path))
        weights = Path(urllib.request.url2pathname(urllib.parse.urlparse(entry.weights_url).path))
        for path, expected in ((card, entry.card_sha256), (weights, entry.weights_sha256)):
            if not path.exists() or sha256_of(path) != expected:
                raise RegistryError(
                    f"the model file {path} of {name!r} is missing or does not match its SHA-256"
                )
        return card
    folder = cache_dir() / name
    weights_name = Path(urllib.parse.urlparse(entry.weights_url).path).name
    card_name = Path(urllib.parse.urlparse(entry.card_url).path).name
    _download(entry.weights_url, entry.weights_sha256, folder / weights_name, progress)
    return _download(entry.card_url, entry.card_sha256, folder / card_name, None)


def resolve_model(model: Union[str, Path, None], progress: Optional[ProgressCallback] = None) -> Path:
    """A model given by registry name or by path (card, weights or folder) → path of its card."""
    if model is None:
        model = DEFAULT_MODEL
    if Path(model).exists():
        return Path(model)
    if isinstance(model, str) and ("/" in model or model.endswith((".json", ".pt"))):
        raise RegistryError(
            f"model file {model} does not exist; give a registry name or an existing bundle path"
        )
    return fetch_model(str(model), progress)
