"""report.html: the run's figures and report in one self-contained page."""
