"""Work over many runs and pages: `reproduce` (every Table 1 row as Ray tasks, then the book) and `bench` (our training
step against the authors' pipeline, timed). Imports everything below it; only the command line imports it."""
