"""The reading stack: what the book and the command line say about finished runs, without torch or training code.
`tables` renders every table; `report` makes Table 1 and the reproduction notes' tables from the registry and the
definitions; `recipe` puts a run's recipe in words; `plots`, `conclusions` and `costs` draw the figures, judge the
report's conclusions and estimate what Table 1 costs. It imports cakd.definitions and nothing of the training stack."""
