"""The plumbing every stage shares and the Snakefile reads, the lowest layer (imports no other stage): the config and
its schema (``config``), file-name helpers (``paths``, ``io``), the job set-up (``logs``, ``gpu_slots``, ``allocator``,
``numerics``), the seeds of the replicates (``replicates``), the names of the explainer's maps (``names``), the
installed versions (``versions``) and the results manifest (``manifest``)."""
