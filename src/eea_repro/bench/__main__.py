"""``python -m eea_repro.bench``: the benchmarks' command line (:func:`eea_repro.bench.run.main`)."""

from eea_repro.bench.run import main

if __name__ == "__main__":
    main()
