"""The six metrics' names and directions, apart from the torch engine that computes them: the table, significance and
claim jobs read them without loading torch."""

METRICS = ("ADP", "PIC", "POS", "NEG", "DEL", "INS")
HIGHER_IS_BETTER = {"ADP": False, "PIC": True, "POS": False, "NEG": True, "DEL": False, "INS": True}
