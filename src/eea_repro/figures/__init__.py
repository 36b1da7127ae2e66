"""The paper's figure grids (``figures.smk``, ``mixed.smk``): the grid drawing (``grids``), the qualitative grids
(``qualitative``, Figs. 1 and 11-16), the mixed-architecture table and grid (``mixed``, Fig. 9) and the two-object
grid (``two_object``, Fig. 10)."""
