"""Mutations of cakd, one thing each, for tests/test_mutations.py: each is a function that patches the code a golden
notebook runs. tests/mutation_site/sitecustomize.py applies the one named by CAKD_MUTATION at the start of the golden's
kernel, and `stop_at_the_first_differing_epoch` ends training at the first epoch whose printed values already lie
beyond the golden's tolerance (the metrics cell then differs for certain; the epochs left would only cost time)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import torch

MUTATION_ENV, GOLDEN_ENV = "CAKD_MUTATION", "CAKD_MUTATION_GOLDEN"
PROBE, METRICS = "probe", "metrics"   # the cell that must differ: the fixed-batch probe, or the training metrics


# ----------------------------------------------------------------------------- the mathematics

def temperature_doubled() -> None:
    import cakd.training.losses as L
    original = L.kl_per_sample
    L.kl_per_sample = lambda s, t, temperature: original(s, t, 2 * temperature)


def tau_squared_dropped() -> None:
    import cakd.training.losses as L
    original = L.kl_per_sample
    L.kl_per_sample = lambda s, t, temperature: original(s, t, temperature) / temperature ** 2


def m3_least_confident() -> None:
    import cakd.training.losses as L
    L.most_confident = lambda p_true: p_true.argmin(0)


def m1_weights_not_normalised() -> None:
    import cakd.training.losses as L
    original = L.teacher_weights
    L.teacher_weights = lambda t, y, **kw: original(t, y, **kw) * (t.shape[0] - 1)


def constant_lr() -> None:
    import cakd.training.train as T
    T.make_scheduler = lambda optimizer, *args: torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, 0)


# ----------------------------------------------------------------------------- the training loop

def learns_nothing() -> None:
    torch.optim.AdamW.step = lambda self, *args, **kwargs: None


def wrong_labels() -> None:
    import cakd.training.train as T
    original = T.train_step

    def shifted(forward, optimizer, step_loss, train, *args, **kwargs):
        return original(forward, optimizer, step_loss, T.Split(train.images, train.labels.roll(1)), *args, **kwargs)
    T.train_step = shifted


def teachers_see_other_images() -> None:
    import cakd.training.teaching as T
    original = T.CachedTeachers.__call__
    T.CachedTeachers.__call__ = lambda self, indices, view_ids, views: original(self, indices.roll(1), view_ids, views)


def validation_on_the_test_split() -> None:
    import cakd.training.runs as R
    original = R.fit
    R.fit = lambda model, splits, *args, **kwargs: original(model, dataclasses.replace(splits, val=splits.test),
                                                           *args, **kwargs)


def augmentation_off() -> None:
    import cakd.training.train as T
    from cakd.training.views import centre_views
    T.random_views = lambda n, views, generator: centre_views(n, views)


# name -> (the golden it breaks, the cell that must show it, the mutation)
MUTATIONS: dict[str, tuple[str, str, Callable[[], None]]] = {
    "temperature_doubled": ("kd_densenet121", PROBE, temperature_doubled),
    "tau_squared_dropped": ("kd_densenet121", PROBE, tau_squared_dropped),
    "m3_least_confident": ("m3_dr_t16", PROBE, m3_least_confident),
    "m1_weights_not_normalised": ("m1_drv", PROBE, m1_weights_not_normalised),
    "constant_lr": ("baseline", PROBE, constant_lr),
    "learns_nothing": ("baseline", METRICS, learns_nothing),
    "wrong_labels": ("baseline", METRICS, wrong_labels),
    "teachers_see_other_images": ("kd_densenet121", METRICS, teachers_see_other_images),
    "validation_on_the_test_split": ("baseline", METRICS, validation_on_the_test_split),
    "augmentation_off": ("baseline", METRICS, augmentation_off),
}


def stop_at_the_first_differing_epoch(golden: dict[str, float]) -> None:
    """An epoch record whose loss or accuracy lies beyond the golden's tolerance (the comparison the nbval plugin
    makes), or that the golden does not have, ends the run after that epoch, as early stopping would. Only a value
    nbval will find different stops it; a mutation that leaves an epoch as the golden has it trains on."""
    import cakd.training.runs as runs
    import cakd.training.train as train
    from cakd.book.notebook import printed_epoch
    from goldens import differs

    differing: list[str] = []
    fit, spent = runs.fit, train.patience_spent

    def watching_fit(*args, on_epoch=None, **kwargs):
        def watch(record):
            differing.extend(name for name, value in printed_epoch(record).items()
                             if name not in golden or differs(name, golden[name], value))
            if on_epoch is not None:
                on_epoch(record)
        return fit(*args, on_epoch=watch, **kwargs)
    runs.fit = watching_fit
    train.patience_spent = lambda history, patience: bool(differing) or spent(history, patience)


def apply_from_environment() -> None:
    """The mutation CAKD_MUTATION names, watched against the golden epochs in the JSON file CAKD_MUTATION_GOLDEN."""
    MUTATIONS[os.environ[MUTATION_ENV]][2]()
    with open(os.environ[GOLDEN_ENV]) as f:
        stop_at_the_first_differing_epoch(json.load(f))
