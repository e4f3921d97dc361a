"""What every layer of cakd shares, with no torch and no training code: where files go (`paths`), how they are written
(`files`), what the authors' code does (`authors`), the networks' names and input pipelines as data (`networks`), the
methods (`methods`), every run option (`config`), the profiles (`profiles`), the Table 1 rows (`manifest`) and the
finished runs (`registry`). It imports nothing else of cakd; the training and reading stacks both build on it."""
