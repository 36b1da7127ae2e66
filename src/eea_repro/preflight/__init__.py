"""What the Snakefile checks before any job runs, the top layer: every configured model and method can run together
(``compatibility``), with the answers kept between invocations (``facts``)."""
