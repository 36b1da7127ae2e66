"""Localisation (``localisation.smk``, ``two_object.smk``): the pointing game and average precision against object masks
(``scores``), their tables (``tables``) and the two-object images' class-specific maps (``two_object``, paper Fig. 10)."""
