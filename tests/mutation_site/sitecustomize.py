"""On PYTHONPATH in a mutation test's nbval run: in the golden's kernel (started as `-m ipykernel_launcher -f
CONNECTION_FILE`), apply the mutation the test names (tests/mutations.py); every other process starts as usual."""
import os
import sys

if os.environ.get("CAKD_MUTATION") and "-f" in sys.argv:
    import mutations

    mutations.apply_from_environment()
