"""Turn runs/ into tables, statistics, plots and reports."""
