"""Shared test setup: every test gets its own results/cache/data homes, fixed torch threads and seed, no network."""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
import urllib.error

import pytest
import torch

from cakd.definitions import paths

# Read by huggingface_hub / timm / transformers when they are first imported, so set before any test imports them.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"

# Fixed, not os.cpu_count(), so results do not depend on the machine. One thread: the tests' tensors are tiny,
# and with other jobs on the same cores each 2-thread OpenMP region waited ~50 ms (a tiny CNN forward 1.5 s vs 5 ms).
TORCH_THREADS = 1


def _own_addresses() -> set[str]:
    """This machine's own addresses: where a local Ray cluster listens (connecting there leaves no machine)."""
    found = {"localhost", socket.gethostname()}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("203.0.113.1", 9))   # a UDP connect sends nothing: it names the outgoing interface
            found.add(probe.getsockname()[0])
    except OSError:
        pass
    return found


OWN_ADDRESSES = _own_addresses()


def _loopback_only(connect):
    """socket.connect that refuses anything but this machine (kernels, servers and a Ray cluster here still work)."""
    def guarded(sock, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                allowed = ipaddress.ip_address(host).is_loopback or host in OWN_ADDRESSES
            except ValueError:
                allowed = host in OWN_ADDRESSES
            if not allowed:
                raise OSError(f"tests must not use the network (tried to connect to {address!r})")
        return connect(sock, address, *args, **kwargs)
    return guarded


@pytest.fixture(autouse=True)
def isolated_homes(tmp_path_factory, monkeypatch):
    """Point CAKD_RESULTS / CAKD_CACHE / CAKD_DATA at fresh temporary folders; yields their paths.

    Nothing a test writes lands in the repository or the user's cache, and nothing an earlier run left there
    is read. The folders live beside the test's own `tmp_path`, not in it, so tmp_path holds only the test's files.
    Also: no CAKD_PRETRAINED_DIR, torch threads (here and in subprocesses) and seed fixed, outbound connections
    refused.
    """
    base = tmp_path_factory.mktemp("cakd-homes")
    homes = {env: base / name for env, name in
             ((paths.RESULTS_ENV, "results"), (paths.CACHE_ENV, "cache"), (paths.DATA_ENV, "data"))}
    for env, folder in homes.items():
        folder.mkdir()
        monkeypatch.setenv(env, str(folder))
    monkeypatch.delenv("CAKD_PRETRAINED_DIR", raising=False)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):   # the same thread count in subprocesses a test starts
        monkeypatch.setenv(name, str(TORCH_THREADS))
    monkeypatch.setattr(socket.socket, "connect", _loopback_only(socket.socket.connect))
    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    yield {"results": homes[paths.RESULTS_ENV], "cache": homes[paths.CACHE_ENV], "data": homes[paths.DATA_ENV]}
    torch.set_num_threads(threads)


@pytest.fixture
def no_cifar_download(monkeypatch):
    """torchvision's CIFAR download raises URLError, as offline (no network is touched); records the attempts."""
    import torchvision.datasets.cifar as cifar

    tried = []

    def offline(url, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError("offline (test)")
    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    return tried


# ----------------------------------------------------------------------------- trained smoke teachers, once

def _made_once(tmp_path_factory, name: str, make) -> Path:
    """`make(folder)` run once for the whole pytest run; returns the folder. The xdist workers share it: the
    first to come makes it, under a file lock, and the others wait and reuse it."""
    from filelock import FileLock

    shared = _shared_folder(tmp_path_factory)
    base = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not (base / "ready").exists():
            make(base)
            (base / "ready").touch()
    return base


@pytest.fixture(scope="session")
def session_teachers(tmp_path_factory):
    """The tiny teachers of `support.SESSION_TEACHERS`, trained once per pytest run into a session cache.

    Returns the folder that holds them (`<cache home>/smoke/teachers`); tests take a copy (`smoke_teachers`).
    Trained with the per-test setup's thread count and seed, in homes of its own.
    """
    from unittest import mock

    from support import SESSION_TEACHERS, smoke_config

    from cakd.training.data import load_splits
    from cakd.training.teachers import load_teacher

    def train(base):
        config = smoke_config(method="ca_wkd", teachers=SESSION_TEACHERS)
        homes = {env: str(base / folder) for env, folder in
                 ((paths.RESULTS_ENV, "results"), (paths.CACHE_ENV, "cache"), (paths.DATA_ENV, "data"))}
        threads = torch.get_num_threads()
        with mock.patch.dict(os.environ, homes):
            torch.set_num_threads(TORCH_THREADS)
            try:
                splits = load_splits(config)
                for teacher in SESSION_TEACHERS:
                    load_teacher(config, teacher, splits)
            finally:
                torch.set_num_threads(threads)
    return _made_once(tmp_path_factory, "session-teachers", train) / "cache" / "smoke" / "teachers"


def _shared_folder(tmp_path_factory) -> Path:
    """The folder all xdist workers of this pytest run share (the run's base temporary folder)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _start_golden_cache(tmp_path_factory) -> None:
    """Start making the goldens' cache in the background, once per pytest run (the first worker starts it)."""
    import subprocess
    import sys

    from filelock import FileLock

    from goldens import golden_environment

    shared = _shared_folder(tmp_path_factory)
    base = shared / "golden-cache"
    with FileLock(str(shared / "golden-cache.lock")):
        if base.exists():
            return
        base.mkdir()
        env = golden_environment(base / "results", base / "cache")   # one thread: the workers keep theirs busy
        with open(base / "log.txt", "w") as log:
            subprocess.Popen([sys.executable, str(Path(__file__).parent / "golden_cache.py"), str(base / "ready")],
                             env=env, cwd=shared, stdout=log, stderr=subprocess.STDOUT)


def pytest_collection_modifyitems(config, items):
    """A test that reads the session's trained teachers is `slow` (it waits for their training, and trains or
    caches with them). The golden and mutation tests run last: their cache is made in the background from the
    start (`_golden_cache_from_the_start`), and the other tests keep the cores busy meanwhile."""
    for item in items:
        if "session_teachers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: "golden_cache" in getattr(item, "fixturenames", ()))   # stable: order kept


@pytest.fixture(scope="session", autouse=True)
def _golden_cache_from_the_start(request, tmp_path_factory):
    if any("golden_cache" in getattr(item, "fixturenames", ()) for item in request.session.items):
        _start_golden_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def golden_cache(tmp_path_factory):
    """The cache home every golden and mutation test shares, made in the background (golden_cache.py): each
    golden's kernel loads its teachers and logit caches from it."""
    import time

    base = _shared_folder(tmp_path_factory) / "golden-cache"
    deadline = time.monotonic() + 1200
    while not (base / "ready").exists():
        assert time.monotonic() < deadline, "the goldens' cache is not ready after 20 minutes:\n" + (
            base / "log.txt").read_text()[-3000:]
        time.sleep(0.5)
    made = (base / "ready").read_text()
    assert made == "ok", "making the goldens' cache failed:\n" + made
    return base / "cache"


@pytest.fixture
def smoke_teachers(session_teachers, isolated_homes):
    """A copy of the session's trained tiny teachers in this test's cache home (a test may retrain or damage it)."""
    import shutil

    target = isolated_homes["cache"] / "smoke" / "teachers"
    shutil.copytree(session_teachers, target)
    return target
