"""The book's pages, above the two stacks: `pages` makes, executes, stamps, titles and lists every page (torch-free),
and `notebook` is what the notebooks call (their checks, what a run page prints, the teachers page's measurements),
reaching into the training stack only inside the functions that train or measure. Imports cakd.definitions, the
reading stack and, from `notebook`, the training stack."""
