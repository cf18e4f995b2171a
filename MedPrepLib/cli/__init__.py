"""The `medprep` command line: one module per subcommand, each a thin face over MedPrepLib."""
