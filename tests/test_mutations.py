"""The goldens bite: each change below, of the formulas or of the training loop, turns a golden red through a value
it compares (nbval's output mismatch for the expected cell), not through a crash of the patched code.

A mutation is applied inside the golden's kernel by a `sitecustomize` module on PYTHONPATH (a monkeypatch of
cakd at interpreter start). nbval stops at the first failing cell (`-x`): a change of the mathematics shows in
the fixed-batch probe, before any training; a change of the training loop in the training metrics. Training stops
at the first epoch whose printed values already lie beyond the golden's tolerance (STOP_AT_A_DIFFERING_EPOCH):
the metrics cell then differs for certain, and the epochs left would only cost time.
"""
import re
import textwrap

import nbformat
import pytest

from cakd.goldens import METRIC_LINE, golden_path
from test_golden import nbval, training_lines

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

PROBE, METRICS = "probe", "metrics"   # the cell that must differ: the fixed-batch probe, or the training metrics
MUTATIONS = {
    # ---- the mathematics
    "temperature_doubled": ("kd_densenet121", PROBE, """
        import cakd.losses as L
        original = L.kl_per_sample
        L.kl_per_sample = lambda s, t, temperature: original(s, t, 2 * temperature)
    """),
    "tau_squared_dropped": ("kd_densenet121", PROBE, """
        import cakd.losses as L
        original = L.kl_per_sample
        L.kl_per_sample = lambda s, t, temperature: original(s, t, temperature) / temperature ** 2
    """),
    "m3_least_confident": ("m3_dr_t16", PROBE, """
        import cakd.losses as L
        L.most_confident = lambda p_true: p_true.argmin(0)
    """),
    "m1_weights_not_normalised": ("m1_drv", PROBE, """
        import cakd.losses as L
        original = L.teacher_weights
        L.teacher_weights = lambda t, y, **kw: original(t, y, **kw) * (t.shape[0] - 1)
    """),
    "constant_lr": ("baseline", PROBE, """
        import torch, cakd.train as T
        T.make_scheduler = lambda optimizer, *args: torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, 0)
    """),
    # ---- the training loop
    "learns_nothing": ("baseline", METRICS, """
        import torch
        torch.optim.AdamW.step = lambda self, *args, **kwargs: None
    """),
    "wrong_labels": ("baseline", METRICS, """
        import cakd.train as T
        original = T.train_step
        def shifted(forward, optimizer, step_loss, train, *args, **kwargs):
            return original(forward, optimizer, step_loss, T.Split(train.images, train.labels.roll(1)), *args, **kwargs)
        T.train_step = shifted
    """),
    "teachers_see_other_images": ("kd_densenet121", METRICS, """
        import cakd.teaching as T
        original = T.CachedTeachers.__call__
        T.CachedTeachers.__call__ = lambda self, indices, view_ids, views: original(self, indices.roll(1), view_ids, views)
    """),
    "validation_on_the_test_split": ("baseline", METRICS, """
        import dataclasses, cakd.runs as R
        original = R.fit
        R.fit = lambda model, splits, *args, **kwargs: original(model, dataclasses.replace(splits, val=splits.test),
                                                               *args, **kwargs)
    """),
    "augmentation_off": ("baseline", METRICS, """
        import cakd.data as D, cakd.train as T
        T.random_views = lambda n, views, generator: D.centre_views(n, views)
    """),
}


# Appended to every mutation's sitecustomize: an epoch record whose loss or accuracy lies beyond the golden's
# tolerance (the comparison the nbval plugin makes), or that the golden does not have, ends the run after that
# epoch, as early stopping would. Only a line nbval will find different stops it; a mutation that leaves an epoch
# as the golden has it trains on.
STOP_AT_A_DIFFERING_EPOCH = """
import cakd.goldens as _goldens, cakd.notebook as _notebook, cakd.runs as _runs, cakd.train as _train
_golden, _differs = {golden}, []
_fit, _spent = _runs.fit, _train._patience_spent


def _watching_fit(*args, on_epoch=None, **kwargs):
    def watch(record):
        for name, value in _notebook.printed_epoch(record).items():
            if name not in _golden or _goldens.differs(name, _golden[name], value):
                _differs.append(name)
        if on_epoch is not None:
            on_epoch(record)
    return _fit(*args, on_epoch=watch, **kwargs)


_runs.fit = _watching_fit
_train._patience_spent = lambda history, patience: bool(_differs) or _spent(history, patience)
"""


def golden_epochs(golden: str) -> dict[str, float]:
    """The per-epoch values the golden prints in its metrics cell."""
    return {name: float(value) for name, value in METRIC_LINE.findall(training_lines(golden))
            if re.fullmatch(r"epoch\d+\..+", name)}


def expected_cell(golden: str, role: str) -> int:
    """nbval's number (among code cells) of the cell a mutation must change."""
    code = [c for c in nbformat.read(golden_path(golden), as_version=4).cells if c.cell_type == "code"]
    wanted = (lambda c: "loss_probe" in c.source) if role == PROBE else \
        (lambda c: "cakd-metrics" in c.metadata.get("tags", []))
    return next(i for i, c in enumerate(code) if wanted(c))


# the ones that train first: the probe ones are short and fill the workers' last gaps
@pytest.mark.parametrize("mutation", sorted(MUTATIONS, key=lambda m: (MUTATIONS[m][1] == PROBE, m)))
def test_mutation_turns_a_golden_red_through_a_compared_value(mutation, tmp_path, golden_cache):
    golden, role, patch = MUTATIONS[mutation]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(patch) + STOP_AT_A_DIFFERING_EPOCH.format(
        golden=golden_epochs(golden)))
    done = nbval(golden, tmp_path, golden_cache, "-x", pythonpath=[str(site)])
    report = done.stdout
    assert done.returncode == 1, f"{mutation} did not fail golden {golden}:\n{report[-3000:]}"
    assert f"Cell {expected_cell(golden, role)}: Cell outputs differ" in report, report[-4000:]
    # a patch that raised would show as nbval's exception report with the kernel's traceback, not as a mismatch
    assert "Cell execution caused an exception" not in report, report[-4000:]
    assert "Traceback (most recent call last)" not in report, report[-4000:]


def test_the_harness_ends_training_only_at_an_epoch_that_nbval_will_find_different(monkeypatch):
    import cakd.runs
    import cakd.train

    from cakd.goldens import TOLERANCES

    golden = {f"epoch{e}.{k}": v for e in (1, 2) for k, v in
              (("loss", 2.0), ("train_acc", 40.0), ("val_acc", 50.0), ("test_acc", 45.0))}
    near = {"loss": 2.0 * (1 + TOLERANCES["loss"] / 2), "train_acc": 40.0, "val_acc": 50.0, "test_acc": 45.0}

    def spent_after(*records):
        """The records as `fit` would report them, one per epoch; whether training stops after the last."""
        def fit(*args, on_epoch=None, **kwargs):
            for epoch, record in enumerate(records, 1):
                on_epoch({"epoch": epoch, **record})
            return cakd.train._patience_spent([], 0)
        monkeypatch.setattr(cakd.runs, "fit", fit)
        monkeypatch.setattr(cakd.train, "_patience_spent", lambda history, patience: False)
        exec(STOP_AT_A_DIFFERING_EPOCH.format(golden=golden), {})
        return cakd.runs.fit()

    assert not spent_after(near, near)                                  # within tolerance: trains on
    assert spent_after({**near, "loss": 2.0 * (1 + 2 * TOLERANCES["loss"])})
    assert spent_after(near, {**near, "val_acc": 52.0})
    assert spent_after(near, near, near)                                # an epoch the golden does not have
