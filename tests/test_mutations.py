"""The goldens bite: each change below, of the formulas or of the training loop, turns a golden red through a value
it compares (nbval's output mismatch for the expected cell), not through a crash of the patched code.

A mutation (tests/mutations.py) is applied inside the golden's kernel by tests/mutation_site/sitecustomize.py on
PYTHONPATH. nbval stops at the first failing cell (`-x`): a change of the mathematics shows in the fixed-batch probe,
before any training; a change of the training loop in the training metrics, where training stops at the first epoch
whose printed values already lie beyond the golden's tolerance.
"""
import json
import re
from pathlib import Path

import nbformat
import pytest

import mutations
from goldens import METRIC_LINE, TOLERANCES, golden_path
from mutations import GOLDEN_ENV, METRICS, MUTATION_ENV, MUTATIONS, PROBE
from test_golden import nbval, training_lines

pytestmark = [pytest.mark.notebook, pytest.mark.slow]
SITE = Path(__file__).parent / "mutation_site"


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
def test_mutation_turns_a_golden_red_through_a_compared_value(mutation, tmp_path, golden_cache, monkeypatch):
    golden, role, _ = MUTATIONS[mutation]
    (tmp_path / "golden.json").write_text(json.dumps(golden_epochs(golden)))
    monkeypatch.setenv(MUTATION_ENV, mutation)
    monkeypatch.setenv(GOLDEN_ENV, str(tmp_path / "golden.json"))
    done = nbval(golden, tmp_path, golden_cache, "-x", pythonpath=[str(SITE)])
    report = done.stdout
    assert done.returncode == 1, f"{mutation} did not fail golden {golden}:\n{report[-3000:]}"
    assert f"Cell {expected_cell(golden, role)}: Cell outputs differ" in report, report[-4000:]
    # a patch that raised would show as nbval's exception report with the kernel's traceback, not as a mismatch
    assert "Cell execution caused an exception" not in report, report[-4000:]
    assert "Traceback (most recent call last)" not in report, report[-4000:]


def test_every_mutation_names_a_golden_and_a_cell():
    assert {role for _, role, _ in MUTATIONS.values()} == {PROBE, METRICS}
    for golden, role, _ in MUTATIONS.values():
        assert golden_path(golden).is_file() and expected_cell(golden, role) >= 0


def test_the_harness_ends_training_only_at_an_epoch_that_nbval_will_find_different(monkeypatch):
    import cakd.training.runs
    import cakd.training.train

    golden = {f"epoch{e}.{k}": v for e in (1, 2) for k, v in
              (("loss", 2.0), ("train_acc", 40.0), ("val_acc", 50.0), ("test_acc", 45.0))}
    near = {"loss": 2.0 * (1 + TOLERANCES["loss"] / 2), "train_acc": 40.0, "val_acc": 50.0, "test_acc": 45.0}

    def spent_after(*records):
        """The records as `fit` would report them, one per epoch; whether training stops after the last."""
        def fit(*args, on_epoch=None, **kwargs):
            for epoch, record in enumerate(records, 1):
                on_epoch({"epoch": epoch, **record})
            return cakd.training.train.patience_spent([], 0)
        monkeypatch.setattr(cakd.training.runs, "fit", fit)
        monkeypatch.setattr(cakd.training.train, "patience_spent", lambda history, patience: False)
        mutations.stop_at_the_first_differing_epoch(golden)
        return cakd.training.runs.fit()

    assert not spent_after(near, near)                                  # within tolerance: trains on
    assert spent_after({**near, "loss": 2.0 * (1 + 2 * TOLERANCES["loss"])})
    assert spent_after(near, {**near, "val_acc": 52.0})
    assert spent_after(near, near, near)                                # an epoch the golden does not have
