"""The goldens bite: each listed change of the mathematics turns at least one golden red.

Each mutation is applied inside the golden's kernel through a `sitecustomize` module on PYTHONPATH (a
monkeypatch of cakd at interpreter start), and nbval stops at the first failing cell (`-x`): the fixed-batch
probe comes before any training, so a mutation costs a kernel start, not a training run.
"""
import textwrap

import pytest

from test_golden import nbval

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

MUTATIONS = {
    # every KD temperature doubled
    "temperature_doubled": ("kd_densenet121", """
        import cakd.losses as L
        original = L.kl_per_sample
        L.kl_per_sample = lambda s, t, temperature: original(s, t, 2 * temperature)
    """),
    # tau^2 dropped from the KL
    "tau_squared_dropped": ("kd_densenet121", """
        import cakd.losses as L
        original = L.kl_per_sample
        L.kl_per_sample = lambda s, t, temperature: original(s, t, temperature) / temperature ** 2
    """),
    # Method 3 choosing the least confident teacher
    "m3_least_confident": ("m3_dr_t16", """
        import cakd.losses as L
        L.most_confident = lambda p_true: p_true.argmin(0)
    """),
    # Method 1's weights not normalised (no division by K - 1)
    "m1_weights_not_normalised": ("m1_drv", """
        import cakd.losses as L
        original = L.teacher_weights
        L.teacher_weights = lambda t, y, **kw: original(t, y, **kw) * (t.shape[0] - 1)
    """),
    # the cosine schedule replaced by a constant learning rate
    "constant_lr": ("baseline", """
        import torch, cakd.train as T
        T.make_scheduler = lambda optimizer, *args: torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, 0)
    """),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutation_turns_a_golden_red(mutation, tmp_path, monkeypatch):
    golden, patch = MUTATIONS[mutation]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(patch))
    monkeypatch.setenv("PYTHONPATH", str(site))
    done = nbval(golden, tmp_path / "results", tmp_path / "cache", "-x")
    assert done.returncode == 1, f"{mutation} did not fail golden {golden}:\n{done.stdout[-3000:]}"
    assert "1 failed" in done.stdout and "error" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
