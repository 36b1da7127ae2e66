"""The names of the maps that come from a trained explainer, known to the rules, the registry and the report without
importing torch."""

# EEA and pEEA are not in the baseline registry: they need a trained explainer, so their maps come from their own rule.
EEA_METHODS = {"eea": ("vit", "cnn"), "peea": ("vit", "cnn")}
EEA_LABELS = {"eea": "EEA", "peea": "pEEA"}
