"""The explained models (rule files ``checkpoints.smk``): timm networks by name (``network``), their weights on disk
(``checkpoints``), training the embedded model (``training``) and the stage's entry functions (``stage``)."""
