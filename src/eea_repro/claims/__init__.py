"""The appendix's testable statements, each checked against this run's own numbers (results/claims.*): ``verdicts``
holds what every claim is made of (the verdicts, :class:`Settings`, :class:`Finding`, :class:`Claim` and its
``@claim`` line, the paper's protocol a claim assumes, the helpers the checks share); ``tables`` (§2: Grad-CAM and the
all-ones mask), ``randomization`` (§3: parameter and data randomization) and ``mixed_and_multiclass`` (§4 and §5)
hold the checks; ``registry`` lists every claim in the table's row order and checks them, ``pooling`` over the seed
replicates; ``render`` writes the table, the report's HTML and claims.json (``write_claims``, the rule's entry)."""
