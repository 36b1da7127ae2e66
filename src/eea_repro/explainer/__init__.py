"""The EEA / LTX explainer (``explainer.smk``, ``maps.smk``): the network and its loss (``network``), pretraining
(``pretraining``, pEEA), per-image fine-tuning (``finetuning``, EEA) and the stage's entry functions (``stage``)."""
