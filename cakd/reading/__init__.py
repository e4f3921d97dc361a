"""The reading stack: what the book and the command line say about finished runs; it imports cakd.definitions, never
torch or the training stack. `tables` renders every table, `report` Table 1 and the reproduction notes' tables, `recipe`
a run's recipe in words, `plots` the figures, `conclusions` the report's conclusions judged, `costs` Table 1's cost."""
