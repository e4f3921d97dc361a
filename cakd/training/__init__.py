"""The training stack: everything that needs torch. From the bottom: precision and checkpoints; the image geometry
(`views`); the networks (`models`) and the report's losses (`losses`); the datasets (`data`); the training loop
(`train`, with its CUDA graph in `graphed`); the teachers (`teachers`) and where KD reads their logits (`teaching`);
a run through the registry (`runs`); and fixed probes of a run's mathematics (`probes`). It imports
cakd.definitions and nothing of the reading stack."""
