"""The metric tables (``metrics.smk``): the batched metric engine for ADP, PIC, POS, NEG, DEL and INS (``engine``), the
pixel order and its tie rule (``pixel_order``), the metrics' names and conventions (``names``), the tables with their
bootstrap intervals (``tables``) and significance (``significance``), and the stage's entry function (``stage``)."""
