"""What a run says: report.md, the console, compare, verdicts, conclusions."""
