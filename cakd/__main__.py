"""Command line: `python -m cakd COMMAND ...` (also installed as `cakd`). One function per command.

To add a command: a `_<name>(args)` function returning an exit code, and its parser in `build_parser`. Each imports what
it runs when it runs, so `--help` and `config` start without torch."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from .definitions.profiles import PROFILES, BenchSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cakd",
                                     description="Confidence Aware Ensemble Knowledge Distillation, reproduced.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("reproduce", help="train every Table 1 row, write its page and build the book",
                            description="Train every manifest row and seed as Ray tasks (the smoke teachers, the "
                                        "teacher-logit caches, the runs), execute each row's notebook into "
                                        "book/runs/ with papermill, run the results notebook, build the Jupyter "
                                        "Book. Finished runs and unchanged pages are reused.")
    p.add_argument("--profile", default="smoke", metavar="|".join(PROFILES),
                   help="smoke: synthetic data, tiny models, CPU, minutes (default); paper: the report's setting")
    p.add_argument("--rows", nargs="+", metavar="ID", help="only these manifest rows (default: all)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="seeds 0..N-1 per row; seed 0 runs in the notebooks, the others directly (default 1)")
    p.add_argument("--force", action="store_true", help="retrain the runs and re-execute every notebook "
                   "(teachers trained here are kept: delete the cache home to retrain them)")
    p.add_argument("--no-build", dest="build", action="store_false", help="skip `jupyter-book build .`")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="CPU runs at a time on this machine (Ray's CPU slots; default 1: one after another)")
    p.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                   help="runs packed on each GPU of this machine or cluster, each given 1/K of it by Ray; without "
                        "NVIDIA MPS the GPU time-slices between them (default 1)")
    p.add_argument("--address", metavar="ADDR",
                   help="run on the Ray cluster there ('auto' on one of its nodes, or HOST:PORT of its head); "
                        "its nodes need cakd installed and the results and cache folders shared")
    p.set_defaults(run=_reproduce)

    p = commands.add_parser("bench", help="time our training step against the authors' pipeline, per Table 1 row",
                            description="Per Table 1 row, our training step (teachers from a logit cache, graphed on "
                                        "CUDA) against the authors' pipeline (PIL images in a DataLoader, every "
                                        "teacher online each step) or online teaching; then the plain step and the "
                                        "graph's gain. Prints the tables, writes results/<profile>/bench.json. The "
                                        "sizes default per profile and device (cakd.definitions.profiles).")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="default cpu")
    p.add_argument("--profile", default="smoke", metavar="|".join(PROFILES),
                   help="smoke: tiny models (default); paper: the authors' recipe; consistent: ours (32x32)")
    p.add_argument("--rows", nargs="+", metavar="ID", help="only these Table 1 rows (default: all)")
    p.add_argument("--loader-workers", nargs="+", type=int, metavar="N", dest="workers",
                   help="DataLoader workers of the authors' pipeline, one column each (default 2 4: their notebook's "
                        "2, and 4)")
    p.add_argument("--out", type=Path, help="the JSON file (default results/<profile>/bench.json; with --check "
                                           "book/measurements/<gpu>-check.json)")
    p.add_argument("--compile", action="store_true", help="torch.compile the student in our pipelines")
    p.add_argument("--check", action="store_true",
                   help="also graphed against eager training in fp16 and bf16, the fp16 overflow, two epochs of the "
                        "heaviest row (make gpu-check; on a CPU, with small sizes, a dry run)")
    for f in dataclasses.fields(BenchSettings):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=int, metavar="N", dest=f.name, help=f.metadata["doc"])
    p.set_defaults(run=_bench)

    p = commands.add_parser("config", help="print the resolved recipe of a manifest row under a profile",
                            description="Print, line by line, what a run of a manifest row does under a profile: "
                                        "student, input size, transforms, teachers and their inputs, optimizer, "
                                        "schedule, epochs, early stopping, split, loss options.")
    p.add_argument("row", metavar="ROW", help="a manifest row id, e.g. kd_densenet121 or m3_dr_t8")
    p.add_argument("--profile", default="paper", metavar="|".join(PROFILES), help="default paper")
    p.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                   help="override options, e.g. --set lr=0.001 precision=fp16 (values read as YAML)")
    p.set_defaults(run=_config)

    p = commands.add_parser("notebooks", help="write the run notebooks, the pages' parameters and _toc.yml",
                            description="Write the five run notebooks (each its own title and introduction, then "
                                        "notebooks/run_template.ipynb), the parameters cell of the other pages "
                                        "from the config's options, and _toc.yml from the manifest.")
    p.set_defaults(run=_notebooks)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["python -m cakd", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except ValueError as e:   # bad profile, unknown row, bad parameter: one line, no traceback
        print(f"cakd {args.command}: error: {e}", file=sys.stderr)
        return 2


def _reproduce(args: argparse.Namespace) -> int:
    from .orchestration.reproduce import reproduce

    failed = reproduce(args.profile, rows=args.rows, seeds=args.seeds, force=args.force, build=args.build,
                       workers=args.workers, runs_per_gpu=args.runs_per_gpu, address=args.address)
    return 1 if failed else 0


def _bench(args: argparse.Namespace) -> int:
    from .orchestration import bench

    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchSettings)
                if getattr(args, f.name) is not None}
    (bench.check if args.check else bench.run_benchmark)(
        args.device, args.profile, rows=args.rows, out=args.out, compile=args.compile, command=args.command_line,
        **({"workers": tuple(args.workers)} if args.workers else {}), **settings)
    return 0


def _config(args: argparse.Namespace) -> int:
    import yaml

    from .definitions.manifest import get_row
    from .reading.recipe import describe

    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r} must be NAME=VALUE, e.g. --set lr=0.001")
        overrides[name] = yaml.safe_load(value)
    print(describe(get_row(args.row).config(args.profile, **overrides)))
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from .book.pages import write_notebooks

    changed = write_notebooks()
    print(f"wrote {', '.join(changed)}" if changed else "every notebook is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
