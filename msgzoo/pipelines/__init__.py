"""What a recipe runs, written once: one module per task family, each with commented sections."""
