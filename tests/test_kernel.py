"""The notebooks' kernel: this interpreter, found by papermill as `python3`, with encrypted sockets."""
import json
import os
import sys

import pytest
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from cakd import kernel, paths


def foreign_python3(folder) -> None:
    """A user-wide `python3` spec of another interpreter, as `ipykernel install --user` leaves one."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/opt/other/bin/python", "-m", "ipykernel_launcher",
                                                           "-f", "{connection_file}"],
                                                  "display_name": "Python 3", "language": "python"}))


def test_ensure_shadows_a_foreign_python3_kernel_with_ours(tmp_path, monkeypatch):
    foreign_python3(tmp_path / "user")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "user"))
    kernel.ensure()
    spec = KernelSpecManager().get_kernel_spec(kernel.KERNEL)
    assert spec.argv[0] == sys.executable
    assert spec.metadata["kernel_provisioner"]["provisioner_name"] == kernel.PROVISIONER
    assert os.environ["JUPYTER_PATH"].split(os.pathsep)[0] == str(paths.cache_home() / "jupyter")


def test_ensure_leaves_our_installed_kernel_alone(tmp_path, monkeypatch):
    kernel._write(tmp_path / "ours")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "ours"))
    kernel.ensure()
    assert os.environ["JUPYTER_PATH"] == str(tmp_path / "ours")
    assert not (paths.cache_home() / "jupyter").exists()


@pytest.mark.skipif(not zmq.has("curve") or "transport_encryption" not in KernelManager.class_trait_names(),
                    reason="needs libzmq with CurveZMQ and jupyter_client >= 8.9")
def test_a_kernel_of_our_spec_runs_on_encrypted_sockets(tmp_path, monkeypatch):
    kernel._write(tmp_path / "ours")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "ours"))
    manager = KernelManager(kernel_name=kernel.KERNEL)       # default policy: no encryption unless provisioned
    assert manager.transport_encryption == "disabled"
    manager.start_kernel(stderr=open(tmp_path / "kernel.log", "w"))
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive("1 + 1", timeout=60)
        assert reply["content"]["status"] == "ok"
        assert manager.curve_secretkey is not None and "curve_secretkey" in manager.get_connection_info()
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "without encryption" not in (tmp_path / "kernel.log").read_text()
