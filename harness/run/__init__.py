"""Running a scenario: the runner, its worker processes and their load loops."""
