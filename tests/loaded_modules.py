"""`python tests/loaded_modules.py MODULE ...`: import the modules (found in the working directory too), then print
every module the interpreter holds, as JSON (tests/test_layers.py: what a fresh interpreter loads for them)."""
import importlib
import json
import os
import sys

sys.path.insert(0, os.getcwd())

for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
