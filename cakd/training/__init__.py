"""The training stack: everything that needs torch; it imports cakd.definitions and nothing of the reading stack. From
the bottom: precision, checkpoints and image geometry (`views`); the networks (`models`), the report's `losses` and the
datasets (`data`); the loop (`train`, its CUDA graph in `graphed`); the `teachers` and where KD reads their logits
(`teaching`); a run through the registry (`runs`); fixed probes of a run's mathematics (`probes`)."""
