"""What a run measures: recorders, histograms, result rows, CPU, wire figures."""
