"""Datasets (``data.smk``): the procedural synthetic split generator (``synthetic``), the image loader shared with
ImageNet (``loading``), label files and image decoding without torch (``files``), a user's image folder (``folder``),
the checks of its files (``checks``), the split lists (``splits``) and where each split lives and how the evaluated
images are sharded (``plan``). Import the submodules: the package itself imports nothing, so that reading the
workflow (which needs the folder layout) does not import torch."""
