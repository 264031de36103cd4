"""The model registry: which models exist, where to get them, and a verified local cache.

A registry is a JSON file: `{"models": [{"name", "version", "description", "card_url",
"card_sha256", "weights_url", "weights_sha256", "size"}, ...]}`. URLs may be `https://`, `http://`,
`file://` or paths relative to the registry file (the models shipped inside the package use those).
Downloads go to a user cache (`$MPUNET_CACHE`, else `~/.cache/mpunet/models`) and are verified
against their SHA-256 before they are used; once cached, a model works offline.

`$MPUNET_REGISTRY` may name extra registry files (separated by the OS path separator); their entries
are added to the built-in ones, which they can never replace: a bundled model always wins over an added
entry of the same name (`mpunet models` reports such clashes). Names use a safe alphabet and every
file of the cache is checked to lie inside it.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from MPUNetCore.fileutils import atomic_output, sha256_of

BUILTIN_REGISTRY = Path(__file__).resolve().parent / "models" / "registry.json"
DEFAULT_MODEL = "demo-phantom"
#: Registry names and downloaded file names: they become folders and files of the cache.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

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


def check_name(name: object, what: str = "model name") -> str:
    """Refuse a registry or file name outside the safe alphabet (it becomes a folder of the cache).

    Args:
        name: the name to check.
        what: what it is, for the message.

    Returns:
        The name.

    Raises:
        RegistryError: a name that is not 1-64 letters, digits, ".", "_" or "-" starting with a letter
            or digit, or that holds "..".
    """
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise RegistryError(
            f"the {what} {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit, without '..'"
        )
    return name


def read_registry(path: Union[str, Path]) -> List[RegistryEntry]:
    """Read one registry file.

    Raises:
        RegistryError: the file is missing or not a valid registry, or an entry's name or file names
            are not safe (see :func:`check_name`).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = []
        for item in data["models"]:
            item = dict(item)
            for key in ("card_url", "weights_url"):
                item[key] = _resolve_url(item[key], path)
            entry = RegistryEntry(**item)
            check_name(entry.name)
            if not entry.is_local:  # downloaded files are named after their URLs inside the cache
                for url in (entry.card_url, entry.weights_url):
                    check_name(_url_file_name(url), f"file name in the URL {url} of {entry.name!r}")
            entries.append(entry)
        return entries
    except RegistryError as error:
        raise RegistryError(
            f"the model registry {path} is refused: {error}; fix or remove that entry"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise RegistryError(f"cannot read the model registry {path}: {error}") from None


def _url_file_name(url: str) -> str:
    return Path(urllib.parse.urlparse(url).path).name


@dataclass
class Clash:
    """An entry of an added registry that has the name of a bundled model (and is ignored)."""

    name: str
    registry: Path


def registry_sources(extra: Optional[List[Union[str, Path]]] = None) -> List[Path]:
    """The registry files in the order they are read: built-in, `$MPUNET_REGISTRY`, then `extra`."""
    sources = [p for p in os.environ.get("MPUNET_REGISTRY", "").split(os.pathsep) if p]
    return [BUILTIN_REGISTRY] + [Path(p) for p in sources + list(extra or [])]


def load_models(
    extra: Optional[List[Union[str, Path]]] = None,
) -> Tuple[Dict[str, RegistryEntry], List[Clash]]:
    """All known models by name, and the added entries that clash with a bundled model.

    Bundled models (the built-in registry) always win: an entry of `$MPUNET_REGISTRY` or `extra` with
    the same name is ignored and reported as a clash, so that an added registry can never replace the
    default model. Between added registries, a later entry replaces an earlier one.
    """
    sources = registry_sources(extra)
    models: Dict[str, RegistryEntry] = {entry.name: entry for entry in read_registry(sources[0])}
    bundled = set(models)
    clashes: List[Clash] = []
    for source in sources[1:]:
        for entry in read_registry(source):
            if entry.name in bundled:
                clashes.append(Clash(entry.name, source))
            else:
                models[entry.name] = entry
    return models, clashes


def available_models(extra: Optional[List[Union[str, Path]]] = None) -> Dict[str, RegistryEntry]:
    """All known models by name (see :func:`load_models`; bundled models win over added registries)."""
    return load_models(extra)[0]


def _inside_cache(path: Path) -> Path:
    """`path`, checked to lie inside the cache folder once links and `..` are resolved."""
    root = cache_dir().resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise RegistryError(
            f"refusing to write {path}: it resolves to {resolved}, outside the model cache {root}; "
            "remove the link that leads out of the cache"
        )
    return path


def _download(url: str, sha256: str, target: Path, progress: Optional[ProgressCallback]) -> Path:
    """Fetch `url` into `target` (atomically), refusing content whose SHA-256 differs.

    A cache that cannot be written and a server that cannot be reached get different messages.
    """
    _inside_cache(target)
    if target.is_file() and sha256_of(target) == sha256:
        return target
    try:
        with atomic_output(target, overwrite=True) as tmp:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except (OSError, ValueError) as error:
                raise _network_error(url, error, target) from None
            with response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except OSError as error:
                        raise _network_error(url, error, target) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            if sha256_of(tmp) != sha256:
                raise RegistryError(
                    f"the file downloaded from {url} does not match its registered SHA-256; it was not "
                    "kept. Try again later, or report the registry entry"
                )
    except RegistryError:
        raise
    except OSError as error:  # creating, writing or renaming in the cache (network errors are above)
        raise RegistryError(
            f"cannot save the model file {target.name} in the model cache {target.parent}: "
            f"{error.strerror or error}. Make that folder writable (and check the free disk space), or set "
            "MPUNET_CACHE to a folder you can write to"
        ) from None
    return target


def _network_error(url: str, error: Exception, target: Path) -> RegistryError:
    """The message for a download that failed on the way (not in the cache)."""
    if isinstance(error, urllib.error.HTTPError):
        return RegistryError(
            f"cannot download {url}: the server answered {error.code} {error.reason}; the model may have "
            f"moved: update the registry entry, or put the model's files in {target.parent}"
        )
    reason = getattr(error, "reason", None) or error
    return RegistryError(
        f"cannot download {url}: {reason}. Check the network connection, or put the model's files in "
        f"{target.parent}"
    )


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
    folder = _inside_cache(cache_dir() / check_name(name))
    weights_name = check_name(_url_file_name(entry.weights_url), "weights file name")
    card_name = check_name(_url_file_name(entry.card_url), "card file name")
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
