"""The command line: argument parsing from declarations, the commands, progress and tables."""
