"""The Jupyter kernel the notebooks run on: this interpreter, its sockets encrypted.

Every tool that executes a notebook (papermill typed by hand, `python -m cakd reproduce`, nbval under pytest,
a Jupyter server) starts the kernel named `python3` through jupyter_client. jupyter_client provisions CurveZMQ
keys only when asked, and ipykernel warns about plain TCP once per kernel otherwise. The kernelspec written
here names `CurveProvisioner`, so each of those tools gets encrypted sockets without an option of its own.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from . import files, paths

KERNEL = "python3"
PROVISIONER = "cakd-curve"      # the entry point in pyproject.toml ([project.entry-points])


class CurveProvisioner(LocalProvisioner):  # type: ignore[misc]
    """A local kernel whose sockets use CurveZMQ keys from its manager, where jupyter_client and libzmq offer
    them (jupyter_client >= 8.9, libzmq built with libsodium); elsewhere, the plain local kernel."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        import zmq

        manager = self.parent
        offered = hasattr(manager, "_transport_encryption_policy") and zmq.has("curve")
        if offered and manager.transport_encryption == "disabled":   # the default; a caller's choice is kept
            kwargs.setdefault("transport_encryption", "auto")
        return await super().pre_launch(**kwargs)


def kernelspec() -> dict[str, Any]:
    return {"argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (cakd)", "language": "python",
            "metadata": {"supported_encryption": ["curve"], "kernel_provisioner": {"provisioner_name": PROVISIONER}}}


def install(prefix: Path | str = sys.prefix) -> Path:
    """Write the `python3` kernelspec under `prefix` (default: this virtualenv); returns its folder."""
    return _write(Path(prefix) / "share" / "jupyter")


def _write(jupyter_data: Path) -> Path:
    folder = jupyter_data / "kernels" / KERNEL
    files.write_json(folder / "kernel.json", kernelspec())      # makes the folder too
    return folder


def ensure() -> None:
    """Make the `python3` kernel that papermill finds this one, before this process executes a notebook.

    A `python3` spec of another interpreter or without the provisioner (say, a user-wide one) is shadowed by
    ours, written under the cache home and put first on JUPYTER_PATH for this process and its children.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        ours = spec.metadata.get("kernel_provisioner", {}).get("provisioner_name") == PROVISIONER
        if ours and os.path.abspath(spec.argv[0]) == os.path.abspath(sys.executable):
            return
    except NoSuchKernel:
        pass
    folder = paths.cache_home() / "jupyter"
    _write(folder)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("JUPYTER_PATH")]))
