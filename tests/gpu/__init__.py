"""The device's results against the CPU's, one computation at a time (marker ``gpu``): run on the device named by
``EEA_CHECK_DEVICE`` (default ``cuda``) by ``python -m eea_repro.bench.gpu_check OUT_DIR`` on a GPU machine, skipped
where that device is missing; ``EEA_CHECK_DEVICE=cpu pytest tests/gpu`` runs them CPU against CPU."""
