"""The book's pages, above both stacks: `pages` makes, executes, stamps, titles and lists every page (torch-free);
`notebook` is what the notebooks call (their checks, what a run page prints, the teachers page's measurements) and
imports the training stack only inside the functions that train or measure."""
