"""Fixture: a job handler whose file name is not a module name."""
