"""What every golden's kernel would otherwise make itself: the tiny teachers and the logit caches they read, made as
the teachers golden makes them (its own parameters, in the goldens' pinned environment). conftest starts it in the
background once per pytest run: `python tests/golden_cache.py READY`. It writes READY atomically (a waiting worker
never reads it half-written): "ok", or the traceback."""
import sys
import traceback
from pathlib import Path


def make_golden_cache() -> None:
    from cakd.book import notebook
    from cakd.book.pages import TEACHERS_PAGE, default_parameters
    from goldens import GOLDENS

    config, names = notebook.teachers_config({**default_parameters(TEACHERS_PAGE), **GOLDENS[TEACHERS_PAGE][1]})
    teachers = notebook.load_teachers(config, names, force=False)
    notebook.method3_ties(config, teachers)                       # builds every teacher's logit cache


if __name__ == "__main__":
    from cakd.definitions.files import write_text

    ready = Path(sys.argv[1])
    try:
        make_golden_cache()
        write_text(ready, "ok")
    except BaseException:
        write_text(ready, traceback.format_exc())
        raise
