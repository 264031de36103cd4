"""Bad-input catalogue, models (issue 10 items 2, 3, 4, 5 and their messages): hostile cards and registries.

Real files throughout: bundles saved with ``save_bundle``, registries served over real HTTP on the loopback
interface (the fixtures of ``test_registry``), ``mpunet`` run through its ``main``. A Python audit hook
records every file the process opens, so "refused before anything is opened or hashed" is checked, not
assumed. Each refusal: exit code 2, one line naming the file and the fix, the temporary tree unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from MPUNetCore.bundle import BundleError, load_bundle
from MPUNetCore.cli import main
from MPUNetCore.fileutils import sha256_of
from MPUNetCore.registry import BUILTIN_REGISTRY, DEFAULT_MODEL, RegistryError, fetch_model, load_models
from Testing.file_tree import snapshot, user_words
from Testing.slicer_models import write_phantom, write_tiny_bundle
from Testing.test_registry import cache, served_bundle  # noqa: F401  (fixtures: HTTP server, cache)

OPENED = []  # paths the audit hook saw opened while RECORDING is set
RECORDING = []


def _audit(event: str, args: tuple) -> None:
    if RECORDING and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)  # hooks cannot be removed; this one only records while RECORDING is set


@pytest.fixture()
def bundle(tmp_path) -> Path:
    """A real tiny bundle in ``tmp_path/model`` (card + weights)."""
    return write_tiny_bundle(tmp_path / "model")


def _rewrite(card: Path, **weights) -> None:
    data = json.loads(card.read_text())
    data["weights"] = {**data["weights"], **weights}
    card.write_text(json.dumps(data))


def _segment(tmp_path: Path, model) -> list:
    ct = tmp_path / "data" / "phantom-6.nrrd"
    if not ct.exists():
        write_phantom(tmp_path / "data", seed=6, shape=(16, 32, 32))
    out = tmp_path / "seg.nii.gz"
    return ["segment", str(ct), "-o", str(out), "--model", str(model), "--progress", "none"]


# ------------------------------------------------------------------- 2. weights outside the card


@pytest.mark.parametrize("kind", ["absolute", "dot-dot", "sub-folder", "symbolic link out", "not a file"])
def test_card_weights_must_be_a_plain_file_beside_the_card(kind, bundle, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "secret.pt"  # real weights that would load and run
    shutil.copy(bundle.with_suffix(".pt"), victim)
    if kind == "absolute":
        name = str(victim)
    elif kind == "dot-dot":
        name = "../elsewhere/secret.pt"
    elif kind == "sub-folder":
        (bundle.parent / "sub").mkdir()
        shutil.copy(victim, bundle.parent / "sub" / "w.pt")
        name = "sub/w.pt"
    elif kind == "symbolic link out":
        (bundle.parent / "link.pt").symlink_to(victim)
        name = "link.pt"
    else:
        (bundle.parent / "folder.pt").mkdir()
        name = "folder.pt"
    _rewrite(bundle, file=name, sha256=sha256_of(victim))
    args = _segment(tmp_path, bundle)
    before = snapshot(tmp_path)
    OPENED.clear()
    RECORDING.append(True)
    try:
        code = main(args)
    finally:
        RECORDING.clear()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(bundle) in err and "beside" in err and user_words(err)
    assert not [p for p in OPENED if p.endswith(".pt")]  # neither hashed nor loaded
    assert snapshot(tmp_path) == before


def test_a_symbolic_link_inside_the_card_folder_is_fine(bundle):
    weights = bundle.with_suffix(".pt")
    weights.rename(bundle.parent / "real.pt")
    weights.symlink_to("real.pt")
    assert load_bundle(bundle).card.name == "tiny-test"


# --------------------------------------------------------------------- 3. registry names and cache


def _edit_first_entry(registry: Path, **fields: str) -> None:
    """Change fields of the first model entry of a registry file, as a careless or hostile editor would."""
    data = json.loads(registry.read_text())
    data["models"][0].update(fields)
    registry.write_text(json.dumps(data))


def _serve_renamed_entry(served, monkeypatch, name: str) -> Path:
    """The served test registry, its first entry renamed to `name`, made $MPUNET_REGISTRY; returns it."""
    _, registry, _ = served
    _edit_first_entry(registry, name=name)
    monkeypatch.setenv("MPUNET_REGISTRY", str(registry))
    return registry


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "x" * 65, "", "a..b", "C:x"])
def test_registry_names_outside_the_safe_alphabet_are_refused(
    name,
    served_bundle,  # noqa: F811
    cache,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    registry = _serve_renamed_entry(served_bundle, monkeypatch, name)
    before = snapshot(tmp_path)
    assert main(["models", "download", name or "x"]) == 2
    err = capsys.readouterr().err
    assert f"the model registry {registry} is refused" in err and "letters, digits" in err
    assert snapshot(tmp_path) == before  # nothing in the cache, nothing beside it


def test_download_file_names_from_urls_must_be_safe_too(served_bundle, cache, tmp_path):  # noqa: F811
    _, registry, _ = served_bundle
    url = json.loads(registry.read_text())["models"][0]["weights_url"]
    _edit_first_entry(registry, weights_url=url.rsplit("/", 1)[0] + "/sub/..")
    with pytest.raises(RegistryError, match=r"file name in the URL .* is not allowed"):
        load_models(extra=[registry])
    assert not cache.exists()


def test_cache_paths_that_lead_out_of_the_cache_are_refused(served_bundle, cache, tmp_path):  # noqa: F811
    _, registry, _ = served_bundle
    outside = tmp_path / "outside"
    outside.mkdir()
    cache.mkdir()
    (cache / "tiny-remote").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RegistryError, match="outside the model cache"):
        fetch_model("tiny-remote", models=load_models(extra=[registry])[0])
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------ 4. bundled models win


def test_a_registry_entry_named_like_the_bundled_model_never_replaces_it(
    served_bundle,  # noqa: F811
    cache,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    registry = _serve_renamed_entry(served_bundle, monkeypatch, DEFAULT_MODEL)
    models, clashes = load_models()
    assert models[DEFAULT_MODEL].is_local and models[DEFAULT_MODEL].card_url.startswith("file://")
    assert [(c.name, c.registry) for c in clashes] == [(DEFAULT_MODEL, registry)]
    builtin = json.loads(BUILTIN_REGISTRY.read_text())["models"][0]
    card = fetch_model(DEFAULT_MODEL)
    assert sha256_of(card) == builtin["card_sha256"]  # the bundled card, not the served one
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert f"{registry} (from $MPUNET_REGISTRY) also defines '{DEFAULT_MODEL}'" in captured.err
    assert "bundled" in captured.out
    assert not cache.exists()  # nothing was downloaded


# ------------------------------------------------------------------- 5. not plain weights files


class _Payload:
    """An arbitrary object: unpickling it would need this class, which a safe load refuses."""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("object", "is not a plain weights file"),
        ("text", "it is not a PyTorch weights file"),
        ("truncated", "it is not a PyTorch weights file"),
        ("empty", "it is not a PyTorch weights file"),
        ("tensor", "holds no state dict"),
    ],
)
def test_files_that_are_not_plain_weights_are_refused_in_one_line(content, message, bundle, tmp_path, capsys):
    weights = bundle.with_suffix(".pt")
    if content == "object":
        torch.save({"state_dict": {}, "payload": _Payload()}, weights)
    elif content == "text":
        weights.write_text("root:x:0:0:root:/root:/bin/bash\n" * 20)  # torch says "list index out of range"
    elif content == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif content == "empty":
        weights.write_bytes(b"")
    else:
        torch.save(torch.zeros(3), weights)
    _rewrite(bundle, sha256=sha256_of(weights))
    with pytest.raises(BundleError, match=message) as refused:
        load_bundle(bundle)
    text = str(refused.value)
    assert str(weights) in text and user_words(text) and "list index" not in text
    if content == "object":
        assert "may be unsafe" in text and "was not loaded" in text
    args = _segment(tmp_path, bundle)
    before = snapshot(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and user_words(err)
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------- messages


def test_an_unwritable_cache_is_not_blamed_on_the_network(served_bundle, tmp_path, monkeypatch, capsys):  # noqa: F811
    _, registry, _ = served_bundle
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("a file where the cache folder should be")  # fails for root as well as for users
    monkeypatch.setenv("MPUNET_CACHE", str(blocked))
    monkeypatch.setenv("MPUNET_REGISTRY", str(registry))
    before = snapshot(tmp_path)
    assert main(["models", "download", "tiny-remote"]) == 2
    err = capsys.readouterr().err.strip()
    assert "in the model cache" in err and "MPUNET_CACHE" in err and "network" not in err
    assert snapshot(tmp_path) == before
