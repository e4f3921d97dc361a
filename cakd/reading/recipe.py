"""A run's resolved recipe in words (`python -m cakd config`): what it does (student, inputs, teachers, optimizer,
schedule, stopping, loss), then each option it reads with its value and source (the run pages' table): the report, the
authors' code (with its cell), a choice between sources, our profile, or this run's own parameters."""
from __future__ import annotations

import pandas as pd

from ..definitions import authors
from ..definitions.config import OPTIONS, RunConfig
from ..definitions.manifest import Row, find_row
from ..definitions.networks import STUDENT_PIPELINE, TEACHER_LABELS, teacher_pipeline
from ..definitions.profiles import PROFILES
from .tables import HtmlTable, render_table

PRECISIONS = {"fp16": "fp16 autocast with a gradient scaler on CUDA (the authors' precision=16); fp32 on a CPU",
              "bf16": "bf16 autocast on CUDA (ours); fp32 on a CPU", "fp32": "fp32", "fp64": "fp64"}
ORIGINS = {"ambiguity": "the report's reading (an ambiguity option)", "ours": "ours"}


def describe(config: RunConfig) -> str:
    """What the run does, one fact a line, then every option it reads with its value and source."""
    c = config
    where = ("PIL on the 8-bit image, once per image" if c.teacher_input == "clean"
             else "on the student's float view, on the device")
    teachers = [f"  {i}. {name} ({TEACHER_LABELS[name]}, {teacher_pipeline(name, c.model_scale).describe()} "
                f"[{where}]; weights: {c.teacher_weights})" for i, name in enumerate(c.teachers, 1)]
    cosine = (f"CosineAnnealingLR(T_max={c.cosine_epochs}, eta_min={c.eta_min:g}) stepped per epoch"
              if c.schedule == "cosine" else "constant")
    lines = [
        f"run {c.run_id}: method {c.method}, profile {c.profile}, seed {c.seed}",
        f"data: {c.dataset}" + (f" ({c.synthetic_size} generated images of {c.synthetic_classes} classes)"
                                if c.dataset == "synthetic" else ""),
        "split: StratifiedShuffleSplit(n_splits=1, random_state=42) of the training images into train and "
        + ("val, test_size=5000 (45,000 / 5,000); test: the official 10,000" if c.dataset == "cifar100"
           else "val (a tenth held out); test: the dataset's test part"),
        f"student: {c.student} ({c.model_scale}), from scratch, input {c.crop}x{c.crop}",
        f"student transforms: {c.views.describe()}; then {STUDENT_PIPELINE.describe()}",
        f"teachers ({c.teacher_input} input, {c.teacher_mode}):" if c.teachers else "teachers: none",
        *teachers,
        f"optimizer: AdamW(lr={c.lr:g}, weight_decay={c.weight_decay:g}), batch {c.batch_size}",
        f"schedule: {cosine}",
        f"epochs: at most {c.epochs}; early stopping: " + (f"patience {c.patience} on validation accuracy"
                                                          if c.patience else "off"),
        "reported: test accuracy at the epoch of best validation accuracy",
        f"precision: {PRECISIONS[c.precision]}",
        f"loss ({c.loss.title}): {c.loss.formula(c)}",
        "options this run reads, and where each value comes from:",
    ]
    return "\n".join(lines) + "\n" + recipe_table(config).text


def option_sources(config: RunConfig) -> pd.DataFrame:
    """Every option the run reads (its hash covers exactly these, less the generated data's size for other data):
    option, value, source."""
    row = find_row(config)
    shown = [name for name in OPTIONS if config.reads(name) and name not in ("profile", "method")
             and (config.dataset == "synthetic" or not name.startswith("synthetic_"))
             and (name != "data_dir" or config.data_dir is not None)]
    return pd.DataFrame({"option": shown, "value": [str(getattr(config, name)) for name in shown],
                         "source": [source(config, name, row) for name in shown]})


def recipe_table(config: RunConfig) -> HtmlTable:
    return render_table(option_sources(config), code_columns=["option", "value"], wide_columns=["source"])


def source(config: RunConfig, name: str, row: Row | None = None) -> str:
    """Where option `name`'s value in `config` (a run of manifest `row`, if any) comes from, in a few words."""
    value, option, profile = getattr(config, name), OPTIONS[name], PROFILES[config.profile]
    if row is not None and name in row.params and name != "teachers":
        if row.ours:
            return "ours (a point the report does not have)"
        return "the report's Table 1 row" if row.table1 else "the report's " + ", ".join(
            f"Figure {f[-1]}" for f in row.figures)
    if name != "teachers" and value != profile.settings.get(name, option.default):
        return "this run's parameters"
    if profile.authors_code and (choice := next((c for c in authors.SOURCE_CHOICES if name in c.options), None)):
        return f"{choice.source}: a choice between sources"
    if name in authors.settings() and value == authors.settings()[name]:
        return f"the authors' code, {authors.CELLS[name]}"
    if name == "teachers":
        return "the report, in the authors' order (a choice between sources)" if profile.authors_code else "the report"
    if name in profile.settings and (name, value) != ("dataset", "cifar100"):
        return f"the {profile.name} profile (ours)"
    if name == "dataset" or option.origin == "report":
        return "the report"
    if option.origin == "authors":
        return f"the authors' code, {authors.CELLS[name]}"
    return ORIGINS[option.origin]
