"""The model registry: download over real HTTP (loopback), checksum, cache, offline use, errors."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest
import torch

from MPUNetCore.bundle import build_network, load_bundle, save_bundle
from MPUNetCore.fileutils import sha256_of
from MPUNetCore.registry import RegistryError, available_models, fetch_model, resolve_model
from Testing.test_bundle import ARCH, make_card


@pytest.fixture()
def served_bundle(tmp_path):
    """A bundle served by a real HTTP server on 127.0.0.1, and a registry file pointing at it."""
    site = tmp_path / "site"
    torch.manual_seed(1)
    card = save_bundle(build_network(ARCH), make_card(), site / "tiny.json")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    entry = {
        "name": "tiny-remote",
        "version": "1.0",
        "description": "test model",
        "card_url": f"{base}/tiny.json",
        "card_sha256": sha256_of(card),
        "weights_url": f"{base}/tiny.pt",
        "weights_sha256": sha256_of(card.with_suffix(".pt")),
        "size": card.with_suffix(".pt").stat().st_size,
    }
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [entry]}))
    yield site, registry, server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MPUNET_CACHE", str(folder))
    return folder


def test_download_verify_then_work_offline(served_bundle, cache):
    site, registry, server = served_bundle
    models = available_models(extra=[registry])
    calls = []
    card = fetch_model("tiny-remote", progress=lambda done, total: calls.append((done, total)), models=models)
    assert card == cache / "tiny-remote" / "tiny.json"
    assert sha256_of(card.with_suffix(".pt")) == sha256_of(site / "tiny.pt")
    assert calls and calls[-1][0] == calls[-1][1] == (site / "tiny.pt").stat().st_size
    server.shutdown()  # offline from here on: the cache must be enough
    again = fetch_model("tiny-remote", models=models)
    assert load_bundle(again).card.name == "tiny"


def test_a_corrupted_download_is_refused_and_not_cached(served_bundle, cache):
    site, registry, _ = served_bundle
    (site / "tiny.pt").write_bytes(b"not the registered file")
    with pytest.raises(RegistryError, match="does not match its registered SHA-256"):
        fetch_model("tiny-remote", models=available_models(extra=[registry]))
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_unreachable_server_says_what_to_do(served_bundle, cache):
    _, registry, server = served_bundle
    server.shutdown()
    server.server_close()
    with pytest.raises(RegistryError, match="cannot download .*put the model's files in"):
        fetch_model("tiny-remote", models=available_models(extra=[registry]))


def test_environment_registry_is_merged(served_bundle, cache, monkeypatch):
    _, registry, _ = served_bundle
    monkeypatch.setenv("MPUNET_REGISTRY", str(registry))
    assert "tiny-remote" in available_models()
    assert resolve_model("tiny-remote") == cache / "tiny-remote" / "tiny.json"


def test_unknown_names_and_paths_are_explained(tmp_path):
    with pytest.raises(RegistryError, match="unknown model 'nope'; known models:"):
        fetch_model("nope")
    with pytest.raises(RegistryError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad-registry.json"
    bad.write_text('{"models": [{"name": "x"}]}')
    with pytest.raises(RegistryError, match="cannot read the model registry"):
        available_models(extra=[bad])
